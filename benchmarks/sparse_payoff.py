"""Does the sparsity pay? File sizes and inference speed of pruned networks.

    python benchmarks/sparse_payoff.py sizes [--quick]
    python benchmarks/sparse_payoff.py speed RUN_DIR [--repeats 30]
    python benchmarks/sparse_payoff.py kernels RUN_DIR [--repeats 30]

"sizes": bytes of what a run writes per round, before (0.1: bool masks, dense state dict) and
now (packed masks, sparse model), for lenet300 and vgg16 (28x28 inputs, 10 classes) at 30%, 10%,
5% and 2% remaining (masks drawn at random at that density; the sizes depend on the count only).

"speed": `incop speed` on a run directory (every saved round; batches 1, 64, 256; 1 thread and
all cores), then the rows the issue's targets name: LeNet-300-100 at 5% remaining or less,
batch 64 and 256, whole model >= 3x on one thread and >= 2x on all cores.

"kernels": the sparse forms torch offers and incop's csr-tiled, timed on the first Linear
layer of the run's last round (one thread, batch 64 and 256), to show which kernel `incop speed`
should use.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import torch

from incop.models.architectures import build_model
from incop.base.text import format_table
from incop.pruning.sparse_files import pack_masks, sparse_state_dict


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
    from incop.deploy.timing import speed_run

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
                   + (f"{r['speedup']:.2f}x" if r["sparse_layers"] else "dense is faster here "
                      f"(the fastest sparse form: {r['dense_us'] / r['best_sparse_us']:.2f}x)")
                   for r in batch1)
    return (f"{run} ({cores} core(s))\n" + format_table(
        ["round", "remaining %", "batch", "threads", "dense us", "sparse us", "speed-up",
         "target", ""], rows) + note)


def kernels(run: Path, repeats: int) -> str:
    import warnings

    from incop.deploy import csr_tiled
    from incop.runs.layout import round_masks, saved_rounds
    from incop.deploy.sparse_inference import median_us

    warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
    torch.set_num_threads(1)
    rounds = saved_rounds(run, 0)
    if not rounds:
        print(f"{run}: no saved masks of trial 0; give a run directory of incop run", file=sys.stderr)
        sys.exit(2)
    masks = round_masks(run, 0, rounds[-1])
    name = next(n for n, m in masks.items() if m.dim() == 2)
    mask = masks[name].float()
    w = torch.randn(mask.shape, generator=torch.Generator().manual_seed(0)) * mask
    b = torch.zeros(w.shape[0])
    live = (mask.sum(0) > 0).nonzero().squeeze(1)
    forms = {"csr": w.to_sparse_csr(), "csc": w.to_sparse_csc(), "coo": w.to_sparse(),
             "bsr 2x2": w.to_sparse_bsr((2, 2)), "bsr 4x4": w.to_sparse_bsr((4, 4)),
             "csr of W^T": w.t().contiguous().to_sparse_csr(),
             "live columns, csr": w[:, live].contiguous().to_sparse_csr()}
    rows = []
    for batch in (64, 256):
        x = torch.randn(batch, w.shape[1], generator=torch.Generator().manual_seed(1))
        fns = {"dense F.linear": lambda: torch.nn.functional.linear(x, w, b),
               "addmm(b, csr, x^T)^T (incop speed)": lambda: torch.addmm(b[:, None], forms["csr"], x.t()).t(),
               "addmm(b, csc, x^T)^T": lambda: torch.addmm(b[:, None], forms["csc"], x.t()).t(),
               "sparse.mm(coo, x^T)": lambda: torch.sparse.mm(forms["coo"], x.t()),
               "addmm(b, bsr 2x2, x^T)^T": lambda: torch.addmm(b[:, None], forms["bsr 2x2"], x.t()).t(),
               "addmm(b, bsr 4x4, x^T)^T": lambda: torch.addmm(b[:, None], forms["bsr 4x4"], x.t()).t(),
               "addmm(b, x, csr of W^T)": lambda: torch.addmm(b, x, forms["csr of W^T"]),
               "live input columns, csr": lambda: torch.addmm(
                   b[:, None], forms["live columns, csr"], x[:, live].t()).t()}
        times = median_us(list(fns.values()), repeats, 5)
        rows += [[str(batch), k, f"{t:.1f}", f"{times[0] / t:.2f}x"] for k, t in zip(fns, times)]
        xt = x.t().contiguous()  # what a SparseLinear after another one receives
        if csr_tiled.unavailable() is None:
            tiled = csr_tiled.TiledCsr(forms["csr"], b)
            own, own_xt = median_us([lambda: tiled(x), lambda: tiled(xt.t())], repeats, 5)
            rows += [[str(batch), "csr-tiled, x as it lies (incop's kernel)", f"{own:.1f}",
                      f"{times[0] / own:.2f}x"],
                     [str(batch), "csr-tiled, x^T contiguous (incop's kernel)", f"{own_xt:.1f}",
                      f"{times[0] / own_xt:.2f}x"]]
        else:
            rows.append([str(batch), f"csr-tiled: {csr_tiled.unavailable()}", "", ""])
        copy, inner, reduce = median_us([lambda: x.t().contiguous(),
                                         lambda: torch.addmm(b[:, None], forms["csr"], xt),
                                         lambda: torch.sparse.mm(forms["csr"], xt, "sum")],
                                        repeats, 5)
        rows += [[str(batch), "copying x^T to contiguous", f"{copy:.1f}", ""],
                 [str(batch), "addmm(b, csr, contiguous x^T)", f"{inner:.1f}", f"{times[0] / inner:.2f}x"],
                 [str(batch), "sparse.mm(csr, contiguous x^T, 'sum') (csr-reduce)", f"{reduce:.1f}",
                  f"{times[0] / reduce:.2f}x"]]
    head = (f"{run}: {name} of trial 0, round {rounds[-1]}, {100 * float(mask.mean()):.2f}% "
            f"remaining, {w.shape[1] - len(live)} dead input columns, 1 thread\n")
    return head + format_table(["batch", "form", "us", "vs dense"], rows, left=(1,))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", choices=["sizes", "speed", "kernels"])
    ap.add_argument("run", nargs="?")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="sizes of lenet300 only")
    args = ap.parse_args()
    if args.part == "sizes":
        archs = ["lenet300"] if args.quick else ["lenet300", "vgg16"]
        print(sizes(archs, [0.3, 0.1, 0.05, 0.02]))
    else:
        if not args.run:
            ap.error(f"{args.part} needs a run directory")
        part = speed if args.part == "speed" else kernels
        print(part(Path(args.run), args.repeats))


if __name__ == "__main__":
    main()
