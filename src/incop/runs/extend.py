"""A search that goes on where a finished one stopped. Asking a finished search for more rounds
(--exper_imp_total_iter) or for a ticket it did not train makes a new run (another run id), but
its first rounds are the finished run's: a round depends only on the state it starts from and
its seed. So the new run directory adopts them: the records, masks, networks and rewind points
of the finished run (the "prefix") are copied in, and each trial goes on from its last round,
rebuilt from those files. The result equals a fresh run's bit for bit (tested). Before anything
is copied, the prefix's records are checked against this configuration and its files against
each other: a record that contradicts them is refused, never adopted, and every file name is
built from a checked whole number."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..base.errors import UsageError
from ..base.files import atomic_write, check_links, open_in_run
from ..config.schema import RunConfig, comparable
from ..engine.records import RECORDS
from ..pruning.rules import target_count
from ..pruning.sparse_files import load_tensors
from .directory import RunDirectory, legacy_path
from .layout import (CONFIG_FILE, PROGRESS_FILE, dense_name, masks_name, model_name,
                     model_state, rewind_name, rewind_state, round_masks, ticket_rewind_name,
                     ticket_start)
from .reading import (DAMAGED, MAX_INDEX, ROUNDS, TICKETS, BrokenRun, RowSpec, _warn, check_rows,
                      check_run_config, is_finished, run_config, shown, whole_number)


def _search_key(config: Dict[str, Any]) -> Dict[str, Any]:
    """A configuration without what a longer search or a later ticket changes."""
    key = comparable(config)
    key = {s: dict(v) if isinstance(v, dict) else v for s, v in key.items()}
    key["experiment"].pop("imp_total_iter", None)
    key["train"].pop("ticket_epochs", None)
    return key


def find_prefix(run: Path, cfg: RunConfig,
                note: Optional[Callable[[str], None]] = None) -> Optional[Path]:
    """The finished run beside ``run`` whose search is the start of ``cfg``'s: every setting
    equal but as many rounds or fewer and any ticket, and its rewind points saved. The one with
    the most rounds wins. A neighbour whose configuration cannot be read is skipped with a
    ``note`` (a warning line by default): another run's broken folder never stops this one."""
    note = note or _warn
    mine, best, most = _search_key(cfg.to_dict()), None, 0
    folders = [f for f in dict.fromkeys([run.parent, legacy_path(cfg).parent]) if f.is_dir()]
    for other in sorted(o for f in folders for o in f.iterdir()):
        if other == run or not (other / CONFIG_FILE).is_file():
            continue
        try:
            config = run_config(other)  # every value of its field's type, or BrokenRun
            check_links(other)
        except (UsageError, OSError) as e:
            note(f"not going on from {other}, which cannot be read: {_first_line(e)}")
            continue
        rounds = config["experiment"]["imp_total_iter"]
        if type(rounds) is not int or rounds < 1:  # a run's config.json holds its resolved count
            note(f"not going on from {other}: its --exper_imp_total_iter {shown(rounds)} is no "
                 f"number of rounds (its {CONFIG_FILE} is damaged or was edited)")
            continue
        if (is_finished(other) and _search_key(config) == mine
                and rounds <= cfg.experiment.imp_total_iter and rounds > most
                and (other / rewind_name(0)).is_file()):
            best, most = other, rounds
    if best is not None and cfg.train.round_data_choice == "prac":
        note(f"not going on from {best}: a search on PrAC's critical set keeps the set of its "
             f"next round only while it runs (it comes from what the last round saw), so this "
             f"search starts anew")
        return None
    return best


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:240]


def adopt(prefix: Path, run_dir: RunDirectory, cfg: RunConfig) -> Dict[str, Any]:
    """Copy the prefix's results into ``run_dir`` and return the progress that goes on from
    them: trials whose search is over and whose ticket (if asked) is kept are finished; the
    others are continued by :func:`trial_state`. Everything is read before anything is written,
    so a prefix that cannot be read (one UsageError or OSError) leaves ``run_dir`` as it was."""
    old = load_tensors(prefix / PROGRESS_FILE)  # plain tensors and containers, or UsageError
    records = old.get("records") if isinstance(old, dict) else None
    if not isinstance(records, dict) or not all(isinstance(records.get(k), list)
                                                for k in ("rounds", "trials")):
        raise UsageError(f"{prefix / PROGRESS_FILE} holds no records of finished rounds")
    config = run_config(prefix)
    if comparable(check_run_config(old.get("config"), prefix / PROGRESS_FILE)) != \
            comparable(config):
        raise BrokenRun(f"its {PROGRESS_FILE} holds the records of another configuration than "
                        f"its {CONFIG_FILE}; {DAMAGED}")
    records = {k: records.get(k, []) for k in RECORDS}
    # gradual pruning's rounds are its steps, however many rounds it was asked for
    asked = MAX_INDEX if cfg.prune.method == "gmp" else config["experiment"]["imp_total_iter"]
    checked_records(records, Path(PROGRESS_FILE), cfg, asked)  # (the warning names the run)
    check_files(prefix, records)
    same_ticket = config["train"].get("ticket_epochs", 0) == cfg.train.ticket_epochs
    if not same_ticket:
        records["tickets"] = []
    finished, names = [], []
    for warm in records["trials"]:
        t = warm["trial"]
        rounds = [r for r in records["rounds"] if r["trial"] == t]
        names += [f(t, k) for k in range(len(rounds)) for f in (masks_name, model_name)]
        kept = (rewind_name(t), dense_name(t), ticket_rewind_name(t)) + (
            (model_name(t, None, True),) if same_ticket else ())
        names += [n for n in kept if (prefix / n).is_file()]
        ticket_done = cfg.train.ticket_epochs == 0 or any(x["trial"] == t for x in records["tickets"])
        if search_over(rounds, cfg) and ticket_done:
            finished.append(t)
    blobs = {}
    for name in names:
        with open_in_run(prefix / name, "rb") as f:  # never through a link
            blobs[name] = f.read()
    for name, blob in blobs.items():
        (run_dir.path / name).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir.path / name, lambda out, b=blob: out.write(b))
    return {"format": 1, "config": cfg.to_dict(), "finished": finished, "records": records,
            "trial": None, "extended_from": str(prefix)}


# What a finished search's records hold, checked before a longer search adopts them
TRIAL_RECORD = RowSpec(whole=("trial", "seed"), numbers=("warmup_time", "reference_time"),
                       percents=("warmup_val_acc", "warmup_test_acc"))
ROUND_RECORD = replace(ROUNDS, whole=("trial", "round", "seed"))
DETAIL_RECORD = RowSpec(whole=("trial", "round"))  # epochs, layers, similarity: of a round


def checked_records(records: Dict[str, Any], where: Path, cfg: RunConfig, asked: int) -> None:
    """A finished search's records as its search, with ``cfg``'s seeds, wrote them, or one
    BrokenRun saying what contradicts it: a warm-up per trial (each trial once, a plain index
    below --exper_num_trial, its seed --seed plus the trial), each trial's rounds numbered 0, 1,
    ... (at least one, at most the ``asked`` rounds), with its trial's seed and fewer weights
    each round, accuracies percentages; tickets and detail rows of those trials and rounds. A
    result belongs to the run that asked for it: seeds mixed in one trial are never adopted."""
    e = cfg.experiment
    for name in RECORDS:
        if not isinstance(records[name], list):
            raise BrokenRun(f"{where}: its {name} records are not a list; {DAMAGED}")
    check_rows(f"{where} (trials)", records["trials"], TRIAL_RECORD)
    check_rows(f"{where} (rounds)", records["rounds"], ROUND_RECORD)
    check_rows(f"{where} (tickets)", records["tickets"], TICKETS)
    for name in ("epochs", "layers", "similarity"):
        check_rows(f"{where} ({name})", records[name], DETAIL_RECORD)
    if not records["rounds"]:
        raise BrokenRun(f"{where} holds no finished rounds; {DAMAGED}")
    seeds: Dict[int, int] = {}
    for w in records["trials"]:
        t = whole_number(w["trial"], "trial", f"{where} (trials)", e.num_trial)
        if t in seeds:
            raise BrokenRun(f"{where}: the warm-up of trial {t} is recorded twice; {DAMAGED}")
        if w["seed"] != e.seed + t:
            raise BrokenRun(f"{where}: trial {t}'s warm-up has seed {shown(w['seed'])}, and "
                            f"this configuration gives trial {t} seed {e.seed + t}: the records "
                            f"belong to another run")
        seeds[t] = w["seed"]
    for t, seed in seeds.items():
        mine = [r for r in records["rounds"] if r["trial"] == t]
        _check_trial_rounds(mine, t, seed, asked, where)
    rounds = {(r["trial"], r["round"]) for r in records["rounds"]}
    for name in ("rounds", "epochs", "layers", "similarity"):
        strays = [r for r in records[name] if (r["trial"], r["round"]) not in rounds
                  or r["trial"] not in seeds]
        if strays:
            raise BrokenRun(f"{where}: {name} rows of trial {shown(strays[0]['trial'])} round "
                            f"{shown(strays[0]['round'])}, which has no warm-up or round; "
                            f"{DAMAGED}")
    ticketed = [x["trial"] for x in records["tickets"]]
    if any(seeds.get(x["trial"]) != x["seed"] for x in records["tickets"]) or \
            len(set(ticketed)) != len(ticketed):
        raise BrokenRun(f"{where}: a ticket of an unknown trial, with another seed, or twice; "
                        f"the records belong to another run")


def _check_trial_rounds(rounds: List[Dict[str, Any]], t: int, seed: int, asked: int,
                        where: Path) -> None:
    numbers = [r["round"] for r in rounds]
    if numbers != list(range(len(numbers))) or not 1 <= len(numbers) <= asked:
        raise BrokenRun(f"{where}: trial {t}'s rounds are numbered "
                        f"{', '.join(map(str, numbers[:8])) or 'none'}, not 0, 1, ... up to at "
                        f"most {asked - 1}; {DAMAGED}")
    for r in rounds:
        if r["seed"] != seed:
            raise BrokenRun(f"{where}: trial {t} round {r['round']} has seed {shown(r['seed'])}, "
                            f"its warm-up seed {seed}: the records belong to another run")
    counts = [(r["remaining"], r["total"]) for r in rounds]
    if any(total != counts[0][1] or remaining > total for remaining, total in counts) or \
            any(b[0] > a[0] for a, b in zip(counts, counts[1:])):
        raise BrokenRun(f"{where}: trial {t}'s rounds do not keep fewer weights each round out "
                        f"of one total; {DAMAGED}")


def check_files(prefix: Path, records: Dict[str, Any]) -> None:
    """The prefix's masks and networks are of one network: every round's masks name weights
    of its rewind point, with their shapes, and every saved state has the rewind point's
    entries and shapes. Foreign or reshaped files are refused before anything is copied."""
    for warm in records["trials"]:
        t = warm["trial"]
        shapes = _shapes(rewind_state(prefix, t))
        states = [(dense_name(t), lambda: rewind_state(prefix, t, dense=True)),
                  (ticket_rewind_name(t), lambda: ticket_start(prefix, t)),
                  (model_name(t, None, True), lambda: model_state(prefix, t, ticket=True))]
        for k in range(sum(r["trial"] == t for r in records["rounds"])):
            for name, mask in round_masks(prefix, t, k).items():
                if shapes.get(name) != tuple(mask.shape):
                    raise BrokenRun(f"{masks_name(t, k)}: the mask of {shown(name)} "
                                    f"does not fit the run's network ({rewind_name(t)}); the "
                                    f"file belongs to another run")
            states.append((model_name(t, k), lambda k=k: model_state(prefix, t, k)))
        for name, read in states:
            if (prefix / name).is_file() and _shapes(read()) != shapes:
                raise BrokenRun(f"{name} holds other weights than the run's network "
                                f"({rewind_name(t)}); the file belongs to another run")


def _shapes(state: Dict[str, Any]) -> Dict[str, tuple]:
    return {name: tuple(v.shape) for name, v in state.items()}


def search_over(rounds, cfg: RunConfig) -> bool:
    """No round is left to run after ``rounds``: the last asked for, the target reached, or
    gradual pruning (whose steps are its rounds)."""
    last, target = rounds[-1], cfg.prune.target_remaining
    return (len(rounds) >= cfg.experiment.imp_total_iter or cfg.prune.method == "gmp"
            or (target is not None and last["remaining"] <= target_count(last["total"], target)))


def trial_state(run: Path, records, trial: int, cfg: RunConfig) -> Optional[Dict[str, Any]]:
    """What a resume needs to go on with ``trial`` after its last recorded round, rebuilt from
    the run's own files (its adopted rounds); None when the trial has no rounds yet."""
    rounds = [r for r in records.rounds if r["trial"] == trial]
    if not rounds:
        return None
    warm = next(w for w in records.trials if w["trial"] == trial)
    k = rounds[-1]["round"]
    state = {"index": trial, "seed": warm["seed"], "round": k,
             "model": model_state(run, trial, k), "masks": round_masks(run, trial, k),
             "rewind": rewind_state(run, trial), "warmup": warm,
             "ticket_pending": search_over(rounds, cfg)}
    if (run / dense_name(trial)).is_file():
        state["dense"] = rewind_state(run, trial, dense=True)
    if (run / ticket_rewind_name(trial)).is_file():
        state["ticket"] = ticket_start(run, trial)
    return state
