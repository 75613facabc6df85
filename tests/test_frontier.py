"""incop frontier (issue 28): recipes to one sparsity, every final mask judged the same way
against the reference's ticket, a table with the cheapest recipe within the tolerance, a figure,
resume; the quick mode is what runs here."""
import json
import shutil
from pathlib import Path

import pytest

from conftest import spy_round_starts, table
from incop.config.schema import RunConfig
from incop.launch.frontier import Settings, recipe_config

OUT = "frontier/lenet300/digits/target30"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    from incop.cli import main

    out = tmp_path_factory.mktemp("frontier")
    assert main(["frontier", "--quick", "--quiet", "--output_dir", str(out)]) == 0
    return out


def test_the_quick_frontier_judges_every_recipe(quick):
    md = (quick / OUT / "frontier.md").read_text()
    rows = {r["recipe"]: r for r in json.loads((quick / OUT / "frontier.json").read_text())["summary"]}
    assert len(rows) == 15 and rows["reference"]["epochs_share"] == 1.0
    assert all(r["remaining_pct_mean"] == 30.0 for r in rows.values())  # one sparsity for all
    # sap with 1 epoch a round and ciap (which fires at its first check) compute the same thing
    assert "identical results to ciap" in " ".join(rows["fixed-1"]["notes"])
    assert any("fired at the first check" in n for n in rows["ciap"]["notes"])
    assert "identical results to fixed-2" in " ".join(rows["reference"]["notes"])  # sap-2 twice
    gaps = {n: r["ticket_test_acc_mean"] - rows["reference"]["ticket_test_acc_mean"]
            for n, r in rows.items()}
    assert all(r["gap_mean"] == pytest.approx(gaps[n]) for n, r in rows.items() if n != "reference")
    ok = [n for n, r in rows.items() if n != "reference" and r["gap_mean"] >= -0.3]
    best = min(ok, key=lambda n: rows[n]["search_epochs_mean"])
    assert f"The cheapest recipe within 0.3 points of the reference's ticket is {best}:" in md
    assert "random mask" in md and "One seed" in md
    assert (quick / OUT / "frontier.png").is_file() and (quick / OUT / "frontier.csv").is_file()
    # what a user deploys (the search's own final network) and what judging cost, per recipe,
    # from each run's own records
    for row in json.loads((quick / OUT / "frontier.json").read_text())["rows"]:
        last = json.loads((Path(row["run_dir"]) / "rounds.json").read_text())[-1]
        assert row["search_test_acc"] == last["test_acc"]
    assert rows["lrr-1"]["search_test_acc_mean"] == pytest.approx(next(
        r["search_test_acc"] for r in json.loads((quick / OUT / "frontier.json").read_text())
        ["rows"] if r["recipe"] == "lrr-1"))
    assert all(r["ticket_epochs_mean"] == 2 for r in rows.values())  # the judge's budget
    assert "| final network test % | ticket test % |" in md and "| ticket epochs |" in md
    # the final mask's measured speed-up on one thread (a measurement: only its kind is known)
    for row in json.loads((quick / OUT / "frontier.json").read_text())["rows"]:
        assert all(isinstance(row[k], float) and row[k] > 0 for k in ("speedup_b1", "speedup_b64"))
    assert "| speed-up, batch 1 / 64 |" in md and "one thread" in md


def test_a_second_call_trains_nothing(quick, cli, monkeypatch):
    before = json.loads((quick / OUT / "frontier.json").read_text())["rows"]
    starts = spy_round_starts(monkeypatch)
    code, out, err = cli("frontier", "--quick", "--quiet", "--output_dir", str(quick))
    assert code == 0, err
    assert starts == [] and "15 finished already" in out
    assert json.loads((quick / OUT / "frontier.json").read_text())["rows"] == before


def test_judging_the_reference_is_its_own_ticket(quick):
    """One code path: the frontier's retraining of the reference's final mask from its rewind
    point gives the reference's in-run ticket exactly."""
    from incop.launch.frontier import _judge_for
    from incop.pruning.masks import Masks
    from incop.runs.layout import rewind_state, round_masks, saved_rounds
    from incop.runs.reading import run_config

    run = quick / OUT / "runs" / "sap" / "lenet300" / "digits" / "reference-seed0"
    cfg = RunConfig.from_dict(run_config(run))
    masks = Masks(round_masks(run, 0, saved_rounds(run, 0)[-1]))
    row = _judge_for(cfg, False).retrain(0, 0, masks, rewind_state(run, 0), "again")
    ticket = table(run, "tickets.csv")[0]
    assert (row["test_acc"], row["val_acc"], row["train_loss"]) == \
        (float(ticket["test_acc"]), float(ticket["val_acc"]), float(ticket["train_loss"]))


def test_recipes_are_the_flags_the_docs_name():
    base = RunConfig()
    s = Settings("sap", 10, 5.0, 10, 8)
    c = recipe_config("allr-0.25", base, s)
    assert (c.train.epochs, c.train.lr_schedule, c.train.lr_allr, c.train.rewind_to) == \
        (0.25, "linear", True, "none")
    c = recipe_config("gmp", base, s)
    assert (c.prune.method, c.train.epochs, c.prune.gmp_start, c.prune.gmp_end,
            c.prune.gmp_every) == ("gmp", 8, "1ep", "6ep", "0.5ep")
    c = recipe_config("oneshot", base, s)
    assert (c.prune.rule, c.prune.ratio, c.experiment.imp_total_iter) == ("global", 0.95, 2)
    c = recipe_config("reference", base, s)
    assert (c.prune.method, c.train.epochs, c.train.ticket_epochs) == ("sap", 10, 10)
    assert recipe_config("fixed-1", base, s).train.ticket_epochs == 0  # judged outside
    base.experiment.imp_total_iter = 100  # the cap of the recipes of rounds
    c = recipe_config("allr-2x6", base, s)
    assert (c.prune.steps, c.experiment.imp_total_iter, c.train.epochs) == (6, 7, 2)
    c.validate()  # the steps' rounds, not the others' cap


@pytest.mark.parametrize("argv,message", [
    (["--net_dataset", "digits"], "give --prune_target_remaining"),
    (["--quick", "--recipes", "fixed-0"], "must be a positive number"),
    (["--quick", "--recipes", "magic"], "unknown recipe 'magic'"),
    (["--quick", "--reference", "ciap"], "choose sap or lth")])
def test_bad_requests_are_one_line(cli, tmp_path, argv, message):
    code, _, err = cli("frontier", *argv, "--quiet", "--output_dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and message in err, err


# --- a recipe is judged only at the target it reached (issue 34)

def test_a_run_short_of_the_target_is_not_judged(quick, cli, monkeypatch, tmp_path):
    import shutil

    import incop.launch.frontier as frontier

    shutil.copytree(quick, tmp_path / "q")  # the module's frontier stays as it was
    quick = tmp_path / "q"

    real = frontier._short_of_target
    monkeypatch.setattr(frontier, "_short_of_target",  # as if oneshot had ended at 41.5%
                        lambda cfg: 41.5 if "oneshot" in str(cfg.experiment.run_name) else real(cfg))
    code, out, err = cli("frontier", "--quick", "--quiet", "--output_dir", str(quick))
    assert code == 0, err
    md = (quick / OUT / "frontier.md").read_text()
    rows = {r["recipe"] for r in json.loads((quick / OUT / "frontier.json").read_text())["summary"]}
    assert "oneshot" not in rows and len(rows) == 14
    assert "Not judged: oneshot seed 0 (ended at 41.50% after 2 rounds, short of the 30% target" \
        in md
    assert "is oneshot" not in md.split("Not judged")[0]


def test_one_seed_shows_no_spread_and_no_unused_legend(quick):
    md = (quick / OUT / "frontier.md").read_text()
    assert "± 0.00" not in md and "~:" not in md
    assert "(one seed)" in md


def _row(name, epochs, gap, seeds=3):
    return {"recipe": name, "seeds": seeds, "search_epochs_mean": epochs, "epochs_share": epochs / 20,
            "gap_mean": gap, "gap_std": 0.1, "within_tolerance": name != "reference" and gap >= -0.3,
            "inside_spread": False}


def test_the_verdict_names_ties():
    from incop.report.frontier import verdict

    summary = [_row("reference", 20, 0.0), _row("fixed-1", 5, -0.1), _row("ciap", 5, -0.1),
               _row("allr-2", 10, 0.05)]
    line = verdict(summary, 0.3)[0]
    assert "is fixed-1 and ciap: 25% of the reference's search epochs" in line and "each" in line
    summary[2] = _row("ciap", 5, -0.2)  # the same cost, another gap: both given
    line = verdict(summary, 0.3)[0]
    assert "cost the same, 25%" in line and "fixed-1 -0.10 ± 0.10" in line \
        and "ciap -0.20 ± 0.10" in line
    summary = [_row("reference", 20, 0.0), _row("a", 5, -0.5), _row("b", 6, -0.5)]
    assert "the closest was a and b at -0.50 points" in verdict(summary, 0.3)[0]


def test_a_frontier_without_rounds_runs_each_search_to_the_target():
    from incop.launch.frontier import frontier_configs

    base = RunConfig()
    base.prune.method, base.prune.target_remaining = "sap", 5.0
    base.validate()
    configs = frontier_configs(base, ["reference", "lrr-1", "oneshot"], [0],
                               Settings("sap", 10, 5.0, 10, 8), __import__("pathlib").Path("x"))
    assert {n: c.experiment.imp_total_iter for (n, _), c in configs.items()} == \
        {"reference": 100, "lrr-1": 100, "oneshot": 2}


def test_one_recipe_spelled_twice_is_one_search(quick, cli, tmp_path):
    out = tmp_path / "f"
    shutil.copytree(quick, out)
    code, stdout, err = cli("frontier", "--quick", "--output_dir", str(out),
                            "--recipes", "lrr-1", "LRR-1", "Lrr-1.0")
    assert code == 0, err
    assert "frontier: 2 run(s), 2 finished already" in stdout  # the reference and lrr-1
    md = (out / OUT / "frontier.md").read_text()
    assert md.count("| lrr-1 |") == 1 and "LRR" not in md and "identical results" not in md


def test_a_figure_of_many_recipes_has_a_legend_not_labels_on_labels():
    """Up to 8 recipes are labelled beside their points; more (a study's grid, points close
    together) get a legend beside the axes, each recipe its own colour and marker."""
    from incop.report.frontier import LABELLED, frontier_figure

    def summary(n):
        return [{"recipe": "reference" if i == 0 else f"r{i}", "seeds": 3,
                 "search_epochs_mean": 5.0 + i % 3, "search_epochs_std": 0.1,
                 "ticket_test_acc_mean": 88.0 + (i % 2) * 0.01, "ticket_test_acc_std": 0.1}
                for i in range(n)]

    few = frontier_figure(summary(LABELLED), 0.3).axes[0]
    assert len(few.texts) >= 1 and few.get_legend() is not None
    assert {t.get_text() for t in few.get_legend().get_texts()} <= {
        "Pareto front", "reference's ticket minus 0.3 points"}
    many = frontier_figure(summary(25), 0.3).axes[0]
    assert not many.texts  # no annotations to overlap
    shown = [t.get_text() for t in many.get_legend().get_texts()]
    assert {"reference", *(f"r{i}" for i in range(1, 25))} <= set(shown)
    styles = {(tuple(line.get_color()) if not isinstance(line.get_color(), str)
               else line.get_color(), line.get_marker())
              for line in many.get_lines() if line.get_marker() not in (None, "None", "")}
    assert len(styles) >= 25  # every recipe drawn its own way
