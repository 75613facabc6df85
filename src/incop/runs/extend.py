"""A search that goes on where a finished one stopped. Asking a finished search for more rounds
(--exper_imp_total_iter) or for a ticket it did not train makes a new run (another run id), but
its first rounds are the finished run's: a round depends only on the state it starts from and
its seed. So the new run directory adopts them: the records, masks, networks and rewind points
of the finished run (the "prefix") are copied in, and each trial goes on from its last round,
rebuilt from those files. The result equals a fresh run's bit for bit (tested)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from ..base.errors import UsageError
from ..base.files import atomic_write, check_links, open_in_run
from ..config.identity import comparable
from ..config.schema import RunConfig
from ..pruning.rules import target_count
from ..pruning.sparse_files import load_tensors
from .directory import RunDirectory, legacy_path
from .layout import (CONFIG_FILE, PROGRESS_FILE, dense_name, masks_name, model_name,
                     model_state, rewind_name, rewind_state, round_masks, ticket_rewind_name,
                     ticket_start)
from .reading import is_finished, run_config


def _search_key(config: Dict[str, Any]) -> Dict[str, Any]:
    """A configuration without what a longer search or a later ticket changes."""
    key = comparable(config)
    key = {s: dict(v) if isinstance(v, dict) else v for s, v in key.items()}
    key["experiment"].pop("imp_total_iter", None)
    key["train"].pop("ticket_epochs", None)
    return key


def find_prefix(run: Path, cfg: RunConfig) -> Optional[Path]:
    """The finished run beside ``run`` whose search is the start of ``cfg``'s: every setting
    equal but as many rounds or fewer and any ticket, and its rewind points saved. The one with
    the most rounds wins."""
    mine, best, most = _search_key(cfg.to_dict()), None, 0
    folders = [f for f in dict.fromkeys([run.parent, legacy_path(cfg).parent]) if f.is_dir()]
    for other in sorted(o for f in folders for o in f.iterdir()):
        if other == run or not (other / CONFIG_FILE).is_file():
            continue
        try:
            config = run_config(other)
            check_links(other)
        except (UsageError, OSError):
            continue
        rounds = config["experiment"]["imp_total_iter"]
        if (is_finished(other) and _search_key(config) == mine and rounds <= cfg.experiment.imp_total_iter
                and rounds > most and (other / rewind_name(0)).is_file()):
            best, most = other, rounds
    return best


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
    records = {k: list(v) for k, v in records.items() if isinstance(v, list)}
    records.setdefault("tickets", [])
    same_ticket = run_config(prefix)["train"].get("ticket_epochs", 0) == cfg.train.ticket_epochs
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
