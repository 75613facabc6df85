"""Calibrate giap's relative gradient-flow epsilon on Fashion-MNIST (LeNet-300-100).

    python benchmarks/calibrate_giap.py [--epsilons 0.05 0.1 0.2 0.3 0.5] [--seed 0]

Runs SAP (fixed epochs) and giap at each epsilon with the same seed and sizes, plus giap with
epsilon 0 (never stops early) to record the full distance trajectory. Prints, per epsilon, total
epochs, final remaining weights and final validation / test accuracy, and, from the trajectory,
the median distance after each epoch. Pick the largest-saving epsilon whose accuracy stays with SAP's.
"""
import argparse
import statistics

from incop.config.schema import RunConfig
from incop.engine.imp import IMPExperiment
from incop.base.text import format_table

COMMON = dict(arch="lenet300", lr=0.01, momentum=0.9, warmup=15, epochs=10, rounds=6)


def config(method, seed, epsilon=None):
    cfg = RunConfig()
    cfg.data.dataset, cfg.model.arch = "FashionMNIST", COMMON["arch"]
    cfg.train.lr, cfg.train.momentum = COMMON["lr"], COMMON["momentum"]
    cfg.train.warmup, cfg.train.epochs = COMMON["warmup"], COMMON["epochs"]
    cfg.experiment.imp_total_iter, cfg.experiment.seed = COMMON["rounds"], seed
    cfg.prune.method, cfg.prune.epsilon = method, epsilon
    return cfg.validate()


def run(cfg):
    exp = IMPExperiment(cfg, progress=False, echo=lambda s: None)
    exp.run()
    return exp


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epsilons", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3, 0.5])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"settings: {COMMON}, seed {args.seed}", flush=True)
    rows = []
    for label, cfg in [("sap", config("sap", args.seed)), ("giap eps=0", config("giap", args.seed, 0.0))] + \
            [(f"giap eps={e:g}", config("giap", args.seed, e)) for e in args.epsilons]:
        exp = run(cfg)
        last = exp.rounds[-1]
        rows.append([label, str(sum(r["epochs"] for r in exp.rounds)), f"{last['remaining_pct']:.2f}",
                     f"{last['val_acc']:.2f}", f"{last['test_acc']:.2f}",
                     f"{sum(r['time_train'] + r['time_flow'] + r['time_eval'] for r in exp.rounds):.0f}"])
        print(" | ".join(rows[-1]), flush=True)
        if label == "giap eps=0":
            by_epoch = {}
            for e in exp.epochs:
                if e["round"] > 0:
                    by_epoch.setdefault(e["epoch"], []).append(e["distance"])
            starts = [r["start_distance"] for r in exp.rounds if r["round"] > 0]
            print("distance before the first epoch (rounds 1+): median "
                  f"{statistics.median(starts):.3f}, range {min(starts):.3f}-{max(starts):.3f}")
            print("median distance after epoch: " + ", ".join(
                f"{k}: {statistics.median(v):.3f}" for k, v in sorted(by_epoch.items())), flush=True)
    print(format_table(["run", "epochs", "remaining %", "val %", "test %", "time s"], rows))


if __name__ == "__main__":
    main()
