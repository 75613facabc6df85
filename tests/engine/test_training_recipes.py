"""The training settings the ticket papers use, in whole runs: LeNet-5 with Adam and a linear
decay, no rewinding (learning-rate rewinding), augmentation, one-shot pruning to a target, ALLR's
rate on the saved networks; each resumable to the same run, from the CLI and the API."""
import pytest
import torch
from torch import nn

from conftest import killed_then_resumed, resumes_identically, run_dir, small_run, table

from incop.base.errors import UsageError


RECIPE = ["run", "--net_arch", "lenet5", "--prune_method", "sap", "--net_optimizer", "adam",
          "--net_lr", "1.2e-3", "--net_lr_schedule", "linear", "--net_lr_warmup_iters", "5",
          "--net_warmup", "1", "--net_train_epochs", "2", "--exper_imp_total_iter", "3",
          "--quiet", "--run_name", "r"]


def test_the_recipe_runs_and_resumes_identically(cli, monkeypatch, tmp_path):
    """LeNet-5, Adam, a linear decay with a warm-up: killed mid-run, resumed, the same run."""
    code, _, err = cli(*RECIPE, "--output_dir", str(tmp_path / "a"))
    assert code == 0, err
    ref = run_dir(*RECIPE, "--output_dir", tmp_path / "a")
    # a call per epoch: warm-up 1, round 0 2, then inside round 1
    code, out, err = killed_then_resumed(cli, monkeypatch, 5, *RECIPE,
                                         "--output_dir", str(tmp_path / "b"))
    assert code == 0 and "resuming trial 0" in out, err
    run = run_dir(*RECIPE, "--output_dir", tmp_path / "b")
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


NO_REWIND = small_run(rewind_to="none", net_lr_schedule="linear", run_name="r")


def test_rewind_to_none_goes_on_from_the_trained_weights(cli, monkeypatch, tmp_path):
    """Round 0 starts from the end of the warm-up; every later round from the weights the round
    before trained, with the new mask applied (fine-tuning / learning-rate rewinding)."""
    from conftest import spy_round_starts
    from incop.runs.layout import model_state, round_masks

    starts = spy_round_starts(monkeypatch)
    code, _, err = cli(*NO_REWIND, "--output_dir", str(tmp_path))
    assert code == 0, err
    run = run_dir(*NO_REWIND, "--output_dir", tmp_path)
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
    a, b = (run_dir(*NO_REWIND, "--output_dir", tmp_path / x) for x in "ab")
    assert table(a, "rounds.csv") == table(b, "rounds.csv")
    code, out, err = cli(*NO_REWIND, "--ticket_epochs", "1", "--output_dir", str(tmp_path / "c"))
    assert code == 0 and "retrained 1 epoch from the end of the warm-up" in out, err
    from incop.cli import build_parser
    from incop.config.flags import config_from_args

    cfg = config_from_args(build_parser().parse_args(["run", "--rewind_to", "None"]))
    assert cfg.train.rewind_to == "none"


def test_augmented_runs_resume_identically_and_differ_from_plain(cli, monkeypatch, tmp_path):
    args = ["run", "--net_arch", "lenet5", "--prune_method", "sap", "--net_augment",
            "--net_optimizer", "adam", "--net_lr", "3e-3", "--net_warmup", "2",
            "--net_train_epochs", "1", "--exper_imp_total_iter", "3", "--quiet", "--run_name", "r"]
    # a call per epoch: the warm-up's 2, round 0, then inside round 1
    out = resumes_identically(cli, monkeypatch, tmp_path, 4, args)
    assert "resuming trial 0 after round 0" in out
    a = run_dir(*args, "--output_dir", tmp_path / "a")
    plain = [x for x in args if x != "--net_augment"]
    assert cli(*plain, "--output_dir", str(tmp_path / "c"))[0] == 0
    c = run_dir(*plain, "--output_dir", tmp_path / "c")
    assert [r["train_loss"] for r in table(a, "rounds.csv")] != \
        [r["train_loss"] for r in table(c, "rounds.csv")]


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


ALLR = [*NO_REWIND, "--net_lr_allr"]


def test_allr_rates_are_the_formula_on_the_saved_networks(cli, monkeypatch, tmp_path):
    """Each pruned round's rate in rounds.csv, recomputed by hand from the saved network of the
    round before and the two masks; round 0 keeps --net_lr. Killed and resumed: the same run."""
    from incop.runs.layout import model_state, round_masks

    code, out, err = cli(*ALLR, "--output_dir", str(tmp_path / "a"))
    assert code == 0 and "ALLR rate" in out + err, err
    run = run_dir(*ALLR, "--output_dir", tmp_path / "a")
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
    plain = table(run_dir(*NO_REWIND, "--output_dir", tmp_path / "plain"), "rounds.csv")
    assert [r["lr"] for r in plain] == ["0.05"] * 3
    code, out, err = killed_then_resumed(cli, monkeypatch, 4, *ALLR,
                                         "--output_dir", str(tmp_path / "b"))
    assert code == 0 and "resuming trial 0 after round 1" in out, err
    assert table(run_dir(*ALLR, "--output_dir", tmp_path / "b"), "rounds.csv") == rows
    code, _, _ = cli("report", str(run), "--output", str(tmp_path / "rep"))
    assert code == 0 and "1 ep/round, no rewinding, sgd 0.05, linear, ALLR" in \
        (tmp_path / "rep" / "report.md").read_text()


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
