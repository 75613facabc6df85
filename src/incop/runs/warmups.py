"""Dense warm-ups shared between runs: ``<output_dir>/warmups/<key>.pt``, one per set of settings
that determines a warm-up (:func:`incop.config.identity.warmup_identity`), so a frontier or a
sweep trains each seed's warm-up once. A file is used only when it is a regular file (no link,
in a folder that is no link) whose SHA-256 matches the one written beside it, that loads as plain
tensors, whose stored identity equals the one asked for and whose record is one a warm-up of that
identity writes (its seed, its epochs, numbers of their kind); anything else is trained again, and
the run says why. A linked ``warmups`` folder is neither read nor written."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch

from ..base.bounded import load_torch, read_bytes, read_text
from ..base.errors import UsageError
from ..base.files import atomic_write, atomic_write_text
from ..engine.events import Observer
from .directory import own_folder
from .reading import MAX_TEXT, RowSpec, check_rows

FORMAT = "incop-warmup-1"
FOLDER = "warmups"


class SharedWarmups(Observer):
    """Keeps and hands out the warm-ups of the runs under one output folder."""

    def __init__(self, output_dir: Path, say: Callable[[str], None]) -> None:
        self.folder, self.say = Path(output_dir) / FOLDER, say
        self._refused = False  # the folder was refused (said once)

    def shared_warmup(self, key: str, identity: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        path = self.folder / f"{key}.pt"
        if not self._usable() or not path.exists():
            return None
        try:
            data = self._read(path)
        except (OSError, UsageError, ValueError) as e:
            self.say(f"WARNING: not using the shared warm-up {path}: {e}")
            return None
        if data.get("format") != FORMAT or _canonical(data.get("identity")) != _canonical(identity):
            self.say(f"WARNING: not using the shared warm-up {path}: it was trained with other "
                     f"settings (stale)")
            return None
        problem = _record_problem(data["warmup"], identity)
        if problem:
            self.say(f"WARNING: not using the shared warm-up {path}: {problem}")
            return None
        return data

    def _usable(self) -> bool:
        """The folder is incop's own (made when missing; no link, holding none); refused once
        with a warning, after which warm-ups are neither shared nor reused."""
        if self._refused:
            return False
        try:
            own_folder(self.folder)
            return True
        except (OSError, UsageError) as e:
            self._refused = True
            self.say(f"WARNING: not sharing warm-ups in {self.folder}: {e}")
            return False

    def _read(self, path: Path) -> Dict[str, Any]:
        blob = read_bytes(path, what="a warm-up")  # a regular file (no pipe), never a link
        want = read_text(path.with_suffix(".sha256"), 1024, "a checksum file").strip()
        if hashlib.sha256(blob).hexdigest() != want:
            raise ValueError("its SHA-256 does not match the one written with it (damaged)")
        try:  # bounded: no compressed records, no shared or deep lists that json would expand
            data = load_torch(blob, path.name)
        except UsageError:
            raise
        except Exception as e:  # torch raises many kinds for a foreign file
            raise ValueError(f"it does not load as plain tensors ({type(e).__name__})") from None
        if not isinstance(data, dict):
            raise ValueError("it is not a warm-up incop wrote")
        states = [data.get("rewind")] + [data[k] for k in ("dense", "ticket")
                                         if data.get(k) is not None]
        if not isinstance(data.get("warmup"), dict) or not all(
                isinstance(s, dict) and all(isinstance(v, torch.Tensor) for v in s.values())
                for s in states):
            raise ValueError("it is not a warm-up incop wrote")
        return data

    def warmup_trained(self, key: str, identity: Dict[str, Any], state: Dict[str, Any]) -> None:
        cpu = lambda s: None if s is None else {k: v.detach().cpu() for k, v in s.items()}
        data = {"format": FORMAT, "identity": identity, "warmup": state["warmup"],
                "rewind": cpu(state["rewind"]), "dense": cpu(state["dense"]),
                "ticket": cpu(state.get("ticket"))}
        buffer = io.BytesIO()
        torch.save(data, buffer)
        blob = buffer.getvalue()
        path = self.folder / f"{key}.pt"
        if not self._usable():
            return
        try:
            atomic_write(path, lambda f: f.write(blob))
            atomic_write_text(path.with_suffix(".sha256"), hashlib.sha256(blob).hexdigest() + "\n")
        except (OSError, UsageError) as e:  # sharing is a saving, never a reason to stop
            self.say(f"WARNING: could not share the warm-up in {self.folder}: {e}")


# A warm-up's record as IMPExperiment._warm_up writes it: what a reused one puts in trials.json
WARMUP_RECORD = RowSpec(whole=("seed",), numbers=("warmup_epochs", "warmup_time",
                                                  "warmup_train_loss", "warmup_val_loss"),
                        counts=("rewind_iteration", "ticket_rewind_iteration", "warmup_iterations",
                                "train_size", "val_size", "test_size", "probe_size"),
                        present=("warmup_epochs", "warmup_time", "warmup_val_acc",
                                 "rewind_iteration", "warmup_iterations"),
                        percents=("warmup_val_acc", "warmup_test_acc"))


def _record_problem(record: Dict[str, Any], identity: Dict[str, Any]) -> Optional[str]:
    """What is wrong with a shared warm-up's record (None: nothing), before any observer sees
    it: numbers of their kind, plain values only, and the seed and epochs of its identity (a
    record of another seed would mix seeds in one trial)."""
    try:
        check_rows("its record", [record], WARMUP_RECORD)
    except UsageError as e:  # its first part: the rest advises rerunning a search
        return str(e).replace(": row 0", "", 1).split("; ")[0]
    if record["seed"] != identity.get("seed") or \
            record["warmup_epochs"] != identity.get("train", {}).get("warmup"):
        return "its record names another seed or warm-up length than its identity"
    if not all(isinstance(k, str) and (v is None or isinstance(v, (bool, int, float))
                                       or (isinstance(v, str) and len(v) <= MAX_TEXT))
               for k, v in record.items()):
        return "its record holds something other than plain values"
    return None


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
