"""--tensorboard (incop.track.tensorboard) writes event files that read back as what the run
recorded; without the package, one line."""
import json
import sys

import pytest

from conftest import small_run


ARGS = small_run(prune_method="ciap", net_warmup=2, net_train_epochs=2, check_every="0.5ep",
                 ticket_epochs=1)


def _events(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_events_read_back_as_the_run_recorded(cli, tmp_path):
    code, _, err = cli(*ARGS, "--tensorboard", "--output_dir", str(tmp_path))
    assert code == 0, err
    run = next(tmp_path.rglob("config.json")).parent
    acc = _events(run)
    rounds = json.loads((run / "rounds.json").read_text())
    remaining = acc.Scalars("trial0/round/remaining_pct")
    assert [e.step for e in remaining] == [r["round"] for r in rounds]
    assert [e.value for e in remaining] == pytest.approx([r["remaining_pct"] for r in rounds])
    checks = json.loads((run / "epochs.json").read_text())
    val = acc.Scalars("trial0/check/val_acc")
    assert [e.step for e in val] == list(range(1, len(checks) + 1))
    assert [e.value for e in val] == pytest.approx([c["val_acc"] for c in checks])
    assert [e.value for e in acc.Scalars("trial0/check/distance")] == pytest.approx(
        [c["distance"] for c in checks if c["distance"] is not None])
    assert len(acc.Scalars("trial0/warmup/train_loss")) == 2  # one check per warm-up epoch
    assert acc.Scalars("trial0/ticket/test_acc")[0].value == pytest.approx(
        json.loads((run / "tickets.json").read_text())[0]["test_acc"])
    assert "figures/rounds" in acc.Tags()["images"]


def test_without_tensorboard_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    code, _, err = cli(*ARGS, "--tensorboard", "--output_dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "pip install 'incop[tensorboard]'" in err
