"""--wandb (incop.track.wandb) logs to Weights & Biases what --tensorboard logs, as one more
observer of the loop; W&B's offline mode keeps it on disk in tests. Without the package: one
line. Tracking never changes a run id."""
import json
import sys
import time
import types

import pytest

from conftest import small_run


ARGS = small_run(prune_method="ciap", net_warmup=2, net_train_epochs=2, check_every="0.5ep",
                 ticket_epochs=1)


class FakeRun:
    def __init__(self):
        self.logged, self.axes, self.summary, self.finished = [], {}, {}, False

    def define_metric(self, pattern, step_metric):
        self.axes[pattern] = step_metric

    def log(self, values):
        self.logged.append(values)

    def finish(self):
        self.finished = True


def fake_wandb():
    module = types.ModuleType("wandb")
    module.runs, module.inits = [], []

    def init(**kwargs):
        module.inits.append(kwargs)
        module.runs.append(FakeRun())
        return module.runs[-1]

    module.init = init
    module.Image = lambda path: ("image", path)
    return module


def _series(run, key, axis):
    """(step, value) pairs of ``key``, flattened for pytest.approx: step, value, step, ..."""
    return [x for v in run.logged if key in v for x in (v[axis], v[key])]


def _pairs(pairs):
    return [x for pair in pairs for x in pair]


def test_wandb_logs_what_the_run_recorded(cli, tmp_path, monkeypatch):
    wandb = fake_wandb()
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    code, _, err = cli(*ARGS, "--wandb", "--wandb_project", "p", "--output_dir", str(tmp_path))
    assert code == 0, err
    run_dir = next(tmp_path.rglob("config.json")).parent
    (init,), (run,) = wandb.inits, wandb.runs
    assert init["project"] == "p" and init["name"] == run_dir.name
    assert init["config"]["prune"]["method"] == "ciap" and run.finished
    rounds = json.loads((run_dir / "rounds.json").read_text())
    assert _series(run, "trial0/round/remaining_pct", "trial0/round/index") == pytest.approx(
        _pairs((r["round"], r["remaining_pct"]) for r in rounds))
    checks = json.loads((run_dir / "epochs.json").read_text())
    assert _series(run, "trial0/check/val_acc", "trial0/check/index") == pytest.approx(
        _pairs((i + 1, c["val_acc"]) for i, c in enumerate(checks)))  # as TensorBoard's steps
    assert len(_series(run, "trial0/warmup/train_loss", "trial0/warmup/iteration")) == 4
    ticket = json.loads((run_dir / "tickets.json").read_text())[0]
    assert _series(run, "trial0/ticket/test_acc", "trial0/ticket/index") == [0, ticket["test_acc"]]
    assert run.axes["trial0/round/*"] == "trial0/round/index"
    assert run.summary["trial0/round2/stop_reason"] == rounds[2]["stop_reason"]
    images = {k for v in run.logged for k in v if k.startswith("figures/")}
    assert "figures/rounds" in images


def test_wandb_offline_writes_the_run_on_disk(cli, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'incop[wandb]')")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wb").mkdir()
    code, _, err = cli(*ARGS, "--wandb", "--output_dir", str(tmp_path / "out"))
    assert code == 0, err
    (record,) = (tmp_path / "wb").glob("wandb/offline-run-*/run-*.wandb")
    keys = (b"trial0/round/remaining_pct", b"trial0/check/val_acc", b"trial0/warmup/train_loss",
            b"trial0/ticket/test_acc", b"lenet300")
    # W&B's own service process writes the file; on a busy machine it may still be writing
    # when the run returns, so wait for it (generously), never for a fixed time
    deadline = time.monotonic() + 300
    while not all(k in record.read_bytes() for k in keys) and time.monotonic() < deadline:
        time.sleep(0.5)
    blob = record.read_bytes()
    for key in keys:
        assert key in blob, key
    run_dir = next((tmp_path / "out").rglob("config.json")).parent
    assert not any(p.is_symlink() for p in run_dir.rglob("*"))  # W&B's links stay outside
    assert cli("report", str(run_dir), "--output", str(tmp_path / "rep"))[0] == 0


def test_without_wandb_one_line_and_nothing_left(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    code, _, err = cli(*ARGS, "--wandb", "--output_dir", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1 and "pip install 'incop[wandb]'" in err
    assert not (tmp_path / "out").exists()


def test_tracking_never_changes_a_run_id():
    from incop.cli import build_parser
    from incop.config.flags import config_from_args

    ids = {config_from_args(build_parser().parse_args(["run", "--prune_method", "ciap",
                                                       *extra])).run_id()
           for extra in ([], ["--wandb"], ["--wandb", "--wandb_project", "x"], ["--tensorboard"])}
    assert ids == {"6ebb13b4d9"}
