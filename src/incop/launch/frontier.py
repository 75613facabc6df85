"""``incop frontier``: which search gives a sparse network as good as standard IMP's for the
least training? Every recipe prunes the same network to the same final sparsity, for each seed;
each final mask is then judged the same way, retrained from the reference's rewind point with
the reference's settings for --ticket_epochs (for the reference itself that is its own ticket),
and compared with the reference's ticket of the same seed. The runs are ordinary run
directories, so the frontier resumes, skips what is done and runs on any launcher."""
from __future__ import annotations

import copy
import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..base.errors import UsageError
from ..base.files import atomic_write_text
from ..config.recipes import canonical, find, frontier_names, recipe_settings
from ..config.schema import RunConfig, flag_name
from ..data.datasets import load_raw
from ..engine.ablations import Ablations
from ..engine.events import Observers
from ..engine.progress import ProgressBars
from ..engine.estimate import target_report
from ..engine.records import criterion_report
from ..engine.runtime import resolve_device
from ..engine.trial_inputs import registry_inputs
from ..pruning.masks import Masks
from ..report.figures import save_figure
from ..report.frontier import accuracy_figure, frontier_figure, frontier_rows, frontier_table
from ..runs.directory import RunDirectory, run_path
from ..runs.layout import round_masks, ticket_start
from ..pruning.sparsity_schedules import landed
from ..deploy.timing import final_speedups
from .ablate import ablate_run, final_masks
from ..runs.reading import (DAMAGED, BrokenRun, is_finished, load_run, percent, read_json,
                            result_hash)
from .jobs import Launcher

DEFAULT_RECIPES = ("reference", *frontier_names())
RESULTS = "frontier.json"


@dataclass(frozen=True)
class Settings:
    """What every recipe shares: the reference's method and budget per round, the target, the
    ticket budget, the GMP run's length."""

    reference: str
    epochs: float  # the reference's epochs per round (--net_train_epochs)
    target: float
    ticket_epochs: float
    gmp_epochs: float
    speed_repeats: int = 20  # timings of each final mask (fewer with --quick)
    keep_at: Tuple[float, ...] = ()  # the targets on the way, largest first: judged too

    @property
    def targets(self) -> Tuple[float, ...]:
        """Every target judged, largest first; the final one last."""
        return (*self.keep_at, self.target)


def recipe_config(name: str, base: RunConfig, s: Settings) -> RunConfig:
    """``base`` (the user's settings, shared by every recipe) made into recipe ``name``,
    pruning to the target: the recipe's settings replace the shared ones (the reference's
    budget, schedule and rewinding are the shared ones). The runs keep their method's folder
    and the names frontier gives them, so a study started before recipes had names resumes."""
    cfg = copy.deepcopy(base)
    t, p = cfg.train, cfg.prune
    p.target_remaining, p.rule, p.criterion, p.method, p.recipe = s.target, None, None, "sap", None
    p.keep_at = list(s.keep_at) if s.keep_at and passes_targets(name) else None
    t.epochs, t.ticket_epochs, t.ticket_rewind = s.epochs, 0.0, None
    if name == "reference":
        p.method, t.ticket_epochs = s.reference, s.ticket_epochs
        return cfg
    if find(name)[0].run_length:  # (an unknown name is refused there, in its own words)
        t.epochs = s.gmp_epochs  # its whole run, not the reference's round
    for key, value in recipe_settings(name, lambda k: _get(cfg, k)).items():
        section, field_name = key.split(".")
        setattr(getattr(cfg, section), field_name, value)
    if p.steps is not None:  # N equal steps take N + 1 rounds, whatever the cap of the others
        cfg.experiment.imp_total_iter = p.steps + 1
    return cfg


_SHARE = re.compile(r"^gmp-(?P<share>[0-9]*\.?[0-9]+)%$")


def share_of(name: str) -> Optional[float]:
    """``gmp-10%`` -> 10.0: GMP* over that percentage of each seed's reference search epochs,
    sized once the reference has finished (None for any other name)."""
    text = str(name).strip().lower()
    if not (text.startswith("gmp-") and "%" in text):
        return None
    match = _SHARE.match(text)
    share = float(match.group("share")) if match else 0.0
    if not 0 < share <= 100:
        raise UsageError(f"recipe {name}: give GMP*'s share of the reference's search epochs "
                         f"as a percentage above 0 and at most 100, with nothing after the % "
                         f"(e.g. gmp-10%; GMP has no rounds to run in steps or on a part of the "
                         f"data)")
    return share


def sized(name: str, reference_epochs: float) -> str:
    """The GMP* recipe ``gmp-P%`` is for a reference that searched ``reference_epochs``:
    ``gmp-E`` with E that share of them, to three significant digits (gmp-10% of 192 epochs
    is gmp-19.2)."""
    return f"gmp-{float(f'{share_of(name) / 100 * reference_epochs:.3g}'):g}"


def passes_targets(name: str) -> bool:
    """Whether recipe ``name``'s one search lands on every target (one-shot takes a run a
    target)."""
    return name == "reference" or find(name)[0].passes_targets


def _get(cfg: RunConfig, key: str):
    section, field_name = key.split(".")
    return getattr(getattr(cfg, section), field_name)


def frontier_configs(base: RunConfig, names: Sequence[str], seeds: Sequence[int], s: Settings,
                     out: Path) -> Dict[tuple, RunConfig]:
    """(recipe, seed) -> its run's configuration, in ``out/runs``, every one checked first."""
    configs = {}
    for name in dict.fromkeys(names):
        for seed in seeds:
            configs[name, seed] = _run_config(name, seed, base, s, out)
    return configs


def single_target_configs(base: RunConfig, names: Sequence[str], seeds: Sequence[int],
                          s: Settings, out: Path) -> Dict[tuple, RunConfig]:
    """(recipe, seed, target) -> the run of a recipe that cannot pass through targets (one-shot)
    at each target on the way; its run at the final target is in :func:`frontier_configs`."""
    configs = {}
    for name in dict.fromkeys(names):
        if passes_targets(name):
            continue
        for target in s.keep_at:
            for seed in seeds:
                configs[name, seed, target] = _run_config(
                    name, seed, base, dataclasses.replace(s, target=target, keep_at=()), out,
                    f"-target{target:g}")
    return configs


def sized_configs(base: RunConfig, names: Sequence[str], references: Dict[int, RunConfig],
                  s: Settings, out: Path) -> Tuple[Dict[tuple, RunConfig], Dict[str, List[str]]]:
    """(``gmp-P%``, seed) -> its run, GMP* sized from the finished reference of the seed
    (``references``), and each name's sizes in words. A run is a plain ``gmp-E`` run: naming
    gmp-19 yourself finds the same one."""
    epochs = {seed: measure(load_run(run_path(reference)))["search_epochs"]
              for seed, reference in references.items()}  # each reference read once
    configs, words = {}, {}
    for name in names:
        for seed, e in epochs.items():
            recipe = sized(name, e)
            configs[name, seed] = _run_config(recipe, seed, base, s, out)
            words.setdefault(name, []).append(f"seed {seed} {recipe} (of {e:g})")
    return configs, words


def _run_config(name: str, seed: int, base: RunConfig, s: Settings, out: Path,
                suffix: str = "") -> RunConfig:
    cfg = recipe_config(name, base, s)
    e = cfg.experiment
    e.seed, e.num_trial, e.output_dir, e.run_name = seed, 1, str(out / "runs"), \
        f"{name}-seed{seed}{suffix}"
    try:
        return cfg.validate()
    except UsageError as err:
        raise UsageError(f"recipe {name}: {err}") from None


def run_frontier(base: RunConfig, names: Sequence[str], seeds: Sequence[int], s: Settings,
                 out: Path, launcher: Launcher, wait: bool = True, tolerance: float = 0.3,
                 echo: Callable[[str], None] = print, progress: Optional[bool] = None
                 ) -> List[Dict[str, Any]]:
    """Run (or resume) every recipe for every seed, judge each final mask (and with targets on
    the way, the mask each search landed on at each), ablate the reference's tickets, and write
    frontier.json/.csv/.md and the figures into ``out``."""
    # one spelling per recipe (LRR-1 is lrr-1): a name twice is one search, one row
    names = list(dict.fromkeys(["reference", *(n if n == "reference" else _spelling(n)
                                               for n in names)]))
    later = [n for n in names if share_of(n) is not None]  # sized from the references
    plain = [n for n in names if n not in later]
    configs = frontier_configs(base, plain, seeds, s, out)
    singles = single_target_configs(base, plain, seeds, s, out)
    for name in later:  # a setting they cannot run with is found now, not after the references
        _run_config(sized(name, 100.0), seeds[0], base, s, out)
    failures, pending = _launch([*configs.values(), *singles.values()], launcher, wait, echo)
    sizes: Dict[str, List[str]] = {}
    if later:
        references = {seed: configs["reference", seed] for seed in seeds
                      if str(run_path(configs["reference", seed])) not in failures
                      and is_finished(run_path(configs["reference", seed]))
                      and _short_of_target(configs["reference", seed]) is None}
        if len(references) < len(seeds) and pending:
            echo(f"frontier: {', '.join(later)} start once the references have finished")
        more, sizes = sized_configs(base, later, references, s, out)
        for name, words in sizes.items():
            echo(f"frontier: {name} of each seed's reference search epochs: {', '.join(words)}")
        configs.update(more)
        more_failures, more_pending = _launch(list(more.values()), launcher, wait, echo)
        failures.update(more_failures)
        pending += more_pending
    if pending:
        echo(f"frontier: {len(pending)} run(s) not finished yet; run the same command again "
             f"to go on")
        return []
    directory = RunDirectory(out)
    runs = {**configs, **singles}
    short = {k: _short_of_target(c) for k, c in runs.items() if is_finished(run_path(c))}
    done = lambda k: k in short and short[k] is None  # finished, at the target
    seeds = [seed for seed in seeds if done(("reference", seed))]
    judged = {k: c for k, c in runs.items() if k[1] in seeds and done(k)}
    missing = [f"{k[0]} seed {k[1]}{'' if len(k) == 2 else f' at {k[2]:g}%'} "
               f"({_why_not_judged(k[0], k[1], c, short, failures, k)})"
               for k, c in runs.items() if k not in judged]
    missing += [f"{name} seed {seed} (its reference did not finish at the target, so it has "
                f"no size)" for name in later for seed in seeds if (name, seed) not in runs]
    if not judged:
        raise UsageError(f"no reference run finished at the target: {'; '.join(missing)[:400]}")
    units = sorted(_units(judged, s), key=lambda u: (s.targets.index(u.target),
                                                     names.index(u.name), u.seed))
    rows = _judge(units, configs, s, directory, progress, echo)
    ablations = [a for seed in seeds  # the reference's tickets' ablations, one of each a seed
                 for a in ablate_run(run_path(configs["reference", seed]), trials=1,
                                     echo=lambda line: None, progress=progress)]
    summaries = {t: frontier_rows([r for r in rows if r["target"] == t],
                                  ablations if t == s.target else [], tolerance)
                 for t in s.targets}
    summary = [{"target": t, **r} for t, rows_t in summaries.items() for r in rows_t]
    table = _tables(summaries, tolerance, s) + "".join(
        f"\n{name} is GMP* over {share_of(name):g}% of each seed's reference search epochs: "
        f"{', '.join(words)}.\n" for name, words in sizes.items()) + (
        "\nNot judged: " + "; ".join(missing) + "\n" if missing else "")
    with directory.lock():
        directory.write_json(RESULTS, {"rows": rows, "summary": summary})
        directory.write_csv("frontier.csv", [{k: "; ".join(v) if isinstance(v, list) else v
                                              for k, v in r.items()} for r in summary])
        atomic_write_text(out / "frontier.md", "# incop frontier\n\n" + table)
        for t, rows_t in summaries.items():
            save_figure(frontier_figure(rows_t, tolerance, t if s.keep_at else None,
                                        on_the_way=t != s.target),
                        out / ("frontier.png" if t == s.target else f"frontier_target{t:g}.png"))
        if s.keep_at:
            save_figure(accuracy_figure(summary), out / "accuracy_vs_remaining.png")
    echo(table)
    echo(f"frontier.md, frontier.csv, frontier.json and the figures in {out}")
    return summary


def _spelling(name: str) -> str:
    """The one spelling of recipe ``name`` (``gmp-10.0%`` is ``gmp-10%``)."""
    share = share_of(name)
    return canonical(name) if share is None else f"gmp-{share:g}%"


def _launch(configs: Sequence[RunConfig], launcher: Launcher, wait: bool,
            echo: Callable[[str], None]) -> Tuple[Dict[str, str], List[RunConfig]]:
    """Runs what of ``configs`` is not finished: the failed runs (path -> status) and those
    still running (a launcher that does not wait)."""
    todo = [c for c in configs if not is_finished(run_path(c))]
    echo(f"frontier: {len(configs)} run(s), {len(configs) - len(todo)} finished already")
    failures: Dict[str, str] = {}
    if todo:
        results = launcher.launch(todo, lambda r: echo(f"  {r.status}: {r.path}"), wait=wait)
        failures = {r.path: r.status for r in results if r.status.startswith("failed")}
    pending = [c for c in configs
               if not is_finished(run_path(c)) and str(run_path(c)) not in failures]
    return failures, pending


def _tables(summaries: Dict[float, List[Dict[str, Any]]], tolerance: float, s: Settings) -> str:
    """One table per target, the final one first when there are several."""
    if len(summaries) == 1:
        return frontier_table(summaries[s.target], tolerance, s)
    order = [s.target, *s.keep_at]
    return "\n".join(f"## {t:g}% remaining\n\n" + frontier_table(
        summaries[t], tolerance, dataclasses.replace(s, target=t), on_the_way=t != s.target)
        for t in order) + \
        "\nEach search passed through every target (the step that crossed one was trimmed onto " \
        "it), so a recipe's cost at a target is its search's epochs up to the round that " \
        "landed there; one-shot ran once per target. The ablations judge the final target's " \
        "tickets.\n"


@dataclass(frozen=True)
class Unit:
    """One judgement: recipe ``name``'s run for ``seed`` (``cfg``) at ``target``, whose mask
    is that of round ``k`` (None: the run's last)."""

    name: str
    seed: int
    target: float
    cfg: RunConfig
    k: Optional[int]


def _units(judged: Dict[tuple, RunConfig], s: Settings) -> List[Unit]:
    """Every (recipe, seed, target) to judge: a run that passed through the targets is judged
    at each, at the round that landed there; one-shot's run of a target at its end."""
    units = []
    for key, cfg in judged.items():
        name, seed = key[:2]
        if len(key) == 3:  # one-shot's run of a target on the way
            units.append(Unit(name, seed, key[2], cfg, None))
            continue
        units.append(Unit(name, seed, s.target, cfg, None))
        if cfg.prune.keep_at:  # the rounds that landed on the others, read once per run
            units += [Unit(name, seed, t, cfg, k)
                      for t, k in _landed_rounds(cfg, cfg.prune.keep_at).items()]
    return units


def _landed_rounds(cfg: RunConfig, targets: Sequence[float]) -> Dict[float, int]:
    run = load_run(run_path(cfg))
    rounds = landed([r for r in run.rounds if r["trial"] == 0], targets)
    missed = [f"{t:g}%" for t, k in rounds.items() if k is None]
    if missed:
        raise BrokenRun(f"{run.path} is finished at its target but no round kept exactly "
                        f"{', '.join(missed)} of the weights, a target on its way; {DAMAGED}")
    return rounds


def _short_of_target(cfg: RunConfig) -> Optional[float]:
    """None when the finished run of ``cfg`` reached its target in every trial, else the
    percentage of weights it kept."""
    run = load_run(run_path(cfg))
    report = target_report(run.rounds, cfg.prune.target_remaining, cfg.experiment.imp_total_iter,
                           flag_name)
    if report is None or report["reached"]:
        return None
    return max(t["remaining_pct"] for t in report["trials"] if not t["reached"])


def _why_not_judged(name: str, seed: int, cfg: RunConfig, short: Dict[tuple, Optional[float]],
                    failures: Dict[str, str], key: Optional[tuple] = None) -> str:
    key = key or (name, seed)
    if key in short and short[key] is not None:
        return (f"ended at {short[key]:.2f}% after {cfg.experiment.imp_total_iter} rounds, "
                f"short of the {cfg.prune.target_remaining:g}% target; raise "
                f"--exper_imp_total_iter to go on")
    reference = short.get(("reference", seed), "failed")
    if name != "reference" and reference is not None:
        return "its reference " + ("failed" if reference == "failed" else
                                   f"ended at {reference:.2f}%, short of the target")
    return failures.get(str(run_path(cfg)), "failed")


def _judge(units: Sequence[Unit], configs: Dict[tuple, RunConfig], s: Settings,
           directory: RunDirectory, progress: Optional[bool], echo) -> List[Dict[str, Any]]:
    """Each unit's row with its judged ticket: its mask retrained from the reference's rewind
    point of its seed, as the reference's ticket is (at the final target the reference's row is
    its own ticket; at a target on the way its mask there is judged the same way). Everything a
    row says of its run (cost and accuracy up to its round, result hash, the reference's
    ticket) is measured from the run's own records each time; only a judged ticket is kept from
    frontier.json, and only while the run it judged and its reference are unchanged (same
    result hashes) and its values are of their kind: a row whose judged fields were edited or
    damaged is judged again, and an edit elsewhere in a row is overwritten by the measurement,
    so no row of the file decides the verdict. A moved or copied output folder keeps its
    judgements (the hashes do not depend on where the runs are)."""
    kept = _kept_rows(directory.path / RESULTS, s.target)
    # a run named another way than when it was judged (gmp-5 after gmp-50%) keeps its judgement
    by_run = {(r.get("result_hash"), seed, target): r for (_, seed, target), r in kept.items()}
    rows, judge, hashes = [], None, {}
    with directory.lock():
        runs: Dict[Path, Any] = {}  # a run judged at several targets is read once
        for u in units:
            path = run_path(u.cfg)
            run = runs[path] = runs.get(path) or load_run(path)
            if path not in hashes:
                hashes[path] = result_hash(run)
            row = {"recipe": u.name, "seed": u.seed, "target": u.target, "run_dir": str(path),
                   **measure(run, u.k), "result_hash": hashes[path]}
            reference = run_path(configs["reference", u.seed])
            if reference not in hashes:
                hashes[reference] = result_hash(load_run(reference))
            key = (u.name, u.seed, u.target)
            old = kept.get(key) or by_run.get((hashes[path], u.seed, u.target))
            fresh = old is None or not _still_judged(
                old, row, kept.get(("reference", u.seed, u.target)), hashes[reference], s)
            if u.name == "reference" and u.k is None:
                ticket = _reference_ticket(run)
            elif not fresh:
                ticket = {"test_acc": old["ticket_test_acc"], "val_acc": old["ticket_val_acc"],
                          "epochs": old["ticket_epochs"]}
            else:
                if old is not None:
                    echo(f"  judging {u.name} seed {u.seed} again: its row in {RESULTS} is not "
                         f"the judgement of its run as it is now")
                # the references differ only in their seed, which retraining is given: one
                # judge (one load of the data) serves every seed
                judge = judge or _judge_for(configs["reference", u.seed], progress)
                masks = Masks(final_masks(path, 0) if u.k is None else round_masks(path, 0, u.k))
                ticket = judge.retrain(0, u.seed, masks, ticket_start(reference, 0),
                                       f"{u.name} judged")
            row.update(ticket_test_acc=ticket["test_acc"], ticket_val_acc=ticket["val_acc"],
                       ticket_epochs=ticket["epochs"], **_speed(old, row, path, s, u.k))
            rows.append(row)
            directory.write_json(RESULTS, {"rows": rows})
            if fresh:
                at = f" at {u.target:g}%" if s.keep_at else ""
                echo(f"  judged {u.name} seed {u.seed}{at}: ticket test {_pct(ticket['test_acc'])}")
    return rows


SPEED_BATCHES = (1, 64)


def _speed(old: Optional[Dict[str, Any]], row: Dict[str, Any], path: Path,
           s: Settings, k: Optional[int] = None) -> Dict[str, float]:
    """The final mask's measured speed-up at batch 1 and 64 on one thread (this machine's):
    kept from frontier.json while the run is the one it measured (its result hash), measured
    again otherwise."""
    keys = [f"speedup_b{b}" for b in SPEED_BATCHES]
    if old is not None and old.get("result_hash") == row["result_hash"] and all(
            isinstance(old.get(k), float) and math.isfinite(old[k]) and old[k] > 0 for k in keys):
        return {k: old[k] for k in keys}
    measured = final_speedups(path, SPEED_BATCHES, repeats=s.speed_repeats, warmup=2, k=k)
    return {f"speedup_b{b}": float(v) for b, v in measured.items()}


def _kept_rows(path: Path, final: float) -> Dict[tuple, Dict[str, Any]]:
    """frontier.json's rows by (recipe, seed, target), a row without a target (written before
    targets on the way) being at ``final``; rows of another shape are left out (judged
    again)."""
    rows = read_json(path).get("rows")
    return {(r["recipe"], r["seed"], r.get("target", final)): r
            for r in (rows if isinstance(rows, list) else [])
            if isinstance(r, dict) and isinstance(r.get("recipe"), str)
            and type(r.get("seed")) is int
            and isinstance(r.get("target", final), (int, float))
            and not isinstance(r.get("target", final), bool)}


def _still_judged(old: Dict[str, Any], row: Dict[str, Any], old_reference: Optional[Dict[str, Any]],
                  reference_hash: str, s: Settings) -> bool:
    """A kept row judged this run and this reference as they are now (their result hashes),
    with a judged ticket of numbers of their kind: accuracies are percentages, and the ticket
    trained for at most the judge's budget. Its path is not compared: the folder may move."""
    try:  # a test accuracy is measured wherever the run measured one
        percent(old.get("ticket_test_acc"), "ticket_test_acc", RESULTS,
                nullable=row["search_test_acc"] is None)
        percent(old.get("ticket_val_acc"), "ticket_val_acc", RESULTS, nullable=False)
    except UsageError:
        return False
    epochs = old.get("ticket_epochs")
    return (old.get("result_hash") == row["result_hash"] and old_reference is not None
            and old_reference.get("result_hash") == reference_hash
            and isinstance(epochs, (int, float)) and not isinstance(epochs, bool)
            and 0 < epochs <= s.ticket_epochs + 1e-6)


def _reference_ticket(run) -> Dict[str, Any]:
    if not run.tickets:
        raise BrokenRun(f"{run.path} is a finished reference run without its ticket "
                        f"(tickets.json); {DAMAGED}")
    return run.tickets[0]


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}%"


def _judge_for(reference_cfg: RunConfig, progress: Optional[bool]) -> Ablations:
    raw = load_raw(reference_cfg.data.dataset, reference_cfg.data.data_dir,
                   reference_cfg.data.image_size)
    device = resolve_device(reference_cfg.experiment.device, reference_cfg.experiment.gpu_id)
    events = Observers([ProgressBars(None if progress is None else not progress)])
    return Ablations(reference_cfg, lambda t, seed: registry_inputs(reference_cfg, raw, device, seed),
                     device, events)


def measure(run, k: Optional[int] = None) -> Dict[str, Any]:
    """What a search cost and found (up to round ``k``, where it landed on a target on its way;
    None: all of it): epochs and wall time of its rounds (the warm-up and the flows' dense
    reference apart, each in its own key), its sparsity and accuracy, and whether its
    criterion measured anything. benchmarks/stopping_study.py reads runs through this too."""
    rounds = run.rounds if k is None else [r for r in run.rounds if r["round"] <= k]
    if not rounds:
        raise BrokenRun(f"{run.path} is finished but holds no rounds (rounds.json); {DAMAGED}")
    crit = criterion_report(rounds, *run.resolved[1:])
    # fractions of an epoch add up with float error (1.9999999999999996): 1e-9 is far below a step
    epochs = round(math.fsum(r["epochs"] for r in rounds), 9)
    return {"rounds": len(rounds), "search_epochs": epochs, "epochs_per_round": epochs / len(rounds),
            "search_wall_s": sum(r["time_train"] + r["time_flow"] + r["time_eval"]
                                 + r["time_prune"] for r in rounds),
            "warmup_s": sum(t.get("warmup_time") or 0.0 for t in run.trials),
            "reference_s": sum(t.get("reference_time") or 0.0 for t in run.trials),
            "remaining_pct": rounds[-1]["remaining_pct"],
            "search_test_acc": rounds[-1]["test_acc"], "search_val_acc": rounds[-1]["val_acc"],
            "fired": crit["fired"], "fired_at_first_check": crit["fired_at_first_check"],
            "criterion_note": crit["note"]}


# --quick: LeNet-300-100 on digits with tiny budgets, what a test runs in seconds (the settings
# given on the command line override these)
QUICK = {"data.dataset": "digits", "model.arch": "lenet300", "train.lr": 0.05,
         "train.momentum": 0.9, "train.warmup": 1, "train.epochs": 2.0,
         "experiment.imp_total_iter": 8, "prune.target_remaining": [30.0]}
