"""Masks hold under SGD with momentum and weight decay; rewinding restores the saved state."""
import torch
from torch import nn

from incop.config.schema import RunConfig
from incop.data.batches import TensorBatches
from incop.engine.imp import IMPExperiment
from incop.pruning.masks import Masks, prunable_parameters
from incop.engine.training import make_optimizer, train_epoch

from conftest import spy_round_starts


def _small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 10))


def test_prunable_parameters_are_conv_and_linear_weights():
    assert list(prunable_parameters(_small_net())) == ["0.weight", "4.weight"]


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


# ---------------------------------------------------------------- weight_catalogue prints short

def _lenet300():
    from incop.models.architectures import build_model

    torch.manual_seed(0)
    return build_model("lenet300", (1, 28, 28), 10)


def _no_values(text: str) -> None:
    assert "tensor(" not in text and "Parameter containing" not in text, text


def test_a_weight_entry_prints_its_name_shape_dtype_and_status_not_its_values():
    from incop.pruning.masks import weight_catalogue

    fc1 = weight_catalogue(_lenet300())[0]
    for text in (repr(fc1), str(fc1)):
        _no_values(text)
        assert text == "WeightEntry('fc1.weight', shape=(300, 784), dtype=float32, pruned: Linear)"
    emb = weight_catalogue(nn.Sequential(nn.Embedding(20, 16), nn.Linear(16, 4)))[0]
    assert repr(emb).startswith("WeightEntry('0.weight', shape=(20, 16), dtype=float32, skipped: "
                                "embedding, not pruned by default")
    assert fc1.status == "pruned" and emb.status.startswith("skipped (embedding")


def test_the_catalogue_prints_as_a_short_table_with_a_total_line():
    from incop.pruning.masks import weight_catalogue

    catalogue = weight_catalogue(_lenet300())
    for text in (repr(catalogue), str(catalogue), repr([catalogue])):
        _no_values(text)
    lines = repr(catalogue).splitlines()
    assert len(lines) < 15 and str(catalogue) == repr(catalogue)
    for name, shape, size in (("fc1.weight", "300x784", "235,200"),
                              ("fc2.weight", "100x300", "30,000"),
                              ("fc3.weight", "10x100", "1,000")):
        line = next(l for l in lines if l.startswith(name))
        assert shape in line and "float32" in line and size in line and "pruned (Linear)" in line
    assert lines[-1] == "pruned: 3 of 3 weight matrices, 266,200 of 266,200 weights (100.0%)"
    # skipped weights say why; a shared weight is listed but counted once
    model = nn.Sequential(nn.Embedding(20, 16), nn.Linear(16, 16), nn.Linear(16, 16))
    model[2].weight = model[1].weight
    lines = repr(weight_catalogue(model, exclude=["1"])).splitlines()
    assert "skipped (embedding, not pruned by default" in lines[2]
    assert "skipped (excluded by --prune_exclude 1)" in lines[3]
    assert "skipped (shared with 1.weight, counted once)" in lines[4]
    assert lines[-1] == "pruned: 0 of 2 weight matrices, 0 of 576 weights (0.0%)"
    assert "no weight matrix" in repr(weight_catalogue(nn.ReLU()))


def test_the_catalogue_is_still_a_list():
    from incop.pruning.masks import WeightEntry, weight_catalogue

    model = _lenet300()
    catalogue = weight_catalogue(model)
    assert isinstance(catalogue, list) and len(catalogue) == 3
    assert [e.name for e in catalogue] == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert catalogue[0].param is model.fc1.weight and catalogue[-1].name == "fc3.weight"
    entries = list(catalogue)
    assert catalogue == entries and entries == catalogue and catalogue == weight_catalogue(model)
    assert catalogue[:2] == entries[:2] and len(catalogue[1:]) == 2
    assert catalogue != entries[:2]
    assert catalogue[0] == WeightEntry("fc1.weight", model.fc1.weight, True, "Linear")
    assert all(e.pruned for e in catalogue) and catalogue.count(catalogue[1]) == 1
    assert list(prunable_parameters(model)) == [e.name for e in catalogue]
