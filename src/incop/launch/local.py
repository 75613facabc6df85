"""The local launcher: a sweep's runs in worker processes on this machine (the grid is
``incop.launch.grid``; the jobs and the launcher interface are ``incop.launch.jobs``)."""
from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import List, Optional

from ..base.errors import UsageError
from .jobs import JobResult, Launcher, run_job


def _limit_threads(threads: Optional[int], workers: int) -> None:
    from ..base.machine import set_threads

    set_threads(threads, workers)


def _start_worker(threads: Optional[int], workers: int) -> None:
    """A worker's set-up: its thread budget, and a watch on the process that started it."""
    _limit_threads(threads, workers)
    _exit_with_parent(os.getppid())


def _exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    """Ends this worker once the sweep that started it is gone (killed by ``kill``, the OOM
    killer, a closed terminal): a worker left behind would go on training and writing into
    the output folder beside the next sweep's. The rounds it completed are saved; the run
    resumes with the same command."""
    def watch():
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(143)

    threading.Thread(target=watch, name="incop-parent-watch", daemon=True).start()


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
        from ..base.machine import available_cores

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
                                 initializer=_start_worker, initargs=(threads, workers)) as pool:
            for fut in as_completed([pool.submit(run_job, j) for j in jobs]):
                results.append(fut.result())
                on_result(results[-1])
        return results
