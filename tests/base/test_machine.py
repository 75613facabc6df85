"""incop.base.machine: the threads a run takes (never more than its share of the cores) and the
warning for a person at a terminal when the machine is already loaded, worded by case."""
import torch

import incop.base.machine as machine
from incop.base import machine as machine_module
from incop.base.machine import load_warning, set_threads


def test_threads_never_exceed_the_share_of_cores(monkeypatch):
    monkeypatch.setattr(machine_module, "available_cores", lambda: 8)
    before = torch.get_num_threads()
    try:
        assert set_threads(None) == 8 and torch.get_num_threads() == 8
        assert set_threads(None, workers=3) == 2
        assert set_threads(16, workers=2) == 4     # capped at the share
        assert set_threads(1, workers=2) == 1
    finally:
        torch.set_num_threads(before)


def test_load_warning(monkeypatch):
    monkeypatch.setattr(machine_module.os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    assert "load average 5.0 on 2 cores" in load_warning(2)
    monkeypatch.setattr(machine_module.os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    assert load_warning(2) is None


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
