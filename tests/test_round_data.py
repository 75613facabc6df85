"""--round_data_fraction F (issue 36, less data per round): the search's rounds train on a part of
the training split drawn for each round from its seed (the warm-up and the ticket on all of it),
and every epoch count is in full-data epochs, checked by hand on a small run."""
import json

import pytest
import torch
from torch import nn

import incop
from conftest import killed_then_resumed, table
from incop.base.errors import UsageError
from incop.data.subsets import SUBSET_SEED, round_subset, subset_size
from incop.engine.runtime import round_seed


@pytest.mark.parametrize("n,fraction,size", [
    (10, 0.3, 3), (10, 0.7, 7),  # 0.7 * 10 in binary is 7.000000000000001: still 7
    (1294, 0.3, 389), (7, 1e-9, 1), (5, 1.0, 5), (3, 0.34, 2)])
def test_the_part_is_the_ceiling_of_the_typed_fraction(n, fraction, size):
    assert subset_size(n, fraction) == size


def test_each_round_draws_its_own_part_the_same_way_every_time():
    x, y = torch.arange(100.0).unsqueeze(1), torch.arange(100)
    a = round_subset((x, y), 0.25, 7)
    again = round_subset((x, y), 0.25, 7)
    other = round_subset((x, y), 0.25, 8)
    assert torch.equal(a[1], again[1]) and not torch.equal(a[1], other[1])
    assert len(a[1]) == 25 and len(set(a[1].tolist())) == 25
    assert torch.equal(a[0].squeeze(1).long(), a[1])  # rows stay paired
    assert a[1].tolist() == sorted(a[1].tolist())


def _toy():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 8, generator=g), torch.arange(200) % 2
    x[:, 0] += 8 * y
    x[:, 1] = torch.arange(200) / 1000  # each row names itself (small: it must not hurt learning)
    return x, y


def _config(**train):
    return incop.RunConfig(prune=incop.PruneConfig(method="lth"),
                           train=incop.TrainConfig(lr=0.05, momentum=0.9, epochs=2, warmup=1,
                                                   ticket_epochs=1, **train),
                           data=incop.DataConfig(batch_size=32),
                           experiment=incop.ExperimentConfig(imp_total_iter=3))


def test_rounds_train_on_their_part_and_count_full_data_epochs(monkeypatch):
    import incop.engine.imp as imp

    seen, real = [], imp.train_run

    def spy(cfg, model, masks, train, *args, **kwargs):  # what each training run trains on
        seen.append((train[0][:, 1] * 1000).round().long().tolist())
        return real(cfg, model, masks, train, *args, **kwargs)

    monkeypatch.setattr(imp, "train_run", spy)
    x, y = _toy()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    result = incop.prune_model(model, (x, y), (x[:60], y[:60]),
                               config=_config(round_data_fraction=0.3), echo=None)
    # the warm-up and the ticket see all 200 rows; round k sees the 60 drawn by its own seed
    assert [len(s) for s in seen] == [200, 60, 60, 60, 200]
    for k, rows in enumerate(seen[1:4]):
        drawn = torch.randperm(200, generator=torch.Generator().manual_seed(
            round_seed(0, k) + SUBSET_SEED))[:60]
        assert rows == sorted(drawn.tolist()), k
    assert len({tuple(s) for s in seen[1:4]}) == 3
    # by hand: 60 rows in batches of 32 are 2 iterations a pass, 2 passes a round = 4
    # iterations; an epoch of all 200 rows is ceil(200 / 32) = 7 iterations: 4/7 of an epoch
    for row in result.rounds:
        assert (row["iterations"], row["epochs"]) == (4, pytest.approx(4 / 7))
    assert result.tickets[0]["iterations"] == 7  # one epoch of all of it


def test_a_fraction_of_one_is_the_run_without_it():
    plain, whole = _config().validate(), _config(round_data_fraction=1.0).validate()
    assert whole.train.round_data_fraction is None
    assert plain.run_id() == whole.run_id()


RUN = ["run", "--prune_method", "lth", "--round_data_fraction", "0.4", "--net_warmup", "1",
       "--net_train_epochs", "1", "--exper_imp_total_iter", "3", "--quiet", "--run_name", "r"]


def test_a_killed_run_resumes_on_the_same_parts(cli, monkeypatch, tmp_path):
    code, _, err = cli(*RUN, "--output_dir", str(tmp_path / "a"))
    assert code == 0, err
    code, out, err = killed_then_resumed(cli, monkeypatch, 3, *RUN,
                                         "--output_dir", str(tmp_path / "b"))
    assert code == 0 and "resuming" in out, err
    a, b = (tmp_path / d / "lth" / "lenet300" / "digits" / "r" for d in "ab")
    assert table(a, "rounds.csv") == table(b, "rounds.csv")
    rounds = json.loads((a / "rounds.json").read_text())
    assert all(r["epochs"] < 0.45 for r in rounds)  # 40% of the split, in full-data epochs


def test_a_loader_is_told_to_bring_its_own_subset():
    x, y = _toy()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    with pytest.raises(UsageError, match="torch.utils.data.Subset"):
        incop.prune_model(model, loader, (x[:60], y[:60]),
                          config=_config(round_data_fraction=0.5), echo=None)
