"""A real single-node Slurm cluster on this machine, for the tests and for trying the Slurm
launcher by hand (Debian packages slurm-wlm and munge; run as root).

    python scripts/slurm_cluster.py up [--dir .slurm]     # prints: export SLURM_CONF=...
    python scripts/slurm_cluster.py down [--dir .slurm]

`up` writes a minimal slurm.conf and a fresh munge key under --dir, starts munged, slurmctld and
slurmd in the foreground of their own sessions, records their process ids in --dir/pids, and waits
until the node takes jobs. `down` stops exactly those processes. Nothing is written outside --dir:
the daemons' state, spool, logs, sockets and ports are all private to it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

DAEMONS = ("munged", "slurmctld", "slurmd")


def missing_programs() -> List[str]:
    """The programs a cluster needs that are not installed (empty when it can start)."""
    need = ["munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel"]
    return [p for p in need if not _which(p)]


def _which(name: str) -> Optional[str]:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(folder: Path, partition: str = "debug") -> Path:
    """slurm.conf for one node with this machine's CPUs, everything under ``folder``."""
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    mem_mb = max(256, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2)
    for sub in ("state", "spool", "log", "munge"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    conf = folder / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=incop-test",
        f"SlurmctldHost={host}(127.0.0.1)",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={folder / 'munge' / 'munge.socket'}",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        f"StateSaveLocation={folder / 'state'}",
        f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
        f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={folder / 'log' / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "SchedulerType=sched/backfill",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "JobRequeue=1",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=30",
        "InactiveLimit=0",
        "KillWait=5",
        "MinJobAge=300",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN",
        f"PartitionName={partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        "",
    ]))
    return conf


def _start(cmd: List[str], log: Path, env: Dict[str, str]) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    return proc.pid


def up(folder: Path, timeout: float = 60.0) -> Dict[str, str]:
    """Start the cluster; returns the environment clients need (SLURM_CONF)."""
    missing = missing_programs()
    if missing:
        raise RuntimeError(f"Slurm is not installed (missing {', '.join(missing)}); "
                           f"apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        raise RuntimeError("the test cluster runs its daemons as root (SlurmUser=root)")
    folder = folder.resolve()
    down(folder)
    conf = write_config(folder)
    munge = folder / "munge"
    key = munge / "munge.key"
    key.unlink(missing_ok=True)
    subprocess.run([_which("mungekey"), "--create", "--keyfile", str(key)], check=True,
                   capture_output=True)
    os.chmod(key, 0o600)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    pids = {}
    pids["munged"] = _start([_which("munged"), "--foreground", "--force", "--key-file", str(key),
                             "--socket", str(munge / "munge.socket"),
                             "--pid-file", str(munge / "munged.pid"),
                             "--seed-file", str(munge / "munged.seed"),
                             "--log-file", str(folder / "log" / "munged.log")],
                            folder / "log" / "munged.out", env)
    _write_pids(folder, pids)
    _wait_for(lambda: (munge / "munge.socket").exists(), timeout, "munged", folder)
    pids["slurmctld"] = _start([_which("slurmctld"), "-D", "-c", "-f", str(conf)],
                               folder / "log" / "slurmctld.out", env)
    _write_pids(folder, pids)
    _wait_for(lambda: _ok(["scontrol", "ping"], env, "UP"), timeout, "slurmctld", folder)
    pids["slurmd"] = _start([_which("slurmd"), "-D", "-f", str(conf)],
                            folder / "log" / "slurmd.out", env)
    _write_pids(folder, pids)
    _wait_for(lambda: _ok(["sinfo", "-h", "-o", "%t"], env, "idle"), timeout, "slurmd", folder)
    return {"SLURM_CONF": str(conf)}


def _ok(cmd: List[str], env: Dict[str, str], expect: str) -> bool:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return out.returncode == 0 and expect in out.stdout


def _wait_for(check, timeout: float, what: str, folder: Path) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.2)
    logs = folder / "log"
    raise RuntimeError(f"{what} did not come up in {timeout:.0f} s; see {logs}")


def _write_pids(folder: Path, pids: Dict[str, int]) -> None:
    (folder / "pids").write_text(json.dumps(pids))


def down(folder: Path, timeout: float = 15.0) -> List[int]:
    """Stop the processes ``up`` started (by the ids it recorded); returns those it stopped."""
    pid_file = folder / "pids"
    if not pid_file.exists():
        return []
    pids = json.loads(pid_file.read_text())
    stopped = []
    for name in reversed(DAEMONS):  # slurmd first, munged last
        pid = pids.get(name)
        if pid and _alive(pid):
            os.killpg(pid, signal.SIGTERM)
            end = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < end:
                time.sleep(0.1)
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
            stopped.append(pid)
    pid_file.unlink()
    return stopped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["up", "down"])
    ap.add_argument("--dir", type=Path, default=Path(".slurm"))
    args = ap.parse_args()
    try:
        if args.action == "up":
            env = up(args.dir)
            print(f"Slurm is up (logs in {args.dir.resolve() / 'log'}). In your shell:\n"
                  f"export SLURM_CONF={env['SLURM_CONF']}")
        else:
            stopped = down(args.dir.resolve())
            print(f"stopped {len(stopped)} process(es)" if stopped else "no cluster was running")
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"slurm_cluster: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
