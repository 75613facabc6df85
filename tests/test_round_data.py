"""--round_data_fraction F (issue 36, less data per round): the search's rounds train on a part of
the training split drawn for each round from its seed (the warm-up and the ticket on all of it),
and every epoch count is in full-data epochs, checked by hand on a small run; with
--round_data_choice prac the part is the prune-aware critical set chosen from the round before."""
import json

import pytest
import torch
from torch import nn

import incop
from conftest import kill_at, killed_then_resumed, table
from incop.base.errors import UsageError
from incop.data.subsets import SUBSET_SEED, subset_rows, subset_size
from incop.engine.runtime import round_seed


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
    a, b = (tmp_path / d / "lth" / "lenet300" / "digits" / "r" for d in "ab")
    assert table(a, "rounds.csv") == table(b, "rounds.csv")
    rounds = json.loads((a / "rounds.json").read_text())
    assert all(r["epochs"] < 0.45 for r in rounds)  # 40% of the split, in full-data epochs


def test_a_loader_is_told_to_bring_its_own_subset():
    x, y = _toy()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    with pytest.raises(UsageError, match="torch.utils.data.Subset"):
        incop.prune_model(_model(), loader, (x[:60], y[:60]),
                          config=_config(round_data_fraction=0.5), echo=None)


# ---------------------------------------------------------------- --round_data_choice prac

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


def test_recipes_name_their_part_of_the_data(cli):
    from incop.launch.frontier import Settings, recipe_config

    for argv, recipe, fraction, choice in (
            (["--recipe", "LRR-1@PRAC0.30"], "lrr-1@prac0.3", 0.3, "prac"),
            (["--recipe", "allr-2x3@0.5"], "allr-2x3@0.5", 0.5, "random"),
            (["--round_data_fraction", "0.25"], "allr-2@0.25", 0.25, "random"),  # the default's
            (["--recipe", "lrr-1", "--round_data_fraction", "0.2", "--round_data_choice",
              "prac"], "lrr-1@prac0.2", 0.2, "prac")):
        code, out, err = cli("run", *argv, "--prune_target_remaining", "20", "--print_config")
        assert code == 0, err
        printed = json.loads(out)
        assert (printed["prune"]["recipe"], printed["train"]["round_data_fraction"],
                printed["train"]["round_data_choice"]) == (recipe, fraction, choice)
    code, _, err = cli("run", "--recipe", "lrr-1@prac0.3", "--round_data_choice", "random",
                       "--prune_target_remaining", "20", "--print_config")
    assert code == 2 and "recipe lrr-1@prac0.3" in err and err.count("\n") == 1, err
    c = recipe_config("lrr-1@prac0.3", incop.RunConfig(), Settings("sap", 2, 30.0, 2, 8))
    assert (c.train.round_data_fraction, c.train.round_data_choice, c.train.epochs) == \
        (0.3, "prac", 1.0)


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
