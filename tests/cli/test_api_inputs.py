"""prune_model (incop.api) on what users hand it: no test set (with an output folder and a
report), and a compiled model."""
import torch
from torch import nn

import incop
from conftest import api_config, small_mlp, split_pairs


def test_no_test_set_with_output_dir_and_report(digits, cli, tmp_path):
    train, val, _ = split_pairs(digits)
    result = incop.prune_model(small_mlp(nn.ReLU), train, val, None, api_config(), output_dir=tmp_path / "o")
    assert (result.run_dir / "figures" / "rounds.png").exists()
    assert all(r["test_acc"] is None for r in result.rounds)
    code, out, err = cli("report", str(result.run_dir), "--output", str(tmp_path / "rep"))
    assert code == 0 and "Traceback" not in err


def test_prune_model_accepts_a_compiled_model(digits):
    result = incop.prune_model(torch.compile(small_mlp(nn.ReLU)), *split_pairs(digits), api_config())
    assert result.masks.remaining() < result.masks.total()
    plain = incop.prune_model(small_mlp(nn.ReLU), *split_pairs(digits), api_config())
    assert [r["val_acc"] for r in result.rounds] == [r["val_acc"] for r in plain.rounds]
