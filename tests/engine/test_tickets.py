"""Every recipe makes a ticket and every ticket can be checked: --ticket_epochs with --rewind_to
none restarts from the end of the warm-up, --ticket_rewind names another point, a killed
ticket resumes to the same result, incop ablate restarts from the ticket's start, and
incop.ablate checks the tickets of a user's own model from Python."""
import json
import re

import pytest
import torch
from torch import nn

from conftest import killed_then_resumed, run_dir, small_run, spy_round_starts, table

import incop
from incop.api import fresh_model


# the recommended recipe (allr-2: --rewind_to none), briefly
RUN = small_run(prune_method=None, net_warmup=2, ticket_epochs=1, run_name="r")


def _run(out):
    return run_dir(*RUN, "--output_dir", out)


def _equal(a, b, names=None):
    return all(torch.equal(a[n], b[n]) for n in (names or a))


def test_the_default_ticket_restarts_from_the_end_of_the_warm_up(cli, tmp_path, monkeypatch):
    starts = spy_round_starts(monkeypatch)  # warm-up, rounds 0..2, ticket
    code, out, err = cli(*RUN, "--output_dir", str(tmp_path))
    assert code == 0, err
    assert len(starts) == 5 and "retrained 1 epoch from the end of the warm-up" in out
    # round 0 starts where the warm-up ended; the ticket from there too, masked
    biases = [n for n in starts[1] if n.endswith("bias")]
    assert _equal(starts[4], starts[1], biases)
    assert not _equal(starts[4], starts[3], biases)  # not the trained weights kept by allr
    assert not (_run(tmp_path) / "models" / "trial0_ticket_rewind.pt").exists()  # = rewind.pt


def test_ticket_rewind_init_restarts_the_ticket_and_its_ablations_from_init(cli, tmp_path,
                                                                           monkeypatch):
    starts = spy_round_starts(monkeypatch)
    code, out, err = cli(*RUN, "--ticket_rewind", "init", "--output_dir", str(tmp_path))
    assert code == 0 and "retrained 1 epoch from the initial weights" in out, err
    run = _run(tmp_path)
    saved = torch.load(run / "models" / "trial0_ticket_rewind.pt", weights_only=True)
    assert _equal(saved, starts[0])  # the weights the warm-up started from
    biases = [n for n in saved if n.endswith("bias")]
    assert _equal(starts[4], saved, biases)
    starts.clear()
    code, out, err = cli("ablate", str(run), "--random_prune", "--quiet")
    assert code == 0, err
    assert len(starts) == 1 and _equal(starts[0], saved, biases)  # from the ticket's start
    assert "partly by construction" not in out  # init is not the end of a trained warm-up


def test_the_ablation_says_when_the_reinit_gap_is_partly_by_construction(cli, tmp_path):
    assert cli(*RUN, "--output_dir", str(tmp_path))[0] == 0
    code, out, err = cli("ablate", str(_run(tmp_path)), "--random_reinit", "--quiet")
    assert code == 0, err
    assert "loses that training as well as the mask's fit, so its gap is partly by construction" \
        in out


def test_a_killed_ticket_resumes_to_the_same_ticket(cli, tmp_path, monkeypatch):
    argv = [*RUN, "--ticket_rewind", "1ep"]
    assert cli(*argv, "--output_dir", str(tmp_path / "a"))[0] == 0
    # the warm-up's two epochs, three rounds, then inside the ticket
    code, out, err = killed_then_resumed(cli, monkeypatch, 6, *argv,
                                         "--output_dir", str(tmp_path / "b"))
    assert code == 0, err
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    assert table(a, "tickets.csv") == table(b, "tickets.csv")
    assert table(a, "rounds.csv") == table(b, "rounds.csv")


@pytest.mark.parametrize("argv,message", [
    (["--ticket_rewind", "init"], "there is no ticket: add --ticket_epochs"),
    (["--ticket_epochs", "1", "--ticket_rewind", "5ep"], "after the end of the 1-epoch warm-up"),
    (["--ticket_epochs", "1", "--ticket_rewind", "soon"], "--ticket_rewind soon: choose")])
def test_bad_ticket_rewinds_are_one_line(cli, argv, message):
    code, _, err = cli("run", "--net_warmup", "1", *argv, "--print_config")
    assert code == 2 and err.count("\n") == 1 and message in err, err


def _data(n=240, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 12, generator=g), torch.arange(n) % 3
    x[:, :3] += 4 * nn.functional.one_hot(y, 3)  # learnable
    return (x[:160], y[:160]), (x[160:], y[160:])


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 3))


CFG = dict(train=incop.TrainConfig(lr=0.1, momentum=0.9, warmup=2, epochs=1, ticket_epochs=1),
           experiment=incop.ExperimentConfig(imp_total_iter=3))


def test_an_own_model_ticket_is_ablated_from_python(monkeypatch):
    train, val = _data()
    result = incop.prune_model(_model(), train, val, config=incop.RunConfig(**CFG), echo=None)
    lines = []
    rows = incop.ablate(result, trials=2, echo=lines.append)
    assert [(r["ablation"], r["index"]) for r in rows] == [
        ("random_prune", 0), ("random_prune", 1), ("random_reinit", 0), ("random_reinit", 1)]
    assert result.ablations == rows and all(r["remaining"] == result.masks.remaining()
                                            for r in rows)
    assert any("ticket minus it" in line for line in lines)
    assert not any(re.search(r"--[a-z]", line) for line in lines)  # the API's names, not flags
    assert any("TrainConfig.ticket_rewind init" in line for line in lines)
    starts = spy_round_starts(monkeypatch)
    assert incop.ablate(result, trials=2, echo=None) == rows and starts == []  # nothing again


def test_an_own_model_run_directory_is_ablated_with_its_model_and_data(cli, tmp_path):
    train, val = _data()
    model = _model()
    result = incop.prune_model(model, train, val, config=incop.RunConfig(**CFG),
                               output_dir=tmp_path, echo=None)
    run = result.run_dir
    code, _, err = cli("ablate", str(run), "--quiet")
    assert code == 2 and err.count("\n") == 1 and "incop.ablate(result)" in err
    rows = incop.ablate(run, model=model, train=train, val=val, echo=None)
    assert len(rows) == 2 and json.loads((run / "ablations.json").read_text()) == rows
    with pytest.raises(incop.UsageError, match="this data is not what"):
        incop.ablate(run, model=model, train=_data(seed=1)[0], val=val, echo=None)
    with pytest.raises(incop.UsageError, match="this model is not the one"):
        incop.ablate(run, model=nn.Sequential(nn.Linear(12, 3)), train=train, val=val, echo=None)
    # the same result object ablates into its run directory too, keeping the rows there
    assert incop.ablate(result, echo=None) == rows


def test_a_fresh_model_draws_every_weight_again():
    class Raw(nn.Module):  # a weight no layer draws again
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(3, 12))

        def forward(self, x):
            return x @ self.w.t()

    model = _model()
    torch.manual_seed(1)
    fresh = fresh_model(model)
    assert all(not torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters()))
    with pytest.raises(incop.UsageError, match="reinit=lambda"):
        fresh_model(Raw())
    assert isinstance(fresh_model(Raw(), reinit=Raw), Raw)
    with pytest.raises(incop.UsageError, match="other parameters"):
        fresh_model(Raw(), reinit=_model)


def test_a_result_without_a_ticket_is_refused_in_its_names():
    train, val = _data()
    cfg = incop.RunConfig(train=incop.TrainConfig(lr=0.1, momentum=0.9, warmup=2, epochs=1),
                          experiment=incop.ExperimentConfig(imp_total_iter=2))
    result = incop.prune_model(_model(), train, val, config=cfg, echo=None)
    with pytest.raises(incop.UsageError, match="set TrainConfig.ticket_epochs"):
        incop.ablate(result)
