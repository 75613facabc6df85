"""Issue 35, items 1, 2 and 7: what becomes a job script, a path or a file name is checked. No
control character reaches a Slurm job script; a value read from a record becomes part of a file
name only as a plain whole number (so a longer search never writes outside its output folder
through a finished run's records, even when that run's folder is a link); the folders incop
writes in beside its runs (shared warm-ups, Slurm logs) are refused when they are links; a
job id that is not one is one line."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from conftest import copy_of, edit_progress, finished_output
from incop.base.errors import UsageError

BASE = ["run", "--prune_method", "sap", "--net_warmup", "2", "--net_train_epochs", "1",
        "--net_lr", "0.05", "--net_momentum", "0.9", "--quiet"]
SWEEP = ["sweep", "--prune_method", "lth", "--net_train_epochs", "1", "--net_warmup", "1",
         "--exper_imp_total_iter", "2", "--quiet"]


def one_line_error(code, err):
    """Exit 2 and one line of error (a warning that the machine is busy may precede it)."""
    lines = [ln for ln in err.splitlines() if not ln.startswith("incop: warning: the machine")]
    return code == 2 and len(lines) == 1 and lines[0].startswith("incop: error:") \
        and "Traceback" not in err


# ---------------------------------------------------------------- 1. Slurm job scripts

@pytest.fixture
def sbatch(tmp_path, monkeypatch):
    """A fake sbatch on PATH that records each script it is given and says it queued job 42."""
    folder = tmp_path / "bin"
    folder.mkdir()
    calls = tmp_path / "sbatch_calls"
    (folder / "sbatch").write_text(f"#!/bin/sh\ncat \"$1\" >> {calls}\necho Submitted batch job 42\n")
    (folder / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    return calls


def _config(output_dir):
    from incop.config.schema import RunConfig

    cfg = RunConfig().validate()
    # set after validation (a named run's path needs no second one): slurm.py checks it again
    cfg.experiment.output_dir, cfg.experiment.run_name = str(output_dir), "r"
    return cfg


@pytest.mark.parametrize("where,value", [
    ("output_dir", "o\n#SBATCH --wrap=touch pwned"), ("output_dir", "o\rx"),
    ("output_dir", "o\x00x"), ("output_dir", "o\x7fx"), ("output_dir", "o\tx"),
    ("partition", "gpu\necho pwned"), ("setup", "module load cuda\ntouch pwned")])
def test_a_control_character_never_reaches_a_job_script(sbatch, tmp_path, where, value):
    from incop.launch.slurm import SlurmLauncher

    with pytest.raises(UsageError, match="control character") as e:
        launcher = SlurmLauncher(partition=value if where == "partition" else None,
                                 setup=[value] if where == "setup" else ())
        out = tmp_path / value if where == "output_dir" else tmp_path / "out"
        launcher.launch([_config(out)], lambda r: None, wait=False)
    assert "\n" not in str(e.value) and len(str(e.value)) < 400
    assert not sbatch.exists()  # sbatch never ran


def _run_config_json(tmp_path, output_dir):
    """A run's config.json (sections, versions, checksum) naming ``output_dir``: what a user
    passes to --config to repeat a run."""
    from incop.config.identity import checked_config
    from incop.config.schema import RunConfig

    saved = RunConfig().to_dict()
    saved["experiment"]["output_dir"] = output_dir
    return checked_config(saved, {"incop": "0"})


@pytest.mark.parametrize("control", ["\n#SBATCH --wrap=touch pwned", "\r", "\x00", "\x1b[2J"])
@pytest.mark.parametrize("form", ["flag", "section", "run"])
def test_a_control_character_in_a_config_files_output_dir_is_one_line(cli, sbatch, tmp_path,
                                                                      control, form):
    """End to end, where a user meets it, from a --config file in each of its spellings and
    from a run's config.json (the configuration's own check refuses it first)."""
    bad = str(tmp_path / f"o{control}x")
    content = {"flag": {"output_dir": bad}, "section": {"experiment": {"output_dir": bad}},
               "run": None}[form] or _run_config_json(tmp_path, bad)
    config = tmp_path / "c.json"
    config.write_text(json.dumps(content))
    code, out, err = cli(*SWEEP, "--launcher", "slurm", "--no_wait", "--config", str(config))
    assert one_line_error(code, err), err
    assert "control character" in err and "pwned\n" not in err
    assert not sbatch.exists()


@pytest.mark.parametrize("job_id", [123, 12.5, True, ["42_0"], "42; rm -rf ~", "x" * 10_000])
def test_a_job_id_that_is_not_one_is_one_line(cli, sbatch, tmp_path, job_id):
    argv = [*SWEEP, "--launcher", "slurm", "--no_wait", "--output_dir", str(tmp_path / "o")]
    code, out, err = cli(*argv)
    assert code == 0 and "submitted: Slurm job 42" in out, err
    (job_file,) = (tmp_path / "o").rglob("slurm.json")
    job_file.write_text(json.dumps({**json.loads(job_file.read_text()), "job_id": job_id}))
    code, out, err = cli(*argv)
    assert one_line_error(code, err), err
    assert "slurm.json" in err and "delete the file" in err and len(err) < 600


# ---------------------------------------------------------------- 2. no writes out of a run

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An output folder holding one finished three-round search (no run name: a longer search
    goes on from it)."""
    return finished_output(tmp_path_factory, *BASE, "--exper_imp_total_iter", "3")


@pytest.fixture
def out(finished, tmp_path):
    return copy_of(finished, tmp_path)


def _prefix(out):
    (run,) = (out / "sap" / "lenet300" / "digits").iterdir()
    return run



# a path-like trial climbs from masks/trialE (or models/trialE) seven folders up: out of the
# output folder from a run directory four folders below it
CLIMB = "E/" + "../" * 7 + "escaped"


def _escaped(tmp_path):
    """Every file whose name the climbing trial makes, anywhere below ``tmp_path``, with its
    content: the planted ones, and any a write outside the output folder left."""
    return {p: p.read_bytes() for p in tmp_path.rglob("escaped*")}


@pytest.mark.parametrize("linked", [True, False])
@pytest.mark.parametrize("trial", [CLIMB, True, 0.0, -1, 10**30, "0", None])
def test_a_trial_that_is_no_whole_number_never_names_a_file(cli, out, tmp_path, trial, linked):
    from incop.runs.layout import masks_name, model_name, rewind_name

    # linked: the finished run lives elsewhere, deeper, and is linked in, so reads and writes of
    # a path-like name land in different places, both outside the output folder; else both
    # land in tmp_path, beside the output folder
    prefix = real = _prefix(out)
    if linked:
        real = tmp_path / "a" / "b" / "c" / "d" / "e" / "x"
        real.parent.mkdir(parents=True)
        shutil.move(str(prefix), str(real))
        prefix.symlink_to(real)
    for folder in ("masks", "models"):
        (real / folder / "trialE").mkdir()
    for k in range(3):  # the files the records name, planted where those names lead
        for name_of in (masks_name, model_name):
            Path(os.path.normpath(real / name_of(trial, k))).write_bytes(
                (real / name_of(0, k)).read_bytes())
    Path(os.path.normpath(real / rewind_name(trial))).write_bytes(
        (real / rewind_name(0)).read_bytes())

    def forge(progress):
        for row in progress["records"]["trials"] + progress["records"]["rounds"]:
            row["trial"] = trial
    edit_progress(real, forge)
    planted = _escaped(tmp_path)

    code, stdout, err = cli(*BASE, "--exper_imp_total_iter", "4", "--output_dir", str(out))
    assert _escaped(tmp_path) == planted  # nothing written, replaced or added outside
    assert code == 0, err
    assert "not going on from" in stdout and "going on from the finished search" not in stdout
    assert "trial" in stdout and "whole number" in stdout
    new = next(d for d in (out / "sap" / "lenet300" / "digits").iterdir()
               if not d.is_symlink() and d != prefix)
    rows = json.loads((new / "rounds.json").read_text())
    assert [r["trial"] for r in rows] == [0] * 4 and [r["round"] for r in rows] == [0, 1, 2, 3]


# ---------------------------------------------------------------- linked folders beside runs

@pytest.mark.parametrize("target", ["a valid copy", "an empty folder", "nothing", "a file"])
def test_a_linked_warmups_folder_is_neither_written_nor_read(cli, finished, tmp_path, target):
    elsewhere = tmp_path / "elsewhere"
    if target == "a valid copy":  # a warm-up of these settings, which would be reused
        shutil.copytree(finished / "warmups", elsewhere)
    elif target == "an empty folder":
        elsewhere.mkdir()
    elif target == "a file":
        elsewhere.write_text("keep me")
    out = tmp_path / "o"
    out.mkdir()
    (out / "warmups").symlink_to(elsewhere)
    before = _tree(elsewhere)
    code, stdout, err = cli(*BASE, "--exper_imp_total_iter", "2", "--output_dir", str(out),
                            "--prune_method", "lth")
    assert code == 0, err
    assert "not sharing warm-ups" in stdout and "symbolic link" in stdout
    assert "reused" not in stdout
    assert _tree(elsewhere) == before  # nothing written there (nor made, for a dangling link)


def _tree(path):
    """What ``path`` holds: its files' contents, or that it is missing or a file."""
    if not path.exists():
        return None
    if path.is_file():
        return path.read_bytes()
    return {p.relative_to(path): p.read_bytes() if p.is_file() else None for p in path.rglob("*")}


@pytest.mark.parametrize("name,kind", [("planted", "file"), ("sub", "folder"), ("gone", "dangling"),
                                       ("KEY.pt", "file"), ("KEY.sha256", "file")])
def test_a_link_inside_the_warmups_folder_is_refused(cli, finished, tmp_path, name, kind):
    """KEY: the name of the warm-up this run would write (and could reuse) there."""
    key = next((finished / "warmups").glob("*.pt")).stem
    out = tmp_path / "o"
    (out / "warmups").mkdir(parents=True)
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("keep me")
    elif kind == "folder":
        target.mkdir()
    (out / "warmups" / name.replace("KEY", key)).symlink_to(target)
    before = _tree(target)
    code, stdout, err = cli(*BASE, "--exper_imp_total_iter", "2", "--output_dir", str(out))
    assert code == 0, err
    assert "not sharing warm-ups" in stdout and "symbolic link" in stdout
    assert _tree(target) == before and "reused" not in stdout


SUBMISSION_LINK = ".submission_file_" + "0" * 32 + ".sh"  # the name of submitit's own links


@pytest.mark.parametrize("name", ["", "123", SUBMISSION_LINK])
@pytest.mark.parametrize("kind", ["folder", "dangling"])
def test_a_link_in_the_slurm_log_folder_is_refused(sbatch, tmp_path, name, kind):
    """The folder itself, a job's folder, or a link named as submitit names its own but leading
    out of the folder."""
    from incop.launch.slurm import SlurmLauncher

    target = tmp_path / "elsewhere"
    if kind == "folder":
        target.mkdir()
    (tmp_path / "out" / "slurm").mkdir(parents=True)
    link = tmp_path / "out" / "slurm" / name
    if not name:
        link.rmdir()
    link.symlink_to(target)
    with pytest.raises(UsageError, match="symbolic link") as e:
        SlurmLauncher().launch([_config(tmp_path / "out")], lambda r: None, wait=False)
    assert "\n" not in str(e.value)
    assert not sbatch.exists() and _tree(target) in (None, {})


def test_submitits_own_links_are_no_reason_to_refuse(sbatch, tmp_path):
    """submitit leaves a link to each job's script in the log folder: a second sweep into the
    same output folder submits as the first did."""
    from incop.launch.slurm import SlurmLauncher

    first, second = _config(tmp_path / "out"), _config(tmp_path / "out")
    second.experiment.run_name = "r2"
    for cfg in (first, second):
        (result,) = SlurmLauncher().launch([cfg], lambda r: None, wait=False)
        assert result.status == "submitted: Slurm job 42"
    assert [p.name.startswith(".submission_file_") for p in (tmp_path / "out" / "slurm").iterdir()
            if p.is_symlink()] == [True, True]


# ---------------------------------------------------------------- 2. a run's own progress

DATA = Path(__file__).parent / "data"
RESUME = ["run", "--net_dataset", "digits", "--prune_method", "sap", "--net_lr", "0.05",
          "--net_momentum", "0.9", "--net_warmup", "1", "--net_train_epochs", "1",
          "--exper_imp_total_iter", "3", "--quiet", "--run_name", "r"]


def _set_round(key, value, kind="rounds"):
    def change(progress):
        progress["records"][kind][0][key] = value
    return change


def _set_state(key, value):
    def change(progress):
        progress["trial"][key] = value
    return change


@pytest.mark.parametrize("change", [
    _set_round("trial", CLIMB), _set_round("round", "0"), _set_round("trial", 0.0),
    _set_round("round", 10**30, "epochs"), _set_round("trial", None, "trials"),
    _set_state("round", CLIMB), _set_state("round", 0.5), _set_state("index", True),
    _set_state("index", -1), lambda p: p.update(finished=["0"]),
    lambda p: p.update(trial=["0"]), lambda p: p.update(records=[])])
def test_a_resume_refuses_its_progress_when_a_trial_or_round_is_no_whole_number(cli, tmp_path,
                                                                              change):
    """An interrupted run's own progress file names its trial and round files: a value that is
    not a plain whole number stops the resume in one line, and what the run computed stays."""
    run = tmp_path / "o" / "sap" / "lenet300" / "digits" / "r"
    shutil.copytree(DATA / "run_before_packages", run)
    progress = torch.load(run / "progress.pt", weights_only=False)
    change(progress)
    torch.save(progress, run / "progress.pt")
    kept = lambda: {p: p.read_bytes() for p in run.rglob("*")
                    if p.is_file() and p.name not in ("log.txt", ".lock")}
    before = kept()
    code, out, err = cli(*RESUME, "--output_dir", str(tmp_path / "o"))
    assert one_line_error(code, err), err
    assert "progress.pt" in err and "cannot resume" in err and len(err) < 600
    assert kept() == before and not _escaped(tmp_path)


def test_a_resume_falls_back_to_the_previous_progress_when_the_last_names_no_trial(cli, tmp_path):
    run = tmp_path / "o" / "sap" / "lenet300" / "digits" / "r"
    shutil.copytree(DATA / "run_before_packages", run)
    shutil.copy(run / "progress.pt", run / "progress.prev.pt")
    progress = torch.load(run / "progress.pt", weights_only=False)
    _set_state("round", CLIMB)(progress)
    torch.save(progress, run / "progress.pt")
    code, out, err = cli(*RESUME, "--output_dir", str(tmp_path / "o"))
    assert code == 0, err
    assert "resuming from progress.prev.pt" in out and "resuming trial 0 after round 0" in out
    assert [r["round"] for r in json.loads((run / "rounds.json").read_text())] == [0, 1, 2]
