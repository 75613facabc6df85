"""Issue 27, the parts landed so far: the training settings the ticket papers use (an optimizer
choice, a linear learning-rate warm-up in iterations, the linear decay of budgeted IMP) and
LeNet-5. Each with its arithmetic checked by hand, its bad values one line, its runs resumable,
and every existing run id unchanged."""
import pytest
import torch
from torch import nn

from conftest import killed_then_resumed, resumes_identically, table
from incop.base.errors import UsageError
from incop.engine.schedules import LRSchedule
from incop.engine.training import make_optimizer, train_round
from incop.pruning.masks import Masks

RECIPE = ["run", "--net_arch", "lenet5", "--prune_method", "sap", "--net_optimizer", "adam",
          "--net_lr", "1.2e-3", "--net_lr_schedule", "linear", "--net_lr_warmup_iters", "5",
          "--net_warmup", "1", "--net_train_epochs", "2", "--exper_imp_total_iter", "3",
          "--quiet", "--run_name", "r"]


def _attached(schedule: LRSchedule, total: int, per_epoch: int = 5) -> LRSchedule:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule.attach(opt, total, per_epoch)
    return schedule


@pytest.mark.parametrize("warmup,iteration,factor", [
    (0, 0, 1.0), (0, 1, 0.9), (0, 5, 0.5), (0, 9, 0.1), (0, 10, 0.0), (0, 12, 0.0),
    (4, 0, 0.25), (4, 1, 0.5 * 0.9), (4, 2, 0.75 * 0.8), (4, 3, 0.7), (4, 4, 0.6)])
def test_linear_decay_and_warm_up_by_hand(warmup, iteration, factor):
    """Over a round of 10 iterations: 1 - i/10, times (i + 1)/warmup while warming up."""
    assert _attached(LRSchedule("linear", warmup=warmup), 10).factor(iteration) == \
        pytest.approx(factor, abs=1e-15)


def test_a_warm_up_ramps_the_constant_schedule_too():
    s = _attached(LRSchedule("constant", warmup=3), 10)
    assert [s.factor(i) for i in range(5)] == pytest.approx([1 / 3, 2 / 3, 1, 1, 1])


def test_the_rate_each_step_trains_with(monkeypatch):
    """The rate the optimizer holds at every step of a real round: step i (from 1) trains with
    base * factor(i - 1), the schedule set before it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    masks = Masks.ones_like(model).bind(model)
    x, y = torch.randn(40, 4), torch.randint(0, 2, (40,))
    batches = [(x[i:i + 10], y[i:i + 10]) for i in range(0, 40, 10)]  # 4 per epoch
    opt = make_optimizer(model, 0.2, 0.0, 0.0)
    seen = []
    real_step = opt.step

    def step(*a, **k):
        seen.append(opt.param_groups[0]["lr"])
        return real_step(*a, **k)

    monkeypatch.setattr(opt, "step", step)
    train_round(model, opt, masks, batches, (x, y), 2, schedule=LRSchedule("linear", warmup=3))
    want = [0.2 * min(1, (i + 1) / 3) * (1 - i / 8) for i in range(8)]
    assert seen == pytest.approx(want, abs=1e-15)


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_pruned_weights_stay_exactly_zero_under_adam(kind):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    masks = Masks({"0.weight": (torch.rand(16, 8) > 0.5).float(),
                   "2.weight": (torch.rand(3, 16) > 0.5).float()}).bind(model)
    masks.apply()
    opt = make_optimizer(model, 0.05, 0.0, 0.1, kind)
    assert type(opt).__name__.lower() == kind
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    train_round(model, opt, masks, [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)],
                (x, y), 3)
    for name, m in masks.items():
        w = dict(model.named_parameters())[name]
        assert bool((w[m == 0] == 0).all()) and bool((w[m != 0] != 0).all())


@pytest.mark.parametrize("argv,message", [
    (["--net_optimizer", "rmsprop"], "choose sgd, adam or adamw"),
    (["--net_optimizer", "adam", "--net_momentum", "0.9"], "applies to sgd"),
    (["--net_lr_warmup_iters", "-1"], "must be 0 (none) or more"),
    (["--net_lr_schedule", "linearly"], "choose constant, step, cosine or linear")])
def test_bad_values_are_one_line(cli, tmp_path, argv, message):
    code, _, err = cli("run", *argv, "--quiet", "--output_dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and message in err


def test_existing_run_ids_do_not_change():
    from incop.cli import build_parser
    from incop.config.flags import config_from_args

    run_id = lambda *a: config_from_args(build_parser().parse_args(
        ["run", "--prune_method", "ciap", *a])).run_id()
    assert run_id() == run_id("--net_optimizer", "sgd", "--net_lr_warmup_iters", "0") == "6ebb13b4d9"
    assert run_id("--net_optimizer", "adam") != run_id()
    assert run_id("--net_lr_warmup_iters", "5") != run_id()


def test_lenet5_is_lecuns_on_28x28_and_fits_small_inputs():
    from incop.models.architectures import build_model

    model = build_model("lenet5", (1, 28, 28), 10)
    assert sum(p.numel() for p in model.parameters()) == 61_706  # LeNet-5's count
    shapes = [tuple(p.shape) for n, p in model.named_parameters() if n.endswith("weight")]
    assert shapes == [(6, 1, 5, 5), (16, 6, 5, 5), (120, 400), (84, 120), (10, 84)]
    for shape in ((1, 8, 8), (3, 32, 32), (1, 5, 5)):
        assert build_model("lenet5", shape, 7)(torch.zeros(2, *shape)).shape == (2, 7)


def test_the_recipe_runs_and_resumes_identically(cli, monkeypatch, tmp_path):
    """LeNet-5, Adam, a linear decay with a warm-up: killed mid-run, resumed, the same run."""
    code, _, err = cli(*RECIPE, "--output_dir", str(tmp_path / "a"))
    assert code == 0, err
    ref = tmp_path / "a" / "sap" / "lenet5" / "digits" / "r"
    # a call per epoch: warm-up 1, round 0 2, then inside round 1
    code, out, err = killed_then_resumed(cli, monkeypatch, 5, *RECIPE,
                                         "--output_dir", str(tmp_path / "b"))
    assert code == 0 and "resuming trial 0" in out, err
    run = tmp_path / "b" / "sap" / "lenet5" / "digits" / "r"
    for name in ("rounds.csv", "epochs.csv", "layers.csv"):
        assert table(run, name) == table(ref, name), name
    code, out, _ = cli("report", str(ref), str(run), "--output", str(tmp_path / "rep"))
    assert code == 0


def test_the_api_takes_the_new_settings():
    import incop
    from incop.data import load_splits

    d = load_splits("digits", None, 0.1, 0)
    cfg = incop.RunConfig(train=incop.TrainConfig(optimizer="adamw", lr=2e-3, epochs=1, warmup=1,
                                                  lr_schedule="linear", lr_warmup_iters=3),
                          prune=incop.PruneConfig(method="sap"),
                          experiment=incop.ExperimentConfig(imp_total_iter=2))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    result = incop.prune_model(model, (d.train_x, d.train_y), (d.val_x, d.val_y), config=cfg)
    assert len(result.rounds) == 2 and result.remaining_fraction < 1
    with pytest.raises(UsageError, match="applies to sgd"):
        cfg.train.momentum = 0.9
        incop.prune_model(model, (d.train_x, d.train_y), (d.val_x, d.val_y), config=cfg)


NO_REWIND = ["run", "--prune_method", "sap", "--rewind_to", "none", "--net_lr", "0.05",
             "--net_momentum", "0.9", "--net_warmup", "1", "--net_train_epochs", "1",
             "--net_lr_schedule", "linear", "--exper_imp_total_iter", "3", "--quiet",
             "--run_name", "r"]


def test_rewind_to_none_goes_on_from_the_trained_weights(cli, monkeypatch, tmp_path):
    """Round 0 starts from the end of the warm-up; every later round from the weights the round
    before trained, with the new mask applied (fine-tuning / learning-rate rewinding)."""
    from conftest import spy_round_starts
    from incop.runs.layout import model_state, round_masks

    starts = spy_round_starts(monkeypatch)
    code, _, err = cli(*NO_REWIND, "--output_dir", str(tmp_path))
    assert code == 0, err
    run = tmp_path / "sap" / "lenet300" / "digits" / "r"
    assert len(starts) == 4  # the warm-up and three rounds
    for k in (1, 2):
        before, masks = model_state(run, 0, k - 1), round_masks(run, 0, k)
        want = {n: (t * masks[n] if n in masks else t) for n, t in before.items()}
        assert all(torch.equal(starts[k + 1][n], want[n]) for n in want), k
    # round 0 starts where the warm-up ended, as with --rewind_to warmup
    warm = starts[1]
    code, _, err = cli(*[a if a != "none" else "warmup" for a in NO_REWIND],
                       "--output_dir", str(tmp_path / "w"))
    assert all(torch.equal(warm[n], starts[5][n]) for n in warm)


def test_rewind_to_none_resumes_identically_and_trains_a_ticket(cli, monkeypatch, tmp_path):
    code, _, _ = cli(*NO_REWIND, "--output_dir", str(tmp_path / "a"))
    assert code == 0
    # the warm-up, rounds 0 and 1, then inside round 2
    code, out, err = killed_then_resumed(cli, monkeypatch, 4, *NO_REWIND,
                                         "--output_dir", str(tmp_path / "b"))
    assert code == 0 and "resuming trial 0 after round 1" in out, err
    a, b = (tmp_path / x / "sap" / "lenet300" / "digits" / "r" for x in "ab")
    assert table(a, "rounds.csv") == table(b, "rounds.csv")
    code, out, err = cli(*NO_REWIND, "--ticket_epochs", "1", "--output_dir", str(tmp_path / "c"))
    assert code == 0 and "retrained 1 epoch from the end of the warm-up" in out, err
    from incop.cli import build_parser
    from incop.config.flags import config_from_args

    cfg = config_from_args(build_parser().parse_args(["run", "--rewind_to", "None"]))
    assert cfg.train.rewind_to == "none"


def test_crop_and_flip_by_hand():
    """The batched indexing against a per-image loop: pad by 4, crop at the drawn offsets,
    mirror the flagged ones; offsets (4, 4) without a flip give the image back."""
    from incop.data.augment import crop_flip, draw

    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 3, 9, 11, generator=g)
    oy, ox, flip = draw(torch.Generator().manual_seed(5), 6)
    oy[0], ox[0], flip[0] = 4, 4, False
    got = crop_flip(x, oy, ox, flip)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(6):
        want = padded[i, :, oy[i]:oy[i] + 9, ox[i]:ox[i] + 11]
        assert torch.equal(got[i], want.flip(-1) if flip[i] else want), i
    assert torch.equal(got[0], x[0])
    assert {int(v) for v in oy} <= set(range(9)) and flip.dtype == torch.bool


def test_augmented_runs_resume_identically_and_differ_from_plain(cli, monkeypatch, tmp_path):
    args = ["run", "--net_arch", "lenet5", "--prune_method", "sap", "--net_augment",
            "--net_optimizer", "adam", "--net_lr", "3e-3", "--net_warmup", "2",
            "--net_train_epochs", "1", "--exper_imp_total_iter", "3", "--quiet", "--run_name", "r"]
    # a call per epoch: the warm-up's 2, round 0, then inside round 1
    out = resumes_identically(cli, monkeypatch, tmp_path, 4, args, "sap/lenet5/digits/r")
    assert "resuming trial 0 after round 0" in out
    a = tmp_path / "a" / "sap" / "lenet5" / "digits" / "r"
    plain = [x for x in args if x != "--net_augment"]
    assert cli(*plain, "--output_dir", str(tmp_path / "c"))[0] == 0
    c = tmp_path / "c" / "sap" / "lenet5" / "digits" / "r"
    assert [r["train_loss"] for r in table(a, "rounds.csv")] != \
        [r["train_loss"] for r in table(c, "rounds.csv")]


def test_augmenting_what_is_not_an_image_is_one_line(cli, tmp_path):
    import numpy as np

    f = tmp_path / "v.npz"
    np.savez(f, x_train=np.random.default_rng(0).normal(size=(800, 16)).astype(np.float32),
             y_train=np.arange(800) % 2)
    code, _, err = cli("run", "--net_dataset", "npz", "--data_dir", str(f), "--net_augment",
                       "--prune_method", "sap", "--quiet", "--output_dir", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1 and "not images" in err


def test_one_shot_lands_on_the_target_count_exactly(cli, tmp_path):
    """One-shot magnitude pruning as a recipe: no warm-up, so round 0 trains the dense network;
    round 1 prunes it once, globally, to the target, and trains on (here fine-tuning). With the
    ratio 1 - 7.3% the one step removes floor(0.927 * 50,200) = 46,535 weights, so the mask keeps
    ceil(7.3% of 50,200) = 3,665, the largest of round 0's across all layers."""
    from incop.runs.layout import model_state, round_masks

    code, _, err = cli("run", "--prune_method", "lth", "--prune_rule", "global",
                       "--prune_ratio", "0.927", "--prune_target_remaining", "7.3",
                       "--net_warmup", "0", "--rewind_to", "none", "--exper_imp_total_iter", "2",
                       "--net_lr", "0.05", "--net_momentum", "0.9", "--net_train_epochs", "2",
                       "--quiet", "--run_name", "r", "--output_dir", str(tmp_path))
    assert code == 0, err
    run = tmp_path / "lth" / "lenet300" / "digits" / "r"
    rows = table(run, "rounds.csv")
    assert [int(r["remaining"]) for r in rows] == [50_200, 3_665]  # 64*300 + 300*100 + 100*10
    trained, masks = model_state(run, 0, 0), round_masks(run, 0, 1)
    magnitudes = torch.cat([trained[n].abs().flatten() for n in masks])
    kept = torch.cat([masks[n].flatten() for n in masks])
    assert float(magnitudes[kept].min()) > float(magnitudes[~kept].max())  # the largest, globally


def test_allr_factor_by_hand():
    """A 2x2 weight [[1, 2], [2, 4]] and a zero bias: |w|^2 = 25. Pruning the 1 and the first 2
    removes 5 of it (d = sqrt(5/25)) and half the survivors (s = 1/2): d/sqrt(s) = sqrt(0.4).
    Pruning the 4 alone: d = 4/5, s = 1/4, d/sqrt(s) = 1.6, clipped to 1. The floor is the
    round's budget over the dense training's."""
    from incop.engine.schedules import allr_factor, pruning_step_sizes

    params = {"w": torch.tensor([[1.0, 2.0], [2.0, 4.0]]), "b": torch.zeros(1)}
    old = Masks({"w": torch.ones(2, 2)})
    cut_small = Masks({"w": torch.tensor([[0.0, 0.0], [1.0, 1.0]])})
    assert pruning_step_sizes(params, old, cut_small) == (25.0, 5.0, 0.5)
    assert allr_factor(25.0, 5.0, 0.5, 0.25) == pytest.approx(0.4 ** 0.5, abs=1e-15)
    assert allr_factor(25.0, 5.0, 0.5, 0.7) == 0.7  # under the floor: the floor
    cut_large = Masks({"w": torch.tensor([[1.0, 1.0], [1.0, 0.0]])})
    assert pruning_step_sizes(params, old, cut_large) == (25.0, 16.0, 0.25)
    assert allr_factor(25.0, 16.0, 0.25, 0.1) == 1.0
    assert allr_factor(25.0, 0.0, 0.0, 0.3) == 0.3  # nothing pruned, nothing moved
    assert allr_factor(25.0, 5.0, 0.5, 3.0) == 1.0  # a round longer than the dense training


ALLR = [*NO_REWIND, "--net_lr_allr"]


def test_allr_rates_are_the_formula_on_the_saved_networks(cli, monkeypatch, tmp_path):
    """Each pruned round's rate in rounds.csv, recomputed by hand from the saved network of the
    round before and the two masks; round 0 keeps --net_lr. Killed and resumed: the same run."""
    from incop.runs.layout import model_state, round_masks

    code, out, err = cli(*ALLR, "--output_dir", str(tmp_path / "a"))
    assert code == 0 and "ALLR rate" in out + err, err
    run = tmp_path / "a" / "sap" / "lenet300" / "digits" / "r"
    rows = table(run, "rounds.csv")
    assert float(rows[0]["lr"]) == 0.05
    for k in (1, 2):
        w, old, new = model_state(run, 0, k - 1), round_masks(run, 0, k - 1), round_masks(run, 0, k)
        total = sum(float(t.double().pow(2).sum()) for t in w.values())
        removed = sum(float(w[n].double()[old[n].bool() & ~new[n].bool()].pow(2).sum())
                      for n in new)
        s = 1 - sum(int(m.sum()) for m in new.values()) / sum(int(m.sum()) for m in old.values())
        d = (removed / total) ** 0.5
        want = 0.05 * min(1.0, max(1 / 2, d / s ** 0.5))  # budget 1 epoch of warm-up 1 + round 0's 1
        assert float(rows[k]["lr"]) == pytest.approx(want, rel=1e-12), k
    assert cli(*NO_REWIND, "--output_dir", str(tmp_path / "plain"))[0] == 0
    plain = table(tmp_path / "plain" / "sap" / "lenet300" / "digits" / "r", "rounds.csv")
    assert [r["lr"] for r in plain] == ["0.05"] * 3
    code, out, err = killed_then_resumed(cli, monkeypatch, 4, *ALLR,
                                         "--output_dir", str(tmp_path / "b"))
    assert code == 0 and "resuming trial 0 after round 1" in out, err
    assert table(tmp_path / "b" / "sap" / "lenet300" / "digits" / "r", "rounds.csv") == rows
    code, _, _ = cli("report", str(run), "--output", str(tmp_path / "rep"))
    assert code == 0 and "1 ep/round, no rewinding, sgd 0.05, linear, ALLR" in \
        (tmp_path / "rep" / "report.md").read_text()


@pytest.mark.parametrize("argv,message", [
    (["--net_lr_allr", "--rewind_to", "none"], "add --net_lr_schedule linear"),
    (["--net_lr_allr", "--net_lr_schedule", "linear"], "add --rewind_to none")])
def test_allr_needs_its_schedule_and_no_rewinding(cli, tmp_path, argv, message):
    # with a method given: with none, the default recipe (allr-2) supplies what is missing
    code, _, err = cli("run", "--prune_method", "sap", *argv, "--quiet", "--output_dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and message in err


def test_the_recipes_benchmark_runs_in_its_quick_mode(tmp_path):
    """benchmarks/recipes.sh QUICK=1: the six recipes at one budget, ablations, the report."""
    import csv
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "recipes"
    subprocess.run(["bash", str(root / "benchmarks" / "recipes.sh"), str(out)], check=True,
                   cwd=root, env={**os.environ, "QUICK": "1", "PYTHON": sys.executable},
                   capture_output=True)
    with open(out / "report" / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {float(r["remaining_pct_mean"]) for r in rows} == {10.0}
    assert sorted(p.parent.name for p in out.rglob("ablations.csv")) == ["gmp", "weight_rewinding"]


def test_the_api_runs_allr():
    import incop
    from incop.data import load_splits

    d = load_splits("digits", None, 0.1, 0)
    cfg = incop.RunConfig(train=incop.TrainConfig(lr=0.05, momentum=0.9, epochs=1, warmup=1,
                                                  rewind_to="none", lr_schedule="linear",
                                                  lr_allr=True),
                          prune=incop.PruneConfig(method="lth", rule="global", ratio=0.5),
                          experiment=incop.ExperimentConfig(imp_total_iter=3))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    result = incop.prune_model(model, (d.train_x, d.train_y), (d.val_x, d.val_y), config=cfg)
    rates = [r["lr"] for r in result.rounds]
    assert rates[0] == 0.05 and all(0.025 <= r <= 0.05 for r in rates[1:])  # floor: 1 of 2 epochs


def test_the_gpu_check_runs_dry_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.sh --dry-run: its steps on the CPU at toy sizes, tables written."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "gpu_check"
    subprocess.run(["bash", str(root / "benchmarks" / "gpu_check.sh"), "--dry-run"], check=True,
                   cwd=root, env={**os.environ, "OUT": str(out), "PYTHON": sys.executable},
                   capture_output=True)
    parity = (out / "parity.txt").read_text()
    assert "parity-fp32" in parity and "parity-bf16" in parity
    comparison = (out / "vgg16.txt").read_text()
    for method in ("lth", "sap (1, 2)", "ciap (1, 2)", "giap (1, 2)"):
        assert method in comparison
    assert (out / "data" / "MNIST" / "t10k-labels-idx1-ubyte").stat().st_size == 8 + 297
