"""A named pipe where incop expects a file never blocks a command: run and report pass over such
a file as over any unreadable one, export says what it is. An alarm fails a test that blocks
instead of hanging."""
import shutil

import pytest

from conftest import copy_of, fifo, finished_output, run_dir, small_run


RUN = small_run(exper_imp_total_iter=2)

pytestmark = pytest.mark.usefixtures("no_hang")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run of two rounds and its output folder (with the shared warm-up)."""
    return finished_output(tmp_path_factory, *RUN, "--run_name", "r")


@pytest.fixture
def output(finished, tmp_path):
    return copy_of(finished, tmp_path)


def test_report_passes_over_a_summary_or_config_that_is_a_pipe(cli, output):
    runs = run_dir(*RUN, "--run_name", "r", "--output_dir", output).parent
    shutil.copytree(runs / "r", runs / "piped_config")
    shutil.copytree(runs / "r", runs / "piped_summary")
    fifo(runs / "piped_config" / "config.json")
    fifo(runs / "piped_summary" / "summary.json")
    code, out, err = cli("report", str(output), "--output", str(output / "report"))
    assert code == 0 and "Traceback" not in err, err
    assert "summary.json is a named pipe" in err and (output / "report").is_dir()


def test_run_passes_over_neighbours_and_warmups_that_are_pipes(cli, output):
    """A new run looks beside it for a finished search to go on from (their config.json and
    summary.json), and under --output_dir for a shared warm-up: pipes there are passed over."""
    runs = run_dir(*RUN, "--run_name", "r", "--output_dir", output).parent
    for neighbour, name in (("n1", "config.json"), ("n2", "summary.json"), ("n3", "progress.pt")):
        shutil.copytree(runs / "r", runs / neighbour)
        fifo(runs / neighbour / name)
    code, out, err = cli(*RUN[:-3], "--exper_imp_total_iter", "3", "--quiet",
                         "--output_dir", str(output), "--run_name", "r3")
    assert code == 0 and "Traceback" not in err, err
    assert "not going on from" in out and "progress.pt is a named pipe" in out
    warmups = sorted((output / "warmups").glob("*.pt"))
    assert warmups
    for path in warmups:
        fifo(path)
    lth = [a if a != "sap" else "lth" for a in RUN]  # another method, the same warm-up
    code, out, err = cli(*lth, "--output_dir", str(output), "--run_name", "l")
    assert code == 0 and "Traceback" not in err, err
    assert "not using the shared warm-up" in out + err and "named pipe" in out + err


@pytest.mark.parametrize("name", ["masks/trial0_round1.pt", "models/trial0_round1.pt"])
def test_export_says_a_mask_or_model_is_a_pipe(cli, output, name):
    """Not "no masks saved": the round is there, but what stands in its place is no file."""
    run = run_dir(*RUN, "--run_name", "r", "--output_dir", output)
    fifo(run / name)
    code, out, err = cli("export", str(run), "--format", "dense", "--round", "1",
                         "--output", str(output / "m.pt"))
    assert code == 2 and "named pipe" in err and err.count("\n") == 1, err
