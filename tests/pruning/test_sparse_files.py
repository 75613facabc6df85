"""Compact storage (incop.pruning.sparse_files): packed masks and sparse models read back
exactly, old masks files keep loading, the files are as small as promised, and a stride-0
tensor is counted by the bytes its storage holds."""
import io
import os

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from crafted_files import assert_refused, bounded, torch_bytes, write

from incop.models.architectures import build_model
from incop.pruning.masks import Masks
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


def test_stride_zero_masks_and_sparse_entries_are_refused_by_their_storage(tmp_path):
    """A tensor whose view repeats one stored byte announces as many elements as it likes: its
    elements are counted against the bytes its storage holds, not its shape."""
    from incop.pruning.sparse_files import MASKS_FORMAT, MODEL_FORMAT

    one_byte = torch.zeros(1, dtype=torch.uint8)
    files = {
        "packed mask": {"format": MASKS_FORMAT, "masks": {"fc1.weight": {
            "shape": [2**33], "bits": one_byte.expand(2**30)}}},
        "plain masks of earlier runs": {"fc1.weight": torch.zeros(1).expand(2**31)},
        "sparse values": {"format": MODEL_FORMAT, "dense": {}, "order": ["w"], "sparse": {"w": {
            "shape": [2**31], "bits": torch.full((1,), 255, dtype=torch.uint8).expand(2**28),
            "values": torch.zeros(1).expand(2**31), "dtype": "float32"}}},
        "overlapping rows": {"fc1.weight": torch.zeros(2**17).as_strided((2**16, 2**16), (1, 1))},
    }
    cases = {}
    for name, obj in files.items():
        path = write(tmp_path / f"{name.replace(' ', '_')}.pt", torch_bytes(obj))
        assert os.path.getsize(path) < 1 << 20
        cases[name] = f"Masks.load({path!r})" if "mask" in name else f"load_tensors({path!r})"
    results = bounded("from incop.pruning.masks import Masks\n"
                      "from incop.pruning.sparse_files import load_tensors", cases)
    for name in files:
        assert_refused(results[name], "stored bytes")


def test_a_stride_zero_tensor_handed_in_memory_is_refused_too():
    """The API's dicts skip the file checks: unpacking checks storage itself."""
    from incop.pruning.sparse_files import BadFile, dense_state_dict, unpack_mask, MODEL_FORMAT

    with pytest.raises(BadFile, match="stored bytes"):
        unpack_mask({"shape": [2**33], "bits": torch.zeros(1, dtype=torch.uint8).expand(2**30)})
    with pytest.raises(BadFile, match="stored bytes"):
        dense_state_dict({"format": MODEL_FORMAT, "dense": {}, "order": ["w"], "sparse": {"w": {
            "shape": [8], "bits": torch.full((1,), 255, dtype=torch.uint8),
            "values": torch.zeros(1).expand(8), "dtype": "float32"}}})
