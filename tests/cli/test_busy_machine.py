"""Nothing a script reads depends on how busy the machine is: with the load average forced far
above the cores, stderr still gets exactly the one-line errors (and a finished run nothing at
all); on a terminal the warning comes first, and it advises lowering --threads only where the
run uses more than one."""
import sys

import pytest
import torch

from conftest import small_run

import incop.base.machine as machine
from incop.base.machine import load_warning


RUN = small_run(prune_method="ciap", net_warmup=2, net_train_epochs=2, check_every="0.5ep",
                ticket_epochs=1)
# the one-line errors of tests/track/test_tensorboard.py and test_wandb.py: a tracker that is
# not installed
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
    code, out, err = cli(*small_run(net_lr=None, net_momentum=None, exper_imp_total_iter=2),
                         "--output_dir", str(tmp_path))
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
