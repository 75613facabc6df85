"""Issue 18 item 3: --config FILE (TOML, JSON, YAML), the command line over the file, unknown keys
refused, a run's config.json repeats the run, --print_config resolves the method defaults."""
import json
import sys

import pytest

from incop.config.flags import file_settings
from incop.config.schema import RunConfig
from incop.config.files import read_config_file


def _printed(cli, *argv):
    code, out, err = cli("run", *argv, "--print_config")
    assert code == 0, err
    return json.loads(out)


def test_toml_flags_and_sections_with_the_command_line_on_top(cli, tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('net_arch = "conv2"\nprune_method = "sap"\nallow_untrained = true\n'
                 'net_lr_schedule = "step"\nnet_lr_milestones = [2, 4]\n[train]\nlr = 0.05\n'
                 'epochs = 3\n')
    cfg = _printed(cli, "--config", str(f), "--net_lr", "0.02")
    assert cfg["model"]["arch"] == "conv2" and cfg["prune"]["method"] == "sap"
    assert cfg["train"]["lr"] == 0.02 and cfg["train"]["epochs"] == 3  # the flag wins
    assert cfg["experiment"]["allow_untrained"] is True
    assert cfg["train"]["lr_milestones"] == [2.0, 4.0]


def test_print_config_resolves_the_method_defaults(cli):
    cfg = _printed(cli, "--prune_method", "ciap")
    assert cfg["prune"]["epsilon"] is None  # what the run records (and hashes)
    assert cfg["resolved"] == {"rule": "sap", "criterion": "information_flow", "epsilon": 0.11,
                               "flow_probe_size": 256}  # digits: 1293 training samples, min 256


def test_a_run_config_json_repeats_that_run(cli, tmp_path):
    code, _, err = cli("run", "--prune_method", "sap", "--net_lr", "0.05", "--net_momentum", "0.9",
                       "--net_warmup", "1", "--net_train_epochs", "1", "--exper_imp_total_iter", "2",
                       "--quiet", "--output_dir", str(tmp_path))
    assert code == 0, err
    run = next(tmp_path.rglob("config.json")).parent
    printed = _printed(cli, "--config", str(run / "config.json"))
    printed.pop("resolved")
    assert RunConfig.from_dict(printed).run_id() == run.name
    before = (run / "rounds.csv").read_text()
    code, out, err = cli("run", "--config", str(run / "config.json"), "--quiet")
    assert code == 0, err
    assert str(run) in out and (run / "rounds.csv").read_text() == before  # found, not redone


def test_json_and_yaml(tmp_path, monkeypatch):
    (tmp_path / "c.json").write_text(json.dumps({"prune": {"method": "lth"}, "net_warmup": 2}))
    assert read_config_file(str(tmp_path / "c.json")) == {"prune.method": "lth", "train.warmup": 2}
    (tmp_path / "c.yaml").write_text("net_warmup: 2\n")
    try:
        import yaml  # noqa: F401
        assert read_config_file(str(tmp_path / "c.yaml")) == {"train.warmup": 2}
    except ImportError:
        pass
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(Exception, match="YAML needs PyYAML"):
        read_config_file(str(tmp_path / "c.yaml"))


@pytest.mark.parametrize("text,message", [
    ("bogus = 1\n", "unknown setting 'bogus'"),
    ("[train]\nnet_lr = 0.1\n", "unknown setting 'train.net_lr'"),
    ("net_lr = [0.1, 0.2]\n", "takes one value in a run"),
    ("net_lr = 'fast'\n", "--net_lr expects a number, not 'fast'"),
    ("allow_untrained = 'yes'\n", "is true or false"),
    ("net_lr = \n", "not valid TOML"),
    ('net_lr = "0.05"\n', "--net_lr expects a number, not '0.05' (text: write the number"),
    ('net_warmup = "3"\n', "--net_warmup expects a whole number, not '3'"),
    ('net_arch = 5\n', "--net_arch expects a text value, not 5; put it in quotes")])
def test_bad_files_are_one_line(cli, tmp_path, text, message):
    f = tmp_path / "c.toml"
    f.write_text(text)
    code, _, err = cli("run", "--config", str(f))
    assert code == 2 and err.count("\n") == 1 and message in err


def test_a_list_in_a_sweep_file_is_an_axis():
    got = file_settings({"train.lr": [0.1, 0.2], "prune.exclude": "fc3"}, {}, sweep=True)
    assert got == {"train.lr": [0.1, 0.2], "prune.exclude": ["fc3"]}
    got = file_settings({"train.lr": [0.1, 0.2]}, {"train.lr": [0.5]}, sweep=True)
    assert got == {}  # the command line's axis wins
