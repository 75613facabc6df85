"""Killed runs resume from the last completed round and match an uninterrupted run exactly;
finished trials are never rerun; another configuration in the same folder is refused."""
import json
from pathlib import Path

import pytest
import torch

from conftest import kill_at, run_dir, table

import incop.engine.training as training
from incop.runs.layout import model_state


ARGS = ["run", "--prune_method", "ciap", "--prune_epsilon", "0.02", "--net_train_epochs", "3",
        "--net_warmup", "2", "--exper_imp_total_iter", "3", "--exper_num_trial", "2", "--quiet",
        "--run_name", "r"]
def _run_path(out: Path) -> Path:
    return run_dir(*ARGS, "--output_dir", out)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    from incop.cli import main
    out = tmp_path_factory.mktemp("ref")
    assert main(ARGS + ["--output_dir", str(out)]) == 0
    return _run_path(out)


# kill during the first warm-up, in the middle of the run, and in the last trial's last rounds
@pytest.mark.parametrize("when", [0.0, 0.5, 0.95])
def test_kill_then_resume_matches_uninterrupted(cli, monkeypatch, tmp_path, uninterrupted, when):
    total = len(table(uninterrupted, "epochs.csv")) + 2 * 2  # + two warm-ups of 2 epochs
    kill_epoch = max(1, int(when * total))
    kill_at(monkeypatch, kill_epoch)
    code, _, err = cli(*ARGS, "--output_dir", str(tmp_path))
    assert code == 130 and "run the same command again to resume" in err
    monkeypatch.undo()
    code, out, err = cli(*ARGS, "--output_dir", str(tmp_path))
    assert code == 0, err
    if kill_epoch > 2 + 3:  # past trial 0's warm-up and first round
        assert "resuming trial" in out
    run = _run_path(tmp_path)
    for name in ("rounds.csv", "epochs.csv", "layers.csv", "similarity.csv"):
        assert table(run, name) == table(uninterrupted, name), name
    for t in (0, 1):
        a, b = model_state(run, t), model_state(uninterrupted, t)
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((run / "summary.json").read_text())["complete"] is True


def test_finished_trials_are_never_rerun(cli, monkeypatch, tmp_path, uninterrupted):
    import shutil
    run = _run_path(tmp_path)
    shutil.copytree(uninterrupted, run)
    calls = []
    monkeypatch.setattr(training, "train_steps", lambda *a, **k: calls.append(1))
    code, out, _ = cli(*ARGS, "--output_dir", str(tmp_path))
    assert code == 0 and calls == []
    assert table(run, "rounds.csv") == table(uninterrupted, "rounds.csv")


def test_other_config_in_same_directory_is_refused(cli, tmp_path, uninterrupted):
    import shutil
    shutil.copytree(uninterrupted, _run_path(tmp_path))
    code, _, err = cli(*ARGS, "--output_dir", str(tmp_path), "--net_lr", "0.05")
    assert code == 2 and "another configuration" in err
