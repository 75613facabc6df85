"""One training epoch of LeNet-300-100 on Fashion-MNIST: incop's loop against a bare PyTorch loop
doing the same work (same batch size, same optimizer, same masking), measured side by side.

    python benchmarks/epoch_overhead.py [--dataset FashionMNIST] [--repeats 5]

Prints per-repeat times and the ratio of medians (incop / bare). Target: at most 1.15.
"""
import argparse
import statistics
import time

import torch
from torch.nn import functional as F

from incop.data.batches import TensorBatches
from incop.data.datasets import load_splits
from incop.pruning.masks import Masks, prunable_parameters
from incop.models.architectures import build_model
from incop.engine.training import make_optimizer, train_epoch


def bare_epoch(model, opt, params, masks, x, y, batch_size, gen):
    model.train()
    order = torch.randperm(len(y), generator=gen)
    for i in range(0, len(y), batch_size):
        idx = order[i:i + batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for p, m in zip(params, masks):
            p.grad.mul_(m)
        opt.step()
        with torch.no_grad():
            for p, m in zip(params, masks):
                p.mul_(m)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="FashionMNIST")
    ap.add_argument("--arch", default="lenet300")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch_size", type=int, default=64)
    args = ap.parse_args()

    splits = load_splits(args.dataset, None, 0.1, seed=0)
    x, y = splits.train_x, splits.train_y

    def fresh():
        torch.manual_seed(0)
        model = build_model(args.arch, splits.input_shape, splits.num_classes)
        g = torch.Generator().manual_seed(1)
        masks = Masks({n: (torch.rand(p.shape, generator=g) > 0.5).float()
                       for n, p in prunable_parameters(model).items()}).bind(model)
        masks.apply()
        return model, masks, make_optimizer(model, 0.01, 0.0, 5e-4)

    times = {"bare": [], "incop": []}
    for r in range(args.repeats + 1):  # the first pair warms up caches and is discarded
        for kind in ("bare", "incop") if r % 2 == 0 else ("incop", "bare"):
            model, masks, opt = fresh()
            gen = torch.Generator().manual_seed(r)
            t0 = time.perf_counter()
            if kind == "bare":
                params = list(prunable_parameters(model).values())
                bare_epoch(model, opt, params, [masks[n] for n in prunable_parameters(model)], x, y,
                           args.batch_size, gen)
            else:
                train_epoch(model, opt, masks, TensorBatches(x, y, args.batch_size, True, gen))
            if r > 0:
                times[kind].append(time.perf_counter() - t0)
    bare, inc = statistics.median(times["bare"]), statistics.median(times["incop"])
    print(f"{args.arch} on {args.dataset}: {len(y)} samples, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, {args.repeats} repeats")
    print("bare  s/epoch: " + " ".join(f"{t:.3f}" for t in times["bare"]) + f"  median {bare:.3f}")
    print("incop s/epoch: " + " ".join(f"{t:.3f}" for t in times["incop"]) + f"  median {inc:.3f}")
    print(f"ratio incop/bare: {inc / bare:.3f}  (target <= 1.15)")


if __name__ == "__main__":
    main()
