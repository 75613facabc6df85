"""``--net_augment``: the standard augmentation of CIFAR-style training images (He et al. 2016,
and the VGG and ResNet results of the ticket literature): each training image is zero-padded by
4 pixels (zero is the channel mean after normalisation), randomly cropped back to its size, and
flipped horizontally with probability 1/2. Only training batches are augmented, from a generator
of the training run's own seed, so a run and its resume see the same images."""
from __future__ import annotations

from typing import Iterable, Iterator, Tuple

import torch

from ..base.errors import UsageError
from .batches import Batch

PAD = 4
MIN_SIZE = 8  # smaller inputs are not images a crop and a flip make sense for


def draw(generator: torch.Generator, n: int, pad: int = PAD) -> Tuple[torch.Tensor, ...]:
    """Per image: the crop's top and left offsets in the padded image (0..2 * pad) and whether
    it is flipped."""
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return oy, ox, flip


def crop_flip(x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, flip: torch.Tensor,
              pad: int = PAD) -> torch.Tensor:
    """Images ``x`` (N, C, H, W) padded by ``pad``, cropped at (``oy``, ``ox``) back to H x W,
    the flagged ones mirrored left to right: one indexing operation for the whole batch."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dev = x.device
    rows = (oy.to(dev)[:, None] + torch.arange(h, device=dev)).view(n, 1, h, 1)
    cols = ox.to(dev)[:, None] + torch.arange(w, device=dev)
    cols = torch.where(flip.to(dev)[:, None], cols.flip(1), cols).view(n, 1, 1, w)
    batch = torch.arange(n, device=dev).view(n, 1, 1, 1)
    channel = torch.arange(c, device=dev).view(1, c, 1, 1)
    return padded[batch, channel, rows, cols]


class AugmentedBatches:
    """Training batches with every image cropped and flipped at random (see the module)."""

    def __init__(self, batches: Iterable[Batch], generator: torch.Generator) -> None:
        self.batches, self.generator = batches, generator

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Batch]:
        for x, y in self.batches:
            yield crop_flip(x, *draw(self.generator, len(x))), y


def check_images(shape: Tuple[int, ...]) -> None:
    """Inputs ``--net_augment`` can crop and flip: images (C, H, W) of 8 pixels a side or more."""
    if len(shape) != 3 or min(shape[1:]) < MIN_SIZE:
        raise UsageError(f"--net_augment crops and flips images; inputs of shape {tuple(shape)} "
                         f"are not images of {MIN_SIZE} pixels a side or more: drop --net_augment")
