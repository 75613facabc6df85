"""Where a ciap round's time goes on the comparison benchmark's conv4 configuration (600
training samples, 600 validation, 2,000 test, warm-up until the validation accuracy plateaus,
3 rounds): training, flow measuring, evaluation and pruning, summed over the rounds. Target (the
speed issue): training is at least 60% of the rounds' wall time.

    python benchmarks/round_time_split.py [--arch conv4] [--seed 0] [--out output/time_split]
"""
import argparse
from pathlib import Path

from compare_methods import config, data_for, run_method, warm_up  # beside this file

PARTS = ("time_train", "time_flow", "time_eval", "time_prune")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="conv4")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("output/time_split"))
    args = ap.parse_args()
    train, val, test, splits = data_for(args.arch, args.seed)
    dense, warm_time, curve = warm_up(args.arch, args.seed, train, val, splits)
    print(f"warm-up: {len(curve)} epochs, {warm_time:.1f} s, val {curve[-1][1]:.2f}%")
    exp = run_method(config(args.arch, "ciap", (1.0, 2.0), args.seed, args.out), dense, train,
                     val, test)
    totals = {p: sum(r[p] for r in exp.rounds) for p in PARTS}
    wall = sum(totals.values())
    for r in exp.rounds:
        print(f"round {r['round']}: " + ", ".join(f"{p[5:]} {r[p]:.2f} s" for p in PARTS))
    print("total: " + ", ".join(f"{p[5:]} {v:.2f} s ({100 * v / wall:.1f}%)" for p, v in totals.items()))
    share = 100 * totals["time_train"] / wall
    print(f"training is {share:.1f}% of the rounds' wall time (target >= 60%): "
          + ("met" if share >= 60 else "MISSED"))


if __name__ == "__main__":
    main()
