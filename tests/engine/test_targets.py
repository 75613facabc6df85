"""A target sparsity is reached, or the run says so (incop.engine.estimate): without
--exper_imp_total_iter a search runs until the target, exactly; a cap that ends it first is said
in the run's last lines, in summary.json, in the report and in the API's result, with an
estimate of the rounds that would reach it; a search that prunes nothing says so."""
import json
import math

import pytest
import torch

from conftest import small_run

from incop.engine.estimate import MOST_ROUNDS, more_rounds, planned_rounds, target_report
from incop.pruning.rules import target_count


# lth removes round(0.2 s) of each layer's s survivors a round: 30% needs six steps, so seven
# rounds, two more than the five a run without a target has
RUN = ["run", "--prune_method", "lth", "--prune_ratio", "0.2", "--prune_target_remaining", "30",
       "--net_warmup", "1", "--net_train_epochs", "0.25", "--quiet"]


def _rounds(run):
    return json.loads((run / "rounds.json").read_text())


def _only_run(out):
    runs = [p.parent for p in out.rglob("config.json")]
    assert len(runs) == 1, runs
    return runs[0]


def _layerwise_counts(sizes, ratio, target_pct):
    """The survivors after each round, computed independently: every layer loses
    round(ratio * s) (half up) a step until the total is at most the target's count."""
    keep = math.ceil(target_pct * sum(sizes) / 100 - 1e-9)
    history = [sum(sizes)]
    while history[-1] > keep:
        sizes = [s - math.floor(ratio * s + 0.5) for s in sizes]
        history.append(max(sum(sizes), keep))  # the step that crosses it is trimmed
    return history


def test_a_target_without_rounds_is_reached_exactly(cli, tmp_path):
    code, out, err = cli(*RUN, "--output_dir", str(tmp_path))
    assert code == 0, err
    run = _only_run(tmp_path)
    rounds = _rounds(run)
    sizes = [64 * 300, 300 * 100, 100 * 10]  # lenet300 on 8x8 digits
    assert [r["remaining"] for r in rounds] == _layerwise_counts(sizes, 0.2, 30)
    assert len(rounds) == 7 and rounds[-1]["remaining"] == target_count(rounds[-1]["total"], 30)
    assert json.loads((run / "config.json").read_text())["experiment"]["imp_total_iter"] == 100
    summary = json.loads((run / "summary.json").read_text())
    assert summary["target"]["reached"] is True and summary["notes"] == []
    assert "NOTE" not in out
    assert "estimate: one epoch took" in out and "7 rounds to reach 30%" in out


def test_a_cap_that_ends_first_says_so_and_the_same_command_goes_on(cli, tmp_path):
    code, out, err = cli(*RUN, "--exper_imp_total_iter", "3", "--output_dir", str(tmp_path))
    assert code == 0, err
    run = _only_run(tmp_path)
    rounds = _rounds(run)
    left = rounds[-1]["remaining_pct"]
    # at the last step's rate (0.8 of the survivors kept) four more steps reach 30%
    note = (f"NOTE: target 30% not reached after 3 rounds ({left:.2f}% remaining); about 4 more "
            f"rounds would reach it: run the same command with --exper_imp_total_iter 7 (or "
            f"more) to go on from here")
    assert [line for line in out.splitlines() if line.strip()][-1] == note
    summary = json.loads((run / "summary.json").read_text())
    assert summary["target"]["reached"] is False and summary["notes"] == [note[6:]]
    assert summary["target"]["trials"] == [{"trial": 0, "rounds": 3, "remaining_pct": left,
                                            "reached": False, "more_rounds": 4}]
    code, text, _ = cli("report", str(run), "--output", str(tmp_path / "rep"))
    assert code == 0 and "target 30% not reached after 3 rounds" in text
    # as the note says: the same command with 7 rounds keeps the 3 and reaches the target
    code, out, err = cli(*RUN, "--exper_imp_total_iter", "7", "--output_dir", str(tmp_path))
    assert code == 0 and "going on from the finished search" in out and "NOTE" not in out, err
    longer = [p.parent for p in tmp_path.rglob("summary.json") if p.parent != run][0]
    assert json.loads((longer / "summary.json").read_text())["target"]["reached"] is True


def _power_rounds(counts, target_pct):
    """An independent count: survivors multiplied step by step by g_j = g_k ** ((j / k) ** -a),
    a fitted through the last two steps, until at most target_pct% are left."""
    k = len(counts) - 1
    g0, g = counts[k - 1] / counts[k - 2], counts[k] / counts[k - 1]
    a = math.log(math.log(g0) / math.log(g)) / math.log(k / (k - 1))
    left, j = counts[k] / counts[0], k
    while left > target_pct / 100:
        j += 1
        left *= g ** ((j / k) ** -a)
    return j - k


def test_the_estimates_are_exact_arithmetic():
    # steps shrink (61/100, 49/61, 41/49, 35/41): fitted through steps 3 and 4, not the first
    assert more_rounds([100, 61, 49, 41, 35], 100, 5) == _power_rounds([100, 61, 49, 41, 35], 5)
    assert more_rounds([100, 61, 49, 41, 35], 100, 5) == 20  # 13 at the last step's rate
    # a fixed fraction fits a = 0: ceil(log(5/64) / log(0.8)) = ceil(11.4)
    assert more_rounds([100, 80, 64], 100, 5) == 12
    # one step that pruned sets the rate: ceil(log(5/80) / log(0.8)) = ceil(12.4)
    assert more_rounds([100, 80, 80], 100, 5) == 13
    # steps that shrink so fast they never get there: more than MOST_ROUNDS
    assert more_rounds([1000, 500, 400, 390], 1000, 1) == MOST_ROUNDS + 1
    assert more_rounds([100, 100], 100, 5) is None  # nothing pruned: no rate
    assert more_rounds([100, 4], 100, 5) == 0
    assert planned_rounds("layerwise", 0.2, 30, 100) == 7
    assert planned_rounds("layerwise", 0.2, None, 5) == 5
    assert planned_rounds("layerwise", 0.01, 1, 100) == 100  # capped
    assert planned_rounds("sap", None, 5, 100) is None  # SAP's steps depend on the weights


def test_the_worst_trial_makes_the_note():
    rows = [{"trial": t, "round": k, "remaining": r, "total": 100, "remaining_pct": float(r)}
            for t, counts in ((0, [100, 50, 25]), (1, [100, 80, 64])) for k, r in enumerate(counts)]
    report = target_report(rows, 30, 3, lambda key: "--rounds")
    assert [t["reached"] for t in report["trials"]] == [True, False]
    assert report["note"].startswith("target 30% not reached after 3 rounds (64.00% remaining)")
    assert "--rounds 7" in report["note"]  # ceil(log(30/64) / log(0.8)) = 4 more
    assert target_report(rows, None, 3, str) is None


def test_the_api_result_carries_the_note_in_its_own_names():
    from torch import nn

    import incop

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 8, generator=g), torch.arange(200) % 2
    x[:, 0] += 8 * y  # learnable in a few steps
    cfg = incop.RunConfig(prune=incop.PruneConfig(method="lth", target_remaining=10),
                          train=incop.TrainConfig(warmup=3, epochs=1, lr=0.1, momentum=0.9),
                          experiment=incop.ExperimentConfig(imp_total_iter=2))
    lines = []
    result = incop.prune_model(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)),
                               (x, y), (x[:60], y[:60]), config=cfg, echo=lines.append)
    assert result.target_reached is False and len(result.notes) == 1
    assert "ExperimentConfig.imp_total_iter" in result.notes[0] and "--" not in result.notes[0]
    assert lines[-1] == f"NOTE: {result.notes[0]}"


def test_a_seed_command_keeps_five_rounds(cli):
    code, out, _ = cli("run", "--prune_method", "ciap", "--print_config")
    assert code == 0 and json.loads(out)["experiment"]["imp_total_iter"] == 5


@pytest.mark.parametrize("cap", ["0", "-1"])
def test_a_bad_cap_is_one_line(cli, cap):
    code, _, err = cli(*RUN, "--exper_imp_total_iter", cap, "--print_config")
    assert code == 2 and err.count("\n") == 1 and "--exper_imp_total_iter" in err


def test_a_search_whose_pruning_stalls_stops_and_says_why(cli, tmp_path):
    # a ratio of 1e-5 removes round(1e-5 s) = 0 of every layer: three steps that prune nothing
    code, out, err = cli("run", "--prune_method", "lth", "--prune_ratio", "0.00001",
                         "--prune_target_remaining", "50", "--net_warmup", "1",
                         "--net_train_epochs", "0.25", "--quiet", "--output_dir", str(tmp_path))
    assert code == 0, err
    run = _only_run(tmp_path)
    assert len(_rounds(run)) == 4  # round 0, then the three steps that removed nothing
    summary = json.loads((run / "summary.json").read_text())
    assert summary["target"]["trials"][0]["stalled_at"] == 3
    assert "last 3 pruning steps removed nothing, so it stopped at round 3" in out
    assert "more round" not in out  # no advice to run more of what cannot prune


def test_a_target_that_keeps_every_weight_says_nothing_was_pruned(cli, tmp_path):
    # ceil(99.999% of 50200) = 50200: the target is reached before any step
    code, out, err = cli(*RUN[:6], "99.999", *RUN[7:], "--output_dir", str(tmp_path))
    assert code == 0, err
    assert out.strip().splitlines()[-1].startswith("NOTE: nothing was pruned: "
                                                   "--prune_target_remaining 99.999 keeps")


def test_layers_pruned_empty_are_said(cli, tmp_path):
    # global magnitude pruning to 0.01% leaves 6 weights, all in the first layer
    code, out, err = cli("run", "--prune_method", "lth", "--prune_rule", "global",
                         "--prune_ratio", "0.9", "--prune_target_remaining", "0.01",
                         "--net_warmup", "1", "--net_train_epochs", "0.25", "--quiet",
                         "--output_dir", str(tmp_path))
    assert code == 0, err
    layers = [r for r in json.loads((_only_run(tmp_path) / "summary.json").read_text())["notes"]
              if "no weights left" in r]
    assert len(layers) == 1 and layers[0].startswith("fc2.weight, fc3.weight have no weights")


def test_a_named_run_is_told_to_take_another_name_to_go_on(cli, tmp_path):
    code, out, err = cli(*RUN, "--exper_imp_total_iter", "3", "--run_name", "mine",
                         "--output_dir", str(tmp_path))
    assert code == 0, err
    assert "--exper_imp_total_iter 7 (or more) and another --run_name" in out


def test_gmp_lands_on_its_layerwise_target_and_is_not_told_to_run_more(cli, tmp_path):
    # each layer keeps ceil(99.99% of it): 19199 + 29997 + 1000 = 50196 > ceil(99.99% of 50200)
    code, out, err = cli("run", "--recipe", "gmp", "--prune_target_remaining", "99.99",
                         "--net_train_epochs", "1", "--net_warmup", "1", "--quiet",
                         "--output_dir", str(tmp_path))
    assert code == 0, err
    run = _only_run(tmp_path)
    assert _rounds(run)[-1]["remaining"] == 19199 + 29997 + 1000
    summary = json.loads((run / "summary.json").read_text())
    assert summary["target"]["reached"] is True and "NOTE" not in out


def test_sap_estimates_again_after_its_third_step(cli, tmp_path):
    code, out, err = cli("run", "--recipe", "allr-0.25", "--prune_target_remaining", "5",
                         "--exper_imp_total_iter", "5", "--net_warmup", "1",
                         "--output_dir", str(tmp_path))
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("estimate: round")]
    assert len(lines) == 2 and "expect more" in lines[0] and "round 3" in lines[1]
    assert lines[1].endswith("the cap, --exper_imp_total_iter 5, ends the search first")


@pytest.mark.parametrize("flags", [["--recipe", "allr-1e-9"],
                                   ["--prune_method", "lth", "--net_train_epochs", "0.01"],
                                   ["--prune_method", "lth", "--ticket_epochs", "0.001"]])
def test_a_round_shorter_than_an_iteration_is_refused(cli, tmp_path, flags):
    code, out, err = cli("run", *flags, "--net_warmup", "1", "--quiet",
                         "--output_dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "less than one iteration" in err


def test_one_round_says_it_prunes_nothing(cli, tmp_path):
    code, out, err = cli(*small_run(exper_imp_total_iter=1), "--output_dir", str(tmp_path))
    assert code == 0, err
    assert "--exper_imp_total_iter 1 runs round 0 only" in out and "prunes nothing" in out
    assert "1 epochs" not in out and "warm-up 1 epoch," in out
    assert "in all 1 rounds" not in out
