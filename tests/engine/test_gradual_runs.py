"""Gradual magnitude pruning in a run: its steps as rounds of one run (fractional epochs, one
optimizer, one schedule or one restarted at every step), resumable, with a ticket, from the CLI,
a recipe and the API; bad settings are one line."""
import json
import math
from fractions import Fraction

import pytest

from conftest import killed_then_resumed, run_dir, table

from incop.pruning.rules import target_count


GMP = ["run", "--prune_method", "gmp", "--gmp_start", "1ep", "--gmp_end", "4ep",
       "--gmp_every", "1ep", "--prune_target_remaining", "7.3", "--net_train_epochs", "5.5",
       "--net_warmup", "1", "--net_lr", "0.05", "--net_momentum", "0.9",
       "--net_lr_schedule", "linear", "--quiet", "--run_name", "r"]


def _by_hand(n: int, t: int, t0: int, t_end: int, target: str) -> int:
    """ceil(n (1 - s_t)), s_t = s_f + (0 - s_f)(1 - (t - t0)/(t_end - t0))^3, in fractions."""
    s_f = 1 - Fraction(target) / 100
    s_t = s_f + (0 - s_f) * (1 - Fraction(t - t0, t_end - t0)) ** 3
    return math.ceil(n * (1 - s_t))


def test_the_run_follows_the_schedule_and_resumes_identically(cli, monkeypatch, tmp_path):
    """digits: 21 iterations an epoch, so the steps fall at 42, 63, 84 (1ep + k ep) and the run
    of 5.5 epochs ends at iteration 116 (5.5 x 21 = 115.5, rounded half up)."""
    code, _, err = cli(*GMP, "--output_dir", str(tmp_path / "a"))
    assert code == 0, err
    run = run_dir(*GMP, "--output_dir", tmp_path / "a")
    rows = table(run, "rounds.csv")
    assert [int(r["iterations"]) for r in rows] == [42, 21, 21, 32]
    assert [float(r["epochs"]) for r in rows] == pytest.approx([2, 1, 1, 32 / 21])
    layers = table(run, "layers.csv")
    for k, t in ((1, 42), (2, 63), (3, 84)):
        for row in (r for r in layers if int(r["round"]) == k and r["status"] == "pruned"):
            n = int(row["total"])
            assert int(row["remaining"]) == _by_hand(n, t, 21, 84, "7.3"), (k, row["layer"])
    # the warm-up, round 0's two epochs, round 1, then inside round 2
    code, out, err = killed_then_resumed(cli, monkeypatch, 5, *GMP,
                                         "--output_dir", str(tmp_path / "b"))
    assert code == 0 and "resuming trial 0 after round 1" in out, err
    b = run_dir(*GMP, "--output_dir", tmp_path / "b")
    assert table(b, "rounds.csv") == rows
    code, out, _ = cli("report", str(run), "--output", str(tmp_path / "rep"))
    assert code == 0
    assert "gmp 1ep..4ep every 1ep to 7.3%, 5.5 ep, sgd 0.05, linear" in \
        (tmp_path / "rep" / "report.md").read_text()


def test_one_optimizer_and_one_schedule_run_through_the_steps(monkeypatch):
    """The rate of step i (from 0) of the run is --net_lr (1 - i / 116), i counted from the run's
    start across the rounds (an IMP round would restart it); and momentum goes on (the same optimizer object every round)."""
    rates, optimizers = _rates_of_run(monkeypatch, GMP[:-3] + ["--net_warmup", "0"])
    # (read after step i's update, before the schedule moves on: the rate step i trained with)
    assert rates == pytest.approx([0.05 * (1 - i / 116) for i in range(116)], abs=1e-15)
    assert len(optimizers) == 1


def _rates_of_run(monkeypatch, argv):
    """The rate every optimizer step of the run trained with, and the optimizers it used."""
    import incop.engine.training as training
    from incop.cli import build_parser
    from incop.config.flags import config_from_args
    from incop.engine.imp import IMPExperiment

    rates, optimizers = [], set()
    real = training.train_steps

    def spy(model, optimizer, masks, stream, steps, on_step=None, compute=training.FP32,
            on_batch=None):
        optimizers.add(id(optimizer))

        def record():
            rates.append(optimizer.param_groups[0]["lr"])
            if on_step is not None:
                on_step()
        return real(model, optimizer, masks, stream, steps, record, compute, on_batch)

    monkeypatch.setattr(training, "train_steps", spy)
    IMPExperiment(config_from_args(build_parser().parse_args(argv)), progress=False,
                  echo=lambda s: None).run()
    return rates, optimizers


def test_gmp_star_restarts_the_rate_at_every_step_and_for_the_tail(monkeypatch):
    """--gmp_lr restart: the segments [0, 42), [42, 63), [63, 84), [84, 116) each decay from
    --net_lr linearly towards 0 over their own length; one optimizer still (momentum goes on)."""
    rates, optimizers = _rates_of_run(monkeypatch, GMP[:-3] + ["--net_warmup", "0",
                                                               "--gmp_lr", "restart"])
    expected = [0.05 * (1 - i / n) for n in (42, 21, 21, 32) for i in range(n)]
    assert rates == pytest.approx(expected, abs=1e-15)
    assert len(optimizers) == 1


def test_the_gmp_star_recipe_is_gmp_over_its_epochs_with_the_rate_restarted(cli, tmp_path):
    """recipe gmp-4: a run of 4 epochs pruning from 0.5 to 3 epochs every 0.25 (digits: 21
    iterations an epoch), lands exactly on the target, and says what it is."""
    code, out, err = cli("run", "--recipe", "gmp-4", "--prune_target_remaining", "10",
                         "--net_warmup", "1", "--quiet", "--output_dir", str(tmp_path),
                         "--run_name", "r")
    assert code == 0, err
    run = tmp_path / "gmp-4" / "lenet300" / "digits" / "r"
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["prune"]["gmp_start"], cfg["prune"]["gmp_end"], cfg["prune"]["gmp_every"],
            cfg["prune"]["gmp_lr"], cfg["train"]["lr_schedule"], cfg["train"]["epochs"]) == \
        ("0.5ep", "3ep", "0.25ep", "restart", "linear", 4.0)
    rows = table(run, "rounds.csv")
    assert sum(int(r["iterations"]) for r in rows) == 84
    assert int(rows[-1]["remaining"]) == target_count(int(rows[0]["remaining"]), 10)
    assert "gmp-4" in out


def test_a_ticket_and_the_api():
    import incop
    from incop.data import load_splits
    from torch import nn

    d = load_splits("digits", None, 0.1, 0)
    cfg = incop.RunConfig(train=incop.TrainConfig(lr=0.05, momentum=0.9, epochs=3, warmup=1,
                                                  ticket_epochs=1),
                          prune=incop.PruneConfig(method="gmp", gmp_start="start",
                                                  gmp_end="40it", gmp_every="10it",
                                                  target_remaining=20, rule="global"))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    result = incop.prune_model(model, (d.train_x, d.train_y), (d.val_x, d.val_y), config=cfg)
    assert len(result.rounds) == 5  # the dense segment and 4 steps
    assert result.masks.remaining() == target_count(64 * 32 + 32 * 10, 20)
    assert result.ticket_model is not None and len(result.tickets) == 1


@pytest.mark.parametrize("argv,message", [
    (["--prune_method", "gmp", "--prune_target_remaining", "10"], "needs --gmp_start"),
    (["--prune_method", "gmp", "--gmp_start", "1ep", "--gmp_end", "3ep", "--gmp_every", "1ep"],
     "add it"),
    (["--prune_method", "sap", "--gmp_every", "1ep"], "add --prune_method gmp or drop them"),
    (["--prune_method", "gmp", "--gmp_start", "1ep", "--gmp_end", "3ep", "--gmp_every", "1ep",
      "--prune_target_remaining", "10", "--net_train_epochs", "3"], "trains on after"),
    (["--prune_method", "gmp", "--gmp_start", "3ep", "--gmp_end", "2ep", "--gmp_every", "1ep",
      "--prune_target_remaining", "10"], "must come before --gmp_end"),
    (["--prune_method", "gmp", "--gmp_start", "1ep", "--gmp_end", "3ep", "--gmp_every", "0ep",
      "--prune_target_remaining", "10"], "--gmp_every 0ep"),
    (["--prune_method", "gmp", "--gmp_start", "1ep", "--gmp_end", "3ep", "--gmp_every", "1ep",
      "--prune_target_remaining", "10", "--stop_criterion", "information_flow"],
     "drop --stop_criterion"),
    (["--prune_method", "gmp", "--gmp_start", "1ep", "--gmp_end", "3ep", "--gmp_every", "1ep",
      "--prune_target_remaining", "10", "--prune_rule", "sap"], "layerwise or global"),
    (["--prune_method", "gmp", "--gmp_start", "1ep", "--gmp_end", "3ep", "--gmp_every", "1ep",
      "--prune_target_remaining", "10", "--gmp_lr", "restart"], "constant does not decay"),
    (["--prune_method", "gmp", "--gmp_start", "1ep", "--gmp_end", "3ep", "--gmp_every", "1ep",
      "--prune_target_remaining", "10", "--gmp_lr", "restart", "--net_lr_schedule", "step",
      "--net_lr_milestones", "1"], "step does not decay within a step"),
    (["--recipe", "gmp-0", "--prune_target_remaining", "10"], "the length of its one run"),
    (["--recipe", "gmp-4", "--net_train_epochs", "1", "--prune_target_remaining", "10"],
     "--net_train_epochs 1: recipe gmp-4"),
    (["--recipe", "gmp-4", "--net_train_epochs", "1", "--prune_target_remaining", "10"],
     "or --recipe gmp-1 for a run of 1 epoch"),
    (["--recipe", "gmp-4", "--prune_target_remaining", "10", "--net_lr_schedule", "constant"],
     "linear"),
    (["--prune_method", "sap", "--gmp_lr", "restart"], "add --prune_method gmp or drop them"),
    (["--prune_method", "gmp", "--gmp_lr", "sawtooth"], "--gmp_lr sawtooth: choose run or "
                                                        "restart")])
def test_bad_settings_are_one_line(cli, tmp_path, argv, message):
    code, _, err = cli("run", *argv, "--net_warmup", "1", "--quiet",
                       "--output_dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not any(tmp_path.rglob("progress.pt"))
