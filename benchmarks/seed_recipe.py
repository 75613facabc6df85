"""Does the seed's experiment train? The dense warm-up under the seed's settings (SGD, lr 0.01, no
momentum, batch 64, weight decay 5e-4) for its architectures, with PyTorch's default
initialisation (incop 0.1) and with incop's Kaiming initialisation (OpenLTH's), side by side.

    python benchmarks/seed_recipe.py [--train_size N] [--epochs E] [--archs ...] [--quick]

Fashion-MNIST's files stand in for MNIST (same format, harder). Prints validation accuracy and
training loss after each warm-up epoch, the label-entropy baseline (ln 10 = 2.3026) and the
wall time; a row whose accuracy is within the untrained margin of chance is marked UNTRAINED,
as `incop run` would stop there.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from incop.base.machine import set_threads
from incop.data.batches import train_batches
from incop.data.datasets import load_splits
from incop.engine.learned import LabelBaseline, untrained_reason
from incop.pruning.masks import Masks
from incop.models.architectures import build_model
from incop.base.text import format_table
from incop.engine.training import evaluate, make_optimizer, train_epoch

ARCHS = ["vgg16", "vgg16_bn", "resnet18", "alexnet", "conv6"]


def warm_up(arch, init, splits, epochs, seed=0):
    """Per epoch: (epoch, train loss, val acc, val loss, seconds so far)."""
    torch.manual_seed(seed)
    model = build_model(arch, splits.input_shape, splits.num_classes, init)
    masks = Masks.ones_like(model).bind(model)
    opt = make_optimizer(model, 0.01, 0.0, 5e-4)
    gen = torch.Generator().manual_seed(seed)
    batches = train_batches((splits.train_x, splits.train_y), 64, gen)
    rows, t0 = [], time.perf_counter()
    for e in range(1, epochs + 1):
        loss = train_epoch(model, opt, masks, batches)
        acc, val_loss = evaluate(model, (splits.val_x, splits.val_y))
        rows.append((e, loss, acc, val_loss, time.perf_counter() - t0))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train_size", type=int, default=6000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--archs", nargs="+", default=ARCHS)
    ap.add_argument("--inits", nargs="+", default=["pytorch", "kaiming"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="benchmarks/results/seed_recipe.txt")
    ap.add_argument("--quick", action="store_true", help="digits, conv2, 1 epoch (for the test)")
    args = ap.parse_args()
    set_threads(args.threads)
    if args.quick:
        splits, args.archs, args.epochs = load_splits("digits", None, 0.1, 0), ["conv2"], 1
        name = "digits"
    else:
        splits = load_splits("FashionMNIST", None, 0.1, 0)
        splits.train_x, splits.train_y = splits.train_x[:args.train_size], splits.train_y[:args.train_size]
        name = f"Fashion-MNIST, {len(splits.train_y)} training samples"
    baseline = LabelBaseline.of((splits.val_x, splits.val_y))
    headers = ["arch", "init", "epoch", "train loss", "val acc %", "val loss", "time s", "verdict"]
    rows = []
    for arch in args.archs:
        for init in args.inits:
            for e, loss, acc, val_loss, secs in warm_up(arch, init, splits, args.epochs):
                verdict = "UNTRAINED" if untrained_reason(baseline, acc, val_loss, loss) else "learns"
                rows.append([arch, init, str(e), f"{loss:.4f}", f"{acc:.2f}", f"{val_loss:.4f}",
                             f"{secs:.0f}", verdict])
                print("  ".join(rows[-1]), flush=True)
    text = (f"Seed settings (SGD lr 0.01, momentum 0, batch 64, wd 5e-4), {name}, "
            f"{torch.get_num_threads()} threads, fp32; validation {baseline.samples} samples, "
            f"majority class {baseline.chance_acc:.1f}%, label entropy {baseline.prior_loss:.4f}\n\n"
            + format_table(headers, rows, left=(0, 1, 7)) + "\n")
    print("\n" + text)
    if not args.quick:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
