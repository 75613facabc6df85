"""The Slurm launcher (incop.launch.slurm) against a real single-node Slurm (munged, slurmctld,
slurmd) started here; and what reaches a job script, checked against a fake sbatch: no control
character, no job id that is not one, no link in the log folder.

Skipped, with the reason shown, where Slurm is not installed or the daemons cannot run as root
(``make test`` installs slurm-wlm and munge where apt is usable)."""
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, one_line_error, tree_of
from incop.base.errors import UsageError

sys.path.insert(0, str(ROOT / "scripts"))
import slurm_cluster  # noqa: E402

RESULT_COLUMNS = ("trial", "seed", "round", "remaining", "epochs", "stop_reason", "train_loss",
                  "val_acc", "test_acc")


def _skip_reason():
    missing = slurm_cluster.missing_programs()
    if missing:
        return f"Slurm is not installed (missing {', '.join(missing)}): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "the test cluster's daemons run as root"
    return None


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if _skip_reason():
        pytest.skip(_skip_reason())
    folder = tmp_path_factory.mktemp("slurm")
    env = slurm_cluster.up(folder)
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "INCOP_SLURM_POLL_SECONDS")}
    os.environ.update(env, INCOP_SLURM_POLL_SECONDS="0.5")
    try:
        yield folder
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        stopped = slurm_cluster.down(folder)
        assert len(stopped) == 3  # munged, slurmctld and slurmd, by the ids up() recorded


def _rows(run: Path):
    with open(run / "rounds.csv") as f:
        return [tuple(r[c] for c in RESULT_COLUMNS) for r in csv.DictReader(f)]


def _runs(root: Path):
    return {p.parent.relative_to(root): p.parent for p in root.rglob("config.json")}


def _squeue(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-r", "--states=all", "-o", "%T", "-j", job_id],
                         capture_output=True, text=True)
    return out.stdout.strip()


def _wait_until(check, timeout=600.0, what=""):  # generous: a busy machine runs 10x slower
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


GRID = ["--prune_method", "lth", "sap", "--exper_num_trial", "2", "--net_train_epochs", "2",
        "--net_warmup", "2", "--exper_imp_total_iter", "3", "--quiet"]
LONG = ["--prune_method", "lth", "--net_train_epochs", "2", "--net_warmup", "1",
        "--exper_imp_total_iter", "15", "--quiet"]


def test_sweep_on_slurm_matches_the_local_launcher(slurm, cli, tmp_path):
    code, out, err = cli("sweep", *GRID, "--launcher", "slurm", "--slurm_cpus_per_task", "1",
                         "--slurm_time", "10", "--output_dir", str(tmp_path / "slurm"))
    assert code == 0, err
    assert out.count("done:") == 2
    code, _, err = cli("sweep", *GRID, "--workers", "2", "--output_dir", str(tmp_path / "local"))
    assert code == 0, err
    on_slurm, local = _runs(tmp_path / "slurm"), _runs(tmp_path / "local")
    assert sorted(on_slurm) == sorted(local) and len(local) == 2  # same run directories
    job_ids = set()
    for rel, run in on_slurm.items():
        # complete: every record, masks per round, the final models, figures
        assert json.loads((run / "summary.json").read_text())["complete"]
        assert len(list((run / "masks").glob("*.pt"))) == 6
        assert (run / "models" / "trial1_round2.pt").exists() and (run / "figures" / "rounds.png").exists()
        # the same numbers as the local launcher (1 thread per job on both)
        assert _rows(run) == _rows(local[rel]) and len(_rows(run)) == 6
        job = json.loads((run / "slurm.json").read_text())
        assert Path(job["stdout"]).exists()  # logs are under <output_dir>/slurm
        assert Path(job["stdout"]).is_relative_to(tmp_path / "slurm" / "slurm")
        job_ids.add(job["job_id"].split("_")[0])
    assert len(job_ids) == 1  # one job array
    # a re-run submits nothing, and the report reads the sweep's directory as after a local one
    code, out, err = cli("sweep", *GRID, "--launcher", "slurm", "--output_dir", str(tmp_path / "slurm"))
    assert code == 0 and out.count("skipped:") == 2
    code, out, err = cli("report", str(tmp_path / "slurm"), "--output", str(tmp_path / "rep"))
    assert code == 0 and "lth" in out and "sap (1, 2)" in out


def _submit_long(cli, out_dir: Path):
    # a 30-minute limit: submitit reads a warning signal this early as preemption, not timeout
    code, out, err = cli("sweep", *LONG, "--launcher", "slurm", "--no_wait", "--slurm_time", "30",
                         "--output_dir", str(out_dir))
    assert code == 0, err
    assert "submitted: Slurm job" in out
    (job_file,) = out_dir.rglob("slurm.json")  # written at submission, before the job starts
    run, job_id = job_file.parent, json.loads(job_file.read_text())["job_id"]
    # wait for a completed round past the dense one, so that resuming has something to keep
    _wait_until(lambda: len(json.loads((run / "rounds.json").read_text() or "[]")) >= 2
                if (run / "rounds.json").exists() else False, what="two completed rounds")
    return run, job_id


def test_cancelled_job_is_resubmitted_and_resumes(slurm, cli, tmp_path):
    run, job_id = _submit_long(cli, tmp_path / "slurm")
    # while it runs, a re-run of the sweep does not submit it twice
    code, out, _ = cli("sweep", *LONG, "--launcher", "slurm", "--no_wait", "--output_dir",
                       str(tmp_path / "slurm"))
    assert f"submitted: Slurm job {job_id}" in out
    subprocess.run(["scancel", job_id], check=True)
    _wait_until(lambda: _squeue(job_id) == "CANCELLED", what="the job to be cancelled")
    done_before = len(json.loads((run / "rounds.json").read_text()))
    assert not (run / "summary.json").exists() and done_before < 15
    code, out, err = cli("sweep", *LONG, "--launcher", "slurm", "--output_dir", str(tmp_path / "slurm"))
    assert code == 0, err
    assert "done:" in out
    new_id = json.loads((run / "slurm.json").read_text())["job_id"]
    assert new_id != job_id  # resubmitted
    log = (run / "log.txt").read_text()
    assert "resuming trial 0 after round" in log
    # the job had one CPU: one thread here too (sums split over 2 threads round differently)
    code, _, err = cli("run", *LONG, "--threads", "1", "--output_dir", str(tmp_path / "local"))
    assert code == 0, err
    (local,) = _runs(tmp_path / "local").values()
    assert _rows(run) == _rows(local) and len(_rows(run)) == 15


def test_preempted_job_is_requeued_and_resumes(slurm, cli, tmp_path):
    """Slurm's warning signal (USR2, sent before a time limit or on preemption) makes submitit
    requeue the job; the same job id runs again and resumes from its last completed round."""
    run, job_id = _submit_long(cli, tmp_path / "slurm")
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    # Slurm holds a requeued job for a while before it may start again; no need to wait here
    _wait_until(lambda: _squeue(job_id) == "PENDING", what="the job to be requeued")
    subprocess.run(["scontrol", "update", f"jobid={job_id}", "starttime=now"], check=True)
    code, out, err = cli("sweep", *LONG, "--launcher", "slurm", "--output_dir", str(tmp_path / "slurm"))
    assert code == 0, err
    assert "done:" in out
    assert json.loads((run / "slurm.json").read_text())["job_id"] == job_id  # requeued, not resubmitted
    assert "resuming trial 0 after round" in (run / "log.txt").read_text()
    logs = "".join(p.read_text() for p in (tmp_path / "slurm" / "slurm").rglob("*_log.err"))
    assert "this job is preempted" in logs and "DUE TO JOB REQUEUE" in logs
    assert "Traceback" not in logs
    # the job had one CPU: one thread here too (sums split over 2 threads round differently)
    code, _, err = cli("run", *LONG, "--threads", "1", "--output_dir", str(tmp_path / "local"))
    assert code == 0, err
    (local,) = _runs(tmp_path / "local").values()
    assert _rows(run) == _rows(local) and len(_rows(run)) == 15


def test_slurm_refusals_are_one_line(slurm, cli, tmp_path):
    code, out, err = cli("sweep", *GRID, "--launcher", "slurm", "--slurm_partition", "nope",
                         "--output_dir", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "Slurm refused the jobs: invalid partition specified: nope" in err
    assert not list(tmp_path.rglob("slurm.json"))  # nothing recorded as submitted


def test_slurm_without_sbatch_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out, err = cli("sweep", *GRID, "--launcher", "slurm", "--output_dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "needs Slurm's sbatch on PATH" in err


@pytest.mark.parametrize("text,minutes", [("90", 90), ("4:00:00", 240), ("1-12:00:00", 2160),
                                          ("1-2", 1560), ("1-0:30", 1470), ("10:30", 11),
                                          ("0:0:1", 1)])
def test_slurm_time_formats(text, minutes):
    from incop.launch.slurm import parse_slurm_time

    assert parse_slurm_time(text) == minutes


@pytest.mark.parametrize("flag,value", [("--slurm_time", "0"), ("--slurm_time", "4h"),
                                        ("--slurm_mem", "16 GB"), ("--slurm_cpus_per_task", "0"),
                                        ("--slurm_gpus_per_task", "-1")])
def test_bad_slurm_flags_are_one_line(cli, tmp_path, monkeypatch, flag, value):
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    (tmp_path / "sbatch").write_text("#!/bin/sh\nexit 1\n")  # never called: flags fail first
    (tmp_path / "sbatch").chmod(0o755)
    code, out, err = cli("sweep", *GRID, "--launcher", "slurm", flag, value, "--output_dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and flag in err
    assert not list(tmp_path.rglob("config.json"))


def test_sweep_grid_with_no_runs_is_one_line(cli, tmp_path):
    from incop.base.errors import UsageError
    from incop.launch.grid import expand_grid

    code, out, err = cli("sweep", "--prune_method", "--launcher", "slurm", "--output_dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "--prune_method" in err
    with pytest.raises(UsageError, match="the sweep grid has no runs"):
        expand_grid({"prune.method": []})


# ---------------------------------------------------------------- job scripts (a fake sbatch)

SWEEP = ["sweep", "--prune_method", "lth", "--net_train_epochs", "1", "--net_warmup", "1",
         "--exper_imp_total_iter", "2", "--quiet"]


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
    assert not sbatch.exists() and tree_of(target) in (None, {})


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
