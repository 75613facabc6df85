"""Dense warm-ups shared between runs: ``<output_dir>/warmups/<key>.pt``, one per set of settings
that determines a warm-up (:func:`incop.config.identity.warmup_identity`), so a frontier or a
sweep trains each seed's warm-up once. A file is used only when it is a regular file (no link)
whose SHA-256 matches the one written beside it, that loads as plain tensors, and whose stored
identity equals the one asked for; anything else is trained again, and the run says why."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch

from ..base.errors import UsageError
from ..base.files import atomic_write, atomic_write_text, open_in_run
from ..engine.events import Observer

FORMAT = "incop-warmup-1"
FOLDER = "warmups"


class SharedWarmups(Observer):
    """Keeps and hands out the warm-ups of the runs under one output folder."""

    def __init__(self, output_dir: Path, say: Callable[[str], None]) -> None:
        self.folder, self.say = Path(output_dir) / FOLDER, say

    def shared_warmup(self, key: str, identity: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        path = self.folder / f"{key}.pt"
        if not path.exists():
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
        return data

    def _read(self, path: Path) -> Dict[str, Any]:
        with open_in_run(path, "rb") as f:  # never through a link
            blob = f.read()
        with open_in_run(path.with_suffix(".sha256")) as f:
            want = f.read().strip()
        if hashlib.sha256(blob).hexdigest() != want:
            raise ValueError("its SHA-256 does not match the one written with it (damaged)")
        try:
            data = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
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
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f: f.write(blob))
            atomic_write_text(path.with_suffix(".sha256"), hashlib.sha256(blob).hexdigest() + "\n")
        except (OSError, UsageError) as e:  # sharing is a saving, never a reason to stop
            self.say(f"WARNING: could not share the warm-up in {self.folder}: {e}")


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
