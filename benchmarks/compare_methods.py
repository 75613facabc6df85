"""Does InCoP find the same sparse networks as SAP for a fraction of the training?

    python benchmarks/compare_methods.py [--seeds 0 1] [--archs lenet300 conv4] [--ablation]

Runs lth, and sap, ciap and giap with (p, q) = (1, 2) and (0.5, 1), on Fashion-MNIST, with one
dense warm-up per (architecture, seed) shared by every method. Writes run directories, a report
and figures under --out, and prints the tables that BENCHMARKS.md quotes: per method, total
epochs, wall time (training / flow measuring / evaluation), final remaining weights and final
accuracy (mean ± std over seeds), and the ratios of ciap and giap to sap with the same (p, q).
With --ablation it also runs ciap and giap over epsilon grids (LeNet-300-100, first seed).

Where ciap or giap ends more than 2 points of remaining weights away from SAP, it is run again
with --prune_target_remaining set to SAP's final remaining percentage (more rounds allowed), so
the two are also compared at equal sparsity.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from incop.config.schema import RunConfig
from incop.data.batches import probe_from_source, train_batches
from incop.data.datasets import load_splits
from incop.launch.session import experiment
from incop.engine.trial_inputs import TrialInputs
from incop.engine.runtime import round_seed, seed_everything
from incop.pruning.masks import Masks
from incop.models.architectures import build_model
from incop.base.text import format_table
from incop.stopping.criteria import ValidationPlateau
from incop.engine.training import evaluate, make_optimizer, train_round

# Sizes per architecture. conv4 trains on a subset: a full conv4 epoch is about 6 minutes on
# 2 CPU cores, so the full grid would take days. Its dense warm-up trains until the validation
# accuracy plateaus (at most ``warmup`` epochs); LeNet's 15 epochs reach the usual MLP accuracy.
# The rest is the seed's protocol.
SIZES = {
    "lenet300": dict(train=None, val=6000, test=None, rounds=4, warmup=15, until_plateau=False),
    "conv4": dict(train=600, val=600, test=2000, rounds=3, warmup=150, until_plateau=True),
}
PLATEAU = dict(window=10, min_gain=0.5)  # mean val accuracy over 10 epochs gains < 0.5 points
SPARSITY_SLACK = 2.0  # points of remaining weights: beyond this, rerun at SAP's sparsity
EXTRA_ROUNDS = 3  # at SAP's sparsity, at most this many times the usual rounds
METHODS = [("lth", None), ("sap", (1.0, 2.0)), ("ciap", (1.0, 2.0)), ("giap", (1.0, 2.0)),
           ("sap", (0.5, 1.0)), ("ciap", (0.5, 1.0)), ("giap", (0.5, 1.0))]
LR, MOMENTUM, EPOCHS = 0.01, 0.9, 10


def data_for(arch: str, seed: int):
    s = SIZES[arch]
    d = load_splits("FashionMNIST", None, s["val"], seed)
    cut = lambda x, y, n: (x[:n], y[:n]) if n else (x, y)
    return cut(d.train_x, d.train_y, s["train"]), (d.val_x, d.val_y), \
        cut(d.test_x, d.test_y, s["test"]), d


def warm_up(arch: str, seed: int, train, val, splits):
    """The dense warm-up every method of this (arch, seed) starts from."""
    seed_everything(seed)
    model = build_model(arch, splits.input_shape, splits.num_classes)
    masks = Masks.ones_like(model).bind(model)
    torch.manual_seed(round_seed(seed, -1))
    gen = torch.Generator().manual_seed(round_seed(seed, -1))
    t0 = time.perf_counter()
    until = [ValidationPlateau(**PLATEAU)] if SIZES[arch].get("until_plateau") else []
    outcome = train_round(model, make_optimizer(model, LR, MOMENTUM, 5e-4), masks,
                          train_batches(train, 64, gen), val, SIZES[arch]["warmup"], until)
    return model, time.perf_counter() - t0, [(e.train_loss, e.val_acc) for e in outcome.history]


def converged(curve) -> bool:
    """Mean validation accuracy over the last 5 epochs of the warm-up is less than 1 point
    above the 5 before (means, not single epochs: on a small validation set one epoch's
    accuracy moves by points)."""
    vals = [v for _, v in curve]
    return len(vals) >= 10 and statistics.fmean(vals[-5:]) - statistics.fmean(vals[-10:-5]) < 1.0


def config(arch, method, pq, seed, out, epsilon=None, flow_stat="mean", tag="", target=None):
    cfg = RunConfig()
    cfg.data.dataset, cfg.model.arch = "FashionMNIST", arch
    cfg.train.lr, cfg.train.momentum, cfg.train.epochs, cfg.train.warmup = LR, MOMENTUM, EPOCHS, 0
    cfg.prune.method, cfg.prune.epsilon, cfg.prune.flow_stat = method, epsilon, flow_stat
    if pq:
        cfg.prune.p, cfg.prune.q = pq
    cfg.prune.target_remaining = target
    rounds = SIZES[arch]["rounds"] * (EXTRA_ROUNDS if target else 1)
    cfg.experiment.imp_total_iter, cfg.experiment.seed = rounds, seed
    cfg.experiment.output_dir = str(out)
    name = f"{method}" + (f"-p{pq[0]:g}q{pq[1]:g}" if pq else "") + tag
    cfg.experiment.run_name = f"{name}-seed{seed}"
    return cfg.validate()


def run_method(cfg, dense, train, val, test):
    from incop.runs.directory import run_path

    def inputs(trial, seed):
        return TrialInputs(copy.deepcopy(dense), train, val, test,
                           probe_from_source(train, None, seed))

    exp = experiment(cfg, run_path(cfg), progress=False, echo=lambda s: None, inputs=inputs)
    exp.run()
    return exp


def pm(values, digits=2):
    if len(values) > 1:
        return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"
    return f"{values[0]:.{digits}f}"


def totals(exp_runs):
    """Per seed: total epochs, times, final remaining and accuracy."""
    out = []
    for exp in exp_runs:
        rs = exp.rounds
        out.append({"epochs": sum(r["epochs"] for r in rs),
                    "train": sum(r["time_train"] for r in rs),
                    "flow": sum(r["time_flow"] for r in rs) + exp.trials[0]["reference_time"],
                    "eval": sum(r["time_eval"] for r in rs),
                    "prune": sum(r["time_prune"] for r in rs),
                    "remaining": rs[-1]["remaining_pct"], "val": rs[-1]["val_acc"],
                    "test": rs[-1]["test_acc"]})
        out[-1]["wall"] = out[-1]["train"] + out[-1]["flow"] + out[-1]["eval"] + out[-1]["prune"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=["lenet300", "conv4"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--ablation", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script runs")
    ap.add_argument("--sparsity_slack", type=float, default=SPARSITY_SLACK,
                    help="rerun ciap/giap at SAP's sparsity when their final remaining weights "
                    "differ from SAP's by more than this many points (default 2; -1: always)")
    ap.add_argument("--from_dirs", action="store_true",
                    help="rebuild the tables and figures from the run directories under --out")
    args = ap.parse_args()
    if args.from_dirs:
        results = load_results(args.out)
        summary = summarize(results, load_warmups(args.out), args)
        (args.out / "compare_summary.json").write_text(json.dumps(summary, indent=2))
        save_figures(results, args.out / "figures")
        return
    if args.smoke:
        global EPOCHS
        EPOCHS = 2
        for arch in SIZES:
            SIZES[arch] = dict(train=300, val=200, test=300, rounds=2, warmup=1,
                               until_plateau=SIZES[arch]["until_plateau"])
    print("command: python " + " ".join(sys.argv), flush=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; sizes {SIZES}; "
          f"lr {LR}, momentum {MOMENTUM}, at most {EPOCHS} epochs a round", flush=True)
    started = time.perf_counter()
    results, warm = {}, {}
    for arch in args.archs:
        for seed in args.seeds:
            train, val, test, splits = data_for(arch, seed)
            dense, warm_time, curve = warm_up(arch, seed, train, val, splits)
            warm[(arch, seed)] = {"val": evaluate(dense, val)[0], "test": evaluate(dense, test)[0],
                                  "time": warm_time, "curve": curve, "converged": converged(curve)}
            save_warmups(args.out, warm)
            print(f"{arch} seed {seed}: dense warm-up {len(curve)} epochs, "
                  f"val {warm[(arch, seed)]['val']:.2f}%, test {warm[(arch, seed)]['test']:.2f}% "
                  f"({warm_time:.0f} s); val accuracy over the last epochs: "
                  + ", ".join(f"{v:.1f}" for _, v in curve[-6:])
                  + ("" if converged(curve) else " -- NOT CONVERGED"), flush=True)
            grid = [(m, pq, None, "mean", "") for m, pq in METHODS]
            if args.ablation and arch == "lenet300" and seed == args.seeds[0]:
                grid += [("ciap", (1.0, 2.0), e, "mean", f"-eps{e:g}") for e in (0.08, 0.10, 0.12, 0.15)]
                grid += [("giap", (1.0, 2.0), e, "mean", f"-eps{e:g}") for e in (0.1, 0.2, 0.5)]
                grid += [("ciap", (1.0, 2.0), e, "fro", f"-fro{e:g}") for e in FRO_GRID]
            finals = {}
            for method, pq, eps, stat, tag in grid:
                exp = run_and_show(config(arch, method, pq, seed, args.out, eps, stat, tag),
                                   dense, train, val, test, results)
                finals[(method, pq, eps, stat)] = exp.rounds[-1]["remaining_pct"]
            for method, pq in METHODS:  # the same comparison at SAP's sparsity, where needed
                if method in ("ciap", "giap"):
                    sap_final = finals[("sap", pq, None, "mean")]
                    if abs(finals[(method, pq, None, "mean")] - sap_final) > args.sparsity_slack:
                        run_and_show(config(arch, method, pq, seed, args.out, tag="-atsap",
                                            target=round(sap_final, 4)),
                                     dense, train, val, test, results)
    print(f"total benchmark time {time.perf_counter() - started:.0f} s\n", flush=True)
    summary = summarize(results, warm, args)
    (args.out / "compare_summary.json").write_text(json.dumps(summary, indent=2))
    save_figures(results, args.out / "figures")


def run_and_show(cfg, dense, train, val, test, results):
    exp = run_method(cfg, dense, train, val, test)
    results.setdefault(result_key(cfg), []).append(exp)
    t = totals([exp])[0]
    print(f"  {cfg.experiment.run_name}: {t['epochs']} epochs, {t['wall']:.0f} s, "
          f"{t['remaining']:.2f}% remaining, test {t['test']:.2f}%", flush=True)
    return exp


def result_key(cfg):
    """(arch, method, (p, q) or None, epsilon, flow statistic, run at SAP's sparsity)."""
    p = cfg.prune
    pq = None if p.method == "lth" else (p.p, p.q)
    return cfg.model.arch, p.method, pq, p.epsilon, p.flow_stat, p.target_remaining is not None


def save_warmups(out: Path, warm) -> None:
    """Every dense warm-up so far (merged with earlier invocations'), for --from_dirs."""
    merged = {(w["arch"], w["seed"]): w for w in _read_warmups(out)}
    merged.update({(a, s): {"arch": a, "seed": s, **v} for (a, s), v in warm.items()})
    out.mkdir(parents=True, exist_ok=True)
    (out / "warmups.json").write_text(json.dumps(list(merged.values()), indent=1))


def _read_warmups(out: Path):
    path = out / "warmups.json"
    return json.loads(path.read_text()) if path.exists() else []


def load_warmups(out: Path):
    warm = {}
    for w in _read_warmups(out):
        w = dict(w)
        key = (w.pop("arch"), w.pop("seed"))
        w["converged"] = converged(w["curve"])
        warm[key] = w
    return warm


def load_results(out: Path):
    """Finished runs under ``out`` (written by an earlier invocation), keyed like main()'s."""
    from types import SimpleNamespace

    results = {}
    for cfg_path in sorted(out.rglob("config.json")):
        run = cfg_path.parent
        if not (run / "summary.json").exists():
            continue  # unfinished
        cfg = RunConfig.from_dict({k: v for k, v in json.loads(cfg_path.read_text()).items()
                                   if k in RunConfig.SECTIONS})
        exp = SimpleNamespace(cfg=cfg, rounds=json.loads((run / "rounds.json").read_text()),
                              trials=json.loads((run / "trials.json").read_text()))
        results.setdefault(result_key(cfg), []).append(exp)
    return results


def save_figures(results, out: Path) -> None:
    """Per architecture, the main methods with their seeds as trials: rounds and accuracy plots."""
    from incop.report.figures import accuracy_vs_remaining_figure, rounds_figure, save_figure
    from incop.runs.reading import RunData

    def run_data(exps, label):
        rounds = [{**r, "trial": i} for i, e in enumerate(exps) for r in e.rounds]
        return RunData(Path(out), exps[0].cfg.to_dict(), rounds, label=label)

    for arch in sorted({k[0] for k in results}):
        runs, equal = [], []
        for (a, method, pq, eps, stat, at_sap), exps in results.items():
            if a != arch or eps is not None:
                continue
            label = method + (f" ({pq[0]:g}, {pq[1]:g})" if pq else "")
            if at_sap:
                equal.append(run_data(exps, label + AT_SAP))
            else:
                runs.append(run_data(exps, label))
                if method == "sap":
                    equal.append(runs[-1])
        save_figure(rounds_figure(runs), out / f"{arch}_rounds.png")
        save_figure(accuracy_vs_remaining_figure(runs), out / f"{arch}_accuracy_vs_remaining.png")
        print(f"figures: {out / (arch + '_rounds.png')}, {out / (arch + '_accuracy_vs_remaining.png')}")
        if len(equal) > 2:  # SAP's two runs and at least one rerun at its sparsity
            save_figure(accuracy_vs_remaining_figure(equal), out / f"{arch}_at_sap_sparsity.png")


AT_SAP = " at SAP's sparsity"
FRO_GRID = (0.3, 0.45, 0.6)


def _seed_indices(base_exps, exps):
    """Positions in ``base_exps`` of the seeds that ``exps`` ran (pairs runs seed by seed)."""
    seeds = [b.cfg.experiment.seed for b in base_exps]
    return [seeds.index(e.cfg.experiment.seed) for e in exps]


def summarize(results, warm, args):
    rows, ratio_rows, ablation_rows, out = [], [], [], {"rows": [], "ratios": [], "ablation": []}
    for (arch, method, pq, eps, stat, at_sap), exps in results.items():
        t = totals(exps)
        label = method + (f" ({pq[0]:g}, {pq[1]:g})" if pq else "") + (AT_SAP if at_sap else "")
        col = lambda k, d=2: pm([x[k] for x in t], d)
        row = [arch, label + (f" eps={eps:g}" if eps is not None else "") + (f" {stat}" if stat != "mean" else ""),
               str(len(t)), col("epochs", 1), col("wall", 1), col("train", 1), col("flow", 1),
               col("eval", 1), col("remaining"), col("val"), col("test")]
        (ablation_rows if eps is not None else rows).append(row)
        out["ablation" if eps is not None else "rows"].append({"arch": arch, "method": label, "eps": eps,
                                                              "stat": stat, "per_seed": t})
    for (arch, method, pq, eps, stat, at_sap), exps in results.items():
        if method not in ("ciap", "giap") or eps is not None:
            continue
        base = totals([results[(arch, "sap", pq, None, "mean", False)][i] for i in
                       _seed_indices(results[(arch, "sap", pq, None, "mean", False)], exps)])
        mine = totals(exps)
        r_ep = statistics.fmean(m["epochs"] / b["epochs"] for m, b in zip(mine, base))
        r_wall = statistics.fmean(m["wall"] / b["wall"] for m, b in zip(mine, base))
        d_acc = statistics.fmean(m["test"] - b["test"] for m, b in zip(mine, base))
        d_rem = statistics.fmean(m["remaining"] - b["remaining"] for m, b in zip(mine, base))
        hit = lambda ok: "yes" if ok else "NO"
        ratio_rows.append([arch, f"{method} ({pq[0]:g}, {pq[1]:g})" + (AT_SAP if at_sap else ""),
                           f"{r_ep:.3f}", hit(r_ep <= 0.25),
                           f"{r_wall:.3f}", hit(r_wall <= 1 / 3), f"{d_acc:+.2f}", hit(abs(d_acc) <= 0.5),
                           f"{d_rem:+.2f}", hit(abs(d_rem) <= 2)])
        out["ratios"].append(dict(zip(["arch", "method", "epochs_ratio", "epochs_ok", "wall_ratio",
                                       "wall_ok", "test_diff", "acc_ok", "remaining_diff",
                                       "sparsity_ok"], ratio_rows[-1])))
    head = ["arch", "method", "seeds", "epochs", "wall s", "train s", "flow s", "eval s",
            "remaining %", "val acc %", "test acc %"]
    print(format_table(head, rows))
    print()
    print(format_table(["arch", "method", "epochs / sap", "<= 1/4", "wall / sap", "<= 1/3",
                        "test - sap", "within 0.5", "remaining - sap", "within 2"], ratio_rows))
    if ablation_rows:
        print("\nepsilon ablation (first seed only)")
        print(format_table(head, ablation_rows))
    out["warmup"] = [{"arch": a, "seed": s, **v} for (a, s), v in warm.items()]
    if warm:
        print("\ndense warm-ups: " + "; ".join(
            f"{a} seed {s}: val {v['val']:.2f}, test {v['test']:.2f}"
            + ("" if v["converged"] else " (NOT CONVERGED)") for (a, s), v in warm.items()))
    out["sizes"], out["lr"], out["momentum"], out["max_epochs"] = SIZES, LR, MOMENTUM, EPOCHS
    return out


if __name__ == "__main__":
    main()
