"""Every sparsity from one search: --prune_target_remaining 40 20 10 lands exactly on each target
in turn and keeps each one's round, for rule-sized rounds, equal steps and gradual pruning;
from a config file, the API and a sweep; resumable; bad requests are one line."""
import json

import pytest

from conftest import resumes_identically, table

from incop.pruning.rules import target_count
from incop.pruning.sparsity_schedules import landed


SMALL = ["--net_train_epochs", "1", "--net_warmup", "1", "--quiet", "--run_name", "r"]


def test_a_run_through_several_targets_lands_on_each_exactly(cli, tmp_path):
    code, out, err = cli("run", "--prune_target_remaining", "40", "20", "10",
                         "--output_dir", str(tmp_path), *SMALL)
    assert code == 0, err
    run = tmp_path / "allr-1" / "lenet300" / "digits" / "r"
    cfg = json.loads((run / "config.json").read_text())["prune"]
    assert (cfg["target_remaining"], cfg["keep_at"]) == (10.0, [40.0, 20.0])
    rows = [{k: int(v) for k, v in r.items() if k in ("round", "remaining", "total")}
            for r in table(run, "rounds.csv")]
    total = rows[0]["total"]
    hit = landed(rows, [40.0, 20.0, 10.0])
    for t, k in hit.items():  # exactly the target's count, ceil(P% of the weights)
        assert k is not None and rows[k]["remaining"] == target_count(total, t), (t, rows)
        assert (run / "masks" / f"trial0_round{k}.pt").is_file()
        assert (run / "models" / f"trial0_round{k}.pt").is_file()
    assert hit[40.0] < hit[20.0] < hit[10.0] == rows[-1]["round"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["target"]["trials"][0]["landed"] == {"40": hit[40.0], "20": hit[20.0],
                                                        "10": hit[10.0]}
    assert f"landed on 40% at round {hit[40.0]}" in out and f"10% at round {hit[10.0]}" in out


def test_the_same_from_a_config_file_and_with_keep_at(cli, tmp_path):
    (tmp_path / "c.toml").write_text("prune_target_remaining = [20, 40, 10]\n")
    assert cli("run", "--config", str(tmp_path / "c.toml"), "--output_dir",
               str(tmp_path / "a"), *SMALL)[0] == 0
    assert cli("run", "--prune_keep_at", "20", "40", "--prune_target_remaining", "10",
               "--output_dir", str(tmp_path / "b"), *SMALL)[0] == 0
    a, b = (tmp_path / x / "allr-1" / "lenet300" / "digits" / "r" for x in "ab")
    assert json.loads((a / "config.json").read_text())["prune"]["keep_at"] == [40.0, 20.0]
    assert table(a, "rounds.csv") == table(b, "rounds.csv")


@pytest.mark.parametrize("extra,name", [
    (["--recipe", "allr-1x6"], "allr-1x6"),
    (["--recipe", "gmp-3"], "gmp-3")])
def test_equal_steps_and_gradual_pruning_pass_through_the_targets(cli, tmp_path, extra, name):
    argv = ["--net_warmup", "1", "--quiet", "--run_name", "r"]
    code, _, err = cli("run", "--prune_target_remaining", "40", "20", "10", *extra,
                       "--output_dir", str(tmp_path), *argv)
    assert code == 0, err
    run = tmp_path / name / "lenet300" / "digits" / "r"
    rows = [{k: int(v) for k, v in r.items() if k in ("round", "remaining", "total")}
            for r in table(run, "rounds.csv")]
    hit = landed(rows, [40.0, 20.0, 10.0])
    assert all(k is not None for k in hit.values()), rows
    assert rows[-1]["remaining"] == target_count(rows[0]["total"], 10.0)


def test_n_equal_steps_finish_a_step_cut_short_by_a_target(cli, tmp_path):
    """--prune_steps 3 to 10% through 40% and 20%: the equal steps keep ceil(N 0.1^(j/3)) of the
    N weights; step 2 (21.5%) crosses 40% and is cut there, then finished in the next round,
    and step 3 likewise at 20%: six rounds, every count exact, ending on 10%."""
    from incop.pruning.sparsity_schedules import root_ceil
    from fractions import Fraction

    code, out, err = cli("run", "--prune_steps", "3", "--prune_target_remaining", "40", "20",
                         "10", "--output_dir", str(tmp_path), *SMALL)
    assert code == 0 and "not reached" not in out, err + out
    run = tmp_path / "allr-1x3" / "lenet300" / "digits" / "r"
    remaining = [int(r["remaining"]) for r in table(run, "rounds.csv")]
    n = remaining[0]
    step = [root_ceil(n, Fraction(1, 10), j, 3) for j in (1, 2, 3)]
    assert remaining == [n, step[0], target_count(n, 40), step[1], target_count(n, 20),
                         target_count(n, 10)]
    assert step[1] < target_count(n, 40) and step[2] < target_count(n, 20)  # both were cut


def test_the_api_returns_the_network_at_every_target():
    import incop
    from incop.data import load_splits
    from torch import nn

    d = load_splits("digits", None, 0.1, 0)
    cfg = incop.RunConfig(train=incop.TrainConfig(epochs=1, warmup=2, lr=0.05, momentum=0.9),
                          prune=incop.PruneConfig(target_remaining=10, keep_at=[40, 20],
                                                  steps=4))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    result = incop.prune_model(model, (d.train_x, d.train_y), (d.val_x, d.val_y), config=cfg)
    assert sorted(result.landings) == [10.0, 20.0, 40.0]
    total = 64 * 64 + 64 * 10
    for t, landing in result.landings.items():
        assert landing.masks.remaining() == target_count(total, t)
        zeros = sum(int((p == 0).sum()) for n, p in landing.model.named_parameters()
                    if n.endswith("weight"))
        assert total - zeros <= landing.masks.remaining()  # its network is that round's
        assert result.rounds[landing.round]["remaining"] == target_count(total, t)
    assert result.landings[10.0].round == result.rounds[-1]["round"]
    assert result.landings[40.0].epochs < result.landings[20.0].epochs


def test_a_search_through_targets_resumes_identically(cli, monkeypatch, tmp_path):
    resumes_identically(cli, monkeypatch, tmp_path, 8,
                        ["run", "--prune_target_remaining", "40", "20", "10", *SMALL])


@pytest.mark.parametrize("argv,message", [
    (["--prune_keep_at", "20"], "need the final, smallest target (--prune_target_remaining)"),
    (["--prune_target_remaining", "20", "20", "5"], "a target is given twice"),
    (["--prune_keep_at", "3", "--prune_target_remaining", "5"], "must all be above the final"),
    (["--prune_target_remaining", "120", "5"], "target 120: a target is a percentage"),
    (["--recipe", "oneshot", "--prune_target_remaining", "20", "5"],
     "run oneshot once per target")])
def test_bad_requests_are_one_line(cli, tmp_path, argv, message):
    code, _, err = cli("run", *argv, "--net_warmup", "1", "--quiet", "--output_dir",
                       str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not any(tmp_path.rglob("progress.pt"))


def test_a_sweep_still_sweeps_over_targets(cli, tmp_path):
    """In incop sweep several values of a flag are an axis, as they always were."""
    code, out, err = cli("sweep", "--prune_target_remaining", "50", "30", "--net_warmup", "1",
                         "--net_train_epochs", "0.5", "--quiet", "--output_dir", str(tmp_path))
    assert code == 0, err
    runs = [json.loads(p.read_text())["prune"] for p in tmp_path.rglob("config.json")]
    assert sorted((r["target_remaining"], r["keep_at"]) for r in runs) == [(30.0, None),
                                                                           (50.0, None)]
