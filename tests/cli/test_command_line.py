"""The command line (incop.cli): incop run end to end on digits, the seed's flag forms, the
console script and module, one-line errors for bad input, paths as people type them, a reader
that leaves, and the sweep's progress line."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FAST, make_idx_dataset

from incop.runs.layout import round_masks


def _run_dir(root: Path) -> Path:
    dirs = [p.parent for p in root.rglob("config.json")]
    assert len(dirs) == 1, dirs
    return dirs[0]


def _rows(path: Path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_lth_end_to_end(cli, tmp_path):
    code, out, err = cli("run", "--prune_method=lth", "--exper_num_trial=2", *FAST,
                         "--output_dir", str(tmp_path))
    assert code == 0, err
    run = _run_dir(tmp_path)
    assert run.parts[-4:-1] == ("lth", "lenet300", "digits")
    rounds = _rows(run / "rounds.csv")
    assert [(r["trial"], r["round"]) for r in rounds] == [(t, k) for t in "01" for k in "012"]
    # layer-wise 20% per round: 100%, ~80%, ~64% remaining, every round 2 fixed epochs
    remaining = [float(r["remaining_pct"]) for r in rounds[:3]]
    assert remaining[0] == 100 and remaining[1] == pytest.approx(80, abs=0.1)
    assert remaining[2] == pytest.approx(64, abs=0.1)
    assert {float(r["epochs"]) for r in rounds} == {2.0} and {r["stop_reason"] for r in rounds} == {"max_epochs"}
    assert float(rounds[-1]["val_acc"]) > 50
    layers = _rows(run / "layers.csv")
    assert {l["layer"] for l in layers} == {"fc1.weight", "fc2.weight", "fc3.weight"}
    assert all(float(l["remaining_pct"]) == pytest.approx(80, abs=0.5)
               for l in layers if l["round"] == "1")
    summary = json.loads((run / "summary.json").read_text())
    assert [r["trials"] for r in summary["rounds"]] == [2, 2, 2]
    assert "remaining %" in out and "test acc %" in out  # the summary table
    assert len(list((run / "masks").glob("*.pt"))) == 6 and (run / "models" / "trial1_round2.pt").exists()
    assert json.loads((run / "config.json").read_text())["versions"]["torch"]


def test_sap_end_to_end_space_separated_flags(cli, tmp_path):
    code, out, err = cli("run", "--prune_method", "sap", "--prune_p", "0.5", "--prune_q", "1",
                         *FAST, "--output_dir", str(tmp_path))
    assert code == 0, err
    rounds = _rows(_run_dir(tmp_path) / "rounds.csv")
    ratios = [float(r["prune_ratio"]) for r in rounds[1:]]
    assert all(0 < r < 0.5 for r in ratios)  # (0.5, 1) prunes ~15% of Gaussian-like weights
    kept = [int(r["remaining"]) for r in rounds]
    assert kept[1] == kept[0] - int(kept[0] * ratios[0])


def test_seed_command_as_written(cli, tmp_path):
    make_idx_dataset(tmp_path / "data" / "MNIST" / "raw", n_train=500, n_test=40, gz=True)
    code, out, err = cli("--net_arch=conv2", "--net_dataset=MNIST", "--net_lr=.01",
                         "--net_train_epochs=1", "--net_warmup=1", "--exper_type=performance",
                         "--prune_method=sap", "--prune_p=1.0", "--prune_q=2.0",
                         "--exper_imp_total_iter=2", "--exper_num_trial=1",
                         f"--data_dir={tmp_path / 'data'}", f"--output_dir={tmp_path / 'out'}",
                         "--quiet")
    assert code == 0, err
    cfg = json.loads((_run_dir(tmp_path / "out") / "config.json").read_text())
    assert cfg["experiment"]["exper_type"] == "performance" and cfg["model"]["arch"] == "conv2"


def test_console_script_and_module(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run([sys.executable, "-m", "incop", "run", "--help"], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 0
    for flag in ("--net_arch", "--net_dataset", "--net_lr", "--net_train_epochs", "--net_warmup",
                 "--prune_method", "--prune_p", "--prune_q", "--exper_imp_total_iter",
                 "--exper_num_trial", "--net_batch_size", "--net_weight_decay", "--net_momentum",
                 "--prune_ratio", "--prune_epsilon", "--net_pretrained", "--device",
                 "--exper_gpu_id", "--seed", "--data_dir", "--output_dir"):
        assert flag in out.stdout
    bad = subprocess.run([os.path.join(os.path.dirname(sys.executable), "incop"), "run",
                          "--net_arch", "nope"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "unknown architecture 'nope'" in bad.stderr


BAD = [
    (["--net_arch", "nope"], "unknown architecture"),
    (["--net_dataset", "imagenet"], "unknown dataset"),
    (["--prune_method", "random"], "unknown pruning method"),
    (["--prune_p", "2", "--prune_q", "1"], "smaller than --prune_q"),
    (["--prune_p", "1", "--prune_q", "1"], "smaller than --prune_q"),
    (["--prune_p", "0"], "must be positive"),
    (["--prune_p", "-1"], "must be positive"),
    (["--prune_p", "nan"], "finite"),
    (["--net_train_epochs", "0"], "--net_train_epochs"),
    (["--net_train_epochs", "-3"], "--net_train_epochs"),
    (["--net_warmup", "-1"], "--net_warmup"),
    (["--exper_imp_total_iter", "0"], "--exper_imp_total_iter"),
    (["--exper_num_trial", "0"], "--exper_num_trial"),
    (["--exper_num_trial", "-2"], "--exper_num_trial"),
    (["--net_lr", "abc"], "invalid float value"),
    (["--net_lr", "0"], "--net_lr"),
    (["--net_batch_size", "0"], "--net_batch_size"),
    (["--prune_ratio", "1.5"], "--prune_ratio"),
    (["--net_momentum", "1"], "--net_momentum"),
    (["--device", "tpu"], "--device"),
    (["--exper_type", "fast"], "--exper_type"),
    (["--no_such_flag", "1"], "unrecognized arguments"),
    (["--net_dataset", "MNIST", "--data_dir", "/nonexistent/dir"], "missing"),
    (["--net_val_size", "5000"], "--net_val_size"),
    (["--flow_probe_size", "100000"], "--flow_probe_size"),
    # --prune_steps N (tests/engine/test_prune_steps.py) and --round_data_fraction F
    # (tests/engine/test_round_data.py)
    (["--prune_steps", "3"], "--prune_steps 3 (recipe allr-2x3) reaches --prune_target_remaining"),
    (["--prune_method", "lth", "--prune_steps", "0", "--prune_target_remaining", "5"],
     "--prune_steps 0 must be between 1 and 1000"),
    (["--prune_method", "lth", "--prune_steps", "3", "--prune_target_remaining", "5",
      "--exper_imp_total_iter", "9"], "--prune_steps 3 takes exactly 4 rounds"),
    (["--recipe", "oneshot", "--prune_steps", "2", "--prune_target_remaining", "5"],
     "oneshot has no rounds to run in equal steps"),
    (["--recipe", "gmpx2", "--prune_target_remaining", "5"], "gmp has no rounds"),
    (["--recipe", "allr-2x", "--prune_target_remaining", "5"], "the steps after 'x'"),
    (["--prune_method", "gmp", "--gmp_start", "1ep", "--gmp_end", "2ep", "--gmp_every", "1ep",
      "--net_train_epochs", "3", "--prune_target_remaining", "5", "--prune_steps", "2"],
     "gradual magnitude pruning takes its steps from --gmp_start"),
    (["--recipe", "allr-2@1"], "after '@' give the part of the training split"),
    (["--recipe", "allr-2@prac"], "after '@' give the part of the training split"),
    (["--round_data_fraction", "0"], "must be in (0, 1]"),
    (["--round_data_fraction", "1.5"], "must be in (0, 1]"),
    (["--round_data_fraction", "nan"], "must be in (0, 1]"),
    (["--prune_method", "gmp", "--gmp_start", "1ep", "--gmp_end", "2ep", "--gmp_every", "1ep",
      "--net_train_epochs", "3", "--prune_target_remaining", "5", "--round_data_fraction", "0.5"],
     "gradual magnitude pruning is one run"),
]


@pytest.mark.parametrize("argv,expected", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_one_line_exit_2(cli, tmp_path, argv, expected):
    code, out, err = cli("run", *argv, "--output_dir", str(tmp_path), "--quiet")
    assert code == 2
    assert expected in err and err.startswith("incop: error:")
    assert err.strip().count("\n") == 0 and "Traceback" not in err


def test_truncated_data_file_exit_2(cli, tmp_path):
    files = make_idx_dataset(tmp_path)
    p = files["t10k-labels-idx1-ubyte"]
    p.write_bytes(p.read_bytes()[:12])
    code, _, err = cli("run", "--net_dataset", "MNIST", "--data_dir", str(tmp_path), "--quiet",
                       "--output_dir", str(tmp_path / "o"))
    assert code == 2 and "truncated" in err and err.count("\n") == 1


def test_unwritable_output_dir_exit_2(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where a directory should go: fails even as root
    code, _, err = cli("run", "--output_dir", str(blocker / "sub"), *FAST)
    assert code == 2 and "cannot write to output directory" in err and err.count("\n") == 1


def test_target_remaining_stops_the_search_exactly_there(cli, tmp_path):
    """lth removes 20% of each layer a round (100, 80, 64, 51.2 ...); a 60% target trims the
    fourth round's step to land on 60% and ends the search there, well before the 8-round maximum, with
    every trial. A target the rounds never reach leaves the search at its maximum."""

    code, out, err = cli("run", "--prune_method=lth", "--prune_target_remaining", "60",
                         "--net_train_epochs", "1", "--net_warmup", "1", "--exper_imp_total_iter",
                         "8", "--exper_num_trial", "2", "--quiet", "--allow_untrained",
                         "--output_dir", str(tmp_path / "a"))
    assert code == 0, err
    run = _run_dir(tmp_path / "a")
    rounds = _rows(run / "rounds.csv")
    assert [(r["trial"], r["round"]) for r in rounds] == [(t, k) for t in "01" for k in "0123"]
    total = int(rounds[0]["total"])
    assert int(rounds[3]["remaining"]) == -(-total * 60 // 100) == int(rounds[7]["remaining"])
    assert float(rounds[3]["remaining_pct"]) == pytest.approx(60, abs=0.01)
    prev = None  # each round only removes survivors of the one before
    for k in range(4):
        m = round_masks(run, 0, k)
        if prev is not None:
            assert all(bool((m[n] <= prev[n]).all()) for n in m)
        prev = m
    code, out, err = cli("run", "--prune_method=lth", "--prune_target_remaining", "10",
                         "--net_train_epochs", "1", "--net_warmup", "1", "--exper_imp_total_iter",
                         "3", "--quiet", "--output_dir", str(tmp_path / "b"))
    assert code == 0, err
    assert len(_rows(_run_dir(tmp_path / "b") / "rounds.csv")) == 3
    code, out, err = cli("run", "--prune_target_remaining", "100", "--output_dir", str(tmp_path))
    assert code == 2 and "--prune_target_remaining 100" in err and len(err.splitlines()) == 1


def test_result_files_follow_the_umask(cli, tmp_path):
    import os
    import stat
    old = os.umask(0o022)
    try:
        code, _, err = cli("run", "--prune_method", "sap", *FAST, "--output_dir", str(tmp_path))
    finally:
        os.umask(old)
    assert code == 0, err
    for name in ("rounds.csv", "summary.json", "config.json", "progress.pt", "figures/rounds.png"):
        path = next(tmp_path.rglob(name))
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, name  # not mkstemp's 0600


@pytest.mark.parametrize("value", ["1", "imagenet"])
def test_seed_spelling_of_pretrained_is_explained(cli, tmp_path, value):
    """The seed's --net_pretrained=1 means ImageNet weights, which LeNet has none of."""
    code, _, err = cli("run", f"--net_pretrained={value}", "--output_dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1
    assert "no ImageNet weights for lenet300" in err and "local state-dict file" in err


@pytest.mark.parametrize("argv", [["run", "--net_train", "3"], ["run", "--prune_target", "5"],
                                  ["sweep", "--net_lr_sch", "linear"],
                                  ["ablate", "x", "--trial", "1", "--random_pr"]])
def test_abbreviated_flags_are_refused(cli, argv):
    code, _, err = cli(*argv, "--print_config") if argv[0] == "run" else cli(*argv)
    assert code == 2 and err.count("\n") == 1 and "unrecognized arguments" in err, err


def test_tilde_and_variables_are_expanded_in_paths(cli, tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("INCOP_TEST_DATA", str(tmp_path / "data"))
    code, out, err = cli("run", "--data_dir=~/data", "--output_dir", "$INCOP_TEST_DATA/out",
                         "--print_config")
    assert code == 0, err
    cfg = json.loads(out)
    assert cfg["data"]["data_dir"] == str(tmp_path / "home" / "data")
    assert cfg["experiment"]["output_dir"] == str(tmp_path / "data" / "out")
    f = tmp_path / "home" / "c.toml"
    f.parent.mkdir()
    f.write_text('data_dir = "${INCOP_TEST_DATA}/mnist"\n')
    code, out, err = cli("run", "--config", "~/c.toml", "--print_config")
    assert code == 0 and json.loads(out)["data"]["data_dir"] == str(tmp_path / "data" / "mnist")
    monkeypatch.delenv("INCOP_TEST_DATA")
    code, _, err = cli("run", "--data_dir", "$INCOP_TEST_DATA/x", "--print_config")
    assert code == 2 and err.count("\n") == 1 and "INCOP_TEST_DATA is not set" in err


def test_a_run_whose_reader_leaves_says_where_its_rounds_are(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        f"{sys.executable} -m incop run --prune_method lth --net_warmup 1 "
        f"--net_train_epochs 0.25 --output_dir {tmp_path} | head -c 1 > /dev/null",
        shell=True, capture_output=True, text=True, timeout=600)
    assert "Traceback" not in proc.stderr and "cannot write results" not in proc.stderr
    assert "the program reading the output closed it" in proc.stderr
