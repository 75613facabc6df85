"""A dense network that did not learn (incop.engine.learned) stops the run with one line (its
training kept); --allow_untrained goes on and the summary says so; the API's advice names
config fields, not flags."""
import json
import math

import pytest
import torch

from conftest import run_dir, small_run, spy_round_starts

import incop
from incop.base.errors import UsageError
from incop.engine.learned import LabelBaseline, untrained_reason


# lr 0 is refused up front; 1e-7 moves no weight measurably: a network that cannot learn
COMMON = small_run(net_lr="1e-7", net_momentum=None, net_warmup=None, exper_imp_total_iter=2,
                   run_name="r")
LR0 = [*COMMON, "--net_warmup", "1"]


def _baseline(labels):
    y = torch.tensor(labels)
    return LabelBaseline.of((torch.zeros(len(y), 1), y))


def test_baseline_is_the_majority_class_and_the_label_entropy():
    b = _baseline([0] * 90 + [1] * 10)
    assert b.chance_acc == pytest.approx(90.0) and b.samples == 100
    assert b.prior_loss == pytest.approx(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)))
    # two standard errors of a guesser at 90% on 100 samples: 6 points, capped at half the room
    assert b.margin == pytest.approx(5.0)
    balanced = _baseline(list(range(10)) * 5)  # 50 samples, 10% each
    assert balanced.prior_loss == pytest.approx(math.log(10))
    assert balanced.margin == pytest.approx(200 * math.sqrt(0.1 * 0.9 / 50))  # 8.49 > 5


def test_accuracy_at_the_margin_is_untrained_and_just_above_is_not():
    b = _baseline([0] * 90 + [1] * 10)  # chance 90, margin 5, entropy 0.325
    flat = b.prior_loss
    assert untrained_reason(b, 95.0, flat, flat) is not None  # majority-class guessing + noise
    assert untrained_reason(b, 95.0, None, None) is not None  # no loss to tell otherwise
    assert untrained_reason(b, 95.01, flat, 0.1) is None
    # a network that predicts the majority class has 90% accuracy: not learned, though > 1/K
    assert "majority class 90.00%" in untrained_reason(b, 90.0, 0.33, 0.33)


def test_a_slow_learner_whose_loss_fell_below_the_entropy_is_not_stopped():
    """Issue 25 item 15: a depthwise CNN on digits after 2 epochs had 16.7% against a majority
    of 12.5% on 144 samples (inside the margin) but loss 2.11 against the entropy 2.29."""
    b = _baseline([0] * 18 + list(range(1, 10)) * 14)  # 10 classes, 144 samples
    assert b.chance_acc == pytest.approx(12.5) and b.prior_loss == pytest.approx(2.29, abs=0.01)
    assert b.margin > 16.7 - 12.5  # the accuracy alone says "at chance"
    assert untrained_reason(b, 16.7, 2.11, 2.2) is None  # the validation loss fell 8%
    assert untrained_reason(b, 16.7, 2.3, 2.11) is None  # or the training loss did
    assert untrained_reason(b, 16.7, 0.99 * b.prior_loss, 0.99 * b.prior_loss) is not None
    # "clearly": a fall of under 2% (LOSS_FRACTION 0.98) is noise
    assert untrained_reason(b, 12.5, 0.981 * b.prior_loss, None) is not None
    assert untrained_reason(b, 12.5, 0.979 * b.prior_loss, None) is None


def test_a_flat_loss_counts_only_while_accuracy_is_within_two_margins():
    b = _baseline(list(range(10)) * 100)  # chance 10, 1000 samples: margin 5
    flat = 0.99 * math.log(10)
    assert untrained_reason(b, 19.0, flat, flat) is not None  # 9 points up, loss unmoved
    assert untrained_reason(b, 19.0, flat, 1.5) is None  # the training loss fell
    assert untrained_reason(b, 21.0, flat, flat) is None  # 11 points up: learned


def test_lr_zero_stops_after_the_warm_up_and_allow_untrained_continues(cli, tmp_path, monkeypatch):
    out_dir = str(tmp_path)
    code, out, err = cli(*LR0, "--output_dir", out_dir)
    assert code == 2 and err.count("\n") == 1 and err.startswith("incop: error:")
    assert "did not learn after its 1-epoch warm-up" in err and "majority class" in err
    assert "--allow_untrained continues" in err and "--net_momentum 0.9" in err
    run = run_dir(*LR0, "--output_dir", tmp_path)
    assert (run / "progress.pt").exists()
    assert json.loads((run / "rounds.json").read_text()) == []  # no round pretends to be a result
    assert "did not learn" in json.loads((run / "trials.json").read_text())[0]["untrained"]

    starts = spy_round_starts(monkeypatch)
    code, out, err = cli(*LR0, "--output_dir", out_dir, "--allow_untrained")
    assert code == 0, err
    assert len(starts) == 2  # rounds 0 and 1 only: the saved warm-up was not repeated
    assert "resuming trial 0 after its warm-up" in out
    assert "search ran on an untrained network" in out
    summary = json.loads((run / "summary.json").read_text())
    assert "did not learn" in summary["trials"][0]["untrained"]


def test_without_warm_up_round_0_is_checked(cli, tmp_path):
    argv = [*COMMON, "--net_warmup", "0"]
    code, _, err = cli(*argv, "--output_dir", str(tmp_path))
    assert code == 2 and "did not learn after round 0 (no warm-up)" in err
    run = run_dir(*argv, "--output_dir", tmp_path)
    assert [r["round"] for r in json.loads((run / "rounds.json").read_text())] == [0]
    code, out, err = cli(*argv, "--output_dir", str(tmp_path), "--allow_untrained")
    assert code == 0 and "resuming trial 0 after round 0" in out
    assert [r["round"] for r in json.loads((run / "rounds.json").read_text())] == [0, 1]


def test_a_network_that_learns_is_not_stopped(cli, tmp_path):
    code, out, err = cli(*small_run(net_warmup=2, exper_imp_total_iter=2),
                         "--output_dir", str(tmp_path))
    assert code == 0, err
    summary = json.loads(next(tmp_path.rglob("summary.json")).read_text())
    assert summary["trials"][0]["warmup_val_acc"] > 80 and "untrained" not in summary["trials"][0]
    assert "untrained" not in out


def test_api_raises_for_an_untrained_network():
    from incop.data.datasets import load_splits

    d = load_splits("digits", None, 0.1, seed=0)
    cfg = incop.RunConfig(prune=incop.PruneConfig(method="sap"),
                          train=incop.TrainConfig(lr=1e-7, epochs=1, warmup=1),
                          experiment=incop.ExperimentConfig(imp_total_iter=2))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with pytest.raises(UsageError, match="did not learn"):
        incop.prune_model(model, (d.train_x, d.train_y), (d.val_x, d.val_y), None, cfg)


def test_api_advice_names_config_fields():
    from incop.config.schema import api_name
    from incop.engine.learned import advice

    text = advice("vgg16", 0.01, 0.0, 2, api_name)
    assert "TrainConfig.warmup" in text and "TrainConfig.lr" in text
    assert "TrainConfig.momentum 0.9" in text and "ModelConfig.arch vgg16_bn" in text
    assert "--net" not in text
    assert "--net_warmup" in advice("vgg16", 0.01, 0.0, 2)  # the command line's words


def test_an_untrained_api_run_names_config_fields(tmp_path):
    from torch import nn

    import incop
    from incop.engine.failures import Untrained

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 8, generator=g), torch.randint(0, 2, (300,), generator=g)
    cfg = incop.RunConfig()
    cfg.train.lr, cfg.train.warmup, cfg.experiment.imp_total_iter = 1e-9, 1, 2
    cfg.prune.method = "sap"
    with pytest.raises(Untrained) as e:
        incop.prune_model(nn.Sequential(nn.Linear(8, 2)), (x, y), (x[:100], y[:100]), config=cfg,
                          output_dir=tmp_path)
    assert "TrainConfig.lr" in str(e.value) and "ExperimentConfig.allow_untrained" in str(e.value)
    assert "--net_" not in str(e.value) and "--allow_untrained" not in str(e.value)
