"""The Slurm launcher: one job per run, submitted as a job array through submitit.

Each job runs ``run_job`` (exactly what ``incop run`` runs) into the run's own directory. A job
that is preempted or reaches its time limit gets Slurm's warning signal; submitit then requeues
it and the requeued job resumes from the last completed round saved in the run directory. The
job id is kept in ``<run dir>/slurm.json`` so that re-running a sweep neither resubmits a run that
is still queued or running nor waits for one that is gone.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..base.errors import UsageError
from ..runs.directory import RunDirectory, own_folder, run_path
from ..runs.layout import JOB_FILE
from ..runs.reading import is_finished, read_json, shown
from .jobs import JobResult, Launcher, run_job

# squeue states of a job that is, or will again be, running
ACTIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
                 "REQUEUE_FED", "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT"}
MAX_REQUEUES_ON_TIMEOUT = 20  # runs resume from their last round, so requeueing is cheap
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_JOB_ID = re.compile(r"\d{1,20}(_\d{1,20})?")  # a job, or an array task: 123 or 123_4


def script_value(value: Any, what: str) -> str:
    """A value that goes into the job script (a path, a partition, a setup line) as text,
    refused in one line when it holds a control character: values are shell-quoted, but a
    newline would end an #SBATCH line and make the rest a command the job runs."""
    text = str(value)
    if _CONTROL.search(text):
        raise UsageError(f"{what} {shown(text)} holds a control character (a newline, tab or "
                         f"NUL), which would end a line of the Slurm job script; give it "
                         f"without one")
    return text


def parse_slurm_time(text: str) -> int:
    """Slurm's --time formats (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) as whole minutes, rounded up."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise UsageError(f"--slurm_time {text!r} is not a Slurm time such as 90, 4:00:00 or "
                         f"1-12:00:00")
    days, a, b, c = (int(g) if g is not None else None for g in m.groups())
    if days is not None:  # D-H[:M[:S]]
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # H:M:S
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # M:S
        seconds = a * 60 + b
    else:  # M
        seconds = a * 60
    if seconds <= 0:
        raise UsageError(f"--slurm_time {text!r} must be longer than 0")
    return math.ceil(seconds / 60)


class SlurmJob:
    """What each Slurm job runs. ``checkpoint`` tells submitit to requeue the same call on
    preemption or timeout: the run resumes from its progress file, so nothing else is saved."""

    def __call__(self, cfg_dict: Dict[str, Any]) -> JobResult:
        # submitit ignores SIGTERM; scancel (or preemption that requeues by itself) should stop the
        # run at once instead: every completed round is already saved
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus:  # use the CPUs Slurm gave the job, no more
            import torch

            torch.set_num_threads(int(cpus))
        return run_job(cfg_dict)

    def checkpoint(self, cfg_dict: Dict[str, Any]):
        from submitit.helpers import DelayedSubmission

        # submitit requeues and exits next; Slurm's SIGTERM for the old job then is only noise
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return DelayedSubmission(SlurmJob(), cfg_dict)


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(143)


@dataclass
class _Pending:
    path: Path
    job_id: str
    job: Any = None  # a submitit Job when this process submitted it


class SlurmLauncher(Launcher):
    """Submits one Slurm job per run (a job array), then waits for them unless ``wait`` is False."""

    name = "slurm"

    def __init__(self, partition: Optional[str] = None, gpus_per_task: Optional[int] = None,
                 cpus_per_task: int = 1, mem: Optional[str] = None, time: str = "4:00:00",
                 setup: Sequence[str] = (), poll_seconds: float = 5.0) -> None:
        if cpus_per_task < 1:
            raise UsageError(f"--slurm_cpus_per_task {cpus_per_task} must be at least 1")
        if gpus_per_task is not None and gpus_per_task < 0:
            raise UsageError(f"--slurm_gpus_per_task {gpus_per_task} must be 0 or more")
        if shutil.which("sbatch") is None:
            raise UsageError("--launcher slurm needs Slurm's sbatch on PATH (load your cluster's "
                             "Slurm module), or use --launcher local")
        if mem is not None and not re.fullmatch(r"\d+[KMGT]?", mem):
            raise UsageError(f"--slurm_mem {mem!r} is not a Slurm memory size such as 16G or 8000M")
        for value, what in ((partition, "--slurm_partition"), *((line, "--slurm_setup")
                                                                 for line in setup)):
            if value is not None:
                script_value(value, what)
        self.partition, self.gpus_per_task, self.cpus_per_task = partition, gpus_per_task, cpus_per_task
        self.mem, self.minutes, self.setup = mem, parse_slurm_time(time), list(setup)
        self.poll_seconds = poll_seconds

    @classmethod
    def from_options(cls, ns) -> "SlurmLauncher":
        return cls(partition=ns.slurm_partition, gpus_per_task=ns.slurm_gpus_per_task,
                   cpus_per_task=ns.slurm_cpus_per_task, mem=ns.slurm_mem, time=ns.slurm_time,
                   setup=ns.slurm_setup or (),
                   poll_seconds=float(os.environ.get("INCOP_SLURM_POLL_SECONDS", 5)))

    # ------------------------------------------------------------------ submitting
    def launch(self, configs, on_result: Callable[[JobResult], None], wait: bool = True):
        results: List[JobResult] = []
        pending: List[_Pending] = []
        to_submit = []
        paths = [run_path(c) for c in configs]
        recorded = [_recorded_job(p) for p in paths]
        active = self._active_jobs(recorded)
        for cfg, path, job_id in zip(configs, paths, recorded):
            if is_finished(path):
                results.append(JobResult(str(path), "skipped"))
                on_result(results[-1])
            elif job_id in active:
                pending.append(_Pending(path, job_id))
            else:
                to_submit.append(cfg)
        pending += self._submit(to_submit)
        if not wait:
            for p in pending:
                results.append(JobResult(str(p.path), f"submitted: Slurm job {p.job_id}"))
                on_result(results[-1])
            return results
        return results + self._wait(pending, on_result)

    def _executor(self, folder: Path):
        import submitit

        # every value the script is written from, checked here as well as where it came from
        script_value(folder, "--output_dir")
        script_value(sys.executable, "the Python interpreter's path")
        ex = submitit.SlurmExecutor(folder=str(folder / "%j"), max_num_timeout=MAX_REQUEUES_ON_TIMEOUT)
        params: Dict[str, Any] = dict(job_name="incop", time=self.minutes,
                                      cpus_per_task=self.cpus_per_task, setup=self.setup)
        if self.partition:
            params["partition"] = self.partition
        if self.gpus_per_task:
            params["gpus_per_task"] = self.gpus_per_task
        if self.mem:
            params["mem"] = self.mem
        ex.update_parameters(**params)
        return ex

    def _submit(self, configs) -> List[_Pending]:
        if not configs:
            return []
        folder = Path(configs[0].experiment.output_dir) / "slurm"
        ex = self._executor(folder)
        log_folder(folder)  # the job logs: no link sends them elsewhere
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit echoes sbatch's stderr
                jobs = ex.map_array(SlurmJob(), [c.to_dict() for c in configs])
        except Exception as e:  # sbatch's own refusal (submitit's FailedJobError), passed on
            raise UsageError(f"Slurm refused the jobs: {_slurm_errors(str(e))}; nothing was "
                             f"submitted") from None
        pending = []
        for cfg, job in zip(configs, jobs):
            path = run_path(cfg)
            RunDirectory(path).write_json(JOB_FILE, {"job_id": job.job_id,
                                                     "stdout": str(job.paths.stdout),
                                                     "stderr": str(job.paths.stderr)})
            pending.append(_Pending(path, job.job_id, job))
        return pending

    # ------------------------------------------------------------------ waiting
    def _wait(self, pending: List[_Pending], on_result) -> List[JobResult]:
        results = []
        while pending:
            states = _squeue_states([p.job_id for p in pending])
            still = []
            for p in pending:
                if states.get(p.job_id, "GONE") in ACTIVE_STATES:
                    still.append(p)
                else:
                    results.append(self._outcome(p, states.get(p.job_id, "GONE")))
                    on_result(results[-1])
            pending = still
            if pending:
                time.sleep(self.poll_seconds)
        return results

    def _outcome(self, p: _Pending, state: str) -> JobResult:
        if p.job is not None and p.job.paths.result_pickle.exists():
            try:
                return p.job.result()
            except Exception as e:
                return JobResult(str(p.path), f"failed: Slurm job {p.job_id}: {_last_line(str(e))}; "
                                 f"log: {p.job.paths.stderr}")
        if is_finished(p.path):
            return JobResult(str(p.path), "done")
        return JobResult(str(p.path), f"failed: Slurm job {p.job_id} ended ({state.lower()}) "
                         f"before the run finished; run the sweep again to resume it; log: "
                         f"{shown(read_json(p.path / JOB_FILE).get('stderr', '?'))}")

    def _active_jobs(self, job_ids: Sequence[Optional[str]]) -> set:
        ids = [j for j in job_ids if j]
        if not ids:
            return set()
        return {j for j, s in _squeue_states(ids).items() if s in ACTIVE_STATES}


# submitit moves each job's script into the job's folder and leaves this link to it behind
_SUBMISSION_LINK = re.compile(r"\.submission_file_[0-9a-f]{32}\.sh")


def log_folder(folder: Path) -> Path:
    """The folder of the job logs and submitit's files: incop's own (made when missing, refused
    in one line when it is a link or holds one: a link planted there would send submitit's
    writes wherever it points), except the links submitit leaves itself: a submission file's,
    to a file inside the folder."""
    folder = Path(folder)
    root = folder.resolve()
    return own_folder(folder, lambda entry: _submitits_link(entry, folder, root))


def _submitits_link(entry: Path, folder: Path, root: Path) -> bool:
    target = entry.resolve()
    return entry.parent == folder and bool(_SUBMISSION_LINK.fullmatch(entry.name)) and \
        root in target.parents and target.is_file() and not target.is_symlink()


def _recorded_job(run: Path) -> Optional[str]:
    """The Slurm job id kept in the run's slurm.json (None when there is none), refused in one
    line when it is not one: it is passed to squeue and compared with its answers."""
    job_id = read_json(run / JOB_FILE).get("job_id")
    if job_id is not None and not (isinstance(job_id, str) and _JOB_ID.fullmatch(job_id)):
        raise UsageError(f"{run / JOB_FILE} names job {shown(job_id)}, not a Slurm job id such "
                         f"as \"123\" or \"123_4\"; if no job of it is queued or running, delete "
                         f"the file and run the same command again")
    return job_id


def _squeue_states(job_ids: Sequence[str]) -> Dict[str, str]:
    """State of each job id (array tasks as ``ARRAY_TASK``) that squeue still knows."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    out = subprocess.run(["squeue", "-h", "-r", "--states=all", "-o", "%i %T", "-j", ",".join(arrays)],
                         capture_output=True, text=True)
    states = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def _slurm_errors(text: str) -> str:
    """sbatch's error lines on one line, without the ``sbatch: error:`` prefixes."""
    lines = [re.sub(r"^\w+: error: ", "", ln.strip()) for ln in text.splitlines() if "error" in ln]
    return "; ".join(dict.fromkeys(lines)) or _last_line(text)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["unknown error"])[-1]
