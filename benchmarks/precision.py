"""Is bf16 (and channels-last) faster, and does it find the same sparse networks?

    python benchmarks/precision.py [--parts steps parity] [--threads 1] [--out DIR] [--quick]

Part "steps": milliseconds per training step (forward, backward, masked SGD step) of lenet300,
conv4, vgg16_bn and resnet20 on random batches of 64, for fp32, fp32 + channels-last, bf16 and
bf16 + channels-last, measured side by side in one process (the modes take turns, so drift in the
machine's speed hits them alike), medians after warm-up steps, with the ratios to fp32.

Part "parity": the same IMP search in fp32 and in bf16 (channels-last where it applies): sap and
ciap, 4 rounds, LeNet-300-100 on the full Fashion-MNIST training split and conv4 on 6000 training
samples, one seed. Targets: final test accuracy within 0.3 points and remaining weights within
1 point; bf16 + channels-last steps at least 2x faster than fp32 for conv4 and resnet20, and the
whole conv4 search at least 1.8x faster.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from incop.base.machine import set_threads
from incop.engine.precision import Compute
from incop.config.schema import RunConfig
from incop.data.batches import probe_from_source
from incop.data.datasets import load_splits
from incop.launch.session import experiment
from incop.runs.directory import run_path
from incop.engine.trial_inputs import TrialInputs
from incop.pruning.masks import Masks
from incop.models.architectures import build_model
from incop.base.text import format_table
from incop.engine.training import make_optimizer, train_steps

STEP_MODELS = {"lenet300": (1, 28, 28), "conv4": (1, 28, 28), "vgg16_bn": (3, 32, 32),
               "resnet20": (3, 32, 32)}
MODES = [("fp32", "off"), ("fp32", "on"), ("bf16", "off"), ("bf16", "on")]
PARITY = {"lenet300": dict(train=None, warmup=5, epochs=5),
          "conv4": dict(train=6000, warmup=3, epochs=3)}


def step_times(arch, shape, steps, warm):
    """ms per training step for every mode, the modes taking turns step by step."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, *shape, generator=g), torch.randint(0, 10, (64,), generator=g)
    runs = []
    for precision, cl in MODES:
        torch.manual_seed(0)
        model = build_model(arch, shape, 10)
        compute = Compute.for_model(torch.device("cpu"), precision, cl, model)
        compute.prepare_model(model)
        masks = Masks.ones_like(model).bind(model)
        opt = make_optimizer(model, 0.01, 0.9, 5e-4)
        stream = iter(lambda: (x, y), None)
        runs.append((model, masks, opt, stream, compute, []))
    for i in range(warm + steps):
        for model, masks, opt, stream, compute, times in runs:
            t0 = time.perf_counter()
            train_steps(model, opt, masks, stream, 1, compute=compute)
            if i >= warm:
                times.append(time.perf_counter() - t0)
    return [1000 * statistics.median(r[-1]) for r in runs]


def part_steps(args):
    rows, out = [], {}
    for arch in args.models:
        shape = STEP_MODELS[arch]
        ms = step_times(arch, shape, args.steps, args.warm_steps)
        out[arch] = dict(zip([f"{p}{'+cl' if c == 'on' else ''}" for p, c in MODES], ms))
        rows.append([arch] + [f"{m:.1f}" + ("" if i == 0 else f" ({ms[0] / m:.2f}x)")
                              for i, m in enumerate(ms)])
        print(" ".join(rows[-1]), flush=True)
    print(format_table(["model", "fp32", "fp32 + channels-last", "bf16", "bf16 + channels-last"],
                       rows, left=(0,)), flush=True)
    return out


def search(arch, method, precision, data, sizes, out):
    train, val, test, splits = data
    cfg = RunConfig()
    cfg.data.dataset, cfg.model.arch = "FashionMNIST", arch
    cfg.train.lr, cfg.train.momentum = 0.01, 0.9
    cfg.train.warmup, cfg.train.epochs = sizes["warmup"], sizes["epochs"]
    cfg.train.precision = precision
    cfg.prune.method = method
    cfg.experiment.imp_total_iter, cfg.experiment.output_dir = 4, str(out)
    cfg.experiment.run_name = f"{arch}-{method}-{precision}"
    cfg.validate()
    model = build_model(arch, splits.input_shape, splits.num_classes)

    def inputs(trial, seed):
        return TrialInputs(copy.deepcopy(model), train, val, test, probe_from_source(train, None, seed))

    exp = experiment(cfg, run_path(cfg), progress=False, echo=lambda s: None, inputs=inputs)
    t0 = time.perf_counter()
    exp.run()
    rs, warm = exp.rounds, exp.trials[0]
    wall = warm["warmup_time"] + warm["reference_time"] + sum(
        r["time_train"] + r["time_flow"] + r["time_eval"] + r["time_prune"] for r in rs)
    return {"test": rs[-1]["test_acc"], "remaining": rs[-1]["remaining_pct"],
            "epochs": sum(r["epochs"] for r in rs), "wall": wall,
            "train": warm["warmup_time"] + sum(r["time_train"] for r in rs),
            "elapsed": time.perf_counter() - t0}


def part_parity(args):
    results, rows = {}, []
    for arch in args.archs:
        sizes = PARITY[arch]
        d = load_splits("FashionMNIST", None, 6000 if not args.quick else 300, 0)
        n = sizes["train"]
        train = (d.train_x[:n], d.train_y[:n]) if n else (d.train_x, d.train_y)
        test = (d.test_x[:1000], d.test_y[:1000]) if args.quick else (d.test_x, d.test_y)
        data = (train, (d.val_x, d.val_y), test, d)
        for method in ("sap", "ciap"):
            pair = {p: search(arch, method, p, data, sizes, args.out) for p in ("fp32", "bf16")}
            results[f"{arch} {method}"] = pair
            a, b = pair["fp32"], pair["bf16"]
            d_acc, d_rem = b["test"] - a["test"], b["remaining"] - a["remaining"]
            rows.append([f"{arch} {method}", f"{a['test']:.2f}", f"{b['test']:.2f}",
                         f"{d_acc:+.2f}" + (" ok" if abs(d_acc) <= 0.3 else " MISSED"),
                         f"{a['remaining']:.2f}", f"{b['remaining']:.2f}",
                         f"{d_rem:+.2f}" + (" ok" if abs(d_rem) <= 1 else " MISSED"),
                         f"{a['wall']:.0f}", f"{b['wall']:.0f}", f"{a['wall'] / b['wall']:.2f}x"])
            print(rows[-1], flush=True)
    print(format_table(["search", "fp32 test %", "bf16 test %", "diff", "fp32 rem %",
                        "bf16 rem %", "diff", "fp32 wall s", "bf16 wall s", "speed-up"],
                       rows, left=(0,)), flush=True)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["steps", "parity"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", nargs="+", default=list(STEP_MODELS), help="models of part steps")
    ap.add_argument("--archs", nargs="+", default=list(PARITY), help="networks of part parity")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warm_steps", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("/tmp/incop_precision"))
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.warm_steps = 2, 1
        for arch in PARITY:
            PARITY[arch] = dict(train=400, warmup=1, epochs=0.5)
    threads = set_threads(args.threads)
    print(f"torch {torch.__version__}, {threads} thread(s)", flush=True)
    out = {}
    if "steps" in args.parts:
        out["steps_ms"] = part_steps(args)
    if "parity" in args.parts:
        out["parity"] = part_parity(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "precision.json").write_text(json.dumps(out, indent=2))
    print(f"results in {args.out / 'precision.json'}")


if __name__ == "__main__":
    main()
