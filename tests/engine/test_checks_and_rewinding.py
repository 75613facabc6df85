"""Checks within an epoch (--check_every), rewinding anywhere (--rewind_to), a learning-rate
schedule that freezes at its milestone, the final ticket equal to a fixed run by hand, resuming
mid-epoch and mid-ticket, and the note when a criterion measured nothing."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import kill_at, run_dir, small_run, spy_round_starts, table

import incop.engine.training as training
from incop.config.schema import RunConfig
from incop.data.batches import train_batches
from incop.data.datasets import load_splits
from incop.engine.imp import IMPExperiment, TICKET_ROUND, WARMUP_ROUND
from incop.engine.runtime import round_seed, seed_everything
from incop.launch.session import experiment
from incop.models.architectures import build_model
from incop.pruning.masks import Masks
from incop.runs.directory import run_path
from incop.runs.layout import model_state


# digits: 1293 training samples after the 10% validation split -> 21 batches of 64 an epoch
PER_EPOCH = 21
BASE = small_run(net_warmup=None, net_train_epochs=None, exper_imp_total_iter=None,
                 run_name="r")
def _run(out: Path) -> Path:
    return run_dir(*BASE, "--output_dir", out)


def test_check_every_gives_exact_iteration_counts_and_leaves_training_unchanged(cli, tmp_path):
    common = [*BASE, "--stop_criterion", "fixed", "--net_warmup", "1", "--net_train_epochs",
              "1.5", "--exper_imp_total_iter", "2"]
    assert cli(*common, "--check_every", "5it", "--output_dir", str(tmp_path / "a"))[0] == 0
    assert cli(*common, "--check_every", "0.25ep", "--output_dir", str(tmp_path / "b"))[0] == 0
    assert cli(*common, "--output_dir", str(tmp_path / "c"))[0] == 0
    checks = [(int(e["round"]), int(e["iteration"])) for e in table(_run(tmp_path / "a"), "epochs.csv")]
    # 1.5 epochs = round(31.5) = 32 iterations: checks every 5, the last at the end
    assert checks == [(k, i) for k in (0, 1) for i in (5, 10, 15, 20, 25, 30, 32)]
    rounds = table(_run(tmp_path / "a"), "rounds.csv")
    assert [(r["iterations"], float(r["epochs"]), r["checks"]) for r in rounds] == \
        [("32", 32 / PER_EPOCH, "7")] * 2
    # 0.25 epoch = round(5.25) = 5 iterations: the same checks; one epoch: checks at 21 and 32
    assert table(_run(tmp_path / "b"), "epochs.csv") == table(_run(tmp_path / "a"), "epochs.csv")
    assert [int(e["iteration"]) for e in table(_run(tmp_path / "c"), "epochs.csv")] == [21, 32] * 2
    # where the checks fall never changes what is trained
    a, c = model_state(_run(tmp_path / "a"), 0), model_state(_run(tmp_path / "c"), 0)
    assert all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("bad,match", [("0it", "--check_every"), ("2.5it", "--check_every"),
                                       ("-1ep", "--check_every"), ("soon", "--check_every")])
def test_bad_check_every(cli, tmp_path, bad, match):
    code, _, err = cli("run", "--check_every", bad, "--output_dir", str(tmp_path))
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1


def _cfg(**train):
    cfg = RunConfig()
    cfg.prune.method = "sap"
    cfg.train.lr, cfg.train.momentum, cfg.train.warmup, cfg.train.epochs = 0.05, 0.9, 1, 1
    for k, v in train.items():
        setattr(cfg.train, k, v)
    cfg.experiment.imp_total_iter = 2
    return cfg.validate()


@pytest.mark.parametrize("point,k", [("7it", 7), ("init", 0), ("0.5ep", 11)])  # 10.5 half up
def test_rewind_restores_exactly_the_state_after_k_dense_iterations(monkeypatch, point, k):
    starts = spy_round_starts(monkeypatch)
    IMPExperiment(_cfg(rewind_to=point), progress=False, echo=lambda s: None).run()
    rewind = starts[1]  # starts[0] is the warm-up; round 0 begins at the rewind point
    # the same dense run by hand, stopped after k iterations
    seed_everything(0)
    splits = load_splits("digits", None, 0.1, 0)
    model = build_model("lenet300", splits.input_shape, splits.num_classes)
    torch.manual_seed(round_seed(0, WARMUP_ROUND))
    gen = torch.Generator().manual_seed(round_seed(0, WARMUP_ROUND))
    stream = training.batch_stream(train_batches((splits.train_x, splits.train_y), 64, gen))
    masks = Masks.ones_like(model).bind(model)
    training.train_steps(model, training.make_optimizer(model, 0.05, 0.9, 5e-4), masks, stream, k)
    assert all(torch.equal(rewind[n], t) for n, t in model.state_dict().items())
    assert not all(torch.equal(starts[1][n], starts[2][n]) for n in rewind)  # later rounds rewind too
    masked = {n: rewind[n] * starts[2][n].ne(0) for n in ("fc1.weight", "fc2.weight", "fc3.weight")}
    assert all(torch.equal(starts[2][n], masked[n]) for n in masked)


def test_rewind_after_the_warm_up_is_refused(cli, tmp_path):
    code, _, err = cli("run", "--prune_method", "sap", "--net_warmup", "1", "--rewind_to", "2ep",
                       "--output_dir", str(tmp_path))
    assert code == 2 and "after the end of the 1-epoch warm-up" in err
    code, _, err = cli("run", "--prune_method", "sap", "--net_warmup", "1", "--rewind_to", "22it",
                       "--output_dir", str(tmp_path))
    assert code == 2 and "iteration 22, after the warm-up's 21 iterations" in err


def test_step_schedule_with_gamma_zero_stops_learning_at_its_milestone(cli, tmp_path):
    args = [*BASE, "--stop_criterion", "fixed", "--net_warmup", "1", "--exper_imp_total_iter", "1",
            "--net_lr_schedule", "step", "--net_lr_milestones", "1", "--net_lr_gamma", "1e-300",
            "--net_weight_decay", "0", "--net_momentum", "0"]
    assert cli(*args, "--net_train_epochs", "1", "--output_dir", str(tmp_path / "one"))[0] == 0
    assert cli(*args, "--net_train_epochs", "3", "--output_dir", str(tmp_path / "three"))[0] == 0
    one, three = model_state(_run(tmp_path / "one"), 0), model_state(_run(tmp_path / "three"), 0)
    # the warm-up is scheduled over its own epoch, so only round 0's epochs 2 and 3 are frozen
    assert all(torch.allclose(one[k], three[k], atol=0, rtol=1e-12) for k in one)


def test_ticket_equals_a_fixed_rule_run_from_the_same_mask_and_rewind_point(monkeypatch, tmp_path):
    starts = spy_round_starts(monkeypatch)
    cfg = _cfg(rewind_to="5it", ticket_epochs=2)
    cfg.experiment.output_dir, cfg.experiment.run_name = str(tmp_path), "t"
    exp = experiment(cfg, run_path(cfg), progress=False, echo=lambda s: None)
    result = exp.run()[0]
    ticket_row = exp.records.tickets[0]
    # by hand: the rewind point, the final mask, 2 epochs of the fixed rule with the ticket's seed
    splits = load_splits("digits", None, 0.1, 0)
    model = build_model("lenet300", splits.input_shape, splits.num_classes)
    model.load_state_dict(starts[1])
    masks = result.masks.clone().bind(model)
    masks.apply()
    torch.manual_seed(round_seed(0, TICKET_ROUND))
    gen = torch.Generator().manual_seed(round_seed(0, TICKET_ROUND))
    outcome = training.train_round(model, training.make_optimizer(model, 0.05, 0.9, 5e-4), masks,
                                   train_batches((splits.train_x, splits.train_y), 64, gen),
                                   (splits.val_x, splits.val_y), 2)
    saved = model_state(exp.run_dir.path, 0, ticket=True)
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert ticket_row["val_acc"] == outcome.final.val_acc and ticket_row["epochs"] == 2
    assert ticket_row["test_acc"] == training.evaluate(model, (splits.test_x, splits.test_y))[0]
    # the search's own result is untouched: the result's model is the search's final model
    final = model_state(exp.run_dir.path, 0)
    assert all(torch.equal(final[k], v) for k, v in result.model.state_dict().items())
    summary = json.loads((exp.run_dir.path / "summary.json").read_text())
    assert summary["tickets"][0]["test_acc"] == ticket_row["test_acc"]


RESUMABLE = [*BASE, "--stop_criterion", "mask_stability", "--prune_epsilon", "0.002",
             "--check_every", "7it", "--net_warmup", "1", "--net_train_epochs", "2",
             "--exper_imp_total_iter", "3", "--exper_num_trial", "2", "--ticket_epochs", "1",
             "--rewind_to", "10it"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    from incop.cli import main
    out = tmp_path_factory.mktemp("whole")
    assert main([*RESUMABLE, "--output_dir", str(out)]) == 0
    return _run(out)


# Calls of train_steps: per trial, the warm-up's epoch (1), 6 checks of 7 iterations per round at
# most, and the ticket's epoch. Call 3 is inside round 0's first epoch (a sub-epoch check);
# the last call of trial 0 is its ticket.
@pytest.mark.parametrize("kill", ["mid_epoch", "ticket"])
def test_resume_mid_epoch_and_mid_ticket_equals_an_uninterrupted_run(cli, monkeypatch, tmp_path,
                                                                     uninterrupted, kill):
    checks = sum(int(r["checks"]) for r in table(uninterrupted, "rounds.csv") if r["trial"] == "0")
    n_call = 3 if kill == "mid_epoch" else 1 + checks + 1
    kill_at(monkeypatch, n_call)
    code, _, err = cli(*RESUMABLE, "--output_dir", str(tmp_path))
    assert code == 130
    monkeypatch.undo()
    done = _run(tmp_path) / "rounds.csv"
    saved = {r["round"] for r in table(_run(tmp_path), "rounds.csv")} if done.exists() else set()
    if kill == "ticket":  # killed inside trial 0's ticket: its search is saved, its ticket is not
        assert saved == {"0", "1", "2"} and not (_run(tmp_path) / "tickets.csv").exists()
    else:  # killed inside round 0's first epoch: nothing of trial 0 is saved yet
        assert saved == set()
    code, out, err = cli(*RESUMABLE, "--output_dir", str(tmp_path))
    assert code == 0, err
    for name in ("rounds.csv", "epochs.csv", "layers.csv", "tickets.csv"):
        assert table(_run(tmp_path), name) == table(uninterrupted, name), name
    for t, ticket in ((0, False), (1, False), (0, True), (1, True)):
        a, b = model_state(_run(tmp_path), t, ticket=ticket), model_state(uninterrupted, t, ticket=ticket)
        assert all(torch.equal(a[k], b[k]) for k in a), (t, ticket)


def test_criterion_that_always_fires_at_its_first_check_is_called_out(cli, tmp_path):
    code, out, _ = cli(*BASE, "--stop_criterion", "loss_recovery", "--prune_epsilon", "100",
                       "--net_warmup", "1", "--net_train_epochs", "3", "--exper_imp_total_iter", "3",
                       "--output_dir", str(tmp_path))
    assert code == 0
    summary = json.loads((_run(tmp_path) / "summary.json").read_text())["criterion"]
    assert summary["fired_at_first_check"] == summary["rounds"] == 3
    assert "loss_recovery fired at the first check in all 3 rounds" in summary["note"]
    assert "--stop_criterion fixed --net_train_epochs 1" in summary["note"] and summary["note"] in out


def test_criterion_that_responds_gets_no_note(cli, tmp_path):
    code, out, _ = cli(*BASE, "--stop_criterion", "mask_stability", "--prune_epsilon", "0",
                       "--net_warmup", "1", "--net_train_epochs", "2", "--check_every", "0.5ep",
                       "--exper_imp_total_iter", "2", "--output_dir", str(tmp_path))
    assert code == 0 and "NOTE" not in out
    summary = json.loads((_run(tmp_path) / "summary.json").read_text())["criterion"]
    assert summary["fired"] == 0 and summary["note"] is None
    checks = table(_run(tmp_path), "epochs.csv")
    assert len(checks) == 2 * 4 and all(c["distance"] != "" for c in checks)  # every check measured


def test_api_returns_the_ticket():
    import incop
    d = load_splits("digits", None, 0.1, 0)
    cfg = incop.RunConfig(prune=incop.PruneConfig(method="sap"),
                          train=incop.TrainConfig(lr=0.05, momentum=0.9, epochs=1, warmup=1,
                                                  ticket_epochs=1, rewind_to="init"),
                          experiment=incop.ExperimentConfig(imp_total_iter=2))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    result = incop.prune_model(model, (d.train_x, d.train_y), (d.val_x, d.val_y),
                               (d.test_x, d.test_y), cfg)
    assert len(result.tickets) == 1 and result.tickets[0]["epochs"] == 1
    assert result.tickets[0]["test_acc"] == training.evaluate(result.ticket_model, (d.test_x, d.test_y))[0]
    for name, mask in result.masks.items():  # the ticket keeps the search's final mask
        assert torch.all(dict(result.ticket_model.named_parameters())[name][mask == 0] == 0)
