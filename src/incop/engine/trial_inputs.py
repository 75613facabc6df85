"""What a trial trains on: a model (not yet on the device) and its data. For the command line they
are the registry's model and dataset named in the configuration, split by the trial's seed; the
Python API brings its own (checked by :mod:`incop.data.checks`, fingerprinted by
:mod:`incop.config.identity`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch
from torch import nn

from ..data.batches import DataSource
from ..data.datasets import RawDataset, probe_subset, split_train_val
from ..models.architectures import build_model
from ..models.pretrained import imagenet_model, load_pretrained, wants_imagenet


@dataclass
class TrialInputs:
    """What one trial trains: a model (not yet on the device) and its data."""

    model: nn.Module
    train: DataSource
    val: DataSource
    test: Optional[DataSource]
    probe: Tuple[torch.Tensor, torch.Tensor]


TrialInputsFactory = Callable[[int, int], TrialInputs]


def registry_inputs(cfg, raw: RawDataset, device: torch.device, seed: int) -> TrialInputs:
    """The model and dataset named in ``cfg`` (a RunConfig), split by the trial's seed."""
    splits = split_train_val(raw, cfg.data.val_size, seed, cfg.data.allow_small_val).to(device)
    probe = probe_subset(splits, cfg.prune.flow_probe_size, seed)
    if wants_imagenet(cfg.model.pretrained):
        model = imagenet_model(cfg.model.arch, splits.input_shape, splits.num_classes)
    else:
        model = build_model(cfg.model.arch, splits.input_shape, splits.num_classes, cfg.model.init)
        if cfg.model.pretrained:
            load_pretrained(model, cfg.model.pretrained)
    return TrialInputs(model, (splits.train_x, splits.train_y), (splits.val_x, splits.val_y),
                       (splits.test_x, splits.test_y), probe)
