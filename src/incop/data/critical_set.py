"""The prune-aware critical set (PrAC; Zhang, Chen, Chen and Wang, ICML 2021, arXiv 2106.03225),
as ``--round_data_choice prac`` draws each round's part of the training split.

While a round trains, every time a training batch holds an example, whether the network
classified it right is recorded (:class:`Forgetting`); an example *forgotten* went from right to
wrong between two of its batches, one *never learned* was wrong every time. After the round,
an example is *pruning-aware* when the network and the dense network (trained in round 0)
classify it differently, over the whole split. The paper's critical set is the examples
forgotten at least once or never learned, and the pruning-aware ones. To compare with a random
part at equal cost, the next round takes ``size`` examples: the critical ones first, ranked by
their forgetting count (never learned highest), then the others, ties in a random order drawn
from the round's seed (so a set smaller than ``size`` is filled at random, and a larger one is
cut to its most forgotten examples)."""
from __future__ import annotations

from typing import Optional

import torch

NEVER = 2**31 - 1  # the forgetting score of an example seen but never classified right
UNSEEN = -1


class Forgetting:
    """A round's record over the ``rows`` (positions in the whole split) of its part: how often
    each example was forgotten, whether it was ever right, whether it was seen."""

    def __init__(self, rows: torch.Tensor) -> None:
        self.split_rows = rows
        n = len(rows)
        self.last = torch.zeros(n, dtype=torch.bool)
        self.seen = torch.zeros(n, dtype=torch.bool)
        self.learned = torch.zeros(n, dtype=torch.bool)
        self.forgotten = torch.zeros(n, dtype=torch.int64)
        self._rows: Optional[torch.Tensor] = None

    def rows(self, rows: torch.Tensor) -> None:
        """The positions (in the part) of the batch about to be trained on."""
        self._rows = rows.cpu()

    def batch(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        """How the batch of the last :meth:`rows` was classified."""
        rows, self._rows = self._rows, None
        if rows is None:
            return
        right = (logits.argmax(1) == y).cpu()
        self.forgotten[rows] += (self.seen[rows] & self.last[rows] & ~right).long()
        self.learned[rows] |= right
        self.seen[rows] = True
        self.last[rows] = right

    def scores(self, n: int) -> torch.Tensor:
        """Per example of the whole split of ``n``: its forgetting count, :data:`NEVER` when
        seen but never right, :data:`UNSEEN` when not in the part (or never in a batch)."""
        score = torch.full((n,), UNSEEN, dtype=torch.int64)
        mine = torch.where(self.learned, self.forgotten, torch.full_like(self.forgotten, NEVER))
        score[self.split_rows[self.seen]] = mine[self.seen]
        return score


def critical_set(scores: torch.Tensor, aware: torch.Tensor, size: int,
                 generator: torch.Generator) -> torch.Tensor:
    """The ``size`` rows of the next round's part (sorted): critical examples (forgotten, never
    learned, or pruning-aware) first by their score, then the others, ties at random."""
    n = len(scores)
    critical = aware | (scores > 0)
    order = torch.randperm(n, generator=generator)
    order = order[torch.sort(scores[order], descending=True, stable=True).indices]
    order = order[torch.sort(critical[order].to(torch.int8), descending=True, stable=True).indices]
    return order[:size].sort().values

