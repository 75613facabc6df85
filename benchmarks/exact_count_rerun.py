"""python benchmarks/exact_count_rerun.py [OUT]

How often did the old floating-point SAP count remove one weight too few? Re-runs the
benchmark's LeNet-300-100 SAP searches (seed 0) with the exact count and, each round, compares it
with the old formula floor(d * clamp(1 - m/d, 0, 0.9)) on the same survivors."""
import json, math, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
import compare_methods as cm
import incop.pruning.rules as pr

orig = pr.SAP.ratio
log = []
def ratio(self, w):
    r, info = orig(self, w)
    d, m = info["survivors"], info["retain_count"]
    old = int(math.floor(d * min(max(self.gamma * (1.0 - m / d), 0.0), self.beta)))
    log.append({"d": d, "m": m, "exact": info["pruned"], "old": old})
    return r, info
pr.SAP.ratio = ratio
published = {r["method"]: r["per_seed"][0] for r in json.load(open("benchmarks/results/compare_summary.json"))["rows"] if r["arch"] == "lenet300"}
train, val, test, splits = cm.data_for("lenet300", 0)
dense, _, _ = cm.warm_up("lenet300", 0, train, val, splits)
for pq in ((1.0, 2.0), (0.5, 1.0)):
    log.clear()
    cfg = cm.config("lenet300", "sap", pq, 0, Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/exact_count_rerun"))
    exp = cm.run_method(cfg, dense, train, val, test)
    last = exp.rounds[-1]
    pub = published[f"sap ({pq[0]:g}, {pq[1]:g})"]
    print(f"sap {pq}: rounds {log}")
    print(f"  exact count: remaining {last['remaining_pct']:.4f}%, val {last['val_acc']:.2f}, test {last['test_acc']:.2f}")
    print(f"  published  : remaining {pub['remaining']:.4f}%, val {pub['val']:.2f}, test {pub['test']:.2f}")
