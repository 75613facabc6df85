"""Figures for one run or several overlaid: built as matplotlib ``Figure`` objects (headless, no
pyplot state), saved as PNG."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..engine.events import Observer
from ..runs.layout import FIGURES_FOLDER
from ..runs.reading import RunData, load_run
from ..base.files import atomic_write
from ..base.text import count

if TYPE_CHECKING:  # matplotlib is imported with the first figure, not with incop
    from matplotlib.figure import Figure

def new_figure(**kwargs) -> "Figure":
    """A headless figure (no pyplot state), laid out to fit."""
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def ticker():
    """matplotlib's tick locators and formatters (imported when a figure needs them)."""
    import matplotlib.ticker

    return matplotlib.ticker


COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf"]


def _style(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if "round" in xlabel or "epoch" in xlabel:
        ax.xaxis.set_major_locator(ticker().MaxNLocator(integer=True))
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


PERCENT_TICKS = [100, 80, 64, 50, 40, 30, 20, 15, 10, 7, 5, 3, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01]


def percent_ticks(lowest: Optional[float] = None) -> List[float]:
    """PERCENT_TICKS, with the lowest value of the data as a tick of its own (so the axis is
    labelled down to the final sparsity), and no fixed tick crowding it."""
    if lowest is None or not lowest > 0:
        return list(PERCENT_TICKS)
    low = float(f"{lowest:.2g}")
    return [t for t in PERCENT_TICKS if t >= low * 1.25 or t < low / 1.25] + [low]


def _percent_log_axis(axis, values: Sequence[float] = ()) -> None:
    """Log scale labelled in plain percentages (100, 64, 40, ...) instead of powers of ten,
    down to the lowest of ``values``."""
    positive = [float(v) for v in values if v is not None and float(v) > 0]
    axis.set_major_locator(ticker().FixedLocator(sorted(percent_ticks(min(positive) if positive else None))))
    axis.set_minor_locator(ticker().NullLocator())
    axis.set_major_formatter(ticker().FuncFormatter(lambda v, _: f"{v:g}"))


MARKERS = "osD^v<>PX*"
LINESTYLES = ["-", "--", ":", "-."]


def series_style(i: int) -> Dict[str, object]:
    """Colour, marker and line style of the i-th series: no two of the first 400 alike, and
    series that coincide stay visible through their different markers."""
    n = len(COLORS)
    return {"color": COLORS[i % n], "marker": MARKERS[(i + i // n) % len(MARKERS)],
            "linestyle": LINESTYLES[(i // (n * len(MARKERS))) % len(LINESTYLES)]}


def per_round(run: RunData, key: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rounds, mean, std) of ``key`` across trials, for rounds every trial reached."""
    values: Dict[int, List[float]] = {}
    for r in run.rounds:
        if r.get(key) is not None:
            values.setdefault(r["round"], []).append(float(r[key]))
    return _mean_std_by_round(values)


def _mean_std_by_round(values: Dict[int, List[float]]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rounds, mean, sample std) of per-round value lists; one value has std 0."""
    ks = sorted(values)
    mean = np.array([np.mean(values[k]) for k in ks])
    std = np.array([np.std(values[k], ddof=1) if len(values[k]) > 1 else 0.0 for k in ks])
    return np.array(ks), mean, std


def _band(ax, x, mean, std, color, label, marker="o", linestyle="-"):
    ax.plot(x, mean, color=color, marker=marker, markersize=4, linewidth=1.8, label=label,
            linestyle=linestyle)
    if np.any(std > 0):
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)


def rounds_figure(runs: Sequence[RunData]) -> Figure:
    """The paper's three panels: test accuracy, epochs and remaining weights per round,
    mean line and std band across trials."""
    fig = new_figure(figsize=(14, 4.2))
    axes = fig.subplots(1, 3)
    for i, run in enumerate(runs):
        style = series_style(i)
        color = style["color"]
        for ax, key in zip(axes, ("test_acc", "epochs", "remaining_pct")):
            _band(ax, *per_round(run, key), color, run.label, style["marker"], style["linestyle"])
        ticket = [t["test_acc"] for t in run.tickets if t.get("test_acc") is not None]
        if ticket:  # the final mask retrained from the rewind point, beside the last round
            last = max(r["round"] for r in run.rounds)
            axes[0].errorbar([last + 0.15], [np.mean(ticket)],
                             yerr=[np.std(ticket, ddof=1) if len(ticket) > 1 else 0.0],
                             color=color, marker="*", markersize=11, capsize=3, linestyle="none",
                             label=f"{run.label}: ticket ({count(run.tickets[0]['epochs'], 'epoch')})")
        warm = [t["warmup_test_acc"] for t in run.trials if t.get("warmup_test_acc") is not None]
        if len(runs) == 1 and warm:  # runs without test data have no warm-up test accuracy
            axes[0].axhline(np.mean(warm), color="k", linestyle=":", linewidth=1,
                            label="dense warm-up")
    _style(axes[0], "Test accuracy", "pruning round", "test accuracy (%)")
    _style(axes[1], "Search epochs per round", "pruning round", "epochs")
    _style(axes[2], "Remaining weights", "pruning round", "remaining weights (%)")
    axes[2].set_yscale("log")
    _percent_log_axis(axes[2].yaxis, [r["remaining_pct"] for run in runs for r in run.rounds])
    axes[1].set_ylim(bottom=0)
    axes[0].legend(fontsize=8, loc="best")
    return fig


def accuracy_vs_remaining_figure(runs: Sequence[RunData]) -> Figure:
    """Test accuracy against remaining weights (log axis, sparser to the right)."""
    fig = new_figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    for i, run in enumerate(runs):
        _, rem, rem_std = per_round(run, "remaining_pct")
        _, acc, acc_std = per_round(run, "test_acc")
        n = min(len(rem), len(acc))
        ax.errorbar(rem[:n], acc[:n], yerr=acc_std[:n], xerr=rem_std[:n], markersize=4,
                    capsize=2, linewidth=1.5, label=run.label, **series_style(i))
    _style(ax, "Accuracy against remaining weights", "remaining weights (%)", "test accuracy (%)")
    ax.set_xscale("log")
    _percent_log_axis(ax.xaxis, [r["remaining_pct"] for run in runs for r in run.rounds])
    ax.invert_xaxis()
    ax.legend(fontsize=8, loc="best")
    return fig


def _distance_segments(run: RunData, trial: int):
    """Per round of one trial, (x, y): x counts (fractional) epochs across rounds, one point per
    check, and the distance before the round's first iteration is drawn at the round's start."""
    segments, offset = [], 0
    for r in (r for r in run.rounds if r["trial"] == trial):
        xs, ys = [], []
        if r.get("start_distance") is not None:
            xs.append(offset)
            ys.append(r["start_distance"])
        for e in (e for e in run.epochs if e["trial"] == trial and e["round"] == r["round"]):
            if e.get("distance") is not None:
                xs.append(offset + e["epoch"])
                ys.append(e["distance"])
        segments.append((xs, ys))
        offset += r["epochs"]
    return segments


def flow_distance_figure(runs: Sequence[RunData]) -> Optional[Figure]:
    """The criterion's distance at every check, rounds side by side, one panel per run that
    measures one; the dashed line is the stopping threshold. None when no run measures one."""
    flowing = [r for r in runs if any(e.get("distance") is not None for e in r.epochs)]
    if not flowing:
        return None
    n = len(flowing)  # at most 3 columns; 4 panels as 2 x 2
    cols = 2 if n == 4 else min(n, 3)
    rows = -(-n // cols)
    fig = new_figure(figsize=(5.2 * cols, 3.8 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, run in zip(axes, flowing):
        trials = sorted({r["trial"] for r in run.rounds})
        for j, t in enumerate(trials):
            segments = _distance_segments(run, t)
            for n, (xs, ys) in enumerate(segments):
                ax.plot(xs, ys, color=COLORS[j % len(COLORS)], marker=".", linewidth=1.2,
                        label=f"trial {t}" if n == 0 else None)
                if j == 0 and n > 0 and xs:
                    ax.axvline(xs[0], color="0.8", linewidth=0.8, zorder=0, gid="round_separator")
        if run.epsilon is not None:
            ax.axhline(run.epsilon, color="k", linestyle="--", linewidth=1,
                       label=f"epsilon {run.epsilon:g}")
        _style(ax, run.label, "search epochs (rounds separated by grey lines)",
               "distance to stop on")
        ax.xaxis.set_major_locator(ticker().MaxNLocator())  # checks fall between whole epochs
        ax.legend(fontsize=8, loc="best")
    for ax in axes[len(flowing):]:  # no empty panels
        fig.delaxes(ax)
    return fig


def similarity_figure(run: RunData) -> Optional[Figure]:
    """Per monitored layer, cosine similarity of its activations to the dense reference's after
    each round (mean line, std band across trials)."""
    if not run.similarity:
        return None
    values: Dict[str, Dict[int, List[float]]] = {}
    for s in run.similarity:
        values.setdefault(s["layer"], {}).setdefault(s["round"], []).append(float(s["cosine"]))
    fig = new_figure(figsize=(7, 4.5))
    ax = fig.subplots()
    many = len(values) > len(COLORS)  # then a sequential map by depth: no colour repeats
    colors = _depth_colors(len(values)) if many else COLORS
    for color, (layer, by_round) in zip(colors, values.items()):
        x, mean, std = _mean_std_by_round(by_round)
        # many layers' std bands would cover each other: lines only (means over trials)
        _band(ax, x, mean, 0 * std if many else std, color, None if many else layer)
    _style(ax, f"Similarity to the dense reference: {run.label}", "pruning round",
           "cosine similarity of activations")
    if many:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        names = list(values)
        bar = fig.colorbar(ScalarMappable(Normalize(0, len(names) - 1), DEPTH_CMAP), ax=ax,
                           label=f"layer, by depth ({len(names)})")
        bar.set_ticks([0, len(names) - 1], labels=[names[0], names[-1]])
    else:
        ax.legend(fontsize=7, loc="best", ncol=2 if len(values) > 8 else 1)
    return fig


DEPTH_CMAP = "viridis"


def _depth_colors(n: int) -> List[tuple]:
    from matplotlib import colormaps

    cmap = colormaps[DEPTH_CMAP]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def speedup_figure(rows: Sequence[Dict[str, object]]) -> Figure:
    """Whole-model inference speed-up of the fastest sparse form (dense time / its time) against
    remaining weights, one line per batch size and thread count; 1x (no gain) drawn as a
    reference. Where no sparse form beat dense, the point is that form's slowdown (below 1x), as
    the table says, not the 1.00x of running dense."""
    fig = new_figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    cases = sorted({(int(r["batch"]), int(r["threads"])) for r in rows})
    markers = "osD^vP*X"
    for i, (batch, threads) in enumerate(cases):
        pts = sorted((float(r["remaining_pct"]), sparse_speedup(r)) for r in rows
                     if r["batch"] == batch and r["threads"] == threads)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=markers[i % len(markers)],
                color=COLORS[i % len(COLORS)], label=f"batch {batch}, {threads} thread(s)")
    ax.axhline(1.0, color="black", lw=0.8, ls="--", label="dense speed")
    ax.set_xscale("log")
    _percent_log_axis(ax.xaxis)
    lows = [float(r["remaining_pct"]) for r in rows]
    if lows:
        ax.set_xlim(max(lows) * 1.15, min(lows) / 1.15)  # sparser to the right
    _style(ax, "Inference speed-up of the sparse model", "remaining weights (%)",
           "dense time / fastest sparse time")
    ax.legend(fontsize=7, loc="best")
    return fig


ABLATION_BARS = (("ticket", "ticket"), ("random_prune", "random mask, same per-layer counts"),
                 ("random_reinit", "ticket's mask, fresh initialisation"))


def ablations_figure(runs: Sequence[RunData]) -> Optional[Figure]:
    """Per run, the ticket's test accuracy beside its two ablations' (mean and std, every
    trial a dot): a ticket must beat both. Validation accuracy where no run had test data (a
    user's own data without it). None when no run was ablated."""
    runs = [r for r in runs if r.ablations]
    if not runs:
        return None
    key = "test_acc" if any(a.get("test_acc") is not None for r in runs for a in r.ablations) \
        else "val_acc"
    fig = new_figure(figsize=(max(8.0, 1.9 * len(runs) + 2), 4.6))
    ax = fig.add_subplot()
    width = 0.8 / len(ABLATION_BARS)
    for j, (kind, label) in enumerate(ABLATION_BARS):
        for i, run in enumerate(runs):
            values = [t[key] for t in run.tickets] if kind == "ticket" else \
                [a[key] for a in run.ablations if a["ablation"] == kind]
            values = [v for v in values if v is not None]
            if not values:
                continue
            x = i + (j - 1) * width
            ax.bar(x, np.mean(values), width * 0.9, color=COLORS[j], alpha=0.75,
                   yerr=np.std(values, ddof=1) if len(values) > 1 else None, capsize=3,
                   label=label if i == 0 else None)
            ax.plot([x] * len(values), values, "k.", markersize=4)
    ax.set_xticks(range(len(runs)), [r.label for r in runs], rotation=15 if len(runs) > 3 else 0,
                  fontsize=8)
    low = min(v for r in runs for v in [*(t[key] for t in r.tickets),
                                         *(a[key] for a in r.ablations)] if v is not None)
    _style(ax, "The ticket against its ablations", "",
           "test accuracy (%)" if key == "test_acc" else "validation accuracy (%, no test data)")
    ax.set_ylim(max(0.0, low - 5), 100.0)
    fig.legend(fontsize=8, loc="outside lower center", ncols=3)
    return fig


def sparse_speedup(row: Dict[str, object]) -> float:
    """Dense time over the fastest sparse form's, also where dense was kept as faster."""
    if row.get("sparse_layers") or not row.get("best_sparse_us"):
        return float(row["speedup"])
    return float(row["dense_us"]) / float(row["best_sparse_us"])


def save_figure(fig: Figure, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # attach a headless canvas
    atomic_write(Path(path), lambda f: fig.savefig(f, format="png", dpi=150))


def save_run_figures(runs: Sequence[RunData], out_dir: Path) -> List[Path]:
    """rounds.png, accuracy_vs_remaining.png, flow_distance.png (when flows were measured) and,
    for a single run, similarity.png."""
    out_dir = Path(out_dir)
    figures = {"rounds.png": rounds_figure(runs),
               "accuracy_vs_remaining.png": accuracy_vs_remaining_figure(runs),
               "flow_distance.png": flow_distance_figure(runs),
               "similarity.png": similarity_figure(runs[0]) if len(runs) == 1 else None,
               "ablations.png": ablations_figure(runs)}
    saved = []
    for name, fig in figures.items():
        if fig is not None:
            save_figure(fig, out_dir / name)
            saved.append(out_dir / name)
    return saved


class RunFigures(Observer):
    """The end-of-run figures of a run directory, drawn once its search is finished (an observer
    of the IMP loop); ``say`` tells where the results are."""

    def __init__(self, run_path: Path, say: Callable[[str], None]) -> None:
        self.run_path, self.say = Path(run_path), say

    def completed(self, records, verdict) -> None:
        save_run_figures([load_run(self.run_path)], self.run_path / FIGURES_FOLDER)
        self.say(f"results and figures in {self.run_path}")
