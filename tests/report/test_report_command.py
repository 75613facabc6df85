"""incop report and its figures (incop.report.figures, inspected as matplotlib objects) on two
finished runs: real PNG files, one series per monitored layer, mean and std bands, flow and
accuracy figures, the report's tables; bad input is one line."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from incop.report.figures import (accuracy_vs_remaining_figure, flow_distance_figure, per_round,
                                  rounds_figure, similarity_figure)
from incop.runs.reading import find_runs


@pytest.fixture
def runs(sap_and_ciap):
    return sap_and_ciap


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
