"""The lottery-ticket ablations (incop.engine.ablations, incop ablate): a random mask with the
ticket's per-layer counts from the rewind point, and the ticket's mask from a fresh
initialisation, with the ticket's budget and data order; rows beside the ticket's, in the report
and a figure; resumable; bad requests and tickets that are not the run's are one line."""
import json
import shutil

import pytest
import torch

from conftest import kill_at, one_line_error, run_dir, small_run, spy_round_starts, table

from incop.engine.ablations import random_masks
from incop.pruning.masks import Masks


SEARCH = small_run(prune_method="lth", ticket_epochs=1, run_name="r")


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished search with a ticket, copied for each test that writes into it."""
    from incop.cli import main

    out = tmp_path_factory.mktemp("search")
    assert main([*SEARCH, "--output_dir", str(out)]) == 0
    return run_dir(*SEARCH, "--output_dir", out)


@pytest.fixture
def run(searched, tmp_path):
    import shutil

    shutil.copytree(searched, tmp_path / "r")
    return tmp_path / "r"


def test_a_random_mask_keeps_every_layer_count():
    g = torch.Generator().manual_seed(0)
    masks = Masks({"a": (torch.rand(30, 20, generator=g) > 0.8).float(),
                   "b": (torch.rand(7, generator=g) > 0.5).float(), "c": torch.zeros(5)})
    r = random_masks(masks, torch.Generator().manual_seed(1))
    for name in masks.names():
        assert int(r[name].sum()) == int(masks[name].sum()) and r[name].shape == masks[name].shape
        assert set(r[name].unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(r["a"], masks["a"])
    assert torch.equal(random_masks(masks, torch.Generator().manual_seed(1))["a"], r["a"])
    assert not torch.equal(random_masks(masks, torch.Generator().manual_seed(2))["a"], r["a"])


def test_each_ablation_starts_where_it_should(cli, monkeypatch, run):
    """random_prune: the rewind point times a random mask with the ticket's per-layer counts;
    random_reinit: new weights (not the rewind point's) times the ticket's own mask."""
    from incop.runs.layout import rewind_state, round_masks

    starts = spy_round_starts(monkeypatch)
    code, out, err = cli("ablate", str(run), "--trials", "2", "--quiet")
    assert code == 0, err
    rewind, ticket = rewind_state(run, 0), round_masks(run, 0, 2)
    assert len(starts) == 4  # random_prune 0, 1, random_reinit 0, 1
    for s in starts[:2]:
        for name, m in ticket.items():
            kept = s[name] != 0
            assert int(kept.sum()) == int(m.sum()) and not torch.equal(kept, m.bool())
            assert torch.equal(s[name], rewind[name] * kept)
    assert not torch.equal(starts[0]["fc1.weight"] != 0, starts[1]["fc1.weight"] != 0)
    for s in starts[2:]:
        for name, m in ticket.items():
            assert torch.equal(s[name] != 0, m.bool())
            assert not torch.equal(s[name], rewind[name] * m)
    assert not torch.equal(starts[2]["fc1.weight"], starts[3]["fc1.weight"])
    rows = table(run, "ablations.csv")
    assert [(r["ablation"], r["index"]) for r in rows] == [
        ("random_prune", "0"), ("random_prune", "1"), ("random_reinit", "0"), ("random_reinit", "1")]
    ticket_row = table(run, "tickets.csv")[0]
    assert all(r["remaining"] == ticket_row["remaining"] and r["epochs"] == ticket_row["epochs"]
               and r["ticket_test_acc"] == ticket_row["test_acc"] for r in rows)
    assert "ticket minus it" in out and (run / "figures" / "ablations.png").is_file()


def test_the_rewind_point_is_saved_with_the_search(run):
    """models/trial0_rewind.pt is the state round 0 started from (the warm-up's end here)."""
    from incop.runs.layout import model_state, rewind_state, round_masks

    rewind = rewind_state(run, 0)
    assert set(rewind) == set(model_state(run, 0, 0))
    assert not torch.equal(rewind["fc1.weight"], model_state(run, 0, 0)["fc1.weight"])
    assert round_masks(run, 0, 0)["fc1.weight"].all()


def test_killed_and_started_again_it_gives_the_same_rows(cli, monkeypatch, run, tmp_path):
    import shutil

    shutil.copytree(run, tmp_path / "whole")
    assert cli("ablate", str(tmp_path / "whole"), "--trials", "2", "--quiet")[0] == 0
    kill_at(monkeypatch, 3)  # one call per epoch: inside the third ablation
    code, _, err = cli("ablate", str(run), "--trials", "2", "--quiet")
    assert code == 130 and "run the same command again" in err
    assert len(json.loads((run / "ablations.json").read_text())) == 2
    monkeypatch.undo()
    assert cli("ablate", str(run), "--trials", "2", "--quiet")[0] == 0
    assert table(run, "ablations.csv") == table(tmp_path / "whole", "ablations.csv")


def test_the_report_shows_ticket_minus_each_ablation(cli, run, tmp_path):
    assert cli("ablate", str(run), "--random_prune", "--trials", "2", "--quiet")[0] == 0
    rows = table(run, "ablations.csv")
    gaps = [float(r["ticket_test_acc"]) - float(r["test_acc"]) for r in rows]
    assert {r["ablation"] for r in rows} == {"random_prune"}
    code, _, _ = cli("report", str(run), "--output", str(tmp_path / "rep"))
    text = (tmp_path / "rep" / "report.md").read_text()
    import statistics

    assert code == 0 and f"{statistics.fmean(gaps):+.2f} ± {statistics.stdev(gaps):.2f} (n=2)" in text
    assert (tmp_path / "rep" / "ablations.png").is_file()


def test_the_api_ablates_and_does_not_redo_what_is_there(monkeypatch, run):
    import incop

    rows = incop.ablate(run, random_reinit=False, echo=lambda s: None)
    assert [r["ablation"] for r in rows] == ["random_prune"]
    starts = spy_round_starts(monkeypatch)
    assert incop.ablate(run, random_reinit=False, echo=lambda s: None) == rows and starts == []


@pytest.mark.parametrize("change,message", [
    ("no_ticket", "has no ticket"), ("no_rewind", "no rewind point saved"),
    ("unfinished", "is not finished"), ("bad_trials", "must be at least 1"),
    ("bad_trial", "no ticket for trial 5")])
def test_bad_requests_are_one_line(cli, run, tmp_path, change, message):
    argv = ["ablate", str(run), "--quiet"]
    if change == "no_ticket":
        for name in ("tickets.json", "tickets.csv"):
            (run / name).unlink()
    elif change == "no_rewind":
        (run / "models" / "trial0_rewind.pt").unlink()
    elif change == "unfinished":
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "complete": False}))
    elif change == "bad_trials":
        argv += ["--trials", "0"]
    else:
        argv += ["--trial", "5"]
    code, _, err = cli(*argv)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (run / "ablations.json").exists()


def test_a_sweep_folder_ablates_its_runs_with_a_ticket(cli, run, tmp_path):
    import shutil

    sweep = tmp_path / "sweep"
    shutil.copytree(run, sweep / "a")
    shutil.copytree(run, sweep / "b")
    for name in ("tickets.json", "tickets.csv"):
        (sweep / "b" / name).unlink()
    code, out, err = cli("ablate", str(sweep), "--random_prune", "--quiet")
    assert code == 0, err
    assert "skipping" in err and "no ticket" in err
    assert (sweep / "a" / "ablations.csv").is_file() and not (sweep / "b" / "ablations.csv").exists()
    code, _, err = cli("ablate", str(sweep / "b"), "--quiet")
    assert code == 2 and "has no ticket" in err


def test_ablations_that_stayed_at_chance_are_said(cli, monkeypatch, run):
    import incop.engine.ablations as ablations

    # a rate of 0 leaves a fresh initialisation where it started: at chance on digits
    real = ablations.train_run
    monkeypatch.setattr(ablations, "train_run", lambda cfg, *a, **k: real(
        type(cfg)(**{**cfg.__dict__, "train": type(cfg.train)(**{**cfg.train.__dict__, "lr": 0.0})}),
        *a, **k))
    code, out, err = cli("ablate", str(run), "--random_reinit", "--quiet")
    assert code == 0, err
    rows = json.loads((run / "ablations.json").read_text())
    assert rows and all(r["untrained"] for r in rows)
    assert "(1 of 1 ablation runs (random_reinit) stayed at chance, e.g. validation accuracy" in out


def test_ablations_that_trained_are_not_called_untrained(cli, run):
    assert cli("ablate", str(run), "--random_prune", "--quiet")[0] == 0
    rows = json.loads((run / "ablations.json").read_text())
    assert rows and not any(r["untrained"] for r in rows)


@pytest.fixture
def ticket_run(ticketed, tmp_path):
    shutil.copytree(ticketed, tmp_path / "t")
    return tmp_path / "t"


def _set_ticket(run, key, value):
    rows = json.loads((run / "tickets.json").read_text())
    if value is KeyError:
        rows[0].pop(key)
    else:
        rows[0][key] = value
    (run / "tickets.json").write_text(json.dumps(rows))


@pytest.mark.parametrize("key,value", [
    ("trial", KeyError), ("trial", "0"), ("trial", float("nan")), ("trial", None),
    ("trial", 10**30), ("trial", 0.7), ("trial", True), ("trial", -1), ("trial", 1),
    ("seed", KeyError), ("seed", "0"), ("seed", None), ("seed", float("nan")), ("seed", 5),
    ("seed", 2**70), ("seed", 0.5)])
def test_ablate_refuses_a_ticket_that_is_not_the_runs_in_one_line(cli, ticket_run, key, value):
    _set_ticket(ticket_run, key, value)
    code, out, err = cli("ablate", str(ticket_run), "--quiet")
    assert one_line_error(code, err), err
    assert "tickets.json" in err and len(err) < 600
    assert not (ticket_run / "ablations.json").exists()
