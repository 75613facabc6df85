"""Issue 17, compact storage: packed masks and sparse models read back exactly, old run files keep
loading, and the files are as small as promised."""
import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from incop.pruning.masks import Masks
from incop.models.architectures import build_model
from incop.runs.layout import model_state, round_masks
from incop.pruning.sparse_files import (dense_state_dict, load_sparse, pack_mask, pack_masks,
                                        read_masks, save_sparse, sparse_state_dict, unpack_mask)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=4), st.floats(0, 1), st.integers(0, 999))
def test_packed_masks_round_trip_any_shape(shape, density, seed):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=g) < density
    packed = pack_mask(mask)
    assert packed["bits"].dtype == torch.uint8 and packed["bits"].numel() == -(-mask.numel() // 8)
    assert torch.equal(unpack_mask(packed), mask)


def _random_masks(model, density, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: (torch.rand(p.shape, generator=g) < density) for n, p in model.named_parameters()
            if p.dim() > 1}


def _pruned(model, masks):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in masks:
                p.mul_(masks[n])
    return model


@pytest.mark.parametrize("arch,dtype", [("lenet300", torch.float32), ("resnet20", torch.float32),
                                        ("conv2", torch.float64), ("lenet300", torch.bfloat16)])
def test_sparse_model_round_trip_is_exact(arch, dtype, tmp_path):
    torch.manual_seed(0)
    model = build_model(arch, (3, 16, 16), 10).to(dtype)
    masks = _random_masks(model, 0.1)
    _pruned(model, masks)
    if arch == "resnet20":  # batch-norm buffers travel too
        model.train()(torch.randn(4, 3, 16, 16, dtype=dtype))
    save_sparse(model, masks, tmp_path / "m.pt")
    other = build_model(arch, (3, 16, 16), 10).to(dtype)
    got = {}
    load_sparse(other, tmp_path / "m.pt", masks_out=got)
    for k, v in model.state_dict().items():
        assert other.state_dict()[k].dtype == v.dtype and torch.equal(other.state_dict()[k], v), k
    assert set(got) == set(masks) and all(torch.equal(got[n], masks[n]) for n in masks)


def test_custom_model_with_skipped_weights_and_a_plain_state_dict_passes_through():
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 2))
    masks = {"1.weight": torch.tensor([[1, 0, 1], [0, 0, 1]], dtype=torch.bool)}
    _pruned(model, masks)
    state = dense_state_dict(sparse_state_dict(model.state_dict(), masks))
    assert list(state) == list(model.state_dict())  # order kept
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    plain = model.state_dict()
    assert dense_state_dict(plain) == dict(plain)  # earlier runs' dense files read as they are


def test_masks_files_old_and_new():
    masks = Masks({"a.weight": torch.tensor([[1.0, 0.0], [0.0, 1.0]]), "b.weight": torch.ones(3, 9)})
    buf = io.BytesIO()
    masks.save(buf)
    buf.seek(0)
    loaded = Masks.load(buf)
    assert all(torch.equal(loaded[n], masks[n]) for n in masks)
    old = {"a.weight": torch.tensor([[True, False], [False, True]])}  # 0.1's bool state dict
    assert torch.equal(read_masks(old)["a.weight"], old["a.weight"])
    assert torch.equal(read_masks(pack_masks(old))["a.weight"], old["a.weight"])


def _size(obj) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.tell()


@pytest.mark.parametrize("arch,shape", [("lenet300", (1, 28, 28)), ("vgg16", (1, 28, 28))])
def test_files_shrink_as_promised(arch, shape):
    """At 5% remaining the sparse model is at most 1/8 of the dense state dict; packed masks
    are 1/8 of the bool ones (plus a few bytes a tensor)."""
    torch.manual_seed(0)
    model = build_model(arch, shape, 10)
    masks = _random_masks(model, 0.05)
    _pruned(model, masks)
    dense = _size(model.state_dict())
    assert _size(sparse_state_dict(model.state_dict(), masks)) * 8 <= dense
    bool_masks, packed = _size(masks), _size(pack_masks(masks))
    assert packed * 7 <= bool_masks


def test_run_files_fall_back_to_the_dense_files_of_earlier_runs(tmp_path):
    (tmp_path / "masks").mkdir()
    state = {"w": torch.tensor([[0.0, 2.0]])}
    torch.save({"w": torch.tensor([[False, True]])}, tmp_path / "masks" / "trial0_round0.pt")
    torch.save({"w": torch.tensor([[True, True]])}, tmp_path / "masks" / "trial0_round1.pt")
    torch.save(state, tmp_path / "model_trial0.pt")
    assert torch.equal(model_state(tmp_path, 0)["w"], state["w"])  # the final round: round 1
    assert torch.equal(round_masks(tmp_path, 0, 0)["w"], torch.tensor([[False, True]]))
    with pytest.raises(Exception, match="no saved weights for trial 0 round 0"):
        model_state(tmp_path, 0, 0)
