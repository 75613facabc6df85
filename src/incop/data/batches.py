"""Batches from any data source: a pair of in-memory tensors (indexed whole, no per-sample
Python) or any iterable of batches such as a DataLoader; the fixed probe set flows are
measured on; the batch evaluation runs in."""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional, Tuple, Union

import torch

from ..base.errors import UsageError


class TensorBatches:
    """Iterates (x, y) mini-batches by indexing whole tensors; reshuffled every pass when asked.
    ``on_rows(rows)``, when given, is told the rows of each batch before it is yielded (a record
    of which examples a training step saw)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False,
                 generator: Optional[torch.Generator] = None,
                 on_rows: Optional[Callable[[torch.Tensor], None]] = None) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.generator, self.on_rows = shuffle, generator, on_rows

    def __len__(self) -> int:
        return (len(self.y) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.x.device)
            for i in range(0, n, self.batch_size):
                idx = order[i:i + self.batch_size]
                if self.on_rows is not None:
                    self.on_rows(idx)
                yield self.x[idx], self.y[idx]
        else:
            for i in range(0, n, self.batch_size):
                yield self.x[i:i + self.batch_size], self.y[i:i + self.batch_size]


DEFAULT_PROBE_SIZE = 2048
# The fewest probe samples a default probe takes: a correlation over 256 samples has a standard
# error of about 1/16 per matrix entry, and the flows average many entries.
MIN_PROBE_SIZE = 256


def default_probe_size(n: Optional[int]) -> int:
    """The default probe: 2048 samples or 1/8 of the training split, whichever is smaller, but
    at least 256 (or the whole split when it is smaller), so that measuring flows never costs
    more than a fraction of an epoch on small training sets."""
    if n is None:
        return DEFAULT_PROBE_SIZE
    return min(n, max(MIN_PROBE_SIZE, min(DEFAULT_PROBE_SIZE, n // 8)))


Batch = Tuple[torch.Tensor, torch.Tensor]
#: Data given as a pair of tensors ``(x, y)`` or as any iterable of batches (a DataLoader).
DataSource = Union[Tuple[torch.Tensor, torch.Tensor], Iterable[Batch]]


def is_tensor_pair(source: DataSource) -> bool:
    return (isinstance(source, (tuple, list)) and len(source) == 2
            and all(isinstance(t, torch.Tensor) for t in source))


def eval_batch_size(device: torch.device) -> int:
    """The batch in which evaluation, flows and activations run: 256 on a CPU, where larger
    batches measured slower for convolutional models (their activations leave the caches;
    docs/training.md, "Evaluation batches"), 1024 on a GPU. Results do not depend on it beyond float
    rounding: every sum over batches is accumulated in float64."""
    return 1024 if torch.device(device).type == "cuda" else 256


def eval_batches(source: DataSource, batch_size: Optional[int] = None) -> Iterable[Batch]:
    """Batches of a source in a fixed order (tensor pairs are sliced, by default in batches of
    ``eval_batch_size`` for their device; loaders are iterated as they are)."""
    if is_tensor_pair(source):
        x, y = source
        return TensorBatches(x, y, batch_size or eval_batch_size(x.device))
    return source


def train_batches(source: DataSource, batch_size: int, generator: torch.Generator,
                  on_rows: Optional[Callable[[torch.Tensor], None]] = None) -> Iterable[Batch]:
    """A training pass: tensor pairs are reshuffled by ``generator`` (``on_rows``: see
    :class:`TensorBatches`); a loader is used as given (its shuffling follows the global RNG,
    which each round reseeds)."""
    if is_tensor_pair(source):
        x, y = source
        return TensorBatches(x, y, batch_size, shuffle=True, generator=generator, on_rows=on_rows)
    return source


def source_size(source: DataSource) -> Optional[int]:
    if is_tensor_pair(source):
        return len(source[1])
    dataset = getattr(source, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:
        return None


def probe_from_source(source: DataSource, size: Optional[int], seed: int) -> Batch:
    """A fixed probe set: a seeded subset of a tensor pair, or the first ``size`` samples a
    loader yields under a fixed seed."""
    if is_tensor_pair(source):
        x, y = source
        n = len(y)
        size = default_probe_size(n) if size is None else size
        if not 0 < size <= n:
            raise UsageError(f"probe size {size} must be between 1 and the training data's size ({n})")
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919))[:size]
        idx = idx.sort().values.to(x.device)
        return x[idx], y[idx]
    size = default_probe_size(source_size(source)) if size is None else size
    if size < 1:
        raise UsageError(f"probe size {size} must be at least 1")
    state = torch.get_rng_state()
    torch.manual_seed(seed + 7919)
    xs, ys, n = [], [], 0
    try:
        for xb, yb in source:
            xs.append(xb)
            ys.append(yb)
            n += len(yb)
            if n >= size:
                break
    finally:
        torch.set_rng_state(state)
    if n == 0:
        raise UsageError("the training loader yielded no data")
    return torch.cat(xs)[:size], torch.cat(ys)[:size]
