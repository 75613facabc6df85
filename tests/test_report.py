"""Plots (inspected as matplotlib objects), `incop report`, and `incop sweep`."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

import incop.engine.training as training
from incop.report.figures import (accuracy_vs_remaining_figure, flow_distance_figure, per_round,
                                  rounds_figure, similarity_figure)
from incop.runs.reading import find_runs

COMMON = ["--net_train_epochs", "2", "--net_warmup", "2", "--exper_imp_total_iter", "3",
          "--exper_num_trial", "2", "--quiet"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from incop.cli import main
    out = tmp_path_factory.mktemp("runs")
    for method in ("sap", "ciap"):
        assert main(["run", "--prune_method", method, *COMMON, "--output_dir", str(out)]) == 0
    return out


def test_png_files_are_real_images(runs):
    for png in runs.rglob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = {p.name for p in runs.glob("ciap/*/*/*/figures/*.png")}
    assert names == {"rounds.png", "accuracy_vs_remaining.png", "flow_distance.png", "similarity.png"}
    # sap measures no flow, so it gets no flow figure
    assert {p.name for p in runs.glob("sap/*/*/*/figures/*.png")} == {
        "rounds.png", "accuracy_vs_remaining.png", "similarity.png"}


def test_similarity_figure_has_one_series_per_monitored_layer(runs):
    run = find_runs([str(runs)])[0]
    ax = similarity_figure(run).get_axes()[0]
    lines = {l.get_label(): l for l in ax.get_lines()}
    assert set(lines) == {"fc1", "fc2", "fc3"}
    expected = np.mean([s["cosine"] for s in run.similarity if s["layer"] == "fc2" and s["round"] == 1])
    assert lines["fc2"].get_ydata()[1] == pytest.approx(expected)


def test_three_panel_figure_has_mean_and_std_bands(runs):
    data = find_runs([str(runs)])
    fig = rounds_figure(data)
    axes = fig.get_axes()
    assert [a.get_title() for a in axes] == ["Test accuracy", "Search epochs per round", "Remaining weights"]
    for ax, key in zip(axes, ("test_acc", "epochs", "remaining_pct")):
        lines = [l for l in ax.get_lines() if l.get_label() in {r.label for r in data}]
        assert sorted(l.get_label() for l in lines) == sorted(r.label for r in data)
        for run in data:
            line = next(l for l in lines if l.get_label() == run.label)
            ks, mean, std = per_round(run, key)
            assert list(line.get_xdata()) == [0, 1, 2]
            np.testing.assert_allclose(line.get_ydata(), mean)
            manual = np.mean([r[key] for r in run.rounds if r["round"] == 2])
            assert mean[2] == pytest.approx(manual)
    # the test-accuracy panel has a std band (two trials disagree somewhere)
    assert any(isinstance(c, PolyCollection) for c in axes[0].collections)


def test_flow_and_accuracy_figures(runs):
    data = find_runs([str(runs)])
    flow = flow_distance_figure(data)
    visible = [a for a in flow.get_axes() if a.get_visible()]
    assert [a.get_title() for a in visible] == ["ciap (1, 2)"]  # only the run that measured flows
    ax = visible[0]
    assert any(l.get_label() == "epsilon 0.11" for l in ax.get_lines())
    ciap = next(r for r in data if r.method == "ciap")
    series = [l for l in ax.get_lines()
              if l.get_gid() != "round_separator" and not l.get_label().startswith("epsilon")]
    drawn = sum(len(l.get_xdata()) for l in series)
    expected = sum(r["epochs"] + 1 for r in ciap.rounds)  # start distance + one per epoch
    assert drawn == expected
    assert len([l for l in ax.get_lines() if l.get_gid() == "round_separator"]) == 2
    acc = accuracy_vs_remaining_figure(data).get_axes()[0]
    assert acc.get_xscale() == "log" and acc.xaxis_inverted()
    assert {t.get_text() for t in acc.get_legend().get_texts()} == {r.label for r in data}


def test_report_command(cli, runs, tmp_path):
    code, out, err = cli("report", str(runs), "--output", str(tmp_path / "rep"))
    assert code == 0, err
    with open(tmp_path / "rep" / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["method"] for r in rows) == ["ciap", "sap"]
    for row in rows:
        rounds = json.loads((Path(row["path"]) / "rounds.json").read_text())
        finals = [r for r in rounds if r["round"] == 2]
        assert float(row["test_acc_mean"]) == pytest.approx(np.mean([r["test_acc"] for r in finals]))
        assert float(row["total_epochs_mean"]) == pytest.approx(
            np.mean([sum(r["epochs"] for r in rounds if r["trial"] == t) for t in (0, 1)]))
        assert row["p"] == "1.0" and row["trials"] == "2"
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.count("\n| ") == 3 and "ciap (1, 2)" in md and "±" in md
    assert {p.name for p in (tmp_path / "rep").glob("*.png")} == {
        "rounds.png", "accuracy_vs_remaining.png", "flow_distance.png"}


def test_report_bad_input(cli, tmp_path):
    code, _, err = cli("report", str(tmp_path / "nothing"))
    assert code == 2 and "no such directory" in err
    code, _, err = cli("report", str(tmp_path))
    assert code == 2 and "no run directories" in err


def test_sweep_grid_skip_and_report(cli, tmp_path, monkeypatch):
    args = ["sweep", "--prune_method", "lth", "sap", "--pq", "1,2", "0.5,1",
            "--net_train_epochs", "1", "--net_warmup", "1", "--exper_imp_total_iter", "2",
            "--output_dir", str(tmp_path), "--quiet"]
    code, out, err = cli(*args)
    assert code == 0, err
    assert "sweep: 3 run(s)" in out  # lth once, sap with both pairs
    assert out.count("done:") == 3
    with open(tmp_path / "report" / "report.csv") as f:
        rows = list(csv.DictReader(f))
    # lth's rule has no p or q: its row shows none
    assert sorted((r["method"], r["p"]) for r in rows) == [("lth", ""), ("sap", "0.5"), ("sap", "1.0")]
    lth_row = next(line for line in (tmp_path / "report" / "report.md").read_text().splitlines()
                   if line.startswith("| lth |"))
    assert [c.strip() for c in lth_row.split("|")[4:6]] == ["-", "-"]  # p and q
    calls = []
    monkeypatch.setattr(training, "train_steps", lambda *a, **k: calls.append(1))
    code, out, _ = cli(*args)
    assert code == 0 and out.count("skipped:") == 3 and calls == []


def test_sweep_empty_grid(cli, tmp_path):
    code, _, err = cli("sweep", "--prune_method", "--output_dir", str(tmp_path))
    assert code == 2 and "--prune_method" in err


def test_giap_that_never_stops_equals_sap(runs, cli, tmp_path):
    # Same seed, same rule, and a criterion that never fires: identical rounds, bit for bit.
    code, _, err = cli("run", "--prune_method", "giap", "--prune_epsilon", "0", *COMMON,
                       "--output_dir", str(tmp_path))
    assert code == 0, err
    giap = find_runs([str(tmp_path)])[0]
    sap = next(r for r in find_runs([str(runs)]) if r.method == "sap")
    keys = ("remaining", "epochs", "train_loss", "val_acc", "test_acc")
    assert [tuple(r[k] for k in keys) for r in giap.rounds] == [tuple(r[k] for k in keys) for r in sap.rounds]


def test_compare_methods_benchmark_script_runs(tmp_path):
    """The issue-6 benchmark in its smoke mode: every method, the ratio table, the figures."""
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "compare_methods.py"), "--smoke",
                          "--seeds", "0", "--archs", "lenet300", "--sparsity_slack", "-1",
                          "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "compare_summary.json").read_text())
    incop = ["ciap (1, 2)", "giap (1, 2)", "ciap (0.5, 1)", "giap (0.5, 1)"]
    at_sap = [m + " at SAP's sparsity" for m in incop]
    assert sorted(r["method"] for r in summary["rows"]) == sorted(
        ["lth", "sap (1, 2)", "sap (0.5, 1)"] + incop + at_sap)
    assert sorted(r["method"] for r in summary["ratios"]) == sorted(incop + at_sap)
    rows = {r["method"]: r["per_seed"][0] for r in summary["rows"]}
    for m in at_sap:  # rerun with SAP's final sparsity as the target: it lands on it
        sap_rem = rows["sap " + m.split(" ")[1] + " " + m.split(" ")[2]]["remaining"]
        assert rows[m]["remaining"] == pytest.approx(sap_rem, abs=0.01)
    sap = next(r for r in summary["rows"] if r["method"] == "sap (1, 2)")["per_seed"][0]
    assert sap["epochs"] == 2 * 2  # 2 rounds of the smoke size's 2 epochs, fixed
    assert (tmp_path / "figures" / "lenet300_rounds.png").exists()


def test_report_shows_what_was_swept(cli, tmp_path):
    base = ["sweep", "--prune_method", "sap", "--net_lr", "0.01", "0.03", "--net_train_epochs",
            "1", "--net_warmup", "1", "--exper_imp_total_iter", "2", "--output_dir", str(tmp_path),
            "--quiet"]
    code, out, err = cli(*base)
    assert code == 0, err
    header = next(line for line in out.splitlines() if line.startswith("run "))
    assert header.split()[:2] == ["run", "net_lr"]  # the swept flag, not only a hash
    assert sorted(line.split("]")[1].split()[0] for line in out.splitlines()
                  if line.startswith("sap (1, 2) [")) == ["0.01", "0.03"]
    with open(tmp_path / "report" / "report.csv") as f:
        assert sorted(r["net_lr"] for r in csv.DictReader(f)) == ["0.01", "0.03"]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| net_lr |" in md and "net_warmup" not in md  # only what differs


def test_sweep_progress_counts_and_estimates_time_left():
    from types import SimpleNamespace as R

    from incop.cli import sweep_eta

    done = [R(status="skipped"), R(status="done"), R(status="done")]
    # 2 runs trained in 600 s: 300 s each, 5 left -> 25 min; 2 workers: 2 running, 3 waiting
    assert sweep_eta(done, 8, 600.0, 2) == " (2 running, 3 waiting, about 25 min to go)"
    assert sweep_eta(done[:1], 8, 5.0, 1) == " (1 running, 6 waiting)"  # no pace yet
    assert sweep_eta(done, 8, 600.0, None) == " (5 left, about 25 min to go)"
    assert sweep_eta(done, 3, 600.0, 2) == ""
