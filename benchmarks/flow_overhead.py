"""Cost of measuring the flows after an epoch, relative to that epoch's training time.

    python benchmarks/flow_overhead.py [--archs lenet300 conv4] [--conv_samples 4000]

For each architecture: time one training epoch on Fashion-MNIST's training split, then the
information-flow (ciap) and gradient-flow (giap) measurements at the default probe size, in the
same process. Architectures too slow for a full epoch on this machine (conv4 on 2 CPU cores is
about 6 minutes) are timed on ``--conv_samples`` training samples and scaled per sample to the
full split; the output says so. Targets: ciap <= 5%, giap <= 10%.
"""
import argparse
import statistics
import time

import torch

from incop.data import DEFAULT_PROBE_SIZE, TensorBatches, load_splits, probe_subset
from incop.flows import GradientFlow, InformationFlow
from incop.masks import Masks
from incop.models import build_model
from incop.training import make_optimizer, train_epoch


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
    print(f"{'arch':<10} {'epoch s':>9} {'IF s':>7} {'IF %':>6} {'GF s':>7} {'GF %':>6}  note")
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
        t_if = timed(lambda: info.measure(model), args.repeats)
        t_gf = timed(lambda: grad.measure(model, masks), args.repeats)
        note = "" if n == n_full else f"epoch scaled from {n} samples"
        print(f"{arch:<10} {epoch:9.2f} {t_if:7.3f} {100 * t_if / epoch:6.2f} {t_gf:7.3f} "
              f"{100 * t_gf / epoch:6.2f}  {note}")


if __name__ == "__main__":
    main()
