"""Issue 28: with no --prune_method, incop run (and sweep, and the seed's flags without the run
word) runs the recommended recipe; a method given on the command line or in a --config file
means exactly what it meant before, with the run id it had."""
import json

import pytest

import incop
from incop.base.errors import UsageError
from incop.config.recipes import DEFAULT_RECIPE, default_recipe, recipe_settings, with_recipe
from incop.config.schema import RunConfig

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


def test_no_method_runs_the_recipe_and_says_so(cli, tmp_path):
    cfg, _ = _printed(cli, "--net_arch", "lenet300")
    assert all(_get(cfg, k) == v for k, v in RECIPE.items()) and cfg["train"]["epochs"] == 2.0
    seed_style, _ = _printed(cli, "--net_arch", "lenet300", command=())  # no run word
    assert seed_style == cfg
    code, out, err = cli("run", "--net_warmup", "1", "--net_train_epochs", "0.25",
                         "--exper_imp_total_iter", "2", "--output_dir", str(tmp_path))
    assert code == 0, err
    assert out.startswith("no --prune_method given: running the recommended recipe allr-2 (")
    assert len(list(tmp_path.glob("sap/lenet300/digits/*/rounds.csv"))) == 1


def test_a_given_budget_is_kept_and_the_rest_is_the_recipes(cli):
    cfg, _ = _printed(cli, "--net_train_epochs", "5", "--net_momentum", "0.9")
    assert cfg["train"]["epochs"] == 5.0 and cfg["train"]["momentum"] == 0.9
    assert all(_get(cfg, k) == v for k, v in RECIPE.items())


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
    the default recipe existed (tests/test_recipes.py pins the same)."""
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
    assert cfg["train"]["epochs"] == 3.0


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
    with pytest.raises(UsageError, match="--rewind_to 1ep"):
        default_recipe({"train.rewind_to"}, {"train.rewind_to": "1ep"})
    assert default_recipe({"train.rewind_to"}, {"train.rewind_to": "none"}) == \
        {k: v for k, v in recipe_settings(DEFAULT_RECIPE).items() if k != "train.rewind_to"}


def test_a_sweep_without_a_method_sweeps_the_recipe(cli, tmp_path):
    code, out, err = cli("sweep", "--net_train_epochs", "1", "--net_warmup", "1",
                         "--exper_imp_total_iter", "2", "--seed", "0", "1", "--quiet",
                         "--output_dir", str(tmp_path))
    assert code == 0, err
    configs = sorted(tmp_path.glob("sap/lenet300/digits/*/config.json"))
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
