"""incop frontier (incop.launch.frontier): recipes to one sparsity (or several), every final mask
judged the same way against the reference's ticket, a table with the cheapest recipe within the
tolerance, a figure, resume; frontier.json's rows never decide the verdict; the quick mode is
what runs here."""
import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import copy_of, one_line_error, spy_round_starts, table

from incop.config.schema import RunConfig
from incop.launch.frontier import DEFAULT_RECIPES, Settings, recipe_config


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
    assert set(rows) == set(DEFAULT_RECIPES) and rows["reference"]["epochs_share"] == 1.0
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


def test_quick_settings_are_defaults_under_the_users(cli, monkeypatch, tmp_path):
    import incop.launch.frontier as frontier

    seen = []
    monkeypatch.setattr(frontier, "run_frontier", lambda base, *a, **k: seen.append(base))
    code, _, err = cli("frontier", "--quick", "--net_lr", "0.1", "--output_dir", str(tmp_path))
    assert code == 0, err
    (base,) = seen
    assert (base.train.lr, base.data.dataset, base.model.arch, base.prune.target_remaining,
            base.train.epochs, base.experiment.imp_total_iter) == (0.1, "digits", "lenet300",
                                                                   30.0, 2.0, 8)


def test_gmp_sized_to_a_share_of_each_reference(quick, cli, tmp_path):
    """gmp-P% is GMP* over P% of its seed's reference search epochs, read from the reference's
    own rounds once it has finished: a plain gmp-E run, judged under its own name."""
    out = copy_of(quick, tmp_path)
    reference = out / OUT / "runs" / "sap" / "lenet300" / "digits" / "reference-seed0"
    epochs = sum(r["epochs"] for r in json.loads((reference / "rounds.json").read_text()))
    size = float(f"{epochs / 2:.3g}")  # 50%, to three significant digits
    code, stdout, err = cli("frontier", "--quick", "--quiet", "--recipes", "GMP-50.0%",
                            "--output_dir", str(out))
    assert code == 0, err
    assert f"gmp-50% of each seed's reference search epochs: seed 0 gmp-{size:g} " \
           f"(of {epochs:g})" in stdout
    run = out / OUT / "runs" / "gmp" / "lenet300" / "digits" / f"gmp-{size:g}-seed0"
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["epochs"] == size and config["prune"]["gmp_lr"] == "restart"
    rows = {r["recipe"]: r for r in json.loads((out / OUT / "frontier.json").read_text())["summary"]}
    assert set(rows) == {"reference", "gmp-50%"}
    assert rows["gmp-50%"]["search_epochs_mean"] == pytest.approx(size)
    assert "gmp-50% is GMP* over 50% of each seed's reference search epochs" in \
        (out / OUT / "frontier.md").read_text()
    # the same run named by its length is the same run: its judgement is kept, not made again
    code, stdout, err = cli("frontier", "--quick", "--quiet", "--recipes", f"gmp-{size:g}",
                            "--output_dir", str(out))
    assert code == 0, err
    assert "2 finished already" in stdout and "judged" not in stdout and "again" not in stdout
    again = {r["recipe"]: r for r in json.loads((out / OUT / "frontier.json").read_text())["rows"]}
    assert again[f"gmp-{size:g}"]["ticket_test_acc"] == rows["gmp-50%"]["ticket_test_acc_mean"]


def test_search_epochs_add_up_without_float_error():
    """Three rounds of 0.7 epochs cost 2.1 epochs, not 2.0999999999999996 (frontier.csv)."""
    from types import SimpleNamespace

    from incop.launch.frontier import measure

    rounds = [{"round": k, "epochs": 0.7, "time_train": 0.0, "time_flow": 0.0, "time_eval": 0.0,
               "time_prune": 0.0, "remaining_pct": 50.0, "test_acc": 90.0, "val_acc": 90.0,
               "stop_reason": "fixed"} for k in range(3)]
    assert sum(r["epochs"] for r in rounds) == 2.0999999999999996  # what a plain sum gives
    run = SimpleNamespace(rounds=rounds, resolved=("sap", "fixed", None), trials=[])
    assert measure(run)["search_epochs"] == 2.1


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
    (["--quick", "--reference", "ciap"], "choose sap or lth"),
    # what the frontier sets itself is refused, never silently replaced
    (["--quick", "--prune_method", "lth"], "--prune_method would be ignored: drop it (--reference"),
    (["--quick", "--recipe", "lrr-1"], "drop it and name them with --recipes"),
    (["--quick", "--prune_rule", "global"], "--prune_rule would be ignored"),
    (["--quick", "--stop_criterion", "ciap"], "name their recipes: --recipes ciap giap"),
    (["--quick", "--prune_schedule", "steps"], "--prune_schedule would be ignored"),
    (["--quick", "--prune_steps", "3"], "name a recipe with xN, e.g. allr-2x6"),
    (["--quick", "--gmp_lr", "restart"], "--gmp_lr would be ignored"),
    (["--quick", "--seed", "5"], "drop it (e.g. --seeds 5)"),
    (["--quick", "--exper_num_trial", "2"], "drop it and give --seeds 0 1 2"),
    (["--quick", "--run_name", "x"], "--run_name would be ignored"),
    (["--quick", "--prune_meth", "lth"], "(see 'incop frontier --help')"),
    (["--quick", "--recipes", "gmp-10%@0.3"], "recipe gmp-10%@0.3: give GMP*'s share"),
    (["--quick", "--recipes", "gmp-0%"], "as a percentage above 0 and at most 100"),
    (["--quick", "--recipes", "gmp-ten%"], "as a percentage above 0 and at most 100")])
def test_bad_requests_are_one_line(cli, tmp_path, argv, message):
    code, _, err = cli("frontier", *argv, "--quiet", "--output_dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_the_help_leaves_out_what_the_frontier_refuses(capsys):
    from incop.cli import FRONTIER_REFUSES, main
    from incop.config.flags import flag_of

    try:
        main(["frontier", "--help"])
    except SystemExit as e:
        assert e.code == 0
    shown = capsys.readouterr().out
    def offered(flag):  # in the usage line or as an option of its own (other help may name it)
        return re.search(rf"(\[|^\s+){flag}[ \]]", shown, re.M) is not None

    assert offered("--net_arch") and offered("--recipes")
    assert [flag_of(k) for k in FRONTIER_REFUSES if offered(flag_of(k))] == []


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
    assert rows == set(DEFAULT_RECIPES) - {"oneshot"}
    assert "Not judged: oneshot seed 0 (ended at 41.50% after 2 rounds, short of the 30% target" \
        in md
    assert "is oneshot" not in md.split("Not judged")[0]


def test_one_seed_shows_no_spread_and_no_unused_legend(quick):
    md = (quick / OUT / "frontier.md").read_text()
    assert "± 0.00" not in md and "~:" not in md
    assert "(one seed)" in md


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


def test_the_frontier_judges_every_recipe_at_every_target(cli, tmp_path):
    code, out, err = cli("frontier", "--quick", "--quiet", "--prune_target_remaining", "50", "30",
                         "--recipes", "lrr-1", "oneshot", "--output_dir", str(tmp_path))
    assert code == 0, err
    out_dir = tmp_path / "frontier" / "lenet300" / "digits" / "target50-30"
    doc = json.loads((out_dir / "frontier.json").read_text())
    cells = {(r["recipe"], r["target"]) for r in doc["rows"]}
    assert cells == {(n, t) for n in ("reference", "lrr-1", "oneshot") for t in (50.0, 30.0)}
    for r in doc["rows"]:  # each judged at exactly its target, costed up to its landing
        assert r["remaining_pct"] == pytest.approx(r["target"], abs=0.01)
    by = {(r["recipe"], r["target"]): r for r in doc["rows"]}
    assert by["lrr-1", 50.0]["search_epochs"] < by["lrr-1", 30.0]["search_epochs"]
    assert by["lrr-1", 50.0]["run_dir"] == by["lrr-1", 30.0]["run_dir"]  # one search
    assert by["oneshot", 50.0]["run_dir"] != by["oneshot", 30.0]["run_dir"]  # a run a target
    md = (out_dir / "frontier.md").read_text()
    assert "## 30% remaining" in md and "## 50% remaining" in md
    for figure in ("frontier.png", "frontier_target50.png", "accuracy_vs_remaining.png"):
        assert (out_dir / figure).is_file()
    # a second call judges nothing again
    code, out, _ = cli("frontier", "--quick", "--prune_target_remaining", "50", "30",
                       "--recipes", "lrr-1", "oneshot", "--output_dir", str(tmp_path))
    assert code == 0 and "  judged " not in out and "4 run(s), 4 finished already" in out, out


FRONTIER = ["frontier", "--quick", "--quiet", "--recipes", "fixed-1"]
TARGET = "frontier/lenet300/digits/target30"


@pytest.fixture(scope="module")
def frontier(tmp_path_factory):
    from incop.cli import main

    out = tmp_path_factory.mktemp("frontier")
    assert main([*FRONTIER, "--output_dir", str(out)]) == 0
    return out


def _edit_row(key, value):
    def edit(data):
        row = next(r for r in data["rows"] if r["recipe"] == "fixed-1")
        row[key] = value
    return edit


def _edit_reference(data):
    next(r for r in data["rows"] if r["recipe"] == "reference")["ticket_test_acc"] = 100.0


def _edit_reference_hash(data):
    next(r for r in data["rows"] if r["recipe"] == "reference")["result_hash"] = "0" * 16


# A row's measured fields (cost, sparsity, the reference's ticket) are measured from the runs
# again every time, so an edit there is overwritten and the judged ticket is kept; an edit of
# what the judgement rests on (the judged ticket, the hashes of the run or its reference, the
# row's key) makes the recipe be judged again. The folder is copied elsewhere: judgements
# survive a move.
@pytest.mark.parametrize("edit,judged_again", [
    (_edit_row("search_epochs", 0.001), False),  # a cheaper search than it was: re-measured
    (_edit_row("remaining_pct", 1.0), False), (_edit_row("search_epochs", "x"), False),
    (_edit_row("search_epochs", None), False), (_edit_reference, False),
    (_edit_row("run_dir", "/elsewhere"), False),
    (_edit_row("ticket_test_acc", 1e308), True), (_edit_row("ticket_test_acc", "x"), True),
    (_edit_row("ticket_test_acc", None), True),  # the data has a test set: it is measured
    (_edit_row("ticket_val_acc", None), True), (_edit_row("ticket_epochs", float("inf")), True),
    (_edit_row("ticket_epochs", 1e9), True), (_edit_row("ticket_epochs", True), True),
    (_edit_row("result_hash", "0" * 16), True), (_edit_reference_hash, True),
    (_edit_row("seed", "0"), True)])
def test_frontier_rows_never_decide_the_verdict(cli, frontier, tmp_path, edit, judged_again):
    out = tmp_path / "f"
    shutil.copytree(frontier, out)
    results = out / TARGET / "frontier.json"
    data = json.loads(results.read_text())
    edit(data)
    results.write_text(json.dumps(data))
    code, stdout, err = cli(*FRONTIER, "--output_dir", str(out))
    assert code == 0 and "Traceback" not in err, err
    assert ("judged fixed-1 seed 0" in stdout) == judged_again  # retrained, or not
    # the verdict is the runs': judged again, a ticket comes out the same (the speed-ups are
    # measured again where the run's hash was edited: a timing, left out of the comparison)
    assert _without_speed(out / TARGET / "frontier.md") == \
        _without_speed(frontier / TARGET / "frontier.md")


def _without_speed(path):
    return re.sub(r"\| [0-9.± ]+× / [0-9.± ]+× ", "| ", path.read_text())


@pytest.mark.parametrize("run,file,key,value", [
    ("fixed-1", "rounds.json", "epochs", None), ("fixed-1", "rounds.json", "epochs", "1"),
    ("fixed-1", "rounds.json", "time_train", None), ("fixed-1", "rounds.json", "val_acc", "97"),
    ("fixed-1", "rounds.json", "remaining_pct", None), ("fixed-1", "rounds.json", "round", "0"),
    ("reference", "tickets.json", "test_acc", "97"), ("reference", "tickets.json", "epochs", None),
    ("reference", "trials.json", "warmup_time", "1")])
def test_frontier_on_a_run_with_text_or_null_fields_is_one_line(cli, frontier, tmp_path, run,
                                                                 file, key, value):
    out = tmp_path / "f"
    shutil.copytree(frontier, out)
    (folder,) = (out / TARGET / "runs").rglob(f"{run}-seed0")
    rows = json.loads((folder / file).read_text())
    rows[0][key] = value
    (folder / file).write_text(json.dumps(rows))
    code, stdout, err = cli(*FRONTIER, "--output_dir", str(out))
    assert one_line_error(code, err), err
    assert file in err and key in err and len(err) < 600
