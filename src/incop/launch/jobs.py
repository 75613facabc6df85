"""One sweep job: run one configuration into its run directory, and the launcher interface.

One run is one self-contained job (``incop run`` with one configuration into its own run
directory), so a launcher only has to start jobs: another engine is one more ``Launcher`` class,
registered in ``incop.launchers``."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

from ..config.schema import RunConfig
from ..base.errors import UsageError
from ..base.files import open_in_run
from ..runs.directory import run_path
from ..runs.layout import SUMMARY_FILE


def read_json(path: Path) -> Dict[str, Any]:
    """A JSON object from ``path``, or {} when it is missing, unreadable, a link or not an
    object."""
    try:
        with open_in_run(path) as f:
            obj = json.loads(f.read())
    except (OSError, ValueError, UsageError):
        return {}
    return obj if isinstance(obj, dict) else {}


def is_finished(run_dir: Path) -> bool:
    """The run in ``run_dir`` completed (its summary says so)."""
    return bool(read_json(run_dir / SUMMARY_FILE).get("complete"))


@dataclass
class JobResult:
    path: str
    status: str  # "done", "skipped" or "failed: <message>"


def run_job(cfg_dict: Dict[str, Any]) -> JobResult:
    """Run one configuration to completion (resuming it if it was started); never raises."""
    from .session import experiment

    cfg = RunConfig.from_dict(cfg_dict).validate()
    path = run_path(cfg)
    if is_finished(path):
        return JobResult(str(path), "skipped")
    try:
        experiment(cfg, path, progress=False, echo=lambda s: None).run()
        return JobResult(str(path), "done")
    except UsageError as e:
        return JobResult(str(path), f"failed: {e}")
    except OSError as e:
        return JobResult(str(path), f"failed: cannot write results: {e.strerror or e}")


class Launcher:
    """Starts the jobs of a sweep and reports each result through ``on_result``. With ``wait``
    False a launcher may return once the jobs are submitted (the local one always waits).

    A new engine is one subclass registered in ``incop.launchers.LAUNCHERS``, with ``from_options`` reading its
    settings from the parsed ``incop sweep`` flags."""

    name = "launcher"

    @classmethod
    def from_options(cls, ns) -> "Launcher":
        return cls()

    def launch(self, configs: Sequence[RunConfig], on_result: Callable[[JobResult], None],
               wait: bool = True) -> List[JobResult]:
        raise NotImplementedError
