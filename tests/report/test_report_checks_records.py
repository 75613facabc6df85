"""incop report checks each run's records before it compares them: one run with records out of
range or damaged is skipped and the report goes on; two copies of one run claim no lead; a
link to a run is the same run."""
import json
import shutil

import pytest

from conftest import WARMED, run_dir, searches_of


def _prefix(out):
    (run,) = searches_of(out).iterdir()
    return run


def _damage(run, file, content):
    path = run / file
    if callable(content):
        content(path)
    else:
        path.write_text(content)


def _json_edit(key, value, k=0):
    def edit(path):
        rows = json.loads(path.read_text())
        rows[k][key] = value
        path.write_text(json.dumps(rows))
    return edit


@pytest.mark.parametrize("file,content", [
    ("tickets.json", _json_edit("test_acc", 1e308)),  # a ticket accuracy no network has
    ("tickets.json", _json_edit("test_acc", 101.0)),
    ("tickets.json", '[{"trial": 0, "seed": 0, "remaining_pct": 50, "epochs": 1, "val_acc": NaN,'
                     ' "test_acc": 90, "time_train": 1, "time_eval": 1}]'),
    ("rounds.json", _json_edit("round", 10**30)), ("rounds.json", _json_edit("val_acc", -1)),
    ("rounds.json", _json_edit("epochs", None)), ("rounds.json", _json_edit("trial", "0")),
    ("trials.json", _json_edit("untrained", "x" * 100_000)),
    ("similarity.csv", "trial,round,layer,cosine\n0,0,fc1,abc\n"),
    ("similarity.csv", "trial,round,layer\n0,0,fc1\n"),
    ("similarity.csv", f"trial,round,layer,cosine\n0,{10**30},fc1,0.5\n"),
    ("similarity.csv", "trial,round,layer,cosine\nx,0,fc1,0.5\n"),
    ("epochs.csv", "trial,round,epoch\n0,0,abc\n"),
    ("masks/trial0_round1.pt", "not a masks file")])
def test_one_bad_run_is_skipped_and_the_report_goes_on(cli, ticketed, warmed_search, tmp_path, file,
                                                       content):
    bad = tmp_path / "bad"
    shutil.copytree(ticketed, bad)
    _damage(bad, file, content)
    good = _prefix(warmed_search)
    code, out, err = cli("report", str(good), str(bad), "--output", str(tmp_path / "rep"))
    assert code == 0 and "Traceback" not in err, err
    assert f"skipping {bad}" in err and file.split("/")[0] in err
    assert "1e+308" not in out and len(err) < 1000
    assert str(bad) not in (tmp_path / "rep" / "report.csv").read_text()


@pytest.fixture(scope="module")
def two_trials(tmp_path_factory):
    from incop.cli import main

    out = tmp_path_factory.mktemp("two")
    argv = [*WARMED, "--exper_imp_total_iter", "2", "--exper_num_trial", "2", "--run_name", "r",
            "--output_dir", str(out)]
    assert main(argv) == 0
    return run_dir(*argv)


def test_two_copies_of_one_run_claim_no_lead(cli, two_trials, tmp_path):
    copy = tmp_path / "copy" / "r"
    shutil.copytree(two_trials, copy)
    code, out, err = cli("report", str(two_trials), str(copy), "--output", str(tmp_path / "rep"))
    assert code == 0, err
    assert "computed identical results" in out
    assert "No other run is inside" not in out and "lead" not in out


def test_a_link_to_a_run_is_the_same_run(cli, two_trials, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(two_trials)
    code, out, err = cli("report", str(two_trials), str(link), "--output", str(tmp_path / "rep"))
    assert code == 0, err
    assert "identical" not in out and "lead" not in out
    assert len((tmp_path / "rep" / "report.csv").read_text().strip().splitlines()) == 2  # one row
