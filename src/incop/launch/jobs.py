"""One sweep job: run one configuration into its run directory, and the launcher interface.

One run is one self-contained job (``incop run`` with one configuration into its own run
directory), so a launcher only has to start jobs: another engine is one more ``Launcher`` class,
registered in ``incop.launchers``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Sequence

from ..config.schema import RunConfig
from ..base.errors import UsageError
from ..runs.directory import run_path
from ..runs.reading import is_finished


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
