"""A run's folder (incop.runs.directory, incop.runs.layout): a link inside it is refused and its
target untouched, a hard-linked log is not appended to, the folder itself may be a link, a
refused run leaves nothing behind, a finished run keeps what it needs, and the dense files of
earlier runs still read."""
import os
import shutil

import pytest
import torch

from conftest import one_line_error, small_run

from incop.runs.layout import model_state, round_masks


RUN = small_run()


@pytest.mark.parametrize("link", [".lock", "log.txt", "speed.json", "figures", "masks/x.pt"])
def test_a_link_in_a_run_directory_is_refused_and_its_target_untouched(cli, run, tmp_path, link):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (run / link).parent.mkdir(parents=True, exist_ok=True)
    if (run / link).is_dir():
        shutil.rmtree(run / link)
    elif (run / link).exists():
        (run / link).unlink()
    (run / link).symlink_to(victim)
    out = str(run.parents[3])
    for argv in (("speed", str(run), "--batches", "1", "--threads", "1", "--repeats", "1", "--quiet"),
                 (*RUN, "--output_dir", out, "--run_name", "r")):
        code, _, err = cli(*argv)
        assert one_line_error(code, err) and "symbolic link" in err, argv
    code, out_text, err = cli("report", str(run), "--output", str(tmp_path / "rep"))
    assert code == 2 and "symbolic link" in err  # the only run was skipped
    assert victim.read_text() == "keep"


def test_appending_to_a_hard_linked_log_is_refused(cli, run, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (run / "log.txt").unlink()
    os.link(victim, run / "log.txt")
    code, _, err = cli(*RUN, "--output_dir", str(run.parents[3]), "--run_name", "r")
    assert one_line_error(code, err) and "hard links" in err and victim.read_text() == "keep"


def test_a_run_directory_that_is_itself_a_link_is_fine(cli, run, tmp_path):
    (tmp_path / "alias").symlink_to(run)
    code, _, err = cli("speed", str(tmp_path / "alias"), "--batches", "1", "--threads", "1",
                       "--repeats", "1", "--quiet")
    assert code == 0, err


def test_a_refused_run_leaves_no_stub_directory(cli, tmp_path):
    out = tmp_path / "o"
    code, _, err = cli("run", "--net_dataset", "MNIST", "--data_dir", str(tmp_path / "none"),
                       "--quiet", "--output_dir", str(out))
    assert one_line_error(code, err) and "--download" in err  # item 18: the hint
    assert not out.exists()
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "mine.txt").write_text("x")
    code, _, err = cli("run", "--net_dataset", "MNIST", "--data_dir", str(tmp_path / "none"),
                       "--quiet", "--output_dir", str(tmp_path / "keep"))
    assert code == 2 and sorted(p.name for p in (tmp_path / "keep").iterdir()) == ["mine.txt"]


def test_a_finished_run_keeps_what_it_needs_and_resumes_to_its_summary(cli, run):
    progress = torch.load(run / "progress.pt", weights_only=True)
    assert progress["trial"] is None  # no network state: the networks are in models/
    assert (run / "progress.prev.pt").stat().st_size == (run / "progress.pt").stat().st_size
    total = sum(f.stat().st_size for f in run.rglob("*") if f.is_file())
    assert (run / "progress.pt").stat().st_size < 0.2 * total
    assert not (run / "tickets.csv").exists()  # item 18: no ticket, no empty file
    code, out, err = cli(*RUN, "--output_dir", str(run.parents[3]), "--run_name", "r")
    assert code == 0 and "round 0:" not in out  # nothing retrained


def test_run_files_fall_back_to_the_dense_files_of_earlier_runs(tmp_path):
    (tmp_path / "masks").mkdir()
    state = {"w": torch.tensor([[0.0, 2.0]])}
    torch.save({"w": torch.tensor([[False, True]])}, tmp_path / "masks" / "trial0_round0.pt")
    torch.save({"w": torch.tensor([[True, True]])}, tmp_path / "masks" / "trial0_round1.pt")
    torch.save(state, tmp_path / "model_trial0.pt")
    assert torch.equal(model_state(tmp_path, 0)["w"], state["w"])  # the final round: round 1
    assert torch.equal(round_masks(tmp_path, 0, 0)["w"], torch.tensor([[False, True]]))
    with pytest.raises(Exception, match="no saved weights for trial 0 round 0"):
        model_state(tmp_path, 0, 0)
