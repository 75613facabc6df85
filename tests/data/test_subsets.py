"""The part of the training split a round trains on (incop.data.subsets) and PrAC's critical set
(incop.data.critical_set): sizes, draws and orders by hand."""
import pytest
import torch

from incop.data.subsets import subset_rows, subset_size


@pytest.mark.parametrize("n,fraction,size", [
    (10, 0.3, 3), (10, 0.7, 7),  # 0.7 * 10 in binary is 7.000000000000001: still 7
    (1294, 0.3, 389), (7, 1e-9, 1), (5, 1.0, 5), (3, 0.34, 2)])
def test_the_part_is_the_ceiling_of_the_typed_fraction(n, fraction, size):
    assert subset_size(n, fraction) == size


def test_each_round_draws_its_own_part_the_same_way_every_time():
    a, again, other = (subset_rows(100, 0.25, seed) for seed in (7, 7, 8))
    assert torch.equal(a, again) and not torch.equal(a, other)
    assert len(a) == 25 and len(set(a.tolist())) == 25 and 0 <= int(a.min())
    assert int(a.max()) < 100 and a.tolist() == sorted(a.tolist())  # in the split's order


def test_forgetting_is_counted_from_the_batches_each_example_was_in():
    from incop.data.critical_set import NEVER, UNSEEN, Forgetting

    rec = Forgetting(torch.tensor([2, 5, 7, 9]))  # a part of a split of 10
    # (positions in the part, right or wrong) for three passes; position 3 is never in a batch
    for right in ([1, 0, 1], [0, 0, 1], [1, 0, 1]):
        rec.rows(torch.tensor([0, 1, 2]))
        y = torch.zeros(3, dtype=torch.long)
        logits = torch.stack([torch.tensor([1.0, 0.0]) if r else torch.tensor([0.0, 1.0])
                              for r in right])
        rec.batch(logits, y)
    scores = rec.scores(10)
    # row 2: right, wrong, right -> forgotten once; row 5: never right; row 7: right always;
    # row 9 (never in a batch) and the rows outside the part: unseen
    assert scores.tolist() == [UNSEEN, UNSEEN, 1, UNSEEN, UNSEEN, NEVER, UNSEEN, 0, UNSEEN, UNSEEN]


def test_the_critical_set_puts_forgotten_never_learned_and_pruning_aware_examples_first():
    from incop.data.critical_set import NEVER, critical_set

    scores = torch.tensor([0, 3, -1, NEVER, 0, 1, -1, 0])
    aware = torch.tensor([False, False, True, False, False, False, False, True])
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    # critical: rows 1 (3), 3 (never), 5 (1), 2 and 7 (pruning-aware): five of them
    assert critical_set(scores, aware, 5, g()).tolist() == [1, 2, 3, 5, 7]
    # cut to three: the most forgotten critical ones (never learned first, then 3, then 1)
    assert critical_set(scores, aware, 3, g()).tolist() == [1, 3, 5]
    # seven: the five and two of the others, drawn by the generator, the same each time
    seven = critical_set(scores, aware, 7, g())
    assert set([1, 2, 3, 5, 7]) <= set(seven.tolist()) and len(seven) == 7
    assert torch.equal(seven, critical_set(scores, aware, 7, g()))
