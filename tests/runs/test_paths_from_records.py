"""A value read from a record becomes part of a file name only as a plain whole number, so a
longer search or a resume never writes outside its output folder through a run's records (even
when the run's folder is a link); the warm-ups folder is refused when it is or holds a link."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from conftest import (FIXTURES, WARMED, copy_of, edit_progress, one_line_error, run_dir,
                      small_run, tree_of)


@pytest.fixture
def out(warmed_search, tmp_path):
    return copy_of(warmed_search, tmp_path)


def _prefix(out):
    (run,) = run_dir(*WARMED, "--output_dir", out).parent.iterdir()
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

    code, stdout, err = cli(*WARMED, "--exper_imp_total_iter", "4", "--output_dir", str(out))
    assert _escaped(tmp_path) == planted  # nothing written, replaced or added outside
    assert code == 0, err
    assert "not going on from" in stdout and "going on from the finished search" not in stdout
    assert "trial" in stdout and "whole number" in stdout
    new = next(d for d in run_dir(*WARMED, "--output_dir", out).parent.iterdir()
               if not d.is_symlink() and d != prefix)
    rows = json.loads((new / "rounds.json").read_text())
    assert [r["trial"] for r in rows] == [0] * 4 and [r["round"] for r in rows] == [0, 1, 2, 3]


@pytest.mark.parametrize("target", ["a valid copy", "an empty folder", "nothing", "a file"])
def test_a_linked_warmups_folder_is_neither_written_nor_read(cli, warmed_search, tmp_path, target):
    elsewhere = tmp_path / "elsewhere"
    if target == "a valid copy":  # a warm-up of these settings, which would be reused
        shutil.copytree(warmed_search / "warmups", elsewhere)
    elif target == "an empty folder":
        elsewhere.mkdir()
    elif target == "a file":
        elsewhere.write_text("keep me")
    out = tmp_path / "o"
    out.mkdir()
    (out / "warmups").symlink_to(elsewhere)
    before = tree_of(elsewhere)
    code, stdout, err = cli(*WARMED, "--exper_imp_total_iter", "2", "--output_dir", str(out),
                            "--prune_method", "lth")
    assert code == 0, err
    assert "not sharing warm-ups" in stdout and "symbolic link" in stdout
    assert "reused" not in stdout
    assert tree_of(elsewhere) == before  # nothing written there (nor made, for a dangling link)


@pytest.mark.parametrize("name,kind", [("planted", "file"), ("sub", "folder"), ("gone", "dangling"),
                                       ("KEY.pt", "file"), ("KEY.sha256", "file")])
def test_a_link_inside_the_warmups_folder_is_refused(cli, warmed_search, tmp_path, name, kind):
    """KEY: the name of the warm-up this run would write (and could reuse) there."""
    key = next((warmed_search / "warmups").glob("*.pt")).stem
    out = tmp_path / "o"
    (out / "warmups").mkdir(parents=True)
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("keep me")
    elif kind == "folder":
        target.mkdir()
    (out / "warmups" / name.replace("KEY", key)).symlink_to(target)
    before = tree_of(target)
    code, stdout, err = cli(*WARMED, "--exper_imp_total_iter", "2", "--output_dir", str(out))
    assert code == 0, err
    assert "not sharing warm-ups" in stdout and "symbolic link" in stdout
    assert tree_of(target) == before and "reused" not in stdout


DATA = FIXTURES
RESUME = small_run(run_name="r")


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
    run = run_dir(*RESUME, "--output_dir", tmp_path / "o")
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
    run = run_dir(*RESUME, "--output_dir", tmp_path / "o")
    shutil.copytree(DATA / "run_before_packages", run)
    shutil.copy(run / "progress.pt", run / "progress.prev.pt")
    progress = torch.load(run / "progress.pt", weights_only=False)
    _set_state("round", CLIMB)(progress)
    torch.save(progress, run / "progress.pt")
    code, out, err = cli(*RESUME, "--output_dir", str(tmp_path / "o"))
    assert code == 0, err
    assert "resuming from progress.prev.pt" in out and "resuming trial 0 after round 0" in out
    assert [r["round"] for r in json.loads((run / "rounds.json").read_text())] == [0, 1, 2]
