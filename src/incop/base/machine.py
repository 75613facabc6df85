"""What this machine offers a run: the cores this process may use, its memory (what a file or a
flag may ask incop to allocate is checked against it), and how busy it already is."""
from __future__ import annotations

import os
from typing import Optional

import torch


def available_cores() -> int:
    """The cores this process may use (its CPU affinity, which Slurm and containers set)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def physical_memory() -> int:
    """Bytes of memory this machine has (a large bound where it cannot be told): what a file or
    a flag may ask incop to allocate is checked against it."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 50


def set_threads(threads: Optional[int], workers: int = 1) -> int:
    """Compute threads for this process: ``threads``, or the available cores shared among
    ``workers`` concurrent processes, never more than that share (two processes with 2 threads
    each on 2 cores measured about 10x slower). Returns the number set."""
    share = max(1, available_cores() // max(1, workers))
    n = share if threads is None else min(threads, share)
    torch.set_num_threads(n)
    return n


def load_warning(cores: Optional[int] = None, threads: Optional[int] = None) -> Optional[str]:
    """A warning when the machine is already busier than its cores (load average above them);
    it advises lowering --threads only where this run uses more than one (``threads``)."""
    cores = cores or available_cores()
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # not counted here, or not Unix
        return None
    if load <= cores:
        return None
    if threads == 1:
        advice = "wait for them (this run already uses 1 thread)"
    else:
        advice = "wait for them, or lower --threads" + (f" (this run uses {threads})"
                                                        if threads else "")
    return (f"warning: the machine is already loaded (load average {load:.1f} on {cores} "
            f"cores); this run will be much slower than it should. Processes that compete "
            f"for cores slow each other about 10x: {advice}")
