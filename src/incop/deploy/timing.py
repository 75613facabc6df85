"""``incop speed RUN_DIR``: :mod:`incop.speed`'s measurements for every saved round of a run, at
several batch sizes and thread counts, written as speed.json, speed.csv (whole model),
speed_layers.csv (per layer) and figures/speedup.png."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from tqdm.auto import tqdm

from ..base.machine import available_cores, physical_memory
from .csr_tiled import unavailable
from ..base.errors import UsageError
from .export import run_model
from ..pruning.masks import Masks
from ..runs.directory import RunDirectory
from ..base.text import format_table
from ..runs.layout import (FIGURES_FOLDER, SPEED_CSV, SPEED_FILE, SPEED_LAYERS_CSV,
                           SPEEDUP_FIGURE, check_masks_fit, existing_run, model_state, round_masks, saved_rounds)
from .arguments import MAX_REPEATS, MEMORY_SHARE
from ..base.bounded import short_repr
from .sparse_inference import (BATCHES, available_kernels, kernel_columns,
                               measure)

WHOLE_COLUMNS = ["round", "remaining_pct", "batch", "threads", "dense_us", "sparse_us", "speedup",
                 "sparse_layers", "fused", "best_sparse_us", "max_abs_diff"]
LAYER_COLUMNS = ["round", "batch", "threads", "layer", "kind", "density_pct", "dense_us",
                 *kernel_columns(), "ran"]


def speed_run(run: Path, trial: int = 0, batches: Sequence[int] = BATCHES,
              threads: Optional[Sequence[int]] = None, repeats: int = 20, warmup: int = 3,
              progress: bool = True, echo: Callable[[str], None] = print,
              rounds: Optional[Sequence[str]] = None) -> List[Dict[str, object]]:
    """Measure the saved rounds of ``trial`` (``rounds``: numbers or ``last``; default all);
    returns the whole-model rows. The run directory is locked meanwhile, so a run still writing
    there is never raced."""
    check_repeats(repeats, warmup)  # before the run is read: a typo is told at once
    run = existing_run(run)
    with RunDirectory(run).lock():
        return _speed_run(run, trial, batches, threads, repeats, warmup, progress, echo, rounds)


def select_rounds(saved: Sequence[int], wanted: Optional[Sequence[str]]) -> List[int]:
    """The saved rounds named by ``wanted`` (numbers, or ``last``), all by default."""
    if not wanted:
        return list(saved)
    out = []
    for w in wanted:
        k = saved[-1] if str(w).strip().lower() == "last" else None
        if k is None:
            try:
                k = int(w)
            except ValueError:
                raise UsageError(f"--rounds {w}: give round numbers or 'last'") from None
        if k not in saved:
            raise UsageError(f"--rounds {w}: round {k} is not saved (saved: {list(saved)})")
        out.append(k)
    return sorted(set(out))


def _speed_run(run: Path, trial: int, batches: Sequence[int], threads: Optional[Sequence[int]],
               repeats: int, warmup: int, progress: bool,
               echo: Callable[[str], None], wanted=None) -> List[Dict[str, object]]:
    rounds = saved_rounds(run, trial)
    if not rounds:
        raise UsageError(f"{run}: trial {trial} has no saved round to time")
    rounds = select_rounds(rounds, wanted)
    cores = available_cores()
    threads = sorted(set(threads or (1, cores)))
    if min(threads) < 1 or max(threads) > cores:
        raise UsageError(f"--threads {' '.join(map(str, threads))}: each must be between 1 and "
                         f"the {cores} core(s) this process may use")
    model, shape = run_model(run)
    check_batches(batches, shape)
    before = torch.get_num_threads()
    whole, layers = [], []
    jobs = [(k, b, t) for k in rounds for b in batches for t in threads]
    try:
        for k, b, t in tqdm(jobs, desc="timing", disable=not progress, unit="case"):
            masks = round_masks(run, trial, k)
            check_masks_fit(masks, model, run / "masks")
            _load_weights(model, run, trial, k, masks)
            torch.set_num_threads(t)
            m = measure(model, masks, shape, b, repeats, warmup)
            remaining = 100.0 * Masks(masks).remaining_fraction()
            whole.append({"round": k, "remaining_pct": remaining, "threads": t,
                          **{c: m[c] for c in WHOLE_COLUMNS if c in m},
                          "fused": " ".join(m["fused"])})
            layers += [{"round": k, "batch": b, "threads": t, **row} for row in m["layers"]]
    finally:
        torch.set_num_threads(before)
    why = unavailable()
    _write(run, whole, layers, {"trial": trial, "repeats": repeats, "warmup": warmup,
                                "cores": cores, "torch": torch.__version__,
                                "kernels": list(available_kernels()), "csr_tiled_unavailable": why})
    echo(speed_text(whole) + (f"\ncsr-tiled (incop's kernel) did not run: {why}" if why else ""))
    return whole


# A batch's inputs must take at most MEMORY_SHARE of the memory (sparse_inference says why).
MAX_BATCH = 2**20


def check_batches(batches: Sequence[int], shape: Sequence[int], itemsize: int = 4) -> None:
    """Batch sizes of at least 1 whose inputs take at most MEMORY_SHARE of the memory."""
    per_sample = math.prod(shape) * itemsize
    limit = min(MAX_BATCH, max(1, int(MEMORY_SHARE * physical_memory() // max(per_sample, 1))))
    for b in batches:
        if not 1 <= b <= limit:
            raise UsageError(f"--batches {b}: each batch size must be between 1 and {limit:,} "
                             f"here (inputs of {tuple(shape)} beyond that take over "
                             f"{MEMORY_SHARE:.0%} of this machine's memory, or are absurd)")


def check_repeats(repeats: int, warmup: int = 0) -> None:
    """From 1 to MAX_REPEATS timed runs per case, and up to as many warm-up runs."""
    for flag, value, low in (("--repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or \
                not low <= value <= MAX_REPEATS:
            raise UsageError(f"{flag} {short_repr(value, 40)}: give from {low} to "
                             f"{MAX_REPEATS:,} runs per case (a median settles within a few "
                             f"dozen; every round, batch and thread count multiplies them)")


def final_speedups(run: Path, batches: Sequence[int] = (1, 64), repeats: int = 20,
                   warmup: int = 3, k: Optional[int] = None) -> Dict[int, float]:
    """The whole-model speed-up (dense time / fastest sparse form's) of trial 0's last saved
    round (or round ``k``) at each of ``batches``, on one thread: what :func:`speed_run`
    measures, for one mask."""
    k = saved_rounds(run, 0)[-1] if k is None else k
    model, shape = run_model(run)
    masks = round_masks(run, 0, k)
    check_masks_fit(masks, model, run / "masks")
    _load_weights(model, run, 0, k, masks)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {b: measure(model, masks, shape, b, repeats, warmup)["speedup"] for b in batches}
    finally:
        torch.set_num_threads(before)


def _load_weights(model, run: Path, trial: int, k: int, masks: Dict[str, torch.Tensor]) -> None:
    """The round's trained weights when the run kept them; otherwise the rebuilt model's own,
    masked (timings depend on the sparsity pattern, not on the values)."""
    try:
        model.load_state_dict(model_state(run, trial, k))
    except UsageError:
        Masks(masks).apply(model)


def speed_text(rows: Sequence[Dict[str, object]]) -> str:
    """The whole-model table. Where no sparse form beat dense, the model runs dense (1.00x)
    and the table says how much slower the fastest sparse form was."""
    headers = ["round", "remaining %", "batch", "threads", "dense us", "sparse us", "speed-up",
               "sparse layers", "ReLU/pool fused into"]
    body = [[str(r["round"]), f"{r['remaining_pct']:.2f}", str(r["batch"]), str(r["threads"]),
             f"{r['dense_us']:.1f}", f"{r['sparse_us']:.1f}",
             _speedup_cell(r),
             str(r["sparse_layers"]), str(r.get("fused") or "-")] for r in rows]
    return format_table(headers, body)


def _speedup_cell(r: Dict[str, object]) -> str:
    if r["sparse_layers"] or "best_sparse_us" not in r:
        return f"{r['speedup']:.2f}x" + ("" if r["speedup"] >= 1 else " (slower)")
    return f"1.00x: dense is faster here (sparse: {r['dense_us'] / r['best_sparse_us']:.2f}x)"


def _write(run: Path, whole, layers, meta) -> None:
    from ..report.figures import save_figure, speedup_figure

    out = RunDirectory(run)
    out.write_json(SPEED_FILE, {**meta, "whole": whole, "layers": layers})
    out.write_csv(SPEED_CSV, [{c: r.get(c) for c in WHOLE_COLUMNS} for r in whole])
    out.write_csv(SPEED_LAYERS_CSV, [{c: r.get(c) for c in LAYER_COLUMNS} for r in layers])
    save_figure(speedup_figure(whole), run / FIGURES_FOLDER / SPEEDUP_FIGURE)


