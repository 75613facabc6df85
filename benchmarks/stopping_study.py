"""Does the stopping signal matter? InCoP's criteria against budget-matched fixed baselines.

    python benchmarks/stopping_study.py [--nets lenet300 conv4] [--regimes A B C] [--seeds 0 1 2]
                                        [--out output/stopping_study] [--threads N] [--quick]
    python benchmarks/stopping_study.py --report [--out ...] [--merge DIR ...]  # tables, figures

Every method uses the SAP (1, 2) rule and prunes to the same final remaining percentage
(--prune_target_remaining), so only the stopping differs:
  sap-E10     SAP, a fixed 10 epochs per round (the reference)
  fixed-1     SAP, a fixed 1 epoch per round (the budget floor)
  ciap, giap, mask_stability, loss_recovery   adaptive, at most the regime's epochs per round,
              asked every epoch and (suffix @0.25ep) every quarter epoch
  fixed-k     SAP, a fixed k epochs per round, k = an adaptive method's mean epochs per round
              (rounded to 0.25), run after the adaptive ones (budget-matched)
  lth         20% per layer per round, 10 epochs per round, for reference
Regimes: A fine-tuning (rewind to the end of a converged warm-up), B lottery ticket (rewind to
the first epoch of the warm-up, at most 20 epochs per round), C the seed's settings (warm-up
10, at most 20 epochs per round, lr 0.01, no momentum). Each run retrains its final mask from
the rewind point for the same --ticket_epochs (the ticket). Runs are ordinary run directories
under --out; a finished one is read back, an interrupted one resumes, so the study can stop and
go on, and run in parts (--nets / --regimes / --seeds select a part). stopping_report.py turns
study.json into BENCHMARKS.md's tables, answers and figures.

Why this is not ``incop frontier``. The frontier (docs/frontier.md) runs ciap, giap and fixed-K
as recipes and judges every mask the same way, so ``incop frontier --recipes reference fixed-0.25
fixed-1 ciap giap`` (docs/stopping.md has the full command) answers the study's question for
those two criteria at one check interval; this script reads its runs through the frontier's own
``measure`` (incop.launch.frontier). What the frontier cannot run, and this study measures:
  - mask_stability and loss_recovery: no recipe names them, and the frontier sets every
    recipe's --stop_criterion to its own (launch/frontier.py, recipe_config), so a criterion
    given on its command line is not run;
  - each criterion asked every epoch and every quarter epoch side by side (--check_every is
    shared by all of a frontier's recipes);
  - a criterion allowed more epochs a round than the reference trains (regimes B and C: at most
    20 against SAP's 10; the frontier caps ciap and giap at the reference's --net_train_epochs);
  - each criterion's budget-matched fixed-k, derived from its measured epochs a round and run
    after it, and the verdict against it beyond the seed-to-seed spread, with how often the
    criterion fired at its first check (the frontier's verdict is the cheapest recipe within a
    tolerance of the reference; its figure draws a Pareto front, this study's the fixed budgets
    as a line to read each criterion against);
  - a network cut to fewer training and test samples (conv4 on 1,000), which no run flag sets.
Retire it once recipes can name a criterion and a check interval and the frontier can derive
matched budgets.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch

from incop.config.schema import RunConfig
from incop.data.batches import probe_from_source
from incop.data.datasets import load_raw
from incop.launch.session import experiment
from incop.engine.trial_inputs import TrialInputs, registry_inputs
from incop.launch.frontier import measure as frontier_measure
from incop.runs.directory import run_path
from incop.runs.reading import RunData, load_run
from stopping_report import matched_name, report  # beside this file

ADAPTIVE = ["ciap", "giap", "mask_stability", "loss_recovery"]
REFERENCE_EPOCHS = 10  # SAP's fixed epochs per round


@dataclass
class Regime:
    warmup: int
    rewind_to: str
    max_epochs: float
    lr: float
    momentum: float
    what: str


REGIMES = {
    "A": Regime(10, "warmup", 10, 0.01, 0.9, "fine-tuning: rewind to the end of the warm-up"),
    "B": Regime(10, "1ep", 20, 0.01, 0.9, "lottery ticket: rewind to epoch 1 of the warm-up"),
    "C": Regime(10, "warmup", 20, 0.01, 0.0, "the seed's settings (lr 0.01, no momentum)"),
}


@dataclass
class Net:
    dataset: str
    train: Optional[int]  # training samples kept (None: the whole training split)
    test: Optional[int]
    target: float  # final remaining %
    seeds: List[int]
    val: float = 0.1  # --net_val_size: a fraction of the training data or a sample count
    ticket_epochs: float = 10
    precision: str = "fp32"
    max_rounds: int = 12
    skip: List[str] = field(default_factory=list)  # methods left out (to fit the CPU budget)
    regime_override: Dict[str, dict] = field(default_factory=dict)


NETS = {
    "lenet300": Net("FashionMNIST", None, None, 20.0, [0, 1, 2]),
    # conv4, cut to fit about 1.5 h a regime on 2 cores (6000 samples measured ~8 h a part): 1000
    # training, 500 validation and 1000 test samples; no @0.25ep variants, no mask_stability
    # (it never fired under a constant lr with momentum on LeNet, so it ran as sap-E10), no lth.
    # fp32, because bf16 is 3-13x slower than fp32 on this AVX2 CPU (results/precision_*_avx2.txt).
    "conv4": Net("FashionMNIST", 1000, 1000, 30.0, [0, 1], val=500,
                 skip=["mask_stability"] + [c + "@0.25ep" for c in ADAPTIVE] + ["lth"]),
}
QUICK = {"lenet300": Net("digits", None, None, 50.0, [0], ticket_epochs=1, max_rounds=4,
                         regime_override={r: dict(warmup=2, max_epochs=2) for r in REGIMES})}
QUICK["lenet300"].regime_override["B"]["rewind_to"] = "5it"


def method_specs(regime: Regime, quick: bool, skip=()) -> List[dict]:
    """The runs that do not depend on others' results, in order (less the ones in ``skip``)."""
    ref = 2 if quick else REFERENCE_EPOCHS
    specs = [dict(name=f"sap-E{ref:g}", method="sap", epochs=ref),
             dict(name="fixed-1", method="sap", epochs=1)]
    for every in ("1ep", "0.25ep"):
        for crit in ADAPTIVE:
            base = dict(method=crit) if crit in ("ciap", "giap") else dict(method="sap", criterion=crit)
            specs.append(dict(name=crit + ("" if every == "1ep" else "@" + every),
                              epochs=regime.max_epochs, check_every=every, adaptive=True, **base))
    specs.append(dict(name="lth", method="lth", epochs=ref))
    return [s for s in specs if s["name"] not in skip]


def matched_specs(results: List[dict], done: set) -> List[dict]:
    """Fixed-k runs for each adaptive method's mean epochs per round not yet covered."""
    out = []
    for r in results:
        if not r.get("adaptive"):
            continue
        name = matched_name(r)
        if name not in done and name not in {s["name"] for s in out}:
            out.append(dict(name=name, method="sap", epochs=float(name[len("fixed-"):]),
                            matched=True))
    return out


def make_config(net: str, spec: Net, regime_name: str, seed: int, run: dict, out: Path,
                quick: bool) -> RunConfig:
    regime = REGIMES[regime_name]
    over = spec.regime_override.get(regime_name, {})
    cfg = RunConfig()
    cfg.data.dataset, cfg.model.arch, cfg.data.val_size = spec.dataset, net, spec.val
    cfg.train.lr, cfg.train.momentum = regime.lr, regime.momentum
    cfg.train.warmup = over.get("warmup", regime.warmup)
    cfg.train.rewind_to = over.get("rewind_to", regime.rewind_to)
    cfg.train.epochs = min(run["epochs"], over.get("max_epochs", run["epochs"]))
    cfg.train.ticket_epochs, cfg.train.precision = spec.ticket_epochs, spec.precision
    cfg.prune.method, cfg.prune.p, cfg.prune.q = run["method"], 1.0, 2.0
    cfg.prune.criterion = run.get("criterion")
    cfg.prune.check_every = run.get("check_every", "1ep")
    cfg.prune.target_remaining = spec.target
    cfg.experiment.imp_total_iter = spec.max_rounds
    cfg.experiment.seed, cfg.experiment.allow_untrained = seed, quick
    cfg.experiment.output_dir = str(out / net / regime_name)
    # a cut's sizes name the run: the config's hash does not see the samples the study keeps
    cut = "" if spec.train is None else f"-n{spec.train}v{spec.val:g}t{spec.test}"
    cfg.experiment.run_name = f"{run['name']}-seed{seed}{cut}"
    return cfg.validate()


def inputs_factory(cfg: RunConfig, spec: Net):
    raw = load_raw(cfg.data.dataset, cfg.data.data_dir)

    def inputs(trial: int, seed: int) -> TrialInputs:
        full = registry_inputs(cfg, raw, torch.device("cpu"), seed)
        cut = lambda pair, n: (pair[0][:n], pair[1][:n]) if n and pair else pair
        train = cut(full.train, spec.train)
        # the flow probe comes from the training samples kept, sized by the engine's own rule
        probe = full.probe if spec.train is None else \
            probe_from_source(train, cfg.prune.flow_probe_size, seed)
        return TrialInputs(full.model, train, full.val, cut(full.test, spec.test), probe)
    return inputs


def measure(run: RunData) -> dict:
    """What the study compares, from a finished run directory: incop frontier's measure (one
    code path), with the flows' dense reference counted in the wall time as the study always
    has, and the run's own ticket."""
    m = frontier_measure(run)
    ticket = run.tickets[0] if run.tickets else {}
    return {**m, "search_wall_s": m["search_wall_s"] + m["reference_s"],
            "ticket_test_acc": ticket.get("test_acc"), "ticket_val_acc": ticket.get("val_acc"),
            "warmup_val_acc": run.trials[0]["warmup_val_acc"]}


def run_one(net: str, spec: Net, regime: str, seed: int, run: dict, out: Path, quick: bool,
            log) -> dict:
    cfg = make_config(net, spec, regime, seed, run, out, quick)
    run_dir = run_path(cfg)
    done = run_dir / "summary.json"
    if not (done.exists() and json.loads(done.read_text()).get("complete")):
        t0 = time.perf_counter()
        experiment(cfg, run_dir, progress=False, echo=lambda s: None,
                   inputs=inputs_factory(cfg, spec)).run()
        log(f"  {net} {regime} seed {seed} {run['name']}: {time.perf_counter() - t0:.0f} s")
    row = {"net": net, "regime": regime, "seed": seed, "name": run["name"],
           "adaptive": bool(run.get("adaptive")), "matched": bool(run.get("matched")),
           "run_dir": str(run_dir), **measure(load_run(run_dir))}
    return row


def run_part(net: str, regime: str, seed: int, out: Path, quick: bool, log) -> List[dict]:
    spec = (QUICK if quick else NETS)[net]
    specs = method_specs(REGIMES[regime], quick, spec.skip)
    rows = [run_one(net, spec, regime, seed, s, out, quick, log) for s in specs]
    done = {r["name"] for r in rows}
    rows += [fixed_twin(s, specs, rows) or run_one(net, spec, regime, seed, s, out, quick, log)
             for s in matched_specs(rows, done)]
    return rows


def fixed_twin(spec: dict, specs: List[dict], rows: List[dict]) -> Optional[dict]:
    """The row of a run already made with ``spec``'s settings under another name (an adaptive
    run averaging the reference's 10 epochs asks for fixed-10, which is sap-E10), renamed,
    instead of training the same configuration again."""
    for s, r in zip(specs, rows):
        if s["method"] == spec["method"] and float(s["epochs"]) == float(spec["epochs"]) \
                and not s.get("adaptive") and not s.get("criterion"):
            return {**r, "name": spec["name"], "matched": True, "same_run_as": r["name"]}
    return None


def save_rows(out: Path, rows: List[dict]) -> None:
    path = out / "study.json"
    old = json.loads(path.read_text()) if path.exists() else []
    key = lambda r: (r["net"], r["regime"], r["seed"], r["name"])
    merged = {key(r): r for r in old}
    merged.update({key(r): r for r in rows})
    path.write_text(json.dumps(sorted(merged.values(), key=key), indent=1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", nargs="+", default=["lenet300", "conv4"], choices=sorted(NETS))
    ap.add_argument("--regimes", nargs="+", default=["A", "B", "C"], choices=sorted(REGIMES))
    ap.add_argument("--seeds", nargs="+", type=int, help="default: each network's own seeds")
    ap.add_argument("--out", type=Path, default=Path("output/stopping_study"))
    ap.add_argument("--threads", type=int, help="compute threads (default: torch's)")
    ap.add_argument("--quick", action="store_true", help="lenet300 on digits, tiny budgets (tests)")
    ap.add_argument("--report", action="store_true", help="tables and figures from study.json only")
    ap.add_argument("--merge", nargs="+", type=Path, default=[], metavar="DIR",
                    help="first add the rows of these study folders' study.json (parts run apart)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    log = lambda s: print(s, file=sys.stderr, flush=True)
    for other in args.merge:
        save_rows(args.out, json.loads((other / "study.json").read_text()))
    if not args.report:
        nets = ["lenet300"] if args.quick else args.nets
        t0 = time.perf_counter()
        for net in nets:
            spec = (QUICK if args.quick else NETS)[net]
            for regime in args.regimes:
                for seed in args.seeds or spec.seeds:
                    save_rows(args.out, run_part(net, regime, seed, args.out, args.quick, log))
        log(f"study part done in {time.perf_counter() - t0:.0f} s")
    print(report(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
