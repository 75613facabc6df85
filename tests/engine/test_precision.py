"""Speed without changing what is computed (incop.engine.precision): bf16 autocast, fp16 on CUDA,
channels-last; pruned weights stay exact zeros in float32. Speed itself is measured in
benchmarks/precision.py, never asserted."""
import pytest
import torch

from conftest import small_run

from incop.engine.precision import Compute
from incop.engine.training import evaluate, make_optimizer, train_steps
from incop.models.architectures import build_model
from incop.pruning.masks import Masks
from incop.pruning.rules import SAP
from incop.runs.layout import model_state, round_masks


def _data(shape=(1, 12, 12), n=256):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)


def _train(model, compute, x, y, steps=6):
    masks = Masks.ones_like(model).bind(model)
    weights = {k: p.detach() for k, p in masks.parameters(model).items()}
    masks, _ = SAP(1, 2)(weights, masks)
    masks.bind(model).apply()
    opt = make_optimizer(model, 0.05, 0.9, 5e-4)
    stream = iter([(x[i:i + 32], y[i:i + 32]) for i in range(0, len(y), 32)] * 4)
    train_steps(model, opt, masks, stream, steps, compute=compute)
    return masks


@pytest.mark.parametrize("arch,channels_last", [("conv2", "auto"), ("lenet300", "auto"),
                                                ("conv2", "off")])
def test_bf16_keeps_fp32_weights_and_exact_zeros(arch, channels_last):
    torch.manual_seed(0)
    model = build_model(arch, (1, 12, 12), 10)
    compute = Compute.for_model(torch.device("cpu"), "bf16", channels_last, model)
    compute.prepare_model(model)
    assert compute.channels_last == (arch == "conv2" and channels_last == "auto")
    x, y = _data()
    masks = _train(model, compute, x, y)
    for name, p in masks.parameters(model).items():
        assert p.dtype == torch.float32
        assert torch.all(p[masks[name] == 0] == 0)  # exact zeros, not bf16 crumbs
    if compute.channels_last:
        assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_computes_the_same_network_in_fp32():
    x, y = _data()
    results = []
    for cl in ("off", "on"):
        torch.manual_seed(0)
        # PyTorch's smaller initial weights keep these six steps at lr 0.05 away from ReLU kinks,
        # where the two layouts' summation orders can flip a unit and the trajectories part
        # (with Kaiming's they agree to 6e-7 after two steps, then one flips)
        model = build_model("conv2", (1, 12, 12), 10, init="pytorch")
        compute = Compute.for_model(torch.device("cpu"), "fp32", cl, model)
        compute.prepare_model(model)
        _train(model, compute, x, y)
        results.append({k: v.contiguous() for k, v in model.state_dict().items()})
    assert all(torch.allclose(results[0][k], results[1][k], atol=1e-5) for k in results[0])


def test_bf16_evaluation_is_close_and_reported_in_float():
    torch.manual_seed(0)
    model = build_model("lenet300", (1, 12, 12), 10)
    x, y = _data()
    acc32, loss32 = evaluate(model, (x, y))
    acc16, loss16 = evaluate(model, (x, y), Compute(precision="bf16"))
    assert isinstance(loss16, float) and abs(loss16 - loss32) < 0.02 and abs(acc16 - acc32) <= 3


def test_fp16_needs_cuda_and_unknown_precisions_are_refused(cli, tmp_path):
    if not torch.cuda.is_available():
        code, _, err = cli("run", "--precision", "fp16", "--output_dir", str(tmp_path))
        assert code == 2 and "needs a CUDA device" in err and "bf16" in err
    code, _, err = cli("run", "--precision", "fp64", "--output_dir", str(tmp_path))
    assert code == 2 and "--precision fp64" in err
    code, _, err = cli("run", "--channels_last", "maybe", "--output_dir", str(tmp_path))
    assert code == 2 and "--channels_last" in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_precisions_keep_exact_zeros(precision):
    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = build_model("conv2", (1, 12, 12), 10).to(dev)
    compute = Compute.for_model(dev, precision, "auto", model)
    compute.prepare_model(model)
    x, y = (t.to(dev) for t in _data())
    masks = _train(model, compute, x, y)
    for name, p in masks.parameters(model).items():
        assert torch.all(p[masks[name] == 0] == 0)


def test_bf16_run_end_to_end_records_fp32_weights(cli, tmp_path):
    code, out, err = cli(*small_run(net_lr=None, net_momentum=None, exper_imp_total_iter=2,
                                    precision="bf16"), "--output_dir", str(tmp_path))
    assert code == 0, err
    run = next(tmp_path.rglob("config.json")).parent
    saved, masks = model_state(run, 0, 1), round_masks(run, 0, 1)
    for name, m in masks.items():
        assert saved[name].dtype == torch.float32 and torch.all(saved[name][~m] == 0)
