"""Command line: ``incop run`` with the seed's flags, and the other subcommands, one entry each
of ``COMMANDS`` (its arguments and its handler). The arguments are parsed once; the run
settings given (a --config file's, then the command line's) become one typed configuration.

Every bad input becomes one line on stderr and exit status 2 (no traceback)."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

from .base.errors import UsageError
from .base.paths import expand_path
from .base.text import duration
from .config.files import read_config_file
from .config.flags import (add_config_flags, config_from_settings, file_settings,
                           in_field_order, is_list_flag)
from .config.recipes import GMP_EPOCHS, frontier_names, names_text
from .config.schema import flag_name

PROG = "incop"
Settings = Dict[str, Any]  # run settings given, ``section.field`` -> value


class _Parser(argparse.ArgumentParser):
    """One-line errors, and no abbreviated flags: ``--net_train 3`` is refused rather than read
    as ``--net_train_epochs 3`` (a later flag could make any abbreviation mean another one)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str) -> None:  # argparse prints usage + message; we want one line
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        ns, extra = self.parse_known_args(args, namespace)
        if extra:  # the subcommand's help is where the flags that do exist are listed
            command = getattr(ns, "command", None)
            prog = f"{self.prog} {command}" if command in COMMANDS else self.prog
            raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see '{prog} --help')")
        return ns


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, from the table of subcommands (``COMMANDS``). The run settings'
    flags have no defaults here, so what a namespace holds is what the command line gave: the
    defaults are the configuration's own (:func:`_settings`)."""
    parser = _Parser(prog=PROG, description="Iterative magnitude pruning with InCoP stopping "
                     "(lth, sap, ciap/incop-if, giap/incop-gf).")
    from .base.version import __version__

    parser.add_argument("--version", action="version", version=f"incop {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for c in COMMANDS.values():
        c.arguments(sub.add_parser(c.name, help=c.help, description=c.description))
    return parser


def _path(what: str) -> Callable[[str], str]:
    """A path argument with ``~`` and ``$VARS`` expanded, as config values' are."""
    return lambda text: expand_path(text, what)


def _run_arguments(run: argparse.ArgumentParser) -> None:
    add_config_flags(run)
    run.add_argument("--print_config", action="store_true", help="print the effective "
                     "configuration (JSON, with the per-method defaults resolved) and exit")


def _sweep_arguments(sweep: argparse.ArgumentParser) -> None:
    add_config_flags(sweep, multi=True)
    sweep.add_argument("--pq", nargs="+", metavar="P,Q", type=_pq_pair,
                       help="(p, q) pairs, e.g. --pq 1,2 0.5,1 (overrides --prune_p/--prune_q; "
                       "lth runs once)")
    add_launcher_flags(sweep)


# the run settings incop frontier sets itself: why, and what to do instead (its help hides them)
_RECIPES_OWN = "runs recipes that each bring their own pruning and stopping rules and schedule"
_GMP_OWN = ("runs GMP as its recipes gmp and gmp-E (or gmp-P%), which set their own pruning "
            "schedule and learning rate")
FRONTIER_REFUSES = {
    "prune.method": ("takes the reference's method from --reference", " (--reference sap or lth)"),
    "prune.recipe": ("runs several recipes", " and name them with --recipes"),
    "prune.rule": (_RECIPES_OWN, ""),
    "prune.criterion": (_RECIPES_OWN, " (to compare stopping rules, name their recipes: "
                                      "--recipes ciap giap)"),
    "prune.schedule": (_RECIPES_OWN, " (equal steps: name a recipe with xN, e.g. allr-2x6)"),
    "prune.steps": (_RECIPES_OWN, " (equal steps: name a recipe with xN, e.g. allr-2x6)"),
    "prune.gmp_start": (_GMP_OWN, ""), "prune.gmp_end": (_GMP_OWN, ""),
    "prune.gmp_every": (_GMP_OWN, ""), "prune.gmp_lr": (_GMP_OWN, ""),
    "experiment.seed": ("runs every seed of --seeds", " (e.g. --seeds 5)"),
    "experiment.num_trial": ("runs one trial a seed", " and give --seeds 0 1 2"),
    "experiment.run_name": ("names each run after its recipe and seed", ""),
}
# what a run flag means in incop frontier, where it differs from incop run
FRONTIER_HELP = {
    "train.epochs": "the reference's epochs a round (default 20); a budgeted recipe brings its "
                    "own",
    "train.ticket_epochs": "epochs of training that judge each final mask, from the reference's "
                           "rewind point (default: --net_train_epochs)",
}


def _frontier_arguments(fr: argparse.ArgumentParser) -> None:
    add_config_flags(fr, hidden=tuple(FRONTIER_REFUSES), helps=FRONTIER_HELP)
    fr.add_argument("--recipes", nargs="+", metavar="NAME", help=f"reference, {names_text()}; "
                    f"gmp-P%%: GMP* over P%% of each seed's reference search epochs "
                    f"(default: reference, {', '.join(frontier_names())}; incop list shows "
                    f"their settings)")
    fr.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default 0 1 2)")
    fr.add_argument("--reference", default="sap", help="the reference method: sap or lth")
    fr.add_argument("--tolerance", type=float, default=0.3, help="points of ticket test "
                    "accuracy below the reference's that still count as as good (default 0.3)")
    fr.add_argument("--gmp_epochs", type=float, default=GMP_EPOCHS, help="the GMP recipe's run "
                    f"length in epochs (default {GMP_EPOCHS:g}; it prunes from 1/8 to 3/4 of it)")
    fr.add_argument("--quick", action="store_true", help="LeNet-300-100 on digits with tiny "
                    "budgets and one seed (seconds; what the tests run); the run flags you give "
                    "override its settings")
    add_launcher_flags(fr)


def _report_arguments(rep: argparse.ArgumentParser) -> None:
    rep.add_argument("runs", nargs="+", metavar="RUN_DIR", type=_path("RUN_DIR"),
                     help="run directories, or folders (a sweep's output) whose runs are all "
                     "compared")
    rep.add_argument("--output", default="report", type=_path("--output"), help="where "
                     "report.md, report.csv and the figures go (default: report)")


def _export_arguments(exp: argparse.ArgumentParser) -> None:
    exp.add_argument("run", metavar="RUN_DIR", type=_path("RUN_DIR"), help="the run directory "
                     "(incop run prints it)")
    exp.add_argument("--format", required=True, help="dense (state dict with zeros), torch_prune "
                     "(weight_orig / weight_mask), sparse (incop.load_sparse) or onnx (checked "
                     "in onnxruntime; pip install 'incop[export]')")
    exp.add_argument("--output", required=True, type=_path("--output"), help="file to write")
    exp.add_argument("--trial", type=int, default=0, help="which trial's network (default 0; "
                     "--exper_num_trial made 0, 1, ...)")
    exp.add_argument("--round", type=int, default=None, help="round (default: the last saved)")
    exp.add_argument("--ticket", action="store_true", help="the ticket (--ticket_epochs runs)")


def _ablate_arguments(abl: argparse.ArgumentParser) -> None:
    abl.add_argument("runs", nargs="+", metavar="RUN_DIR", type=_path("RUN_DIR"),
                     help="run directories, or folders (a sweep's output) whose finished runs "
                     "with a ticket are ablated")
    abl.add_argument("--random_prune", action="store_true", help="a random mask, same counts")
    abl.add_argument("--random_reinit", action="store_true", help="the ticket's mask, new weights")
    abl.add_argument("--trials", type=int, default=1, help="ablation runs of each kind per ticket, "
                     "each with its own seed (default 1; 3 or more to judge a gap)")
    abl.add_argument("--trial", type=int, default=None, help="only this search trial's ticket")
    abl.add_argument("--quiet", action="store_true", help="no progress bar")


def _speed_arguments(spd: argparse.ArgumentParser) -> None:
    spd.add_argument("run", metavar="RUN_DIR", type=_path("RUN_DIR"), help="the run directory "
                     "whose saved rounds are timed")
    spd.add_argument("--trial", type=int, default=0, help="which trial's rounds (default 0)")
    spd.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256], help="batch sizes "
                     "to time (default 1 64 256)")
    spd.add_argument("--threads", type=int, nargs="+", default=None,
                     help="thread counts (default: 1 and all available cores)")
    spd.add_argument("--repeats", type=int, default=20, help="timed runs per case (median)")
    spd.add_argument("--rounds", nargs="+", metavar="K", help="the saved rounds to time: "
                     "numbers, or last (default: every saved round)")
    spd.add_argument("--quiet", action="store_true", help="no progress bar")


def add_launcher_flags(parser: argparse.ArgumentParser) -> None:
    """How a sweep's or a frontier's runs are started: here, or as Slurm jobs."""
    parser.add_argument("--launcher", default="local", help="local (default) or slurm")
    parser.add_argument("--no_wait", action="store_true", help="return once the jobs are "
                        "submitted (slurm); run the same command again later to read them")
    local = parser.add_argument_group("local launcher")
    local.add_argument("--workers", type=int, default=1, help="local processes (default 1)")
    slurm = parser.add_argument_group("slurm launcher (one job per run, as a job array)")
    slurm.add_argument("--slurm_partition", help="partition (default: the cluster's default)")
    slurm.add_argument("--slurm_gpus_per_task", type=int, help="GPUs per job")
    slurm.add_argument("--slurm_cpus_per_task", type=int, default=1, help="CPUs per job; torch "
                       "uses that many threads (default 1)")
    slurm.add_argument("--slurm_mem", help="memory per job, e.g. 16G")
    slurm.add_argument("--slurm_time", default="4:00:00", help="time limit per job, in Slurm's "
                       "format (default 4:00:00); a job that reaches it is requeued and resumes")
    slurm.add_argument("--slurm_setup", nargs="+", metavar="LINE", help="shell lines run before "
                       "each job, e.g. 'module load cuda' 'source ~/venv/bin/activate'")


def _cmd_frontier(ns: argparse.Namespace, given: Settings) -> int:
    from .launch.frontier import DEFAULT_RECIPES, QUICK, Settings, run_frontier
    from .launch.launchers import LAUNCHERS

    from .base.machine import set_threads

    for key, (why, instead) in FRONTIER_REFUSES.items():
        if given.get(key) is not None:
            raise UsageError(f"incop frontier {why}, so {flag_name(key)} would be ignored: "
                             f"drop it{instead}")
    if ns.reference not in ("sap", "lth"):
        raise UsageError(f"--reference {ns.reference}: choose sap or lth (standard IMP)")
    # the shared settings are the reference's; --quick's are defaults, under the user's
    base = config_from_settings({**(QUICK if ns.quick else {}), **given,
                                 "prune.method": ns.reference})
    set_threads(base.experiment.threads)  # the judged tickets train here, as the runs do
    target = base.prune.target_remaining
    if target is None:
        raise UsageError("incop frontier compares recipes at one sparsity: give "
                         "--prune_target_remaining (e.g. 5)")
    if not (ns.tolerance >= 0 and ns.gmp_epochs > 0):
        raise UsageError("--tolerance must be 0 or more points and --gmp_epochs positive")
    ticket = base.train.ticket_epochs or base.train.epochs
    keep_at = tuple(base.prune.keep_at or ())
    settings = Settings(ns.reference, base.train.epochs, target, ticket,
                        2.0 if ns.quick else ns.gmp_epochs, 5 if ns.quick else 20, keep_at)
    seeds = ns.seeds or ([0] if ns.quick else [0, 1, 2])
    out = (Path(base.experiment.output_dir) / "frontier" / base.model.arch / base.data.dataset
           / ("target" + "-".join(f"{t:g}" for t in (*keep_at, target))))
    launcher = LAUNCHERS.get(ns.launcher, "--launcher").from_options(ns)
    try:
        run_frontier(base, ns.recipes or list(DEFAULT_RECIPES), seeds, settings, out, launcher,
                     wait=not ns.no_wait, tolerance=ns.tolerance,
                     progress=False if ns.quiet else None)
    except KeyboardInterrupt:
        print(f"{PROG}: frontier stopped; finished runs and judged tickets are kept in {out}; "
              f"run the same command again to go on", file=sys.stderr)
        return 130
    return 0


def _cmd_export(ns: argparse.Namespace, given: Settings) -> int:
    from .deploy.export import export_run

    info = export_run(Path(ns.run), ns.output, ns.format, ns.trial, ns.round, ns.ticket)
    what = "ticket" if info["ticket"] else f"round {info['round']}"
    extra = f"; onnxruntime matches PyTorch within {info['max_abs_diff']:.1e}" \
        if "max_abs_diff" in info else ""
    print(f"wrote {info['path']} ({ns.format}): trial {info['trial']} {what}, "
          f"{info['remaining_pct']:.2f}% of the weights remaining{extra}")
    return 0


def _cmd_ablate(ns: argparse.Namespace, given: Settings) -> int:
    from .launch.ablate import ablate_run, ablation_targets, parse_kinds

    runs = ablation_targets(ns.runs)  # all found before any training
    for run in runs:
        if len(runs) > 1:
            print(f"== {run}")
        try:
            ablate_run(run, parse_kinds(ns.random_prune, ns.random_reinit), ns.trials,
                       ns.trial, progress=False if ns.quiet else None)
        except KeyboardInterrupt:
            print(f"{PROG}: stopped; the finished ablations are saved in {run}; run the same "
                  f"command again to resume", file=sys.stderr)
            return 130
        print(f"ablations.json, ablations.csv and figures/ablations.png in {run}")
    return 0


def _cmd_speed(ns: argparse.Namespace, given: Settings) -> int:
    from .deploy.timing import speed_run

    if ns.repeats < 1 or any(b < 1 for b in ns.batches):
        raise UsageError("--repeats and --batches must be at least 1")
    speed_run(Path(ns.run), ns.trial, ns.batches, ns.threads, ns.repeats, progress=not ns.quiet,
              rounds=ns.rounds)
    print(f"speed.json, speed.csv, speed_layers.csv and figures/speedup.png in {ns.run}")
    return 0


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into the same clean stop as Ctrl-C."""


def _on_sigterm(signum, frame) -> None:
    raise _Terminated()


def _cmd_run(ns: argparse.Namespace, given: Settings) -> int:
    from .launch.session import experiment
    from .runs.directory import run_path

    from .base.machine import load_warning, set_threads
    from .config.files import printable_config, resolved_defaults

    cfg = config_from_settings(given)
    if cfg.experiment.download:
        from .data.downloads import download

        download(cfg.data.dataset, cfg.data.data_dir, progress=not ns.quiet)
    if ns.print_config:
        print(printable_config(cfg, resolved_defaults(cfg)))
        return 0
    warning = load_warning(threads=set_threads(cfg.experiment.threads))
    if warning and sys.stderr.isatty():  # for the person who started the competing processes;
        print(f"{PROG}: {warning}", file=sys.stderr)  # a script reading stderr is not told
    exp = experiment(cfg, run_path(cfg), progress=False if ns.quiet else None)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        exp.run()
    except KeyboardInterrupt as e:
        name = "SIGTERM" if isinstance(e, _Terminated) else "SIGINT"
        print(f"{PROG}: stopped by {name}; {len(exp.rounds)} completed round(s) are saved in "
              f"{exp.run_dir.path}; run the same command again to resume", file=sys.stderr)
        return 143 if name == "SIGTERM" else 130
    except BrokenPipeError:  # e.g. incop run ... | head: what reads the output left
        sys.stdout = open(os.devnull, "w")
        print(f"{PROG}: stopped: the program reading the output closed it; {len(exp.rounds)} "
              f"completed round(s) are saved in {exp.run_dir.path}; run the same command again "
              f"to resume", file=sys.stderr)
        return 141
    except OSError as e:
        raise UsageError(f"cannot write results in {exp.run_dir.path}: {e.strerror or e}; free "
                         f"space or fix permissions (or pick another --output_dir), then run the "
                         f"same command again to resume") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _pq_pair(text: str):
    try:
        p, q = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a P,Q pair such as 1,2") from None
    return p, q


def _cmd_sweep(ns: argparse.Namespace, given: Settings) -> int:
    from .report.comparison import report_text, write_report
    from .runs.reading import find_runs
    from .launch.launchers import LAUNCHERS
    from .launch.grid import expand_grid

    values = {k: (v if isinstance(v, list) and not is_list_flag(k) else [v])
              for k, v in in_field_order(given).items()}  # the grid's order, whatever the argv's
    launcher = LAUNCHERS.get(ns.launcher, "--launcher").from_options(ns)
    configs = expand_grid(values, ns.pq)
    if any(c.experiment.download for c in configs):  # once here, not in every worker
        from .data.downloads import download

        for dataset, data_dir in sorted({(c.data.dataset, c.data.data_dir or "") for c in configs}):
            download(dataset, data_dir or None, progress=not ns.quiet)
    print(f"sweep: {len(configs)} run(s) with the {launcher.name} launcher", flush=True)
    done, started = [], time.monotonic()

    def progress(result) -> None:
        done.append(result)
        print(f"[{len(done)}/{len(configs)}] {result.status}: {result.path}"
              + sweep_eta(done, len(configs), time.monotonic() - started,
                          ns.workers if ns.launcher == "local" else None), flush=True)

    try:
        results = launcher.launch(configs, progress, wait=not ns.no_wait)
    except KeyboardInterrupt:
        print(f"{PROG}: sweep interrupted; completed rounds are saved (jobs already submitted to "
              f"a cluster keep running); run the same sweep again to resume", file=sys.stderr)
        return 130
    failed = [r for r in results if r.status.startswith("failed")]
    finished = [r.path for r in results if r.status in ("done", "skipped")]
    if any(r.status.startswith("submitted") for r in results):
        out = Path(configs[0].experiment.output_dir)
        print(f"jobs submitted; logs in {out / 'slurm'}; follow them with squeue, and once they "
              f"are done: incop report {out}")
    elif finished:
        out = Path(configs[0].experiment.output_dir) / "report"
        rows = write_report(find_runs(finished), out)
        print(report_text(rows))
        print(f"report.md, report.csv and figures in {out}")
    return 1 if failed else 0


def sweep_eta(done, total: int, elapsed: float, workers: Optional[int]) -> str:
    """" (N running, M waiting, about T to go)": the runs that trained so far set the pace
    (skipped runs cost nothing). ``workers`` None (a cluster): no running/waiting split."""
    left = total - len(done)
    if left == 0:
        return ""
    worked = sum(1 for r in done if r.status == "done")
    eta = "" if worked == 0 else f", about {duration(elapsed / worked * left)} to go"
    if workers is None:
        return f" ({left} left{eta})"
    running = min(max(1, workers), left)
    return f" ({running} running, {left - running} waiting{eta})"


def _cmd_report(ns: argparse.Namespace, given: Settings) -> int:
    from .report.comparison import report_text, write_report
    from .runs.reading import find_runs
    from .runs.directory import RunDirectory

    runs = find_runs(ns.runs)
    out = RunDirectory(ns.output).path  # checks the folder is writable
    rows = write_report(runs, out)
    print(report_text(rows))
    print(f"report.md, report.csv and figures in {out}")
    return 0


def _cmd_list(ns: argparse.Namespace, given: Settings) -> int:
    from .data.datasets import DATASETS
    from .config.flags import recipe_flags
    from .config.methods import METHODS
    from .config.recipes import DEFAULT_RECIPE, RECIPES
    from .models.architectures import MODELS

    print("architectures: " + ", ".join(MODELS.names()))
    print("datasets:      " + ", ".join(DATASETS.names()))
    print("methods (--prune_method):")
    for name, m in METHODS.items():
        print(f"  {name:<6} {m.description}")
    print(f"recipes (--recipe NAME; K is the epochs a round, e.g. allr-2; with neither a method "
          f"nor a recipe, incop runs {DEFAULT_RECIPE}):")
    for r in RECIPES:
        example = f"{r.prefix}K" if r.budgeted else r.pattern
        print(f"  {example:<9} {r.words}\n  {'':<9} = {recipe_flags(r)}")
    return 0


@dataclass(frozen=True)
class Command:
    """A subcommand: its parser's arguments, and what runs it. ``handler(ns, settings)``: the
    parsed arguments and, for commands with the run flags, the run settings given (file and
    command line, :func:`_settings`)."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace, Settings], int]
    description: Optional[str] = None


COMMANDS = {c.name: c for c in [
    Command("run", "run an IMP search (the seed's prune.py flags)", _run_arguments, _cmd_run,
            "Run an iterative-magnitude-pruning search. Flags accept --flag=value and --flag "
            "value."),
    Command("list", "list architectures, datasets and methods", lambda parser: None, _cmd_list),
    Command("sweep", "run a grid of configurations, then report", _sweep_arguments, _cmd_sweep,
            "Every flag of 'incop run' takes one or more values; the sweep runs every "
            "combination (methods x (p, q) pairs x any other flag), skips finished runs, "
            "resumes started ones, and ends with 'incop report' over all of them in "
            "<output_dir>/report."),
    Command("frontier", "find the cheapest recipe whose ticket matches standard IMP's, for a "
            "network", _frontier_arguments, _cmd_frontier,
            "Runs recipes (the reference IMP, fixed budgets, linear schedules, ALLR, "
            "learning-rate rewinding, ciap, giap, GMP, one-shot) to the same "
            "--prune_target_remaining for each seed, retrains every final mask from the "
            "reference's rewind point for --ticket_epochs (default: --net_train_epochs), ablates "
            "the reference's tickets, and writes a table and a figure of ticket accuracy against "
            "search epochs into <output_dir>/frontier/<arch>/<dataset>/target<P>. Every run flag "
            "sets what the recipes share; --net_train_epochs is the reference's budget per "
            "round. Stopped, it resumes."),
    Command("report", "compare run directories side by side", _report_arguments, _cmd_report,
            "Table (Markdown, CSV) and overlaid figures for run directories, or for every run "
            "found below the given folders."),
    Command("export", "write a run's pruned network as dense, torch_prune, sparse or ONNX",
            _export_arguments, _cmd_export,
            "Rebuild the run's model from its config.json and write one trial's network after a "
            "round (default: the last) or its ticket."),
    Command("ablate", "retrain a run's tickets' random ablations: a random mask and a fresh "
            "initialisation", _ablate_arguments, _cmd_ablate,
            "The lottery-ticket ablations of finished runs made with --ticket_epochs: retrain, "
            "with the ticket's budget, schedule and data order, a random mask with the ticket's "
            "per-layer counts from its rewind point (--random_prune) and the ticket's mask from "
            "a fresh initialisation (--random_reinit); neither flag: both. Writes "
            "ablations.json/.csv and figures/ablations.png into each run; incop report shows "
            "ticket minus each. Stopped, it resumes where it was."),
    Command("speed", "time dense against sparse inference for every round", _speed_arguments,
            _cmd_speed,
            "Dense against sparse (CSR Linear layers and direct sparse convolutions, chosen per "
            "layer where faster) forward passes for the saved rounds of a run; writes "
            "speed.json, speed.csv, speed_layers.csv and figures/speedup.png. Kernels: torch's "
            "csr and csr-reduce, and incop's csr-tiled, built on first use with the C compiler "
            "$CC or cc (INCOP_NATIVE=0 turns it off)."),
]}


def _settings(ns: argparse.Namespace) -> Settings:
    """The run settings given, ``section.field`` -> value, in the order they apply: a --config
    file's, then the command line's over them. (The configuration's defaults lie under both,
    and a recipe fills what is still unset when the configuration is validated:
    docs/configuration.md.)"""
    given = {k: v for k, v in vars(ns).items() if "." in k}
    if not getattr(ns, "config", None):
        return given
    return {**file_settings(read_config_file(ns.config), given, ns.command == "sweep"), **given}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    if args and args[0].startswith("--") and args[0] not in ("--help", "--version"):
        args.insert(0, "run")  # the seed typed prune.py flags with no sub-command
    try:
        parser = build_parser()
        ns = parser.parse_args(args)
        if ns.command not in COMMANDS:
            parser.print_help()
            return 2
        return COMMANDS[ns.command].handler(ns, _settings(ns))
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. incop list | head: the reader left
        sys.stdout = open(os.devnull, "w")
        return 0
