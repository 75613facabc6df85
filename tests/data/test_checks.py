"""What incop checks in the data it is given (incop.data.checks): labels (their type, gaps,
range, absurd values at no cost in memory), lengths, shapes the model cannot take, NaN inputs,
one class or complex inputs; each refused in one line."""
import pickle
import resource

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import make_cifar

import incop
from conftest import api_config, small_mlp, split_pairs
from incop.base.errors import UsageError


class DictNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(64, 16), nn.Linear(16, 10)

    def forward(self, x):
        return {"logits": self.b(torch.relu(self.a(x.flatten(1))))}


@pytest.mark.parametrize("case,match", [
    ("float_labels", "float32.*integer class indices"),
    ("lengths", "x has 1294 samples and y has 1289"),
    ("gap", "not contiguous: classes \\[3\\] are missing"),
    ("negative", "negative"),
    ("dict", "returns a dict"),
    ("shape", "cannot take the training inputs of shape \\(1, 8, 8\\)"),
    ("val_label", "val labels go up to 10"),
    ("nan", "train inputs contain NaN"),
])
def test_bad_user_data_is_one_line(digits, case, match):
    (tx, ty), (vx, vy), test = split_pairs(digits)
    tx, ty, vy = tx[:1294], ty[:1294], vy.clone()
    model = small_mlp(nn.ReLU)
    if case == "float_labels":
        ty = ty.float()
    elif case == "lengths":
        ty = ty[:1289]
    elif case == "gap":
        ty = torch.where(ty == 3, torch.full_like(ty, 4), ty)
    elif case == "negative":
        ty = ty.clone()
        ty[0] = -1
    elif case == "dict":
        model = DictNet()
    elif case == "shape":
        model = nn.Sequential(nn.Linear(10, 10))
    elif case == "val_label":
        vy[0] = 10
    elif case == "nan":
        tx = tx.clone()
        tx[5, 0, 0, 0] = float("nan")
    with pytest.raises(UsageError, match=match) as err:
        incop.prune_model(model, (tx, ty), (vx, vy), test, api_config())
    assert "\n" not in str(err.value)


def test_nan_inside_a_loader_is_reported_as_nan_inputs_not_a_learning_rate(digits):
    (tx, ty), val, test = split_pairs(digits)
    tx = tx.clone()
    tx[-1, 0, 0, 0] = float("nan")  # in the last batch: the up-front check sees the first only
    loader = DataLoader(TensorDataset(tx, ty), batch_size=64)
    with pytest.raises(UsageError, match="inputs contain NaN") as err:
        incop.prune_model(small_mlp(nn.ReLU), loader, val, test, api_config())
    assert "--net_lr" not in str(err.value)


def test_labels_that_are_not_integers_are_one_line(tmp_path):
    from incop.data.datasets import load_cifar10

    folder = make_cifar(tmp_path / "cifar-10-batches-py", n_per_batch=4)
    for labels in ([10**30, 1, 2, 3], [b"x", 1, 2, 3]):
        (folder / "data_batch_2").write_bytes(pickle.dumps(
            {b"data": np.zeros((4, 3072), np.uint8), b"labels": labels}))
        with pytest.raises(UsageError, match="not arrays of integers"):
            load_cifar10(str(tmp_path))


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("labels,message", [
    ([0, 1, 3 * 10**7], "more classes than incop accepts"),
    ([0, 1, 10**9], "more classes than incop accepts"),
    ([0, 2, 999_999], "classes [1, 3, 4, 5, 6] are missing"),
    ([2**62, 0, 1], "more classes than incop accepts")])
def test_absurd_labels_cost_nothing_in_proportion_to_their_value(labels, message):
    from incop.data.checks import check_labels

    before = _peak_mb()
    with pytest.raises(UsageError) as e:
        check_labels("train", torch.tensor(labels * 100))
    assert message in str(e.value)
    assert _peak_mb() - before < 300  # a set of range(3e7) alone takes over 1 GB


def test_the_api_refuses_one_class_and_complex_inputs():
    from torch import nn

    import incop

    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 2))
    x = torch.randn(100, 8)
    with pytest.raises(UsageError, match="one class"):
        incop.prune_model(model, (x, torch.zeros(100, dtype=torch.long)),
                          (x[:60], torch.zeros(60, dtype=torch.long)))
    y = torch.arange(100) % 2
    with pytest.raises(UsageError, match="complex"):
        incop.prune_model(model, (x.to(torch.complex64), y), (x[:60].to(torch.complex64), y[:60]))
