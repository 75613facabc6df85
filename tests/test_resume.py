"""Killed runs resume from the last completed round and match an uninterrupted run exactly."""
import json
from pathlib import Path

import pytest
import torch

import incop.engine.training as training

from conftest import kill_at, table
from incop.runs.layout import model_state

ARGS = ["run", "--prune_method", "ciap", "--prune_epsilon", "0.02", "--net_train_epochs", "3",
        "--net_warmup", "2", "--exper_imp_total_iter", "3", "--exper_num_trial", "2", "--quiet",
        "--run_name", "r"]
def _run_path(out: Path) -> Path:
    return out / "ciap" / "lenet300" / "digits" / "r"


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


def test_options_added_later_keep_earlier_run_ids_and_resumes():
    """Run directories made before --prune_target_remaining existed keep their hash (computed
    before the option existed) and can still be resumed; setting the option changes the hash."""
    from incop.config.schema import RunConfig
    from incop.config.schema import comparable as _comparable

    cfg = RunConfig()
    cfg.prune.method = "ciap"  # the method those runs ran with no --prune_method
    # --net_init's default (kaiming) changes results, so today's default run has a new id; the
    # init those runs used (pytorch) gives the old one back
    assert cfg.run_id() != "c829456d16"
    cfg.model.init = "pytorch"
    assert cfg.run_id() == "c829456d16"
    old_saved = cfg.to_dict()
    del old_saved["prune"]["target_remaining"]  # a progress file written by that release
    del old_saved["model"]["init"]
    assert _comparable(old_saved) == _comparable(cfg.to_dict())
    assert _comparable(old_saved) != _comparable(RunConfig().to_dict())  # not resumed as kaiming
    cfg.prune.target_remaining = 20.0
    assert cfg.run_id() != "c829456d16"
    assert _comparable(old_saved) != _comparable(cfg.to_dict())
