"""Cost of one check of each stopping criterion, relative to the training it controls.

    python benchmarks/flow_overhead.py [--archs lenet300 conv4] [--conv_samples 4000]

For each architecture: time one training epoch on Fashion-MNIST's training split, then one check
of each criterion, in the same process: information flow (ciap) and gradient flow (giap) at the
default probe size, mask_stability (the SAP rule's next mask from the current weights, on a
network one SAP step in), and the validation evaluation every check makes (loss_recovery needs
nothing more). Costs are shown as a share of an epoch and of a quarter epoch (the training one
check controls at ``--check_every 0.25ep``). Architectures too slow for a full epoch on this
machine (conv4 on 2 CPU cores is about 6 minutes) are timed on ``--conv_samples`` training
samples and scaled per sample to the full split; the output says so. Targets: at most 5% of the
training a check controls at 0.25ep (issue 13); earlier: ciap <= 5%, giap <= 10% of an epoch.
"""
import argparse
import statistics
import time

import torch

from incop.data.batches import DEFAULT_PROBE_SIZE, TensorBatches
from incop.data.datasets import load_splits, probe_subset
from incop.stopping.flows import GradientFlow, InformationFlow
from incop.pruning.masks import Masks
from incop.models.architectures import build_model
from incop.pruning.rules import SAP
from incop.stopping.criteria import MaskStability
from incop.engine.training import evaluate, make_optimizer, train_epoch


def timed(fn, repeats):
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=["lenet300", "conv4"])
    ap.add_argument("--conv_samples", type=int, default=4000,
                    help="training samples timed for convolutional nets (scaled to the full split)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    splits = load_splits("FashionMNIST", None, 0.1, seed=0)
    probe_x, probe_y = probe_subset(splits, None, seed=0)
    n_full = len(splits.train_y)
    print(f"Fashion-MNIST: {n_full} training samples, probe {len(probe_y)} "
          f"(default {DEFAULT_PROBE_SIZE}), {torch.get_num_threads()} threads")
    print(f"{'arch':<10} {'epoch s':>8}  " + "  ".join(
        f"{c:>5} s {c:>4} %ep {c:>4} %q" for c in ("IF", "GF", "MS", "val")) + "  note")
    for arch in args.archs:
        torch.manual_seed(0)
        model = build_model(arch, splits.input_shape, splits.num_classes)
        masks = Masks.ones_like(model).bind(model)
        opt = make_optimizer(model, 0.01, 0.0, 5e-4)
        n = n_full if arch.startswith("lenet") else min(args.conv_samples, n_full)
        batches = TensorBatches(splits.train_x[:n], splits.train_y[:n], 64, True,
                                torch.Generator().manual_seed(0))
        epoch = timed(lambda: train_epoch(model, opt, masks, batches), 1 if n < n_full else 2)
        epoch *= n_full / n
        info = InformationFlow(model, probe_x)
        grad = GradientFlow(model, probe_x, probe_y)
        rule = SAP(1.0, 2.0)
        weights = {k: p.detach() for k, p in masks.parameters(model).items()}
        masks, _ = rule(weights, masks)  # one SAP step in, as in a round
        masks.bind(model).apply()
        stability = MaskStability(rule)
        stability.start_round(model, masks)
        costs = {"IF": timed(lambda: info.measure(model), args.repeats),
                 "GF": timed(lambda: grad.measure(model, masks), args.repeats),
                 "MS": timed(lambda: stability.check(model, masks), args.repeats),
                 "val": timed(lambda: evaluate(model, (splits.val_x, splits.val_y)), args.repeats)}
        note = "" if n == n_full else f"epoch scaled from {n} samples"
        print(f"{arch:<10} {epoch:8.2f}  " + "  ".join(
            f"{t:7.3f} {100 * t / epoch:7.2f} {400 * t / epoch:6.2f}" for t in costs.values())
            + f"  {note}", flush=True)


if __name__ == "__main__":
    main()
