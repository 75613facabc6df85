"""Does the sparsity pay? File sizes and inference speed of pruned networks.

    python benchmarks/sparse_payoff.py sizes [--quick]
    python benchmarks/sparse_payoff.py speed RUN_DIR [--repeats 30]

"sizes": bytes of what a run writes per round, before (0.1: bool masks, dense state dict) and
now (packed masks, sparse model), for lenet300 and vgg16 (28x28 inputs, 10 classes) at 30%, 10%,
5% and 2% remaining (masks drawn at random at that density; the sizes depend on the count only).

"speed": `incop speed` on a run directory (every saved round; batches 1, 64, 256; 1 thread and
all cores), then the rows the issue's targets name: LeNet-300-100 at 5% remaining or less,
batch 64 and 256, whole model >= 3x on one thread and >= 2x on all cores.
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import torch

from incop.models import build_model
from incop.results import format_table
from incop.sparse_io import pack_masks, sparse_state_dict


def _bytes(obj) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.tell()


def sizes(archs, densities) -> str:
    rows = []
    for arch in archs:
        torch.manual_seed(0)
        model = build_model(arch, (1, 28, 28), 10)
        for d in densities:
            g = torch.Generator().manual_seed(1)
            masks = {n: torch.rand(p.shape, generator=g) < d
                     for n, p in model.named_parameters() if p.dim() > 1}
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n in masks:
                        p.mul_(masks[n])
            dense, sparse = _bytes(model.state_dict()), _bytes(sparse_state_dict(model.state_dict(), masks))
            bools, packed = _bytes(masks), _bytes(pack_masks(masks))
            rows.append([arch, f"{100 * d:g}", f"{dense / 1e6:.2f}", f"{sparse / 1e6:.3f}",
                         f"1/{dense / sparse:.1f}", f"{bools / 1e6:.2f}", f"{packed / 1e6:.3f}",
                         f"1/{bools / packed:.1f}"])
    return format_table(["model", "remaining %", "dense model MB", "sparse model MB", "ratio",
                         "bool masks MB", "packed masks MB", "ratio"], rows, left=(0,))


def speed(run: Path, repeats: int) -> str:
    from incop.speed_run import speed_run

    speed_run(run, repeats=repeats, echo=lambda s: None)
    whole = json.loads((run / "speed.json").read_text())["whole"]
    cores = max(r["threads"] for r in whole)
    rows = []
    for r in whole:
        if r["remaining_pct"] <= 5 and r["batch"] in (64, 256):
            need = 3.0 if r["threads"] == 1 else 2.0
            rows.append([str(r["round"]), f"{r['remaining_pct']:.2f}", str(r["batch"]),
                         str(r["threads"]), f"{r['dense_us']:.1f}", f"{r['sparse_us']:.1f}",
                         f"{r['speedup']:.2f}x", f">= {need:g}x",
                         "met" if r["speedup"] >= need else "MISSED"])
    batch1 = [r for r in whole if r["batch"] == 1 and r["remaining_pct"] <= 5]
    note = "".join(f"\nbatch 1, round {r['round']}, {r['threads']} thread(s): "
                   + (f"{r['speedup']:.2f}x" if r["speedup"] > 1 else "dense is faster here "
                      f"({r['speedup']:.2f}x)") for r in batch1)
    return (f"{run} ({cores} core(s))\n" + format_table(
        ["round", "remaining %", "batch", "threads", "dense us", "sparse us", "speed-up",
         "target", ""], rows) + note)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", choices=["sizes", "speed"])
    ap.add_argument("run", nargs="?")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="sizes of lenet300 only")
    args = ap.parse_args()
    if args.part == "sizes":
        archs = ["lenet300"] if args.quick else ["lenet300", "vgg16"]
        print(sizes(archs, [0.3, 0.1, 0.05, 0.02]))
    else:
        if not args.run:
            ap.error("speed needs a run directory")
        print(speed(Path(args.run), args.repeats))


if __name__ == "__main__":
    main()
