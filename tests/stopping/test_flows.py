"""The flow monitors (incop.stopping.flows): information flow (correlation matrices, streamed in
batches), gradient flow, activation similarity, against direct and hand computations; measuring
never changes the model, its optimizer or the random state."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from incop.base.errors import UsageError
from incop.data.batches import TensorBatches
from incop.engine.training import make_optimizer, train_epoch
from incop.pruning.masks import Masks
from incop.stopping.flows import (GradientFlow, InformationFlow, activation_similarity,
                                  correlation_matrix, layer_activations, monitored_layers)


def test_correlation_matrix_equals_numpy_corrcoef():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 5))
    b = a[:, :3] @ rng.normal(size=(3, 4)) + rng.normal(size=(200, 4))
    expected = np.corrcoef(a.T, b.T)[:5, 5:]
    got = correlation_matrix(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_dead_unit_contributes_zero():
    a = torch.randn(50, 3, dtype=torch.float64)
    b = torch.cat([torch.randn(50, 2, dtype=torch.float64), torch.full((50, 1), 0.7, dtype=torch.float64)], 1)
    c = correlation_matrix(a, b)
    assert torch.all(c[:, 2].abs() < 1e-6) and torch.isfinite(c).all()


class _Net(nn.Module):
    """Not in the registry: conv -> BN -> conv -> pooled linear, with dropout."""

    def __init__(self):
        super().__init__()
        self.c1, self.bn = nn.Conv2d(1, 6, 3), nn.BatchNorm2d(6)
        self.c2, self.drop, self.fc = nn.Conv2d(6, 5, 3), nn.Dropout(0.5), nn.Linear(5, 4)

    def forward(self, x):
        x = self.c2(torch.relu(self.bn(self.c1(x))))
        return self.fc(self.drop(torch.relu(x).mean((2, 3))))


def test_streaming_pass_equals_direct_computation():
    torch.manual_seed(0)
    model, x = _Net(), torch.randn(101, 1, 9, 9)
    monitor = InformationFlow(model, x, batch_size=7)  # uneven batches on purpose
    snap = monitor.measure(model)
    acts = layer_activations(model, monitor.layer_names, x)
    assert [a.shape[1] for a in acts] == [6, 5, 4]
    for got, (a, b) in zip(snap.matrices, zip(acts, acts[1:])):
        torch.testing.assert_close(got, correlation_matrix(a, b), atol=1e-5, rtol=0)
    assert torch.allclose(snap.rho, torch.stack([m.mean() for m in snap.matrices]))
    abs_monitor = InformationFlow(model, x, stat="abs_mean")
    assert torch.allclose(abs_monitor.measure(model).rho, torch.stack([m.abs().mean() for m in snap.matrices]))


def test_flow_distances():
    torch.manual_seed(1)
    model, x = _Net(), torch.randn(64, 1, 9, 9)
    for stat in ("mean", "abs_mean", "fro"):
        monitor = InformationFlow(model, x, stat=stat)
        ref = monitor.measure(model)
        assert monitor.distance(monitor.measure(model), ref) == pytest.approx(0, abs=1e-12)
    monitor = InformationFlow(model, x)
    ref = monitor.measure(model)
    with torch.no_grad():
        model.c2.weight.mul_(-1)
    now = monitor.measure(model)
    assert monitor.distance(now, ref) == pytest.approx(float(torch.linalg.vector_norm(now.rho - ref.rho)))
    assert monitor.distance(now, ref) > 0.01


def _tiny_linear():
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 3, bias=False))


def test_gradient_flow_equals_hand_computed_gradient():
    model = _tiny_linear()
    x, y = torch.randn(10, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    W1, W2 = (m.weight.detach().double().numpy() for m in model)
    X = x.double().numpy()
    logits = X @ W1.T @ W2.T
    P = np.exp(logits - logits.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    D = (P - np.eye(3)[y.numpy()]) / len(y)          # dL/dlogits for the mean cross-entropy
    dW2 = D.T @ (X @ W1.T)
    dW1 = (D @ W2).T @ X
    mask1 = torch.ones(4, 3)
    mask1[0, :2] = 0
    masks = Masks({"0.weight": mask1, "1.weight": torch.ones(3, 4)})
    g = GradientFlow(model, x, y, batch_size=3).measure(model, masks)
    expected = [np.abs(dW1)[mask1.bool().numpy()].mean(), np.abs(dW2).mean()]
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-6)


def test_gradient_flow_is_fresh_not_stale():
    model = _tiny_linear()
    x, y = torch.randn(20, 3), torch.randint(0, 3, (20,))
    monitor = GradientFlow(model, x, y)
    for p in model.parameters():
        p.grad = torch.full_like(p, 123.0)  # leftovers from "the last training step"
    g1 = monitor.measure(model)
    assert all(torch.all(p.grad == 123.0) for p in model.parameters())  # .grad untouched
    assert float(g1.max()) < 10  # not read from the stale .grad
    with torch.no_grad():
        model[0].weight.mul_(2.0)
    g2 = monitor.measure(model)
    assert not torch.allclose(g1, g2)  # it follows the weights


def test_measuring_leaves_model_and_optimizer_bit_identical():
    torch.manual_seed(3)
    model, x, y = _Net(), torch.randn(64, 1, 9, 9), torch.randint(0, 4, (64,))
    masks = Masks.ones_like(model).bind(model)
    opt = make_optimizer(model, 0.1, 0.9, 5e-4)
    train_epoch(model, opt, masks, TensorBatches(x, y, 16, True, torch.Generator().manual_seed(0)))
    state, opt_state = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    grads = [p.grad.clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    model.train()
    InformationFlow(model, x).measure(model)
    GradientFlow(model, x, y).measure(model, masks)
    layer_activations(model, [n for n, _ in monitored_layers(model, x[:1])], x)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k  # weights and BN running stats / counters
    after = opt.state_dict()
    for i, s in opt_state["state"].items():
        assert torch.equal(after["state"][i]["momentum_buffer"], s["momentum_buffer"])
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert torch.equal(torch.get_rng_state(), rng)


def test_model_needs_two_layers():
    with pytest.raises(UsageError, match="at least two"):
        InformationFlow(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), torch.randn(3, 4))
    with pytest.raises(UsageError, match="at least two"):
        GradientFlow(nn.Linear(4, 2), torch.randn(3, 4), torch.zeros(3, dtype=torch.long))


def test_cosine_similarity_per_layer():
    a = [torch.tensor([[1.0, 0.0], [0.0, 2.0]])]
    assert activation_similarity(a, a) == [pytest.approx(1.0)]
    assert activation_similarity(a, [-a[0]]) == [pytest.approx(-1.0)]
    assert activation_similarity(a, [torch.tensor([[0.0, 1.0], [0.0, 3.0]])]) == [pytest.approx(0.5)]


def test_evaluation_and_flows_run_in_the_devices_eval_batch():
    """On a CPU every measuring pass (accuracy, information and gradient flow, activations)
    feeds the model eval_batch_size samples at a time, not the whole probe at once."""
    from incop.data.batches import eval_batch_size
    from incop.engine.training import evaluate

    torch.manual_seed(0)
    model, seen = _Net(), []
    model.register_forward_pre_hook(lambda m, args: seen.append(len(args[0])))
    n, size = 700, eval_batch_size(torch.device("cpu"))
    assert size < n < 4 * size and eval_batch_size(torch.device("cuda")) >= size
    x, y = torch.randn(n, 1, 9, 9), torch.randint(0, 4, (n,))
    expected = [size] * (n // size) + [n % size]
    info = InformationFlow(model, x)
    seen.clear()
    info.measure(model)
    assert seen == expected
    for measure in (lambda: GradientFlow(model, x, y).measure(model),
                    lambda: layer_activations(model, info.layer_names, x),
                    lambda: evaluate(model, (x, y))):
        seen.clear()
        measure()
        assert seen == expected


def test_linear_on_sequences_uses_features_as_units():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    x = torch.randn(50, 7, 4)
    snap = InformationFlow(model, x).measure(model)
    assert snap.matrices[0].shape == (6, 3)
    with torch.no_grad():
        a = model[0](x).mean(1)
        b = model[2](model[1](model[0](x))).mean(1)
    assert torch.allclose(snap.matrices[0], correlation_matrix(a, b), atol=1e-10)
    expected = np.corrcoef(a.double().numpy().T, b.double().numpy().T)[:6, 6:]
    assert np.allclose(snap.matrices[0].numpy(), expected, atol=1e-9)


def test_information_flow_measures_a_deep_copy_and_a_compiled_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 5))
    x = torch.randn(40, 8)
    monitor = InformationFlow(model, x)
    reference = monitor.measure(model)
    twin = copy.deepcopy(model)
    assert torch.equal(monitor.measure(twin).rho, reference.rho)
    compiled = torch.compile(twin)  # never called: measuring uses the module it wraps
    assert torch.equal(monitor.measure(compiled).rho, reference.rho)
