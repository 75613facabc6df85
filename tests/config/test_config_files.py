"""--config FILE (TOML, JSON, YAML): the command line over the file, unknown keys refused, values
typed like the command line's, a run's config.json repeats the run, --print_config resolves the
method defaults; and what a file may not hold (control characters, NUL bytes, a setting twice,
YAML aliases, nesting past reason) is one line."""
import json
import sys

import pytest

from conftest import one_line_error, small_run
from crafted_files import assert_refused, bounded

from incop.config.files import read_config_file
from incop.config.flags import file_settings
from incop.config.schema import RunConfig


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
    code, _, err = cli(*small_run(exper_imp_total_iter=2), "--output_dir", str(tmp_path))
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


@pytest.mark.parametrize("name,content,message", [
    ("c.toml", b"net_lr = 0.1\n\xff\xfe\n", "not UTF-8"),
    ("c.json", b'{"net_lr": null}', "--net_lr is null"),
    ("c.json", b'{"net_warmup": null}', "--net_warmup is null"),
    ("c.json", b'{"allow_untrained": null}', "is null"),
    ("c.json", b'{"train": {"lr": true}}', "--net_lr expects a number, not True"),
    ("c.toml", b"net_warmup = 1.7\n", "--net_warmup expects a whole number, not 1.7"),
    ("c.toml", b"net_batch_size = 10.5\n", "--net_batch_size expects a whole number, not 10.5"),
    ("c.json", b'{"net_arch": ["lenet300"]}', "takes one value"),
    ("c.json", b'{"net_arch": {"a": 1}}', "--net_arch expects a text value"),
    ("c.json", b'{"seed": 1e400}', "--seed expects a whole number")])
def test_config_files_are_typed_like_the_command_line(cli, tmp_path, name, content, message):
    f = tmp_path / name
    f.write_bytes(content)
    code, _, err = cli("run", "--config", str(f), "--print_config")
    assert one_line_error(code, err) and message in err, err


def test_config_files_accept_what_loses_nothing(cli, tmp_path):
    f = tmp_path / "c.json"
    f.write_text('{"net_warmup": 2.0, "net_lr": 1, "net_pretrained": null, "prune_epsilon": null}')
    code, out, err = cli("run", "--config", str(f), "--print_config")
    assert code == 0, err
    cfg = json.loads(out)
    assert cfg["train"]["warmup"] == 2 and isinstance(cfg["train"]["warmup"], int)
    assert cfg["train"]["lr"] == 1.0


@pytest.mark.parametrize("value", ["out\n#SBATCH --wrap=rm", "out\rx", "a\x00b", "tab\there"])
def test_control_characters_in_a_config_file_are_refused(cli, tmp_path, value):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"output_dir": value}))
    code, _, err = cli("run", "--config", str(config), "--print_config")
    assert code == 2 and err.count("\n") == 1 and "control character" in err
    assert "--output_dir" in err


def test_a_config_file_giving_a_setting_twice_is_refused(cli, tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"net_lr": 0.1, "train": {"lr": 0.2}}))
    code, _, err = cli("run", "--config", str(config), "--print_config")
    assert code == 2 and "'net_lr' and 'train.lr' both set train.lr; keep one" in err


def one_line(code, err):
    lines = [ln for ln in err.splitlines() if not ln.startswith("incop: warning: the machine")]
    return code == 2 and len(lines) == 1 and lines[0].startswith("incop: error:") \
        and "Traceback" not in err and len(lines[0]) < 600


NUL_CONFIGS = {
    "c.toml": 'net_dataset = "npz"\ndata_dir = "a\\u0000b"\n',
    "c.json": '{"net_dataset": "npz", "data_dir": "x\\u0000y"}',
    "c.yaml": 'net_dataset: npz\ndata_dir: "a\\0b"\n',
    "out.json": '{"experiment": {"output_dir": "x\\u0000y"}}',
    "pre.toml": 'net_pretrained = "w\\u0000.pt"\n',
    "name.json": '{"run_name": "r\\u0000"}',
    "include.yaml": 'prune_include: ["fc\\0*"]\n',
    "key.json": '{"data_dir\\u0000": "x"}',
    "section.toml": '[data]\ndata_dir = "\\u0000"\n',
}


@pytest.mark.parametrize("name", list(NUL_CONFIGS))
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_nul_bytes_in_config_paths_are_one_line(cli, tmp_path, name, command):
    path = tmp_path / name
    path.write_text(NUL_CONFIGS[name])
    argv = [command, "--config", str(path), "--quiet"]
    if "output_dir" not in NUL_CONFIGS[name]:
        argv += ["--output_dir", str(tmp_path / "out")]
    code, _, err = cli(*argv)
    assert one_line(code, err), err
    assert "control character" in err or "unknown setting" in err, err
    assert "\\x00" in err and "embedded null" not in err and "ValueError" not in err
    assert not (tmp_path / "out").exists()


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi")) + "net_lr: *i\n"


def test_yaml_anchors_in_a_config_are_refused_before_a_message_prints_them(tmp_path):
    """Nine aliases of nine in 361 bytes print as gigabytes in the message naming a bad
    value: aliases are refused as the file is read."""
    merged = "base: &base {net_lr: 0.1, net_warmup: 2}\n" + "".join(
        f"l{i}: &l{i} {{<<: *{'base' if i == 0 else f'l{i - 1}'}, x{i}: [*base, *base]}}\n"
        for i in range(8)) + "net_dataset: *l7\n"
    texts = {"billion laughs": LAUGHS, "merge keys": merged,
             "a long text by alias": "t: &t " + "y" * 100_000 + "\nnet_arch: [" +
                                     ", ".join(["*t"] * 5000) + "]\n",
             "an alias in a section": "train: {lr: &r [1, 2]}\nprune: {p: *r}\n"}
    cases = {}
    for name, text in texts.items():
        path = tmp_path / f"{name.replace(' ', '_')}.yaml"
        path.write_text(text)
        cases[name] = f"main(['run', '--config', {str(path)!r}, '--quiet', '--output_dir', " \
                      f"{str(tmp_path / 'out')!r}])"
    assert len(LAUGHS.encode()) < 400
    results = bounded("from incop.cli import main", cases)
    for name in texts:
        assert_refused(results[name], "--config", "alias")
    assert not (tmp_path / "out").exists()


def test_config_files_nesting_or_repeating_past_reason_are_one_line(cli, tmp_path):
    """JSON and TOML share nothing, but nest: a list 100,000 deep or 50,000 wide."""
    deep = tmp_path / "deep.json"
    deep.write_text('{"net_lr": ' + "[" * 100_000 + "]" * 100_000 + "}")
    wide = tmp_path / "wide.toml"
    wide.write_text("net_lr = [" + ", ".join(["[1, 2, [3]]"] * 50_000) + "]\n")
    for path in (deep, wide):
        code, _, err = cli("run", "--config", str(path), "--quiet")
        assert code == 2 and len(err.strip().splitlines()) == 1 and len(err) < 600, err
        assert "Traceback" not in err and "--config" in err
