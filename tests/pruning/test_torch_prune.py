"""incop's rules as torch.nn.utils.prune methods (incop.pruning.torch_prune), and masks in and out
of torch.nn.utils.prune form."""
import copy

import torch
from torch import nn
from torch.nn.utils import prune

from incop.pruning.masks import Masks, prunable_parameters
from incop.pruning.rules import LayerwiseMagnitude, SAP
from incop.pruning.torch_prune import (MagnitudePruning, SAPPruning, masks_from_torch_prune,
                                       to_torch_prune)


def _linear_stack():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(30, 40), nn.ReLU(), nn.Linear(40, 20), nn.ReLU(), nn.Linear(20, 5))


def test_sap_as_torch_global_unstructured_matches_incop_rule_twice():
    model = _linear_stack()
    params = [(model[i], "weight") for i in (0, 2, 4)]
    names = [f"{i}.weight" for i in (0, 2, 4)]
    weights = {n: model[i].weight.detach().clone() for n, i in zip(names, (0, 2, 4))}
    masks = Masks({n: torch.ones_like(w) for n, w in weights.items()})
    for _ in range(2):  # the second call must prune only survivors, as SAP on survivors would
        prune.global_unstructured(params, pruning_method=SAPPruning, p=1.0, q=2.0)
        masks, info = SAP(1.0, 2.0)(weights, masks)
        for n, i in zip(names, (0, 2, 4)):
            assert torch.equal(model[i].weight_mask, masks[n])
    assert 0 < masks.remaining() < masks.total()


def test_sap_and_magnitude_per_layer_apply():
    model = _linear_stack()
    w = model[0].weight.detach().clone()
    SAPPruning.apply(model[0], "weight", p=0.5, q=1.0)
    expected, _ = SAP(0.5, 1.0)({"w": w}, Masks({"w": torch.ones_like(w)}))
    assert torch.equal(model[0].weight_mask, expected["w"])
    w2 = model[2].weight.detach().clone()
    MagnitudePruning.apply(model[2], "weight", ratio=0.2)
    expected, _ = LayerwiseMagnitude(0.2)({"w": w2}, Masks({"w": torch.ones_like(w2)}))
    assert torch.equal(model[2].weight_mask, expected["w"]) and int(model[2].weight_mask.sum()) == 640


def test_export_to_torch_prune_and_plain_weights(tmp_path):
    model = _linear_stack()
    g = torch.Generator().manual_seed(2)
    masks = Masks({n: (torch.rand(p.shape, generator=g) > 0.4).float()
                   for n, p in prunable_parameters(model).items()}).bind(model)
    masks.apply()
    x = torch.randn(7, 30)
    expected = model(x)
    exported = to_torch_prune(copy.deepcopy(model), masks)
    sd = exported.state_dict()
    assert {"0.weight_orig", "0.weight_mask", "4.weight_mask"} <= set(sd) and "0.weight" not in sd
    assert torch.allclose(exported(x), expected)
    roundtrip = masks_from_torch_prune(exported, make_plain=False)  # reads, does not modify
    assert all(torch.equal(roundtrip[n], masks[n]) for n in masks)
    from incop.pruning.torch_prune import remove_reparametrization
    plain = remove_reparametrization(exported).state_dict()
    fresh = _linear_stack()
    fresh.load_state_dict(plain)  # strict: the keys of an unpruned model
    assert torch.allclose(fresh(x), expected)
    assert int((fresh[0].weight == 0).sum()) == int((masks["0.weight"] == 0).sum())
    masks.save(tmp_path / "m.pt")
    loaded = Masks.load(tmp_path / "m.pt")
    assert loaded.names() == masks.names() and all(torch.equal(loaded[n], masks[n].cpu()) for n in masks)


def test_import_from_model_pruned_by_torch():
    model = _linear_stack()
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    prune.random_unstructured(model[2], "weight", amount=0.3)
    torch_masks = {0: model[0].weight_mask.clone(), 2: model[2].weight_mask.clone()}
    masks = masks_from_torch_prune(model)
    assert masks.names() == ["0.weight", "2.weight", "4.weight"]
    assert torch.equal(masks["0.weight"], torch_masks[0]) and torch.equal(masks["2.weight"], torch_masks[2])
    assert torch.all(masks["4.weight"] == 1)  # not pruned by torch: all survive
    # the model is plain again, pruned entries zero, and incop can continue from these masks
    assert isinstance(model[0].weight, nn.Parameter) and torch.all(model[0].weight[torch_masks[0] == 0] == 0)
    new, _ = SAP(1.0, 2.0)({n: p.detach() for n, p in prunable_parameters(model).items()}, masks)
    assert all(torch.all(new[n] <= masks[n]) for n in masks) and new.remaining() < masks.remaining()
