"""The stopping study (benchmarks/stopping_study.py): its quick mode end to end, resuming, and
the verdicts it prints."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import stopping_report  # noqa: E402
import stopping_study  # noqa: E402


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    stopping_study.main(["--quick", "--regimes", "B", "--out", str(out)])
    return out


def test_quick_study_runs_every_method_to_the_same_sparsity(quick_study, capsys):
    rows = json.loads((quick_study / "study.json").read_text())
    names = {r["name"] for r in rows}
    spec = stopping_study.method_specs(stopping_study.REGIMES["B"], quick=True)
    assert {s["name"] for s in spec} <= names
    adaptive = [r for r in rows if r["adaptive"]]
    assert len(adaptive) == 8
    # every adaptive method has its budget-matched fixed baseline, with the same k
    for r in adaptive:
        k = max(0.25, round(4 * r["epochs_per_round"]) / 4)
        base = [x for x in rows if x["name"] == f"fixed-{k:g}"]
        assert base and abs(base[0]["epochs_per_round"] - k) < 0.05
    # only the stopping differs: the SAP-rule runs all land on the target sparsity
    target = stopping_study.QUICK["lenet300"].target
    assert all(abs(r["remaining_pct"] - target) < 0.01 for r in rows if r["name"] != "lth")
    # every run's ticket was retrained for the same number of epochs
    for r in rows:
        tickets = json.loads((Path(r["run_dir"]) / "tickets.json").read_text())
        assert [t["epochs"] for t in tickets] == [stopping_study.QUICK["lenet300"].ticket_epochs]
    # the search budget of the 1-epoch floor is one epoch a round, SAP's its reference
    floor = next(r for r in rows if r["name"] == "fixed-1")
    assert floor["search_epochs"] == pytest.approx(floor["rounds"] * 1.0, abs=0.02)


def test_quick_study_resumes_without_retraining(quick_study, capsys):
    before = {p: p.stat().st_mtime for p in quick_study.rglob("rounds.json")}
    capsys.readouterr()
    stopping_study.main(["--quick", "--regimes", "B", "--out", str(quick_study)])
    captured = capsys.readouterr()
    assert "lenet300 B seed 0" not in captured.err  # no run was trained again
    assert {p: p.stat().st_mtime for p in quick_study.rglob("rounds.json")} == before
    assert "## lenet300, regime B, seeds 0" in captured.out
    assert (quick_study / "figures" / "frontier_lenet300_B.png").stat().st_size > 10_000


def test_a_cut_network_probes_only_its_kept_samples_and_names_the_cut(tmp_path):
    spec = stopping_study.Net("digits", 300, 200, 50.0, [0], val=120, skip=["lth", "fixed-1"])
    names = [s["name"] for s in stopping_study.method_specs(stopping_study.REGIMES["A"], False,
                                                             spec.skip)]
    assert "lth" not in names and "fixed-1" not in names and "ciap@0.25ep" in names
    run = dict(name="sap-E10", method="sap", epochs=10)
    cfg = stopping_study.make_config("lenet300", spec, "A", 0, run, tmp_path, quick=True)
    assert cfg.experiment.run_name == "sap-E10-seed0-n300v120t200" and cfg.data.val_size == 120
    full = stopping_study.make_config("lenet300", stopping_study.NETS["lenet300"], "A", 0, run,
                                      tmp_path, quick=False)
    assert full.experiment.run_name == "sap-E10-seed0"  # LeNet's finished runs keep their names
    inputs = stopping_study.inputs_factory(cfg, spec)(0, 0)
    train_x, train_y = inputs.train
    assert len(train_y) == 300 and len(inputs.test[1]) == 200 and len(inputs.val[1]) == 120
    probe_x, _ = inputs.probe
    kept = {tuple(row.flatten().tolist()) for row in train_x}
    assert 0 < len(probe_x) < 300
    assert all(tuple(row.flatten().tolist()) in kept for row in probe_x)


def _row(name, seed, ticket, epochs_per_round=1.0, adaptive=False, first=0, rounds=4):
    return {"net": "n", "regime": "A", "seed": seed, "name": name, "adaptive": adaptive,
            "matched": False, "rounds": rounds, "search_epochs": epochs_per_round * rounds,
            "epochs_per_round": epochs_per_round, "search_wall_s": epochs_per_round * rounds,
            "search_test_acc": ticket, "remaining_pct": 20.0, "ticket_test_acc": ticket,
            "fired_at_first_check": first}


def test_verdict_needs_more_than_the_seed_spread():
    rows = []
    for seed, (crit, fixed) in enumerate([(88.0, 86.0), (88.2, 86.1), (87.9, 85.8)]):
        rows += [_row("sap-E10", seed, 88.0, 10), _row("fixed-1", seed, 85.0),
                 _row("fixed-2", seed, fixed, 2), _row("giap", seed, crit, 2, adaptive=True, first=1)]
    (text,) = stopping_report.verdicts(rows)
    assert text.startswith("giap (fired at its first check in 3/12 rounds): beats its "
                           "budget-matched fixed baseline by +2.07 points")
    # SAP's ticket within 0.3 points (+0.03) with 8 of its 40 epochs: the goal is met
    assert "): met (+0.03 points, 0.200 of the epochs); over fixed-1: +3.03 points." in text


def test_verdict_within_spread_and_always_first_check():
    rows = []
    for seed, (crit, fixed) in enumerate([(86.0, 86.5), (87.0, 86.0), (85.5, 86.2)]):
        rows += [_row("sap-E10", seed, 87.0, 10), _row("fixed-1", seed, fixed),
                 _row("ciap", seed, crit, 1.0, adaptive=True, first=4)]
    (text,) = stopping_report.verdicts(rows)
    assert "does not beat its budget-matched fixed baseline" in text
    assert "always stopped at its first check, so it measured nothing" in text


def test_one_seed_is_not_judged():
    rows = [_row("sap-E10", 0, 87.0, 10), _row("fixed-1", 0, 85.0),
            _row("ciap", 0, 86.0, 1.0, adaptive=True)]
    (text,) = stopping_report.verdicts(rows)
    assert "not judged" in text and "beats" not in text


def test_answer_says_plainly_when_no_criterion_beats_a_fixed_budget():
    rows = []
    for seed, (crit, fixed) in enumerate([(86.0, 86.5), (87.0, 86.0), (85.5, 86.2)]):
        rows += [_row("sap-E10", seed, 87.0, 10), _row("fixed-1", seed, fixed),
                 _row("ciap", seed, crit, 1.0, adaptive=True, first=4)]
    text = stopping_report.answer(rows)
    assert text.startswith("No criterion beats its budget-matched fixed baseline")
    assert "every seed span 86.23% (fixed-1) to 87.00% (sap-E10)" in text
    assert text.endswith("measured nothing): ciap.")
    rows = [r if r["name"] != "ciap" else {**r, "ticket_test_acc": r["ticket_test_acc"] + 3}
            for r in rows]
    assert stopping_report.answer(rows).startswith("ciap beats its budget-matched fixed baseline")


def test_parts_run_apart_are_merged(quick_study, tmp_path):
    rows = json.loads((quick_study / "study.json").read_text())
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "study.json").write_text(json.dumps([r for r in rows if r["seed"] == 0][:5]))
    (tmp_path / "b" / "study.json").write_text(json.dumps(rows))
    stopping_study.main(["--report", "--out", str(tmp_path / "a"), "--merge", str(tmp_path / "b")])
    merged = json.loads((tmp_path / "a" / "study.json").read_text())
    assert sorted(map(json.dumps, merged)) == sorted(map(json.dumps, rows))  # no duplicates
    assert (tmp_path / "a" / "report.txt").read_text().startswith("## lenet300, regime B")


def test_goal_met_by_the_one_epoch_floor_is_said():
    rows = []
    for seed in range(2):
        rows += [_row("sap-E10", seed, 87.0 + seed, 10), _row("fixed-1", seed, 86.9 + seed),
                 _row("ciap", seed, 86.9 + seed, 1.0, adaptive=True, first=4)]
    (text,) = stopping_report.verdicts(rows)
    assert "): met (-0.10 points, 0.100 of the epochs)" in text
    assert text.endswith("So does fixed-1: the goal needs no criterion here.")


def test_a_matched_budget_equal_to_the_reference_reuses_its_run():
    specs = stopping_study.method_specs(stopping_study.REGIMES["A"], quick=False)
    rows = [{"name": s["name"], "seed": 0, "adaptive": bool(s.get("adaptive")),
             "ticket_test_acc": 80.0 + i, "epochs_per_round": float(s["epochs"])}
            for i, s in enumerate(specs)]
    ciap = next(r for r in rows if r["name"] == "ciap")
    ciap["epochs_per_round"] = 9.9  # matched to fixed-10: the reference's own settings
    wanted = stopping_study.matched_specs([ciap], done={r["name"] for r in rows})
    assert [s["name"] for s in wanted] == ["fixed-10"]
    twin = stopping_study.fixed_twin(wanted[0], specs, rows)
    ref = next(r for r in rows if r["name"] == "sap-E10")
    assert twin == {**ref, "name": "fixed-10", "matched": True, "same_run_as": "sap-E10"}
    # an adaptive run with the same epoch cap is no twin: regime B's loss_recovery is sap
    # with a 20-epoch cap, and fixed-20 must still be trained
    specs_b = stopping_study.method_specs(stopping_study.REGIMES["B"], quick=False)
    assert any(s["method"] == "sap" and s["epochs"] == 20 and s.get("adaptive") for s in specs_b)
    rows_b = [{"name": s["name"]} for s in specs_b]
    assert stopping_study.fixed_twin(dict(name="fixed-20", method="sap", epochs=20.0), specs_b,
                                     rows_b) is None
