"""--round_data_fraction F (less data per round): the search's rounds train on a part of the
training split drawn for each round from its seed (the warm-up and the ticket on all of it),
every epoch count in full-data epochs, checked by hand on a small run; with --round_data_choice
prac the part is the prune-aware critical set chosen from the round before."""
import json

import pytest
import torch
from torch import nn

from conftest import kill_at, killed_then_resumed, run_dir, table

import incop
from incop.base.errors import UsageError
from incop.data.subsets import SUBSET_SEED
from incop.engine.runtime import round_seed


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


def _spy_rows(monkeypatch) -> list:
    """The rows (their names) each training run of the search trains on, run after run."""
    import incop.engine.imp as imp

    seen, real = [], imp.train_run

    def spy(cfg, model, masks, train, *args, **kwargs):
        seen.append((train[0][:, 1] * 1000).round().long().tolist())
        return real(cfg, model, masks, train, *args, **kwargs)

    monkeypatch.setattr(imp, "train_run", spy)
    return seen


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


def test_rounds_train_on_their_part_and_count_full_data_epochs(monkeypatch):
    seen = _spy_rows(monkeypatch)
    x, y, model = *_toy(), _model()
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
    a, b = (run_dir(*RUN, "--output_dir", tmp_path / d) for d in "ab")
    assert table(a, "rounds.csv") == table(b, "rounds.csv")
    rounds = json.loads((a / "rounds.json").read_text())
    assert all(r["epochs"] < 0.45 for r in rounds)  # 40% of the split, in full-data epochs


def test_a_loader_is_told_to_bring_its_own_subset():
    x, y = _toy()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    with pytest.raises(UsageError, match="torch.utils.data.Subset"):
        incop.prune_model(_model(), loader, (x[:60], y[:60]),
                          config=_config(round_data_fraction=0.5), echo=None)


def test_prac_rounds_train_on_the_critical_set_and_resume_on_it(cli, monkeypatch, tmp_path):
    from incop.data.subsets import subset_rows

    seen = _spy_rows(monkeypatch)
    x, y, model = *_toy(), _model()
    config = _config(round_data_fraction=0.3, round_data_choice="prac")
    incop.prune_model(model, (x, y), (x[:60], y[:60]), config=config, echo=None,
                      output_dir=tmp_path / "a")
    assert [len(s) for s in seen] == [200, 60, 60, 60, 200]
    assert seen[1] == subset_rows(200, 0.3, round_seed(0, 0)).tolist()  # round 0: at random
    for k in (1, 2):  # then chosen from the round before, not the random draw
        assert seen[k + 1] != subset_rows(200, 0.3, round_seed(0, k)).tolist()
    # killed in round 2 and resumed: the same parts (the set is kept in the progress)
    first = seen[:]
    kill_at(monkeypatch, 6)  # train_steps runs once a check: warm-up 1, rounds 0 and 1 two each
    with pytest.raises(KeyboardInterrupt):
        incop.prune_model(model, (x, y), (x[:60], y[:60]), config=config, echo=None,
                          output_dir=tmp_path / "b")
    monkeypatch.undo()
    seen = _spy_rows(monkeypatch)
    incop.prune_model(model, (x, y), (x[:60], y[:60]), config=config, echo=None,
                      output_dir=tmp_path / "b")
    assert seen == first[3:]  # round 2 on the set round 1 chose, then the ticket


def test_prac_without_a_fraction_is_one_line(cli):
    code, _, err = cli("run", "--round_data_choice", "prac", "--print_config")
    assert code == 2 and err.count("\n") == 1 and "give --round_data_fraction below 1" in err
    code, _, err = cli("run", "--round_data_choice", "hard", "--round_data_fraction", "0.3",
                       "--print_config")
    assert code == 2 and "choose random or prac" in err


def test_the_run_says_what_its_rounds_train_on(cli, tmp_path):
    code, out, err = cli("run", "--prune_method", "lth", "--round_data_fraction", "0.25",
                         "--round_data_choice", "prac", "--net_warmup", "1",
                         "--net_train_epochs", "0.5", "--exper_imp_total_iter", "1",
                         "--output_dir", str(tmp_path))
    assert code == 0, err
    assert ("each round trains on 25% of the training split, the prune-aware critical set of "
            "the round before (round 0 at random); epochs are counted in full-data epochs"
            in out.splitlines()[1])


def test_a_prac_search_starts_anew_instead_of_going_on_from_a_finished_one(cli, tmp_path):
    """Its next round's set comes from what its last round saw while it trained, which a
    finished search does not keep; a random search goes on as any other."""
    base = ["run", "--prune_method", "lth", "--round_data_fraction", "0.3", "--net_warmup", "1",
            "--net_train_epochs", "0.5", "--output_dir", str(tmp_path), "--quiet"]
    for choice, goes_on in (("random", True), ("prac", False)):
        argv = [*base, "--round_data_choice", choice]
        assert cli(*argv, "--exper_imp_total_iter", "2")[0] == 0
        code, out, err = cli(*argv, "--exper_imp_total_iter", "3")
        assert code == 0 and "Traceback" not in err, err
        assert ("going on from the finished search" in out) == goes_on, out
        assert ("a search on PrAC's critical set keeps the set of its next round only while "
                "it runs" in out + err) == (not goes_on)
