"""incop export (dense, torch_prune, sparse, onnx) and incop speed on a small run: every round
saved compactly, the formats agree, ONNX matches PyTorch, the speed table is complete."""
import json
import sys

import pytest
import torch
from torch import nn

import conftest

import incop
from incop.models.architectures import build_model
from incop.pruning.torch_prune import to_torch_prune
from incop.runs.layout import model_state, round_masks


try:
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    HAVE_ONNX = True
except Exception:
    HAVE_ONNX = False


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from incop.cli import main

    out = tmp_path_factory.mktemp("run")
    argv = [*conftest.small_run(), "--output_dir", str(out)]  # the fixture's name is taken
    code = main(argv)
    assert code == 0
    return conftest.run_dir(*argv)


def _lenet(state=None):
    model = build_model("lenet300", (1, 8, 8), 10)
    if state is not None:
        model.load_state_dict(state)
    return model.eval()


@pytest.mark.parametrize("k", [0, 1, 2])
def test_every_round_is_saved_compactly_and_reads_back(small_run, k):
    state, masks = model_state(small_run, 0, k), round_masks(small_run, 0, k)
    assert set(masks) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    for n, m in masks.items():
        assert torch.all(state[n][~m] == 0)
    rounds = json.loads((small_run / "rounds.json").read_text())
    assert sum(int(m.sum()) for m in masks.values()) == rounds[k]["remaining"]


def test_export_dense_torch_prune_and_sparse_agree(cli, small_run, tmp_path):
    want = model_state(small_run, 0, 2)
    for fmt in ("dense", "torch_prune", "sparse"):
        code, out, err = cli("export", str(small_run), "--format", fmt, "--output",
                             str(tmp_path / f"{fmt}.pt"))
        assert code == 0, err
        assert f"({fmt}): trial 0 round 2" in out
    dense = torch.load(tmp_path / "dense.pt")
    assert all(torch.equal(dense[k], v) for k, v in want.items())
    tp = to_torch_prune(_lenet(), incop.Masks({n: m.float() for n, m in round_masks(small_run, 0, 2).items()}))
    tp.load_state_dict(torch.load(tmp_path / "torch_prune.pt"))
    assert torch.equal(tp.fc1.weight_mask, round_masks(small_run, 0, 2)["fc1.weight"].float())
    assert torch.equal(tp.fc1.weight_orig * tp.fc1.weight_mask, want["fc1.weight"])
    got = incop.load_sparse(_lenet(), tmp_path / "sparse.pt")
    assert all(torch.equal(got.state_dict()[k], v) for k, v in want.items())
    # an earlier round is there too, and an API run says how to export it
    assert cli("export", str(small_run), "--format", "dense", "--round", "0", "--output",
               str(tmp_path / "r0.pt"))[0] == 0
    assert torch.equal(torch.load(tmp_path / "r0.pt")["fc1.weight"], model_state(small_run, 0, 0)["fc1.weight"])
    code, _, err = cli("export", str(small_run), "--format", "bogus", "--output", str(tmp_path / "x"))
    assert code == 2 and "choose one of dense, torch_prune, sparse, onnx" in err


def test_export_of_an_api_run_needs_the_model(cli, tmp_path):
    from incop.data.datasets import load_splits

    d = load_splits("digits", None, 0.1, seed=0)
    cfg = incop.RunConfig(prune=incop.PruneConfig(method="sap"),
                          train=incop.TrainConfig(lr=0.05, momentum=0.9, epochs=1, warmup=1),
                          experiment=incop.ExperimentConfig(imp_total_iter=2))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    result = incop.prune_model(model, (d.train_x, d.train_y), (d.val_x, d.val_y), None, cfg,
                               output_dir=tmp_path)
    code, _, err = cli("export", str(result.run_dir), "--format", "dense", "--output", str(tmp_path / "m.pt"))
    assert code == 2 and "incop.export_model(model" in err and err.count("\n") == 1
    incop.export_model(result.model, result.masks, tmp_path / "s.pt", "sparse")
    again = incop.load_sparse(nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)),
                              tmp_path / "s.pt")
    assert all(torch.equal(again.state_dict()[k], v.cpu()) for k, v in result.model.state_dict().items())


@pytest.mark.skipif(not HAVE_ONNX, reason="onnx and onnxruntime are not installed (pip install 'incop[export]')")
def test_onnx_export_matches_pytorch_in_onnxruntime(cli, small_run, tmp_path):
    import onnxruntime as ort

    code, out, err = cli("export", str(small_run), "--format", "onnx", "--output", str(tmp_path / "m.onnx"))
    assert code == 0, err and "onnxruntime matches PyTorch within" in out
    model = _lenet(model_state(small_run, 0, 2))
    x = torch.randn(7, 1, 8, 8)  # another batch size than the export's: the batch axis is dynamic
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    assert abs(got - model(x).detach().numpy()).max() < 1e-4


def test_onnx_without_the_extra_is_one_line(cli, small_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, _, err = cli("export", str(small_run), "--format", "onnx", "--output", str(tmp_path / "m.onnx"))
    assert code == 2 and err.count("\n") == 1 and "pip install 'incop[export]'" in err


def test_speed_command_writes_a_complete_table(cli, small_run):
    code, out, err = cli("speed", str(small_run), "--batches", "1", "64", "--threads", "1",
                         "--repeats", "2", "--quiet")
    assert code == 0, err
    speed = json.loads((small_run / "speed.json").read_text())
    assert [(r["round"], r["batch"]) for r in speed["whole"]] == [(k, b) for k in (0, 1, 2) for b in (1, 64)]
    assert len(speed["layers"]) == 3 * len(speed["whole"])
    assert all(r["max_abs_diff"] < 1e-5 for r in speed["whole"])
    assert speed["kernels"][:2] == ["csr", "csr-reduce"]
    assert ("csr-tiled" in speed["kernels"]) == (speed["csr_tiled_unavailable"] is None)
    assert (small_run / "figures" / "speedup.png").exists() and (small_run / "speed_layers.csv").exists()
    code, out, err = cli("report", str(small_run), "--output", str(small_run / "rep"))
    assert code == 0 and "speed-up b64" in out
    final = [r for r in speed["whole"] if r["round"] == 2 and r["batch"] == 64][0]["speedup"]
    assert f"{final:.2f}x" in out


def test_speed_says_in_one_line_when_incops_kernel_did_not_run(cli, small_run, monkeypatch):
    from incop.deploy import csr_tiled

    monkeypatch.setenv("INCOP_NATIVE", "0")
    csr_tiled._load.cache_clear()
    try:
        code, out, err = cli("speed", str(small_run), "--batches", "64", "--threads", "1",
                             "--repeats", "1", "--quiet")
    finally:
        monkeypatch.undo()
        csr_tiled._load.cache_clear()
    assert code == 0, err
    assert "csr-tiled (incop's kernel) did not run: disabled by INCOP_NATIVE=0" in out
    speed = json.loads((small_run / "speed.json").read_text())
    assert speed["kernels"] == ["csr", "csr-reduce"]
    assert speed["csr_tiled_unavailable"] == "disabled by INCOP_NATIVE=0"
    assert all(r["csr_tiled_us"] is None for r in speed["layers"])
