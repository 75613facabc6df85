"""Recipes (incop.config.recipes): with no --prune_method, incop run (and sweep, and the seed's
flags without the run word) runs the recommended recipe; a method given on the command line or
in a --config file means exactly what it meant before, with the run id it had; --recipe NAME
sets its settings, runs in its own folder, and names its steps and its part of the data."""
import json

import pytest

import incop
from incop.base.errors import UsageError
from incop.config.recipes import DEFAULT_RECIPE, recipe_settings
from incop.config.schema import RunConfig, with_recipe


RECIPE = {"prune.method": "sap", "train.lr_schedule": "linear", "train.rewind_to": "none",
          "train.lr_allr": True}


def _printed(cli, *argv, command=("run",)):
    code, out, err = cli(*command, *argv, "--print_config")
    assert code == 0, err
    return json.loads(out), err


def _get(cfg, key):
    section, name = key.split(".")
    return cfg[section][name]


def test_the_default_recipe_is_allr_with_two_epochs_a_round():
    assert DEFAULT_RECIPE == "allr-2"
    assert recipe_settings(DEFAULT_RECIPE) == {**RECIPE, "train.epochs": 2.0}
    assert RunConfig().resolved().prune.recipe == "allr-2"  # the API's default is the CLI's


def test_no_method_runs_the_recipe_and_says_so(cli, tmp_path):
    cfg, _ = _printed(cli, "--net_arch", "lenet300")
    assert all(_get(cfg, k) == v for k, v in RECIPE.items()) and cfg["train"]["epochs"] == 2.0
    seed_style, _ = _printed(cli, "--net_arch", "lenet300", command=())  # no run word
    assert seed_style == cfg
    code, out, err = cli("run", "--net_warmup", "1", "--exper_imp_total_iter", "2", "--quiet",
                         "--output_dir", str(tmp_path))
    assert code == 0, err
    first = out.splitlines()[0]
    assert "recipe allr-2 (SAP pruning, 2 epochs a round" in first and "incop recommends" in first
    runs = list(tmp_path.glob("allr-2/lenet300/digits/*/rounds.csv"))
    assert len(runs) == 1 and first in (runs[0].parent / "log.txt").read_text()  # logged too


def test_a_given_budget_is_kept_and_the_rest_is_the_recipes(cli):
    cfg, _ = _printed(cli, "--net_train_epochs", "5", "--net_momentum", "0.9")
    assert cfg["train"]["epochs"] == 5.0 and cfg["train"]["momentum"] == 0.9
    assert all(_get(cfg, k) == v for k, v in RECIPE.items())
    assert cfg["prune"]["recipe"] == "allr-5"  # named for what it runs


@pytest.mark.parametrize("method", ["ciap", "sap", "lth", "giap"])
def test_a_given_method_means_what_it_meant(cli, method):
    cfg, _ = _printed(cli, "--prune_method", method)
    assert cfg["prune"]["method"] == method and cfg["train"]["epochs"] == 20.0
    assert cfg["train"]["lr_schedule"] == "constant" and cfg["train"]["rewind_to"] == "warmup"
    assert cfg["train"]["lr_allr"] is False
    # ... and the run id it had: the seed's command's id does not depend on this change
    assert RunConfig.from_dict(cfg).run_id() == with_method(method).run_id()


def with_method(method):
    cfg = RunConfig()
    cfg.prune.method = method
    return cfg


def test_a_pinned_seed_run_id_is_unchanged(cli):
    """The id of `incop run --prune_method ciap` with the seed's defaults, as it was before
    the default recipe existed (tests/config/test_run_identity.py pins the same)."""
    cfg, _ = _printed(cli, "--prune_method", "ciap")
    assert RunConfig.from_dict(cfg).run_id() == "6ebb13b4d9"


def test_a_method_in_a_config_file_counts_as_given(cli, tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('prune_method = "ciap"\n')
    cfg, err = _printed(cli, "--config", str(f))
    assert cfg["prune"]["method"] == "ciap" and cfg["train"]["epochs"] == 20.0
    g = tmp_path / "d.toml"
    g.write_text('net_train_epochs = 3\n')
    cfg, err = _printed(cli, "--config", str(g))
    assert cfg["prune"]["method"] == "sap" and cfg["train"]["lr_allr"] is True
    assert cfg["train"]["epochs"] == 3.0 and cfg["prune"]["recipe"] == "allr-3"


@pytest.mark.parametrize("argv,flag", [(["--rewind_to", "1ep"], "--rewind_to"),
                                       (["--net_lr_schedule", "cosine"], "--net_lr_schedule")])
def test_what_the_recipe_cannot_honour_is_refused_in_one_line(cli, argv, flag):
    code, _, err = cli("run", *argv, "--print_config")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert flag in err and "--prune_method" in err


def test_a_value_bad_in_itself_is_named_as_such_and_allr_alone_is_completed(cli):
    code, _, err = cli("run", "--net_lr_schedule", "linearly", "--print_config")
    assert code == 2 and "choose constant, step, cosine or linear" in err
    cfg, _ = _printed(cli, "--net_lr_allr")  # the recipe supplies the schedule and rewinding
    assert all(_get(cfg, k) == v for k, v in RECIPE.items())


def test_the_refusal_names_the_users_value():
    cfg = RunConfig()
    cfg.train.rewind_to = "1ep"
    with pytest.raises(UsageError, match="--rewind_to 1ep"):
        cfg.validate()
    cfg.train.rewind_to = "none"  # what the recipe sets anyway: accepted
    assert cfg.validate().train.lr_allr is True


def test_a_sweep_without_a_method_sweeps_the_recipe(cli, tmp_path):
    code, out, err = cli("sweep", "--net_train_epochs", "1", "--net_warmup", "1",
                         "--exper_imp_total_iter", "2", "--seed", "0", "1", "--quiet",
                         "--output_dir", str(tmp_path))
    assert code == 0, err
    configs = sorted(tmp_path.glob("allr-1/lenet300/digits/*/config.json"))
    assert len(configs) == 2 and not list(tmp_path.glob("ciap"))
    for path in configs:
        cfg = json.loads(path.read_text())
        assert cfg["train"]["lr_allr"] is True and cfg["train"]["epochs"] == 1.0


def test_the_api_without_a_config_runs_the_recipe():
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 8, generator=g), torch.randint(0, 3, (96,), generator=g)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    cfg = with_recipe(RunConfig())
    cfg.train.warmup, cfg.experiment.imp_total_iter = 1, 2
    cfg.experiment.allow_untrained = True  # random labels: what is checked is the schedule
    assert cfg.prune.method == "sap" and cfg.train.lr_allr and cfg.train.epochs == 2.0
    result = incop.prune_model(model, (x, y), (x, y), config=cfg)
    assert [r["epochs"] for r in result.rounds] == [2.0, 2.0]
    assert result.rounds[1]["lr"] is not None  # ALLR's rate of the pruned round


RUN = ["run", "--net_warmup", "1", "--exper_imp_total_iter", "2", "--quiet"]


@pytest.mark.parametrize("name,settings", [
    ("lrr-1", {"prune.method": "sap", "train.epochs": 1.0, "train.rewind_to": "none",
               "train.lr_schedule": "linear", "train.lr_allr": False}),
    ("fixed-0.5", {"prune.method": "sap", "train.epochs": 0.5, "train.rewind_to": "warmup",
                   "train.lr_schedule": "constant", "train.lr_allr": False}),
    ("ciap", {"prune.method": "ciap", "train.epochs": 20.0, "train.rewind_to": "warmup"}),
    ("ALLR-2.0", {"prune.recipe": "allr-2", **{k: v for k, v in RECIPE.items()}})])
def test_a_recipe_by_name_sets_its_settings(cli, name, settings):
    cfg, _ = _printed(cli, "--recipe", name)
    assert {k: _get(cfg, k) for k in settings} == settings


def test_a_recipe_runs_in_its_own_folder_and_is_labelled_by_it(cli, tmp_path):
    code, out, err = cli(*RUN, "--recipe", "lrr-1", "--output_dir", str(tmp_path))
    assert code == 0, err
    run = next(tmp_path.glob("lrr-1/lenet300/digits/*"))
    assert "recipe lrr-1 (" in out.splitlines()[0]
    assert "recipe lrr-1 (" in (run / "log.txt").read_text()
    last = [line for line in out.splitlines() if line.startswith("the final network")][0]
    assert f"{run}/models/trial0_round1.pt" in last and f"incop export {run} --format dense" in last
    code, text, _ = cli("report", str(tmp_path), "--output", str(tmp_path / "rep"))
    assert code == 0 and text.splitlines()[2].startswith("lrr-1 ")


@pytest.mark.parametrize("argv,words", [
    (["--recipe", "allr-2", "--net_train_epochs", "5"], "--recipe allr-5 for 5 epochs a round"),
    (["--recipe", "lrr-1", "--prune_method", "ciap"], "--prune_method ciap: recipe lrr-1"),
    (["--recipe", "fixed-1", "--rewind_to", "none"], "recipe fixed-1 rewinds the weights"),
    (["--recipe", "oneshot"], "add it (e.g. --prune_target_remaining 5)"),
    (["--recipe", "allr-0"], "must be a positive number of epochs"),
    (["--recipe", "magic"], "unknown recipe 'magic'")])
def test_what_a_recipe_cannot_run_is_one_line(cli, argv, words):
    code, _, err = cli("run", *argv, "--print_config")
    assert code == 2 and err.count("\n") == 1 and words in err, err


def test_with_recipe_keeps_or_refuses_as_the_command_line_does(cli):
    cfg = RunConfig()
    cfg.train.epochs = 5
    with pytest.raises(UsageError) as api:
        with_recipe(cfg, "allr-2")
    code, _, err = cli("run", "--recipe", "allr-2", "--net_train_epochs", "5", "--print_config")
    assert code == 2 and "TrainConfig.epochs 5" in str(api.value)
    assert err.strip() == "incop: error: " + str(api.value).replace(
        "TrainConfig.epochs", "--net_train_epochs").replace("PruneConfig.recipe", "--recipe") \
        .replace("PruneConfig.method", "--prune_method")
    cfg.train.epochs = None
    cfg.train.momentum = 0.9  # not the recipe's: kept
    kept = with_recipe(cfg, "lrr-1")
    assert kept.train.momentum == 0.9 and kept.train.epochs == 1.0 and kept.prune.recipe == "lrr-1"


def test_a_run_started_before_recipes_had_names_resumes_where_it_is(cli, tmp_path):
    explicit = ["--prune_method", "sap", "--net_train_epochs", "2", "--rewind_to", "none",
                "--net_lr_schedule", "linear", "--net_lr_allr"]
    assert cli(*RUN, *explicit, "--output_dir", str(tmp_path))[0] == 0
    old = next(tmp_path.glob("sap/lenet300/digits/*"))  # where the default recipe's run went
    code, out, err = cli(*RUN, "--output_dir", str(tmp_path))  # the same, with no method
    assert code == 0, err
    assert f"results and figures in {old}" in out and not list(tmp_path.glob("allr-2"))
    assert "trial 0 round" not in out  # finished: nothing trained again


def test_a_sweep_takes_recipes_as_an_axis(cli, tmp_path):
    code, _, err = cli("sweep", "--recipe", "allr-1", "lrr-1", "--net_warmup", "1",
                       "--exper_imp_total_iter", "2", "--quiet", "--output_dir", str(tmp_path))
    assert code == 0, err
    assert len(list(tmp_path.glob("allr-1/lenet300/digits/*/summary.json"))) == 1
    assert len(list(tmp_path.glob("lrr-1/lenet300/digits/*/summary.json"))) == 1


def test_incop_list_shows_every_recipe_with_its_settings(cli):
    from incop.config.recipes import RECIPES

    code, out, _ = cli("list")
    assert code == 0
    for r in RECIPES:
        assert f"  {r.prefix}K" in out if r.budgeted else f"  {r.pattern} " in out
    assert ("= --prune_method sap --net_train_epochs K --net_lr_schedule linear --net_lr_allr "
            "--rewind_to none") in out


def test_the_api_names_recipes_too():
    cfg = RunConfig(prune=incop.PruneConfig(recipe="lrr-1")).resolved()
    assert cfg.train.rewind_to == "none" and cfg.train.lr_allr is False
    with pytest.raises(UsageError, match="TrainConfig.lr must be a number, not '0.05'"):
        with_recipe(RunConfig(train=incop.TrainConfig(lr="0.05")))


def test_steps_beside_a_recipe_name_the_recipe_in_steps(cli, tmp_path):
    for argv, recipe in ((["--prune_steps", "2"], "allr-2x2"),
                         (["--recipe", "LRR-1X02"], "lrr-1x2"),
                         (["--recipe", "ciap", "--prune_steps", "4"], "ciapx4")):
        code, out, err = cli("run", *argv, "--prune_target_remaining", "20", "--print_config")
        assert code == 0, err
        printed = json.loads(out)
        assert printed["prune"]["recipe"] == recipe and printed["experiment"]["imp_total_iter"] \
            == printed["prune"]["steps"] + 1


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
