"""prune_model (incop.api) on what users hand it: no test set (with an output folder and a
report), and a compiled model."""
import pytest
import torch
from torch import nn

import incop


@pytest.fixture(scope="module")
def digits():
    from incop.data.datasets import load_splits
    return load_splits("digits", None, 0.1, seed=0)


def _pairs(d):
    return (d.train_x, d.train_y), (d.val_x, d.val_y), (d.test_x, d.test_y)


def _cfg(method="sap", rounds=2, **prune):
    return incop.RunConfig(prune=incop.PruneConfig(method=method, **prune),
                           train=incop.TrainConfig(lr=0.05, momentum=0.9, epochs=1, warmup=1),
                           # structure tests: one short warm-up need not learn
                           experiment=incop.ExperimentConfig(imp_total_iter=rounds,
                                                             allow_untrained=True))


def _mlp(act):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), act(), nn.Linear(32, 10))


def test_no_test_set_with_output_dir_and_report(digits, cli, tmp_path):
    train, val, _ = _pairs(digits)
    result = incop.prune_model(_mlp(nn.ReLU), train, val, None, _cfg(), output_dir=tmp_path / "o")
    assert (result.run_dir / "figures" / "rounds.png").exists()
    assert all(r["test_acc"] is None for r in result.rounds)
    code, out, err = cli("report", str(result.run_dir), "--output", str(tmp_path / "rep"))
    assert code == 0 and "Traceback" not in err


def test_prune_model_accepts_a_compiled_model(digits):
    result = incop.prune_model(torch.compile(_mlp(nn.ReLU)), *_pairs(digits), _cfg())
    assert result.masks.remaining() < result.masks.total()
    plain = incop.prune_model(_mlp(nn.ReLU), *_pairs(digits), _cfg())
    assert [r["val_acc"] for r in result.rounds] == [r["val_acc"] for r in plain.rounds]
