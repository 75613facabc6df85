"""Training under masks (incop.engine.training): pruned weights stay exactly zero under SGD with
momentum and weight decay and under Adam (momentum alone would revive them), and rewinding
restores every parameter and buffer."""
import pytest
import torch
from torch import nn

from conftest import spy_round_starts

from incop.config.schema import RunConfig
from incop.data.batches import TensorBatches
from incop.engine.imp import IMPExperiment
from incop.engine.training import make_optimizer, train_epoch, train_round
from incop.pruning.masks import Masks, prunable_parameters


def _small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 10))


def test_pruned_weights_stay_exactly_zero_under_momentum_and_weight_decay():
    model = _small_net()
    g = torch.Generator().manual_seed(1)
    masks = Masks({n: (torch.rand(p.shape, generator=g) > 0.5).float()
                   for n, p in prunable_parameters(model).items()}).bind(model)
    masks.apply()
    x, y = torch.randn(256, 1, 8, 8, generator=g), torch.randint(0, 10, (256,), generator=g)
    opt = make_optimizer(model, lr=0.5, momentum=0.9, weight_decay=0.1)
    before = {n: p.detach().clone() for n, p in prunable_parameters(model).items()}
    for _ in range(3):
        train_epoch(model, opt, masks, TensorBatches(x, y, 32, shuffle=True, generator=g))
    for n, p in prunable_parameters(model).items():
        pruned = masks[n] == 0
        assert torch.all(p[pruned] == 0.0), n
        assert not torch.equal(p[~pruned], before[n][~pruned])  # survivors did train


def test_momentum_alone_would_revive_pruned_weights():
    # The reason for masking twice: a momentum buffer built before pruning moves a pruned
    # weight on the next step unless the mask is re-applied after the step.
    w = nn.Parameter(torch.ones(2, 2))
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    w.grad = torch.ones(2, 2)
    opt.step()
    with torch.no_grad():
        w.mul_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    w.grad = torch.zeros(2, 2)
    opt.step()
    assert w[0, 1] != 0


def test_rewind_restores_every_parameter_and_buffer(monkeypatch):
    starts = spy_round_starts(monkeypatch)
    cfg = RunConfig()
    cfg.model.arch, cfg.prune.method = "resnet20", "lth"
    cfg.train.epochs, cfg.train.warmup, cfg.experiment.imp_total_iter = 1, 1, 3
    cfg.validate()
    result = IMPExperiment(cfg, progress=False, echo=lambda s: None).run()[0]
    # starts[0] is the warm-up; starts[1] is round 0, which begins at the rewind point
    rewind, masks = starts[1], result.masks
    assert any("running_mean" in k for k in rewind)
    for state in starts[2:]:
        for k, v in rewind.items():
            expected = v * masks[k].to(v.dtype) if k in masks else v
            if k in masks:  # masks only shrink, so compare where the final mask survives
                assert torch.equal(state[k] * masks[k], expected), k
            else:
                assert torch.equal(state[k], expected), k
    # and the rounds really differed in their masks (round 2 starts sparser than round 1)
    zeros = [sum(int((s[k] == 0).sum()) for k in masks) for s in starts[2:]]
    assert zeros[1] > zeros[0] > 0


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_pruned_weights_stay_exactly_zero_under_adam(kind):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    masks = Masks({"0.weight": (torch.rand(16, 8) > 0.5).float(),
                   "2.weight": (torch.rand(3, 16) > 0.5).float()}).bind(model)
    masks.apply()
    opt = make_optimizer(model, 0.05, 0.0, 0.1, kind)
    assert type(opt).__name__.lower() == kind
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    train_round(model, opt, masks, [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)],
                (x, y), 3)
    for name, m in masks.items():
        w = dict(model.named_parameters())[name]
        assert bool((w[m == 0] == 0).all()) and bool((w[m != 0] != 0).all())
