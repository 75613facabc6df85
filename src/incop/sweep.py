"""Sweeps: a grid of run configurations, handed to a launcher, ending with a report.

One run is one self-contained job (``incop run`` with one configuration into its own run
directory), so a launcher only has to start jobs: another engine is one more ``Launcher`` class.
"""
from __future__ import annotations

import itertools
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .config import RunConfig
from .errors import UsageError
from .registry import Registry
from .results import run_path


def read_json(path: Path) -> Dict[str, Any]:
    """A JSON object from ``path``, or {} when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def is_finished(run_dir: Path) -> bool:
    """The run in ``run_dir`` completed (its summary says so)."""
    return bool(read_json(run_dir / "summary.json").get("complete"))


def expand_grid(values: Dict[str, Sequence[Any]], pq_pairs: Optional[Sequence[Tuple[float, float]]] = None
                ) -> List[RunConfig]:
    """Every combination of ``values`` (keys ``section.field``) times the (p, q) pairs.

    Methods whose pruning rule ignores p and q (``lth``) run once, with the first pair."""
    from .methods import resolve

    keys = list(values)
    configs, seen = [], set()
    for combo in itertools.product(*(values[k] for k in keys)):
        for p, q in (pq_pairs or [(None, None)]):
            sections: Dict[str, Dict[str, Any]] = {s: {} for s in RunConfig.SECTIONS}
            for key, v in zip(keys, combo):
                section, name = key.split(".", 1)
                sections[section][name] = v
            if p is not None:
                sections["prune"].update(p=p, q=q)
            cfg = RunConfig.from_dict(sections).validate()
            if pq_pairs and resolve(cfg.prune)[0] != "sap":
                cfg.prune.p, cfg.prune.q = pq_pairs[0]
            key = str(run_path(cfg))
            if key not in seen:
                seen.add(key)
                configs.append(cfg)
    if not configs:
        raise UsageError("the sweep grid has no runs; give at least one value for every flag")
    return configs


@dataclass
class JobResult:
    path: str
    status: str  # "done", "skipped" or "failed: <message>"


def run_job(cfg_dict: Dict[str, Any]) -> JobResult:
    """Run one configuration to completion (resuming it if it was started); never raises."""
    from .imp import IMPExperiment
    from .results import RunDirectory

    cfg = RunConfig.from_dict(cfg_dict).validate()
    path = run_path(cfg)
    if is_finished(path):
        return JobResult(str(path), "skipped")
    try:
        IMPExperiment(cfg, run_dir=RunDirectory(path), progress=False, echo=lambda s: None).run()
        return JobResult(str(path), "done")
    except UsageError as e:
        return JobResult(str(path), f"failed: {e}")
    except OSError as e:
        return JobResult(str(path), f"failed: cannot write results: {e.strerror or e}")


class Launcher:
    """Starts the jobs of a sweep and reports each result through ``on_result``. With ``wait``
    False a launcher may return once the jobs are submitted (the local one always waits).

    A new engine is one subclass registered in ``LAUNCHERS``, with ``from_options`` reading its
    settings from the parsed ``incop sweep`` flags."""

    name = "launcher"

    @classmethod
    def from_options(cls, ns) -> "Launcher":
        return cls()

    def launch(self, configs: Sequence[RunConfig], on_result: Callable[[JobResult], None],
               wait: bool = True) -> List[JobResult]:
        raise NotImplementedError


LAUNCHERS: Registry[Callable[..., Launcher]] = Registry("launcher")


def _limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


@LAUNCHERS.register("local")
class LocalLauncher(Launcher):
    """Runs jobs on this machine: in this process, or in ``workers`` processes that share the
    CPU cores between them."""

    name = "local"

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise UsageError(f"--workers {workers} must be at least 1")
        self.workers = workers

    @classmethod
    def from_options(cls, ns) -> "LocalLauncher":
        return cls(workers=ns.workers)

    def launch(self, configs, on_result, wait=True):
        jobs = [c.to_dict() for c in configs]
        results: List[JobResult] = []
        if self.workers == 1:
            for job in jobs:
                results.append(run_job(job))
                on_result(results[-1])
            return results
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        with ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                 initializer=_limit_threads, initargs=(threads,)) as pool:
            for fut in as_completed([pool.submit(run_job, j) for j in jobs]):
                results.append(fut.result())
                on_result(results[-1])
        return results


from . import slurm  # noqa: E402,F401  (registers the slurm launcher)
