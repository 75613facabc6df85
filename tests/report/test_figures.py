"""Figures stay readable with many series (incop.report.figures), and the speed-up figure draws
what the speed table says."""
import pytest

from incop.report.figures import (COLORS, _depth_colors, flow_distance_figure, percent_ticks,
                                  series_style, similarity_figure)
from incop.runs.reading import RunData


def test_many_series_never_share_colour_marker_and_line():
    styles = [tuple(series_style(i).values()) for i in range(400)]
    assert len(set(styles)) == 400
    # the first ten differ in marker too, so runs that coincide stay visible
    assert len({series_style(i)["marker"] for i in range(len(COLORS))}) == len(COLORS)


@pytest.mark.parametrize("lowest", [2.8, 0.0037, 64.0])
def test_percent_axis_reaches_the_final_value(lowest):
    ticks = percent_ticks(lowest)
    low = [t for t in ticks if t == pytest.approx(lowest, rel=0.01)]
    assert len(low) == 1  # the final value is labelled
    crowding = [t for t in ticks if t != low[0] and 1 / 1.25 < t / low[0] < 1.25]
    assert not crowding  # and no label sits on top of it


def _run(layers=0, flows=False, label="r"):
    sim = [{"layer": f"features.{i}", "round": k, "cosine": 1 - 0.01 * i * k, "trial": 0}
           for i in range(layers) for k in range(3)]
    rounds = [{"trial": 0, "round": k, "epochs": 1.0, "start_distance": 0.3 if flows else None,
               "remaining_pct": 100 * 0.8 ** k, "test_acc": 90.0} for k in range(3)]
    epochs = [{"trial": 0, "round": k, "epoch": 1.0, "distance": 0.1 if flows else None}
              for k in range(3)]
    return RunData(path=None, config={"prune": {"method": "ciap"}}, rounds=rounds, epochs=epochs,
                   similarity=sim, label=label)


def test_similarity_of_many_layers_uses_a_sequential_map():
    fig = similarity_figure(_run(layers=13))
    ax = fig.axes[0]
    colors = [line.get_color() for line in ax.get_lines()]
    assert len(colors) == 13 and len({tuple(c) for c in colors}) == 13
    assert [tuple(c) for c in colors] == [tuple(c) for c in _depth_colors(13)]
    assert len(fig.axes) == 2 and ax.get_legend() is None  # a colour bar, not a 13-line legend
    few = similarity_figure(_run(layers=4))
    assert len(few.axes) == 1 and few.axes[0].get_legend() is not None


@pytest.mark.parametrize("n,width", [(1, 1), (2, 2), (4, 2), (5, 3), (7, 3)])
def test_flow_distance_figure_has_no_empty_panels(n, width):
    fig = flow_distance_figure([_run(flows=True, label=f"r{i}") for i in range(n)])
    assert [ax.get_title() for ax in fig.axes] == [f"r{i}" for i in range(n)]
    assert fig.get_size_inches()[0] == pytest.approx(5.2 * width)


def test_the_speedup_figure_draws_what_the_table_says():
    from incop.report.figures import speedup_figure
    from incop.deploy.timing import speed_text

    rows = [{"round": 1, "remaining_pct": 50.0, "batch": 1, "threads": 1, "dense_us": 36.0,
             "sparse_us": 36.0, "speedup": 1.0, "sparse_layers": 0, "best_sparse_us": 100.0},
            {"round": 2, "remaining_pct": 5.0, "batch": 1, "threads": 1, "dense_us": 30.0,
             "sparse_us": 10.0, "speedup": 3.0, "sparse_layers": 2, "best_sparse_us": 10.0}]
    assert "sparse: 0.36x" in speed_text(rows)
    line = speedup_figure(rows).axes[0].lines[0]
    assert list(line.get_ydata()) == pytest.approx([3.0, 0.36])  # sorted by remaining %
