"""Issue 35 item 8: nothing a test reads depends on how busy the machine is. The load warning
(incop.base.machine.load_warning) is for a person at a terminal: with the load average forced
far above the cores, a script reading stderr still gets exactly the one-line errors (and a
finished run nothing at all); on a terminal the warning comes first, and it advises lowering
--threads only where the run uses more than one."""
import sys

import pytest
import torch

import incop.base.machine as machine
from incop.base.machine import load_warning

RUN = ["run", "--prune_method", "ciap", "--net_lr", "0.05", "--net_momentum", "0.9",
       "--net_warmup", "2", "--net_train_epochs", "2", "--check_every", "0.5ep",
       "--exper_imp_total_iter", "3", "--ticket_epochs", "1", "--quiet"]
# the one-line errors of test_tensorboard and test_wandb: a tracker that is not installed
MISSING = {"tensorboard": ("torch.utils.tensorboard", "pip install 'incop[tensorboard]'"),
           "wandb": ("wandb", "pip install 'incop[wandb]'")}


@pytest.fixture
def busy(monkeypatch):
    """A machine far busier than its cores; torch's thread count restored afterwards (a run
    sets it)."""
    threads = torch.get_num_threads()
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    yield monkeypatch
    torch.set_num_threads(threads)


def _terminal(monkeypatch):
    """stderr as a terminal shows it (capsys's stand-in says it is not one)."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)


@pytest.mark.parametrize("tracker", sorted(MISSING))
def test_a_busy_machine_leaves_the_one_line_error_alone(cli, tmp_path, busy, tracker):
    module, message = MISSING[tracker]
    busy.setitem(sys.modules, module, None)
    assert load_warning() is not None  # the load is high enough to warn a person
    code, out, err = cli(*RUN, f"--{tracker}", "--output_dir", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("incop: error:"), err
    assert message in err and "loaded" not in err


def test_a_run_on_a_busy_machine_writes_nothing_to_stderr(cli, tmp_path, busy):
    code, out, err = cli("run", "--net_dataset", "digits", "--prune_method", "sap",
                         "--net_warmup", "1", "--net_train_epochs", "1",
                         "--exper_imp_total_iter", "2", "--quiet", "--output_dir", str(tmp_path))
    assert code == 0 and err == "", err


def test_on_a_terminal_the_warning_comes_first_and_says_wait_at_one_thread(cli, tmp_path, busy):
    _terminal(busy)
    busy.setitem(sys.modules, "wandb", None)
    code, _, err = cli(*RUN, "--wandb", "--threads", "1", "--output_dir", str(tmp_path / "o"))
    warning, error = err.splitlines()
    assert code == 2 and warning.startswith("incop: warning: the machine is already loaded")
    assert "already uses 1 thread" in warning and "--threads" not in warning
    assert error.startswith("incop: error:") and "pip install 'incop[wandb]'" in error


def test_on_a_terminal_with_threads_to_spare_the_warning_says_lower_them(cli, tmp_path, busy):
    _terminal(busy)
    busy.setattr(machine, "available_cores", lambda: 4)  # 2 threads allowed on any machine
    busy.setitem(sys.modules, "wandb", None)
    code, _, err = cli(*RUN, "--wandb", "--threads", "2", "--output_dir", str(tmp_path / "o"))
    warning, error = err.splitlines()
    assert code == 2 and "on 4 cores" in warning
    assert "lower --threads (this run uses 2)" in warning and "pip install" in error


def test_the_warning_is_worded_by_case(monkeypatch):
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    one = load_warning(2, threads=1)
    assert "load average 5.0 on 2 cores" in one and "lower --threads" not in one
    assert "wait for them" in one and "already uses 1 thread" in one
    assert "lower --threads (this run uses 2)" in load_warning(2, threads=2)
    assert "lower --threads" in load_warning(2)  # the threads not known: both ways out
    assert load_warning(8, threads=1) is None  # busy, but not beyond the cores

    def uncounted():
        raise OSError("no load average here")

    monkeypatch.setattr(machine.os, "getloadavg", uncounted)
    assert load_warning(2, threads=2) is None
