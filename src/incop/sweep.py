"""Sweeps: a grid of run configurations, and the local launcher that runs them on this machine
(the jobs and the launcher interface are in ``incop.jobs``)."""
from __future__ import annotations

import itertools
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .config import RunConfig
from .errors import UsageError
from .jobs import JobResult, Launcher, run_job
from .results import run_path


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


def _limit_threads(threads: Optional[int], workers: int) -> None:
    from .compute import set_threads

    set_threads(threads, workers)


class LocalLauncher(Launcher):
    """Runs jobs on this machine: in this process, or in ``workers`` processes that share the
    CPU cores between them (never more processes than cores, never more threads in all than
    cores: processes that compete for cores slow each other about 10x)."""

    name = "local"

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise UsageError(f"--workers {workers} must be at least 1")
        self.workers = workers

    @classmethod
    def from_options(cls, ns) -> "LocalLauncher":
        return cls(workers=ns.workers)

    def launch(self, configs, on_result, wait=True):
        from .compute import available_cores

        jobs = [c.to_dict() for c in configs]
        threads = max((c.experiment.threads or 0 for c in configs), default=0) or None
        workers = min(self.workers, available_cores())
        if workers < self.workers:
            print(f"incop: --workers {self.workers} is more than the {available_cores()} cores "
                  f"here; running {workers} at a time", file=sys.stderr, flush=True)
        results: List[JobResult] = []
        if workers == 1:
            _limit_threads(threads, 1)
            for job in jobs:
                results.append(run_job(job))
                on_result(results[-1])
            return results
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                                 initializer=_limit_threads, initargs=(threads, workers)) as pool:
            for fut in as_completed([pool.submit(run_job, j) for j in jobs]):
                results.append(fut.result())
                on_result(results[-1])
        return results
