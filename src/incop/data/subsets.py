"""Part of the training split for one round (``--round_data_fraction``): a uniform draw without
replacement from the round's own seed, so a round killed and resumed trains on the same part,
and each round sees another."""
from __future__ import annotations

import math

import torch

from ..base.decimals import exact
from ..base.errors import UsageError
from .batches import DataSource, is_tensor_pair

SUBSET_SEED = 104_729  # the draw's generator is seeded apart from the round's shuffling


def subset_size(n: int, fraction: float) -> int:
    """``ceil(fraction * n)`` of the decimal the user typed (0.3 of 10 is 3, not 4), at least 1."""
    return max(1, math.ceil(exact(fraction) * n))


def check_subsettable(train: DataSource) -> None:
    """Only a tensor pair is drawn from (a loader's samples are its own to choose); checked
    before any training."""
    if not is_tensor_pair(train):
        raise UsageError("--round_data_fraction (config.train.round_data_fraction) draws from "
                         "tensor data; for a DataLoader, give each round a loader over a subset "
                         "(torch.utils.data.Subset) instead")


def subset_rows(n: int, fraction: float, seed: int) -> torch.Tensor:
    """``subset_size`` of ``n`` rows drawn by ``seed``, in the split's order (the round's shuffle
    alone orders its batches)."""
    generator = torch.Generator().manual_seed(seed + SUBSET_SEED)
    return torch.randperm(n, generator=generator)[:subset_size(n, fraction)].sort().values
