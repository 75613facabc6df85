"""A run's identity: which settings its id hashes. The settings of the first release are always
hashed; every later one only when it differs from its baseline (the value runs had before it
existed), which RunConfig's field metadata gives, so an option added later needs no entry
anywhere else (incop.config.identity)."""
import dataclasses

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
    derived = {k: v for k, v in BASELINES.items() if k != ("prune", "recipe")}  # a name, not hashed
    assert derived == HISTORIC_BASELINES
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
