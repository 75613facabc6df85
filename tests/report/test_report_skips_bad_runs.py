"""incop report on run folders it did not write: a damaged run is skipped with one line and the
good one reported, a garbage speed.json leaves the speed column out, and a link in the report
folder is refused."""
import shutil

import pytest

from conftest import one_line_error




def test_a_link_in_a_report_folder_is_refused(cli, run, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "report.md").symlink_to(victim)
    code, _, err = cli("report", str(run), "--output", str(tmp_path / "rep"))
    assert one_line_error(code, err) and "symbolic link" in err and victim.read_text() == "keep"


@pytest.mark.parametrize("file,content", [
    ("rounds.json", '{"a": 1}'), ("rounds.json", "[1]"), ("rounds.json", '[{"trial": 0}]'),
    ("rounds.json", '[{"trial": 0, "round": "x"}]'), ("summary.json", "[1]"),
    ("config.json", "{not json"), ("tickets.json", '"x"'), ("epochs.csv", "\0\0\0")])
def test_report_reports_the_good_run_and_skips_the_bad_one(cli, finished, tmp_path, file, content):
    good, bad = tmp_path / "good", tmp_path / "bad"
    shutil.copytree(finished, good)
    shutil.copytree(finished, bad)
    (bad / file).write_text(content)
    if file == "config.json":
        for f in ("progress.pt", "progress.prev.pt"):
            (bad / f).unlink()
    code, out, err = cli("report", str(good), str(bad), "--output", str(tmp_path / "rep"))
    if file == "epochs.csv":  # a CSV of garbage reads as no rows: nothing to skip
        assert code == 0 and "Traceback" not in err
        return
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "skipping" in lines[0] and str(bad) in lines[0]
    assert str(good) in (tmp_path / "rep" / "report.csv").read_text()


def test_a_garbage_speed_json_leaves_the_speed_column_out_with_a_warning(cli, run, tmp_path):
    for content in ("garbage", '{"whole": 3}', '{"whole": [{"batch": 64, "threads": 1, '
                                               '"round": 0, "speedup": "fast"}]}'):
        (run / "speed.json").write_text(content)
        code, out, err = cli("report", str(run), "--output", str(tmp_path / "rep"))
        assert code == 0 and err.count("\n") == 1 and "speed.json" in err
