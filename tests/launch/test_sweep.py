"""incop sweep (incop.launch.grid, incop.launch.local): a grid of runs, skipped when done, an
empty grid one line, the report of a sweep showing what was swept, and its progress line."""
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
import incop.engine.training as training


def test_sweep_grid_skip_and_report(cli, tmp_path, monkeypatch):
    args = ["sweep", "--prune_method", "lth", "sap", "--pq", "1,2", "0.5,1",
            "--net_train_epochs", "1", "--net_warmup", "1", "--exper_imp_total_iter", "2",
            "--output_dir", str(tmp_path), "--quiet"]
    code, out, err = cli(*args)
    assert code == 0, err
    assert "sweep: 3 run(s)" in out  # lth once, sap with both pairs
    assert out.count("done:") == 3
    with open(tmp_path / "report" / "report.csv") as f:
        rows = list(csv.DictReader(f))
    # lth's rule has no p or q: its row shows none
    assert sorted((r["method"], r["p"]) for r in rows) == [("lth", ""), ("sap", "0.5"), ("sap", "1.0")]
    lth_row = next(line for line in (tmp_path / "report" / "report.md").read_text().splitlines()
                   if line.startswith("| lth |"))
    assert [c.strip() for c in lth_row.split("|")[4:6]] == ["-", "-"]  # p and q
    calls = []
    monkeypatch.setattr(training, "train_steps", lambda *a, **k: calls.append(1))
    code, out, _ = cli(*args)
    assert code == 0 and out.count("skipped:") == 3 and calls == []


def test_sweep_empty_grid(cli, tmp_path):
    code, _, err = cli("sweep", "--prune_method", "--output_dir", str(tmp_path))
    assert code == 2 and "--prune_method" in err


def test_report_shows_what_was_swept(cli, tmp_path):
    base = ["sweep", "--prune_method", "sap", "--net_lr", "0.01", "0.03", "--net_train_epochs",
            "1", "--net_warmup", "1", "--exper_imp_total_iter", "2", "--output_dir", str(tmp_path),
            "--quiet"]
    code, out, err = cli(*base)
    assert code == 0, err
    header = next(line for line in out.splitlines() if line.startswith("run "))
    assert header.split()[:2] == ["run", "net_lr"]  # the swept flag, not only a hash
    assert sorted(line.split("]")[1].split()[0] for line in out.splitlines()
                  if line.startswith("sap (1, 2) [")) == ["0.01", "0.03"]
    with open(tmp_path / "report" / "report.csv") as f:
        assert sorted(r["net_lr"] for r in csv.DictReader(f)) == ["0.01", "0.03"]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| net_lr |" in md and "net_warmup" not in md  # only what differs


def test_sweep_progress_counts_and_estimates_time_left():
    from types import SimpleNamespace as R

    from incop.cli import sweep_eta

    done = [R(status="skipped"), R(status="done"), R(status="done")]
    # 2 runs trained in 600 s: 300 s each, 5 left -> 25 min; 2 workers: 2 running, 3 waiting
    assert sweep_eta(done, 8, 600.0, 2) == " (2 running, 3 waiting, about 25 min to go)"
    assert sweep_eta(done[:1], 8, 5.0, 1) == " (1 running, 6 waiting)"  # no pace yet
    assert sweep_eta(done, 8, 600.0, None) == " (5 left, about 25 min to go)"
    assert sweep_eta(done, 3, 600.0, 2) == ""


def _children(pid: int) -> set:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(c) for c in path.read_text().split()} if path.exists() else set()


def _alive(pid: int) -> bool:
    try:  # a zombie has ended; only its exit status waits for a parent to read it
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads Linux's /proc")
def test_workers_end_when_the_sweep_is_killed(tmp_path):
    """A sweep killed outright (kill -9, the OOM killer) leaves no worker behind that would go on
    training and writing into its output folder."""
    from incop.base.machine import available_cores

    if available_cores() < 2:
        pytest.skip("two workers need two cores")
    # two runs far longer than the test: workers busy training when their parent dies
    argv = [sys.executable, "-m", "incop", "sweep", "--net_lr", "0.01", "0.02",
            "--net_train_epochs", "50", "--net_warmup", "1", "--exper_imp_total_iter", "40",
            "--workers", "2", "--threads", "1", "--output_dir", str(tmp_path), "--quiet"]
    sweep = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    workers: set = set()
    try:
        for _ in range(600):  # until both workers have started their runs (at most 60 s)
            workers |= _children(sweep.pid)
            if len(list(tmp_path.glob("*/*/*/*/config.json"))) >= 2:
                break
            time.sleep(0.1)
        assert len(workers) >= 2, "the sweep started no workers"
        sweep.kill()
        sweep.wait()
        for _ in range(600):  # each worker checks for its parent every second
            if not any(_alive(w) for w in workers):
                break
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "a worker outlived its sweep"
    finally:
        sweep.kill()
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
