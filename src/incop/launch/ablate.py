"""``incop ablate``: the lottery-ticket ablations of finished runs, written beside their tickets.
Every ablation has its own seed, so a run killed at any moment and started again skips the rows
it has and computes the same missing ones."""
from __future__ import annotations

import copy
import math
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..base.errors import UsageError
from ..base.text import format_table, mean_std, plus_minus
from ..config.schema import RunConfig, ticket_rewind
from ..data.datasets import load_raw
from ..engine.ablations import ABLATIONS, Ablations
from ..engine.events import Observers
from ..engine.progress import ProgressBars
from ..engine.runtime import resolve_device
from ..engine.trial_inputs import TrialInputsFactory, registry_inputs
from ..pruning.masks import Masks
from ..report.figures import ablations_figure, save_figure
from ..runs.directory import RunDirectory
from ..runs.layout import (ABLATIONS as ABLATIONS_FILE, CONFIG_FILE, FIGURES_FOLDER, existing_run,
                           round_masks, saved_rounds, ticket_start, view_names)
from ..runs.reading import ablation_rows, find_runs, load_run


def ablate_run(run: Path, kinds: Sequence[str] = ABLATIONS, trials: int = 1,
               only_trial: Optional[int] = None, echo: Callable[[str], None] = print,
               progress: Optional[bool] = None, inputs: Optional[TrialInputsFactory] = None,
               fresh: Optional[TrialInputsFactory] = None) -> List[Dict[str, Any]]:
    """Retrain ``trials`` ablations of each kind for each ticket of the finished run ``run``
    (or of search trial ``only_trial``); returns every ablation row of the run. ``inputs`` and
    ``fresh`` (the trial's model and data, and the same with a model initialised anew) are the
    registry's model and dataset named in the run's configuration unless the Python API gives
    its own (a run made by prune_model with the user's model and data)."""
    run = existing_run(run)
    _check_count(trials)
    data = load_run(run)
    cfg = RunConfig.from_dict(data.config)
    _check_ablatable(run, data, cfg, own=inputs is not None)
    tickets = _tickets(data.tickets, only_trial, str(run), cfg)
    device = resolve_device(cfg.experiment.device, cfg.experiment.gpu_id)
    if inputs is None:
        raw = load_raw(cfg.data.dataset, cfg.data.data_dir, cfg.data.image_size)
        fresh_cfg = copy.deepcopy(cfg)
        fresh_cfg.model.pretrained = None  # a re-initialisation is the architecture's own init
        inputs = lambda t, s: registry_inputs(cfg, raw, device, s)
        fresh = lambda t, s: registry_inputs(fresh_cfg, raw, device, s)
    directory = RunDirectory(run)
    events = Observers([ProgressBars(None if progress is None else not progress)])
    ablations = Ablations(cfg, inputs, device, events, fresh)
    with directory.lock():
        rows = ablate_tickets(ablations, tickets, lambda t: ticket_start(run, t),
                              lambda t: Masks(final_masks(run, t)),
                              kinds, trials, ablation_rows(run),
                              lambda rows: _write(directory, rows), echo)
        events.closed()
        _write(directory, rows)
        data.ablations = rows  # the run as read above, with the rows this call completed
        save_figure(ablations_figure([data]), run / FIGURES_FOLDER / "ablations.png")
    for line in summary_lines(rows, restarts_after_warmup(cfg, data.trials)):
        echo(line)
    return rows


def ablate_tickets(ablations: Ablations, tickets: Dict[int, Dict[str, Any]],
                   start: Callable[[int], Dict[str, Any]], masks: Callable[[int], Masks],
                   kinds: Sequence[str], trials: int, rows: List[Dict[str, Any]],
                   saved: Callable[[List[Dict[str, Any]]], None] = lambda rows: None,
                   echo: Callable[[str], None] = print) -> List[Dict[str, Any]]:
    """The ablations of ``tickets`` (trial -> its ticket's row) not in ``rows`` yet, each
    retrained from ``start(trial)`` (the ticket's start) with ``masks(trial)`` (its mask) and
    handed to ``saved`` with every row so far as soon as it is done; returns all rows."""
    rows = list(rows)
    done = {(r["trial"], r["ablation"], r["index"]) for r in rows}
    for t in sorted(tickets):
        ticket, rewind, mask = tickets[t], start(t), masks(t)
        for kind in kinds:
            for i in range(trials):
                if (t, kind, i) in done:
                    continue
                row = ablations.run(t, ticket["seed"], kind, i, rewind, mask)
                row["ticket_test_acc"] = ticket.get("test_acc")
                row["ticket_val_acc"] = ticket.get("val_acc")
                rows.append(row)
                saved(rows)
                echo(f"trial {t} {kind} {i}: {row['remaining_pct']:.2f}% remaining, val "
                     f"{row['val_acc']:.2f}%, test {_pct(row['test_acc'])} (ticket "
                     f"{_pct(row['ticket_test_acc'])})")
    return rows


def final_masks(run: Path, trial: int) -> Dict[str, Any]:
    """The masks of ``trial``'s last saved round, or one line saying there are none."""
    rounds = saved_rounds(run, trial)
    if not rounds:
        raise UsageError(f"{run}: no masks saved for trial {trial} (masks/trial{trial}_round*.pt); "
                         f"copy the run directory again with its masks folder")
    return round_masks(run, trial, rounds[-1])


def _check_count(trials: int) -> None:
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise UsageError(f"--trials {trials} must be at least 1 (a whole number of runs)")


def _tickets(rows: Sequence[Dict[str, Any]], only_trial: Optional[int], where: str,
             cfg: Optional[RunConfig] = None) -> Dict[int, Dict[str, Any]]:
    """The tickets by trial (or search trial ``only_trial``'s alone). Read from a run
    directory, their rows are checked whole numbers already (:func:`incop.runs.reading.
    load_run`), and with the run's ``cfg`` each must be a trial of the run, once, with the seed
    the configuration gives it: an ablation retrains with that seed, so a ticket of another
    seed would mix seeds in one comparison."""
    tickets: Dict[int, Dict[str, Any]] = {}
    for row in rows:
        t, seed = row["trial"], row["seed"]
        e = cfg.experiment if cfg is not None else None
        if t in tickets or (e is not None and (t >= e.num_trial or seed != e.seed + t)):
            raise UsageError(f"{where}: {view_names('tickets')[0]} holds the ticket of trial {t} "
                             f"(seed {seed}) " + ("twice" if t in tickets else
                                                  f"but the run's {e.num_trial} trial(s) have "
                                                  f"seeds from {e.seed} on")
                             + "; the file is damaged or was edited: run the search again to "
                               "rewrite it")
        tickets[t] = row
    if only_trial is not None and only_trial not in tickets:
        raise UsageError(f"{where}: no ticket for trial {only_trial} (tickets: {sorted(tickets)})")
    return tickets if only_trial is None else {only_trial: tickets[only_trial]}


def restarts_after_warmup(cfg: RunConfig, trials: Sequence[Dict[str, Any]]) -> bool:
    """The ticket restarts from the end of a trained warm-up: then a fresh initialisation
    loses that training too, so the random re-initialisation's gap is partly by construction."""
    if cfg.train.warmup <= 0:
        return False
    recorded = [t for t in trials if "ticket_rewind_iteration" in t]
    if recorded:
        return all(t["ticket_rewind_iteration"] == t["warmup_iterations"] for t in recorded)
    return ticket_rewind(cfg) == "warmup"


def ablation_targets(paths: Sequence[str],
                     warn: Optional[Callable[[str], None]] = None) -> List[Path]:
    """Run directories named directly (each must be ablatable: checked when ablated), and the
    finished runs with a ticket found below folders (a sweep's output); the others found there
    are skipped with a line saying why."""
    warn = warn or (lambda message: print(f"incop: warning: {message}", file=sys.stderr))
    out: List[Path] = []
    for p in map(Path, paths):
        if (p / CONFIG_FILE).exists():
            out.append(existing_run(p))
            continue
        for run in find_runs([str(p)], warn):
            if run.complete and run.tickets:
                out.append(run.path)
            else:
                warn(f"skipping {run.path}: " + ("no ticket (--ticket_epochs)" if run.complete
                                                 else "not finished"))
    if not out:
        raise UsageError(f"no finished run with a ticket in {', '.join(map(str, paths))}; "
                         f"ablations compare with the ticket: run with --ticket_epochs E")
    return list(dict.fromkeys(out))


def _check_ablatable(run: Path, data, cfg: RunConfig, own: bool) -> None:
    made_by_api = bool(cfg.model.fingerprint or cfg.data.fingerprint)
    if made_by_api and not own:
        raise UsageError(f"{run} was made by prune_model with its own model or data, which the "
                         f"command line cannot rebuild: ablate it from Python, with "
                         f"incop.ablate(result) or incop.ablate(run_dir, model=..., train=..., "
                         f"val=..., test=...) given the same model and data")
    if own and not made_by_api:
        raise UsageError(f"{run} is a run of incop's own model and dataset "
                         f"({cfg.model.arch}/{cfg.data.dataset}): ablate it without a model and "
                         f"data (incop.ablate(run_dir), or incop ablate {run})")
    if not data.complete:
        raise UsageError(f"{run} is not finished; run the same command again to finish it, "
                         f"then ablate")
    if not data.tickets:
        raise UsageError(f"{run} has no ticket to compare with; ablations retrain with the "
                         f"ticket's budget: run the search with --ticket_epochs E")


def _write(directory: RunDirectory, rows: List[Dict[str, Any]]) -> None:
    json_name, csv_name = view_names(ABLATIONS_FILE)
    directory.write_json(json_name, rows)
    directory.write_csv(csv_name, rows)


def gaps(rows: Sequence[Dict[str, Any]], kind: str) -> List[float]:
    """Ticket minus ablation, test accuracy points, one per ablation of ``kind``."""
    return [r["ticket_test_acc"] - r["test_acc"] for r in rows if r["ablation"] == kind
            and r.get("test_acc") is not None and r.get("ticket_test_acc") is not None]


def summary_lines(rows: Sequence[Dict[str, Any]], after_warmup: bool = False) -> List[str]:
    """The table of ticket minus each ablation, and what it shows: a gap counts only when it is
    more than twice its standard error over the ablations' seeds. ``after_warmup``: the ticket
    restarted from the end of a trained warm-up, which a fresh initialisation also loses."""
    table, verdicts = [], []
    for kind in ABLATIONS:
        mine = [r for r in rows if r["ablation"] == kind]
        if not mine:
            continue
        g = gaps(mine, kind)
        table.append([kind, str(len(mine)), _pm(mean_std(r.get("test_acc") for r in mine)),
                      _pm(mean_std(g))])
        if g:
            verdicts.append(f"{kind}: " + verdict(g))
    if not table:
        return []
    stuck = [r for r in rows if r.get("untrained")]
    if stuck:
        kinds = sorted({r["ablation"] for r in stuck})
        verdicts.append(f"({len(stuck)} of {len(rows)} ablation runs ({', '.join(kinds)}) stayed "
                        f"at chance, e.g. {stuck[0]['untrained']}: a gap to a network that never "
                        f"trained shows that it could not train with the ticket's budget, not "
                        f"how much the mask or the start matters; --ticket_epochs longer, or a "
                        f"larger target, gives them the chance to)")
    if after_warmup and any(r["ablation"] == "random_reinit" for r in rows):
        verdicts.append("(random_reinit: the ticket restarted from the end of the trained dense "
                        "warm-up, and a fresh initialisation loses that training as well as the "
                        "mask's fit, so its gap is partly by construction; --ticket_rewind init "
                        "or an early point such as 1ep isolates the mask)")
    if len({r["trial"] for r in rows}) < 2:
        verdicts.append("(one ticket: the spread above is the ablations' alone; the ticket's own "
                        "seed-to-seed spread needs a search with --exper_num_trial 3 or more)")
    return [format_table(["ablation", "runs", "test acc %", "ticket minus it (pts)"], table,
                         left=(0,)), *verdicts]


def verdict(g: Sequence[float]) -> str:
    """What ticket-minus-ablation gaps show, honestly: one run has no spread to judge by."""
    m, s = mean_std(g)
    if len(g) < 2:
        return (f"the ticket is {m:+.2f} points from one ablation run, which has no spread to "
                f"judge by; use --trials 3 or more")
    se = s / math.sqrt(len(g))
    if m > 2 * se:
        return f"the ticket is ahead by {m:.2f} ± {se:.2f} points (standard error): it beats it"
    if m < -2 * se:
        return f"the ticket is behind by {-m:.2f} ± {se:.2f} points: it does not beat it"
    return (f"the gap, {m:+.2f} ± {se:.2f} points, is within two standard errors: the ticket is "
            f"not shown to beat it")


def _pm(pair) -> str:
    return plus_minus(*pair)


def _pct(v) -> str:
    return "-" if v is None else f"{v:.2f}%"


def parse_kinds(random_prune: bool, random_reinit: bool) -> List[str]:
    """Both when neither flag is given."""
    kinds = [k for k, on in zip(ABLATIONS, (random_prune, random_reinit)) if on]
    return kinds or list(ABLATIONS)

