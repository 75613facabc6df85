"""A run's identity (incop.config.identity): which settings its id hashes. The settings of the
first release are always hashed; every later one only when it differs from its baseline, so
options added later keep earlier run ids; a model or data of another kind gets a run of its
own in the same output folder."""
import dataclasses

import pytest
import torch
from torch import nn

import incop
from conftest import api_config, small_mlp, split_pairs
from incop.base.errors import UsageError
from incop.config import identity
from incop.config.schema import BASELINES, RunConfig, comparable


# The hand-kept table these baselines replaced (incop 0.4's LATER_OPTIONS), frozen: runs made
# by any release keep their ids only while the derived baselines say exactly this.
HISTORIC_BASELINES = {
    ("prune", "target_remaining"): None, ("prune", "include"): None,
    ("prune", "exclude"): None, ("data", "allow_small_val"): False,
    ("data", "fingerprint"): None, ("model", "fingerprint"): None,
    ("prune", "check_every"): "1ep", ("train", "lr_schedule"): "constant",
    ("train", "lr_milestones"): None, ("train", "lr_gamma"): 0.1,
    ("train", "rewind_to"): "warmup", ("train", "ticket_epochs"): 0,
    ("train", "precision"): "fp32", ("train", "channels_last"): "auto",
    ("experiment", "threads"): None, ("experiment", "wandb"): False,
    ("train", "optimizer"): "sgd", ("train", "lr_warmup_iters"): 0,
    ("train", "augment"): False, ("train", "lr_allr"): False,
    ("prune", "gmp_start"): None, ("prune", "gmp_end"): None, ("prune", "gmp_every"): None,
    ("experiment", "wandb_project"): None, ("model", "init"): "pytorch",
    ("data", "image_size"): None, ("train", "ticket_rewind"): None, ("prune", "steps"): None,
    ("train", "round_data_fraction"): None, ("train", "round_data_choice"): "random",
    ("prune", "gmp_lr"): "run", ("prune", "keep_at"): None}


def test_derived_baselines_are_the_historic_table():
    derived = {k: BASELINES[k] for k in HISTORIC_BASELINES}
    assert derived == HISTORIC_BASELINES  # settings added since have their default as baseline
    assert {k: type(v) for k, v in derived.items()} == \
        {k: type(v) for k, v in HISTORIC_BASELINES.items()}


def test_every_setting_is_first_or_has_a_baseline():
    fields = {(s, f.name) for s in RunConfig.SECTIONS
              for f in dataclasses.fields(getattr(RunConfig(), s))}
    assert identity.FIRST_SETTINGS | set(BASELINES) == fields
    assert not identity.FIRST_SETTINGS & set(BASELINES)


def test_a_later_setting_is_hashed_only_away_from_its_baseline():
    base = RunConfig().to_dict()
    for (section, name), baseline in BASELINES.items():
        if (section, name) == ("prune", "recipe") or name in identity.WHERE_NOT_WHAT:
            continue  # a name, and where or how a run runs: never hashed
        at = {s: dict(v) for s, v in base.items()}
        at[section][name] = baseline
        assert name not in comparable(at)[section], (section, name)
        away = {s: dict(v) for s, v in base.items()}
        away[section][name] = "something else"
        assert comparable(away)[section][name] == "something else", (section, name)


def test_a_first_setting_is_hashed_at_any_value():
    base = RunConfig().to_dict()
    for section, name in identity.FIRST_SETTINGS:
        if section == "experiment" and name in identity.WHERE_NOT_WHAT:
            assert name not in comparable(base)["experiment"]
        else:
            assert name in comparable(base)[section], (section, name)


def test_a_new_option_changes_no_id_at_its_default():
    """A setting added to a section (here a fake one) with a default leaves every run id as it
    was while at that default, and only needs its field: the baselines come from it."""
    cfg = RunConfig()
    before = cfg.run_id()
    extra = {**BASELINES, ("train", "brand_new"): 3}
    d = cfg.resolved().to_dict()
    d["train"]["brand_new"] = 3
    assert identity.comparable(d, extra) == comparable(cfg.resolved().to_dict())
    d["train"]["brand_new"] = 4
    assert identity.comparable(d, extra) != comparable(cfg.resolved().to_dict())
    assert RunConfig().run_id() == before


def test_options_added_later_keep_earlier_run_ids_and_resumes():
    """Run directories made before --prune_target_remaining existed keep their hash (computed
    before the option existed) and can still be resumed; setting the option changes the hash."""
    from incop.config.schema import RunConfig
    from incop.config.schema import comparable as _comparable

    cfg = RunConfig()
    cfg.prune.method = "ciap"  # the method those runs ran with no --prune_method
    # --net_init's default (kaiming) changes results, so today's default run has a new id; the
    # init those runs used (pytorch) gives the old one back
    assert cfg.run_id() != "c829456d16"
    cfg.model.init = "pytorch"
    assert cfg.run_id() == "c829456d16"
    old_saved = cfg.to_dict()
    del old_saved["prune"]["target_remaining"]  # a progress file written by that release
    del old_saved["model"]["init"]
    assert _comparable(old_saved) == _comparable(cfg.to_dict())
    assert _comparable(old_saved) != _comparable(RunConfig().to_dict())  # not resumed as kaiming
    cfg.prune.target_remaining = 20.0
    assert cfg.run_id() != "c829456d16"
    assert _comparable(old_saved) != _comparable(cfg.to_dict())


def test_existing_run_ids_do_not_change():
    from incop.cli import build_parser
    from incop.config.flags import config_from_args

    run_id = lambda *a: config_from_args(build_parser().parse_args(
        ["run", "--prune_method", "ciap", *a])).run_id()
    assert run_id() == run_id("--net_optimizer", "sgd", "--net_lr_warmup_iters", "0") == "6ebb13b4d9"
    assert run_id("--net_optimizer", "adam") != run_id()
    assert run_id("--net_lr_warmup_iters", "5") != run_id()


def test_another_model_in_the_same_output_dir_gets_its_own_results(digits, tmp_path):
    relu = incop.prune_model(small_mlp(nn.ReLU), *split_pairs(digits), api_config(), output_dir=tmp_path)
    tanh = incop.prune_model(small_mlp(nn.Tanh), *split_pairs(digits), api_config(), output_dir=tmp_path)
    assert tanh.run_dir != relu.run_dir
    fresh = incop.prune_model(small_mlp(nn.Tanh), *split_pairs(digits), api_config())  # no output_dir
    assert [r["val_acc"] for r in tanh.rounds] == [r["val_acc"] for r in fresh.rounds]
    assert [r["val_acc"] for r in tanh.rounds] != [r["val_acc"] for r in relu.rounds]
    # other layer sizes: its own run, not a raw 'size mismatch'
    torch.manual_seed(0)
    wide = nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))
    assert incop.prune_model(wide, *split_pairs(digits), api_config(), output_dir=tmp_path).run_dir != relu.run_dir
    # other data: its own run
    train, val, test = split_pairs(digits)
    half = (train[0][:700], train[1][:700])
    assert incop.prune_model(small_mlp(nn.ReLU), half, val, test, api_config(),
                             output_dir=tmp_path).run_dir != relu.run_dir


def test_another_model_under_a_pinned_run_name_is_refused(digits, tmp_path):
    cfg = api_config()
    cfg.experiment.run_name = "pinned"
    incop.prune_model(small_mlp(nn.ReLU), *split_pairs(digits), cfg, output_dir=tmp_path)
    with pytest.raises(UsageError, match="holds a run with another configuration"):
        incop.prune_model(small_mlp(nn.Tanh), *split_pairs(digits), cfg, output_dir=tmp_path)
