"""Writing files whole (incop.base.files): a signal that stops a run while a file is written
acts once the file is in place, never in the middle of torch.save (whose zip writer then fails
on its own and hides the signal's clean stop), also with other threads running (the kernel may
hand the signal to any of them), and leaves every handler as it was."""
import os
import signal
import threading

import pytest
import torch

from incop.base.files import STOPPING_SIGNALS, atomic_write


@pytest.mark.parametrize("threads", [0, 2])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_write_acts_after_the_file_is_whole(tmp_path, sig, threads):
    def stop(signum, frame):  # what incop's handlers do: stop the run by raising
        raise KeyboardInterrupt

    state = {"w": torch.arange(1000.0)}
    done = threading.Event()
    others = [threading.Thread(target=done.wait, daemon=True) for _ in range(threads)]
    for thread in others:
        thread.start()

    def write(f):
        os.kill(os.getpid(), sig)  # mid-write: the handler would raise right here
        torch.save(state, f)

    previous = signal.signal(sig, stop)
    try:
        with pytest.raises(KeyboardInterrupt):
            atomic_write(tmp_path / "f.pt", write)
    finally:
        assert signal.getsignal(sig) is stop  # its handler again after the write
        signal.signal(sig, previous)
        done.set()
    assert torch.equal(torch.load(tmp_path / "f.pt", weights_only=True)["w"], state["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["f.pt"]  # no temporary left


def test_the_held_signals_are_the_ones_that_stop_a_run():
    assert set(STOPPING_SIGNALS) == {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1,
                                     signal.SIGUSR2}
