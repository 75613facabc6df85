"""Checks of a user's own data (and of a model against it) before a run: integer labels 0..K-1
of two classes or more, inputs of real, finite numbers, train/val/test of one shape, a model that
returns (N, classes) scores. Every problem is a one-line ``UsageError`` saying what is wrong and
how to fix it, instead of a raw PyTorch error deep inside training."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn

from ..base.errors import UsageError
from .batches import DataSource, eval_batches, is_tensor_pair
from .datasets import MIN_VAL_SAMPLES


def _first_batch(source: DataSource) -> Tuple[torch.Tensor, torch.Tensor]:
    """The first batch a source yields, drawn under a fixed seed (the global RNG is restored)."""
    state = torch.get_rng_state()
    torch.manual_seed(0)
    try:
        for xb, yb in eval_batches(source):
            return xb, yb
    finally:
        torch.set_rng_state(state)
    raise UsageError("a data loader yielded no batches")


def _labels_and_inputs(name: str, source: DataSource) -> Tuple[torch.Tensor, torch.Tensor]:
    """All labels and inputs of a tensor pair, or the first batch of a loader."""
    if is_tensor_pair(source):
        x, y = source
        if len(x) != len(y):
            raise UsageError(f"{name}: x has {len(x)} samples and y has {len(y)}; they must be "
                             f"the same length")
        return x, y
    try:
        return _first_batch(source)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be an (x, y) pair of tensors or an iterable of (x, y) "
                         f"batches such as a DataLoader") from None


# More classes than any dataset has (ImageNet-21k has 21,841): a label this high is a wrong file.
MAX_CLASSES = 1_000_000


def check_labels(name: str, y: torch.Tensor, num_classes: Optional[int] = None,
                 complete: bool = True) -> int:
    """Integer labels 0..K-1; returns K. With ``num_classes`` (train's K), labels must be below
    it; without, the labels present must be exactly 0..K-1 (no gaps, no negatives), a check
    made only when ``y`` holds every label (``complete``, not a loader's first batch), and a
    complete set must hold two classes at least. Time and memory grow with the number of
    labels, never with a label's value."""
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool or y.dim() != 1:
        raise UsageError(f"{name} labels are {y.dtype} of shape {tuple(y.shape)}; pass a 1-D "
                         f"tensor of integer class indices (e.g. y.long())")
    if len(y) == 0:
        raise UsageError(f"{name} has no samples")
    present = torch.unique(y)  # sorted, at most len(y) values
    low, high = int(present[0]), int(present[-1])
    if low < 0:
        raise UsageError(f"{name} labels include negative values ({low}); use class "
                         f"indices 0..K-1")
    if num_classes is not None:
        if high >= num_classes:
            raise UsageError(f"{name} labels go up to {high}, but the training labels "
                             f"only have classes 0..{num_classes - 1}")
        return num_classes
    if high >= MAX_CLASSES:
        raise UsageError(f"{name} labels go up to {high}, more classes than incop accepts "
                         f"({MAX_CLASSES:,}); labels must be class indices 0..K-1")
    if complete and len(present) != high + 1:
        raise UsageError(f"{name} labels are not contiguous: classes {_gaps(present, 5)} are "
                         f"missing below {high}; map the labels to 0..{len(present) - 1}")
    if complete and len(present) < 2:
        raise UsageError(f"{name} labels hold one class ({low}) only; a classifier needs two "
                         f"classes at least")
    return high + 1


def _gaps(present: torch.Tensor, limit: int) -> List[int]:
    """The first ``limit`` integers missing from the sorted, distinct ``present`` (from 0)."""
    gaps: List[int] = []
    expected = 0
    for value in present.tolist():
        while expected < value and len(gaps) < limit:
            gaps.append(expected)
            expected += 1
        if len(gaps) >= limit:
            break
        expected = value + 1
    return gaps


def _check_finite(name: str, x: torch.Tensor) -> None:
    if x.is_complex():
        raise UsageError(f"{name} inputs are complex ({x.dtype}); incop's networks take real "
                         f"numbers: pass the real part, the magnitude, or both as channels")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise UsageError(f"{name} inputs contain NaN or infinite values; clean the data first")


def check_model_output(model: nn.Module, x: torch.Tensor, num_classes: int) -> None:
    """One forward pass on two training inputs: it must give (N, C) scores with C classes."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(iter(model.parameters()), x).device
            out = model(x[:2].to(device))
    except Exception as e:  # any error here means the model does not fit the data
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UsageError(f"the model cannot take the training inputs of shape "
                         f"{tuple(x.shape[1:])}: {first}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise UsageError(f"the model returns a {type(out).__name__}, not a tensor of class "
                         f"scores; wrap it so that forward() returns the logits (N, classes)")
    if out.dim() != 2 or out.shape[0] != min(2, len(x)):
        raise UsageError(f"the model returns shape {tuple(out.shape)} for {min(2, len(x))} "
                         f"inputs; forward() must return class scores of shape (N, classes)")
    if out.shape[1] < num_classes:
        raise UsageError(f"the model has {out.shape[1]} outputs but the labels have "
                         f"{num_classes} classes")


def check_inputs(model: nn.Module, train: DataSource, val: DataSource,
                 test: Optional[DataSource], allow_small_val: bool = False) -> None:
    """Everything prune_model needs of a user's model and data, checked up front."""
    x, y = _labels_and_inputs("train", train)
    complete = is_tensor_pair(train)  # a loader is only checked on its first batch
    num_classes = check_labels("train", y, complete=complete)
    _check_finite("train", x)
    for name, source in (("val", val), ("test", test)):
        if source is None:
            continue
        sx, sy = _labels_and_inputs(name, source)
        check_labels(name, sy, num_classes if complete else None, complete=False)
        _check_finite(name, sx)
        if sx.shape[1:] != x.shape[1:]:
            raise UsageError(f"{name} inputs have shape {tuple(sx.shape[1:])} but train inputs "
                             f"{tuple(x.shape[1:])}")
    if is_tensor_pair(val) and len(val[1]) < MIN_VAL_SAMPLES and not allow_small_val:
        raise UsageError(f"val has {len(val[1])} samples, too few to measure accuracy (under "
                         f"{MIN_VAL_SAMPLES}); give more, or set config.data.allow_small_val")
    check_model_output(model, x, num_classes)
