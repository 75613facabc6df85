"""Issue 17: incop export (dense, torch_prune, sparse, onnx) and incop speed on a small run."""
import json
import os
import shutil
import sys

import pytest
import torch
from torch import nn

import incop
from incop.models.architectures import build_model
from incop.runs.layout import model_state, round_masks
from incop.deploy.sparse_inference import SparseLinear, measure
from incop.pruning.torch_prune import to_torch_prune

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
    code = main(["run", "--net_dataset", "digits", "--prune_method", "sap", "--net_lr", "0.05",
                 "--net_momentum", "0.9", "--net_warmup", "1", "--net_train_epochs", "1",
                 "--exper_imp_total_iter", "3", "--quiet", "--output_dir", str(out)])
    assert code == 0
    return next(out.rglob("config.json")).parent


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


@pytest.mark.parametrize("kernel", ["csr", "csr-reduce"])
@pytest.mark.parametrize("batch,density", [(1, 0.05), (64, 0.02), (33, 0.5)])
def test_sparse_linear_equals_the_masked_dense_layer(batch, density, kernel):
    torch.manual_seed(batch)
    layer = nn.Linear(300, 100)
    mask = torch.rand(100, 300) < density
    mask[7] = False  # a dead neuron: its output is the bias alone
    with torch.no_grad():
        layer.weight.mul_(mask)
    x = torch.randn(batch, 300)
    out = SparseLinear(layer, mask, kernel)(x)
    assert out.shape == (batch, 100) and torch.allclose(out, layer(x), atol=1e-5, rtol=0)
    assert torch.equal(out[:, 7], layer.bias.detach()[7].expand(batch))
    # after another sparse layer its input is a transposed view: the same values either way
    view = torch.randn(300, batch).t()
    assert torch.allclose(SparseLinear(layer, mask, kernel)(view), layer(view), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kernel", ["csr", "csr-reduce"])
def test_sparse_linear_keeps_float64_and_a_missing_bias(kernel):
    torch.manual_seed(0)
    layer = nn.Linear(50, 20, bias=False).double()
    mask = torch.rand(20, 50) < 0.1
    with torch.no_grad():
        layer.weight.mul_(mask)
    x = torch.randn(8, 50, dtype=torch.float64)
    out = SparseLinear(layer, mask, kernel)(x)
    assert out.dtype == torch.float64 and torch.allclose(out, layer(x), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="kernel"):
        SparseLinear(layer, mask, "blocked")


def test_measure_reports_every_layer_and_what_ran_how():
    torch.manual_seed(0)
    model = build_model("conv2", (1, 8, 8), 10)
    masks = {n: (torch.rand(p.shape) < 0.05) for n, p in model.named_parameters() if p.dim() > 1}
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in masks:
                p.mul_(masks[n])
    m = measure(model, masks, (1, 8, 8), batch=16, repeats=2, warmup=1)
    ran = {r["layer"]: r["ran"] for r in m["layers"]}
    assert set(ran) == {n[:-len(".weight")] for n in masks}
    convs = [r for r in m["layers"] if r["kind"] == "Conv2d"]
    assert [r["layer"] for r in convs] == ["features.0", "features.2"]
    if shutil.which(os.environ.get("CC", "cc")):  # the direct sparse convolution is timed too
        assert all(r["direct_us"] > 0 and r["ran"].startswith(("direct", "dense (")) for r in convs)
    assert all(ran[n].startswith(("csr", "dense (")) for n in ran if n.startswith("classifier"))
    assert m["sparse_layers"] == sum(v.startswith(("csr", "direct")) for v in ran.values())
    linear = [r for r in m["layers"] if r["kind"] == "Linear"]
    assert all(r["csr_us"] > 0 and r["csr_reduce_us"] > 0 for r in linear)
    if shutil.which(os.environ.get("CC", "cc")):  # incop's own kernel is timed beside torch's
        assert all(r["csr_tiled_us"] > 0 for r in linear)
    assert m["max_abs_diff"] < 1e-5
    # the speed-up is of what ran: never below 1 (dense is the fallback), sparse only if faster
    assert m["speedup"] >= 1.0 and (m["sparse_layers"] > 0) == (m["best_sparse_us"] < m["dense_us"])


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


def test_sparse_payoff_sizes_quick_mode():
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "sparse_payoff.py"
    out = subprocess.run([sys.executable, str(script), "sizes", "--quick"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    row = next(line.split() for line in out.stdout.splitlines() if line.startswith("lenet300            5"))
    dense_mb, sparse_mb = float(row[2]), float(row[3])
    assert sparse_mb * 8 <= dense_mb  # the bound at 5% remaining


def test_speed_table_says_when_dense_is_faster():
    from incop.deploy.timing import speed_text

    base = {"round": 3, "remaining_pct": 4.0, "batch": 1, "threads": 1, "dense_us": 30.0}
    kept_dense = {**base, "sparse_us": 30.0, "speedup": 1.0, "sparse_layers": 0, "best_sparse_us": 60.0}
    sparse = {**base, "batch": 64, "sparse_us": 10.0, "speedup": 3.0, "sparse_layers": 2,
              "best_sparse_us": 10.0}
    lines = speed_text([kept_dense, sparse]).splitlines()
    assert "dense is faster here (sparse: 0.50x)" in lines[2]
    assert "3.00x" in lines[3] and "dense is faster" not in lines[3]


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
