"""A run's config.json and progress.pt read back (incop.runs): a hand-edited config relabels
nothing, a corrupt one is repaired by a rerun and skipped by the report, a truncated progress
file falls back to the previous one, and one of millions of references to a row is refused in
little memory."""
import json
import os
from pathlib import Path

from crafted_files import (assert_refused, bounded, nested_pickle, shared_rows, spliced_torch,
                           torch_bytes, write)

from conftest import run_dir, small_run


# One 21-iteration warm-up at lr 0.01 leaves LeNet near chance on digits: these tests are about
# files and checks, not learning.
RUN = small_run(net_lr=None, net_momentum=None, exper_imp_total_iter=2, run_name="r",
                allow_untrained=True)


def _run_dir(out: Path) -> Path:
    return run_dir(*RUN, "--output_dir", out)


def test_hand_edited_config_does_not_relabel_results(cli, tmp_path):
    assert cli(*RUN, "--output_dir", str(tmp_path))[0] == 0
    path = _run_dir(tmp_path) / "config.json"
    cfg = json.loads(path.read_text())
    cfg["model"]["arch"] = "conv2"
    path.write_text(json.dumps(cfg))
    code, out, _ = cli("report", str(tmp_path), "--output", str(tmp_path / "rep"))
    assert code == 0
    rows = (tmp_path / "rep" / "report.csv").read_text()
    assert "lenet300" in rows and "conv2" not in rows
    assert "±" not in out  # one trial: no spread to show


def test_corrupt_config_is_repaired_by_a_rerun_and_skipped_by_report(cli, tmp_path):
    assert cli(*RUN, "--output_dir", str(tmp_path))[0] == 0
    assert cli(*RUN, "--output_dir", str(tmp_path), "--prune_p", "0.5", "--prune_q", "1",
               "--run_name", "r2")[0] == 0
    (_run_dir(tmp_path) / "config.json").write_text("{not json")
    code, out, err = cli(*RUN, "--output_dir", str(tmp_path))
    assert code == 0 and "re-run" not in out + err
    assert json.loads((_run_dir(tmp_path) / "config.json").read_text())["model"]["arch"] == "lenet300"
    # broken beyond repair (config.json invalid, no progress file): skipped with one warning
    (_run_dir(tmp_path) / "config.json").write_text("{not json")
    for f in ("progress.pt", "progress.prev.pt"):
        (_run_dir(tmp_path) / f).unlink()
    code, out, err = cli("report", str(tmp_path), "--output", str(tmp_path / "rep"))
    assert code == 0
    assert len(err.strip().splitlines()) == 1 and "skipping" in err and "config.json" in err
    assert "(0.5, 1)" in out and "(1, 2)" not in out


def test_truncated_progress_resumes_from_the_previous_one(cli, tmp_path):
    assert cli(*RUN, "--output_dir", str(tmp_path))[0] == 0
    run = _run_dir(tmp_path)
    before = json.loads((run / "rounds.json").read_text())
    blob = (run / "progress.pt").read_bytes()
    (run / "progress.pt").write_bytes(blob[:len(blob) // 2])
    code, out, err = cli(*RUN, "--output_dir", str(tmp_path))
    assert code == 0, err
    assert "progress.pt" in out and "progress.prev.pt" in out and "remove" not in out + err
    after = json.loads((run / "rounds.json").read_text())
    drop = {"time_train", "time_flow", "time_eval", "time_prune"}
    strip = lambda rs: [{k: v for k, v in r.items() if k not in drop} for r in rs]
    assert strip(after) == strip(before)


def test_a_progress_file_of_references_to_one_row_is_refused_in_little_memory(tmp_path):
    """A run's progress.pt adopted by a new run (or read by report, export, extend) holding
    millions of references to one row: loading it is cheap, copying or writing it is not."""
    row = list(range(3000))
    text = "x" * (1 << 20)
    level = [0] * 1000
    files = {
        "rows by reference": {"rounds": shared_rows(300_000)},
        "a dict of shared rows": {"trials": {i: row for i in range(300_000)}},
        "a text by reference": {"notes": [text] * 4000},
        "nested sharing": {"rounds": [[level] * 1000] * 1000},
    }
    cases = {}
    for name, obj in files.items():
        path = write(tmp_path / name.replace(" ", "_") / "progress.pt", torch_bytes(obj))
        assert os.path.getsize(path) < 4 << 20
        cases[name] = f"load_tensors({path!r})"
    path = write(tmp_path / "deep" / "progress.pt", spliced_torch(
        {"rounds": "DEEP"}, "DEEP", nested_pickle(100_000)))
    cases["nested deep"] = f"load_tensors({path!r})"
    results = bounded("from incop.pruning.sparse_files import load_tensors", cases)
    for name in files:
        assert_refused(results[name], "progress.pt", "expands to more than")
    assert_refused(results["nested deep"], "progress.pt", "levels deep")
