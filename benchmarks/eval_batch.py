"""Which batch size makes evaluation fastest on this machine? An eval-mode forward pass over 1024
samples, cut into batches of 64 to 1024, for lenet300, conv4, resnet20 and vgg16_bn, on 1
thread and on all cores, the batch sizes taking turns (``incop.speed.median_us``).

    python benchmarks/eval_batch.py [--repeats 5] [--archs lenet300 conv4 ...]

Prints microseconds per sample and each batch size's speed against 1024 (the batch evaluation
used before this measurement). Run it alone: another process on the cores skews every number.
incop evaluates (accuracy, flows, activations) in batches of ``incop.batches.eval_batch_size``.
"""
import argparse

import torch

from incop.base.machine import available_cores
from incop.models.architectures import build_model
from incop.base.text import format_table
from incop.deploy.sparse_inference import median_us

SHAPES = {"lenet300": (1, 28, 28), "conv4": (1, 28, 28), "resnet20": (3, 32, 32),
          "vgg16_bn": (3, 32, 32)}
BATCHES = (64, 128, 256, 512, 1024)
N = 1024


def per_sample_us(arch: str, threads: int, repeats: int):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(arch, SHAPES[arch], 10).eval()
    x = torch.randn(N, *SHAPES[arch])
    passes = [lambda b=b: [model(x[i:i + b]) for i in range(0, N, b)] for b in BATCHES]
    return [t / N for t in median_us(passes, repeats, 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--archs", nargs="+", default=list(SHAPES), choices=sorted(SHAPES))
    args = ap.parse_args()
    headers = ["arch", "threads"] + [f"batch {b}" for b in BATCHES] + ["best"]
    rows = []
    for arch in args.archs:
        for threads in sorted({1, available_cores()}):
            us = per_sample_us(arch, threads, args.repeats)
            best = BATCHES[us.index(min(us))]
            rows.append([arch, str(threads)] + [f"{u:.1f} ({us[-1] / u:.2f}x)" for u in us]
                        + [str(best)])
            print(format_table(headers, rows[-1:], left=(0,)), flush=True)
    print("\nus per sample (speed against batch 1024):")
    print(format_table(headers, rows, left=(0,)))


if __name__ == "__main__":
    main()
