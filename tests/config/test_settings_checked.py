"""Settings checked before anything runs (RunConfig.validate and the flags): sizes, paths, seeds,
rates, flow and optimizer settings, a rewind point after the warm-up, an API section of the
wrong kind; each refused in one line naming the setting. Method names resolve with aliases."""
import pytest

from conftest import one_line_error, small_run


# One 21-iteration warm-up at lr 0.01 leaves LeNet near chance on digits: these tests are about
# files and checks, not learning.
RUN = small_run(net_lr=None, net_momentum=None, exper_imp_total_iter=2, run_name="r",
                allow_untrained=True)


@pytest.mark.parametrize("argv,expected", [
    (["--net_val_size", "1.0"], "fraction must be below 1"),
    (["--net_val_size", "20"], "too few to measure accuracy"),
    (["--net_val_size", "0.01"], "gives 14 validation samples"),
    (["--output_dir="], "--output_dir is empty"),
    (["--run_name", "../../x"], "plain folder name"),
    (["--run_name", ".."], "plain folder name"),
])
def test_bad_sizes_and_paths_are_refused(cli, tmp_path, argv, expected):
    code, _, err = cli("run", "--output_dir", str(tmp_path), *argv, "--quiet")
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.parent.glob("x"))


def test_small_validation_split_when_the_user_insists(cli, tmp_path):
    code, _, err = cli(*RUN, "--net_val_size", "20", "--allow_small_val", "--output_dir", str(tmp_path))
    assert code == 0, err


@pytest.mark.parametrize("argv", [
    ["--net_image_size", "0"], ["--net_image_size", "-3"], ["--net_image_size", "100000"],
    ["--seed", str(2**64)], ["--seed", str(-2**63)], ["--net_lr", "1e300"],
    ["--net_lr_gamma", "1e300"],
    ["--net_lr_milestones", "2", "4"], ["--net_lr_schedule", "cosine", "--net_lr_milestones", "2"]])
def test_bad_run_flags_are_one_line(cli, tmp_path, argv):
    code, _, err = cli("run", "--net_dataset", "digits", *argv, "--quiet",
                       "--output_dir", str(tmp_path))
    assert one_line_error(code, err)
    assert not any(tmp_path.iterdir())  # and nothing is left behind


@pytest.mark.parametrize("argv,expected", [
    (["--flow_probe_size", "0"], "--flow_probe_size"),
    (["--prune_epsilon", "-0.1"], "--prune_epsilon"),
    (["--flow_stat", "median"], "--flow_stat"),
])
def test_flow_bad_input(cli, tmp_path, argv, expected):
    code, _, err = cli("run", *argv, "--output_dir", str(tmp_path), "--quiet")
    assert code == 2 and expected in err and err.count("\n") == 1


def test_aliases():
    from incop.config.methods import METHODS
    assert METHODS.canonical("incop-if") == "ciap" and METHODS.canonical("INCOP_GF") == "giap"


@pytest.mark.parametrize("argv,message", [
    (["--net_optimizer", "rmsprop"], "choose sgd, adam or adamw"),
    (["--net_optimizer", "adam", "--net_momentum", "0.9"], "applies to sgd"),
    (["--net_lr_warmup_iters", "-1"], "must be 0 (none) or more"),
    (["--net_lr_schedule", "linearly"], "choose constant, step, cosine or linear")])
def test_bad_values_are_one_line(cli, tmp_path, argv, message):
    code, _, err = cli("run", *argv, "--quiet", "--output_dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and message in err


@pytest.mark.parametrize("argv,message", [
    (["--net_lr_allr", "--rewind_to", "none"], "add --net_lr_schedule linear"),
    (["--net_lr_allr", "--net_lr_schedule", "linear"], "add --rewind_to none")])
def test_allr_needs_its_schedule_and_no_rewinding(cli, tmp_path, argv, message):
    # with a method given: with none, the default recipe (allr-2) supplies what is missing
    code, _, err = cli("run", "--prune_method", "sap", *argv, "--quiet", "--output_dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and message in err


@pytest.mark.parametrize("kwargs, words", [
    (lambda i: {"train": {"lr": 0.1}}, "RunConfig.train must be a TrainConfig"),
    (lambda i: {"prune": i.TrainConfig()}, "RunConfig.prune must be a PruneConfig"),
])
def test_an_api_section_of_the_wrong_kind_is_one_line(kwargs, words):
    import incop
    from incop.base.errors import UsageError

    with pytest.raises(UsageError) as e:
        incop.RunConfig(**kwargs(incop)).validate()
    assert str(e.value).startswith(words) and "\n" not in str(e.value)


@pytest.mark.parametrize("extra", [[], ["--ticket_epochs", "1"]])
def test_a_rewind_point_after_the_warm_up_names_rewind_to(cli, extra):
    """The ticket's restart point defaults to --rewind_to: a bad --rewind_to is told as itself,
    not as an unset --ticket_rewind (found by the random bad-flags property test)."""
    code, _, err = cli("run", "--prune_method", "ciap", "--net_warmup", "0", "--rewind_to",
                       "11ep", *extra, "--print_config")
    assert code == 2 and err.count("\n") == 1, err
    assert "--rewind_to 11ep is after the end of the 0-epoch warm-up" in err
