"""incop sweep (incop.launch.grid, incop.launch.local): a grid of runs, skipped when done, an
empty grid one line, the report of a sweep showing what was swept, and its progress line."""
import csv

import incop.engine.training as training


def test_sweep_grid_skip_and_report(cli, tmp_path, monkeypatch):
    args = ["sweep", "--prune_method", "lth", "sap", "--pq", "1,2", "0.5,1",
            "--net_train_epochs", "1", "--net_warmup", "1", "--exper_imp_total_iter", "2",
            "--output_dir", str(tmp_path), "--quiet"]
    code, out, err = cli(*args)
    assert code == 0, err
    assert "sweep: 3 run(s)" in out  # lth once, sap with both pairs
    assert out.count("done:") == 3
    with open(tmp_path / "report" / "report.csv") as f:
        rows = list(csv.DictReader(f))
    # lth's rule has no p or q: its row shows none
    assert sorted((r["method"], r["p"]) for r in rows) == [("lth", ""), ("sap", "0.5"), ("sap", "1.0")]
    lth_row = next(line for line in (tmp_path / "report" / "report.md").read_text().splitlines()
                   if line.startswith("| lth |"))
    assert [c.strip() for c in lth_row.split("|")[4:6]] == ["-", "-"]  # p and q
    calls = []
    monkeypatch.setattr(training, "train_steps", lambda *a, **k: calls.append(1))
    code, out, _ = cli(*args)
    assert code == 0 and out.count("skipped:") == 3 and calls == []


def test_sweep_empty_grid(cli, tmp_path):
    code, _, err = cli("sweep", "--prune_method", "--output_dir", str(tmp_path))
    assert code == 2 and "--prune_method" in err


def test_report_shows_what_was_swept(cli, tmp_path):
    base = ["sweep", "--prune_method", "sap", "--net_lr", "0.01", "0.03", "--net_train_epochs",
            "1", "--net_warmup", "1", "--exper_imp_total_iter", "2", "--output_dir", str(tmp_path),
            "--quiet"]
    code, out, err = cli(*base)
    assert code == 0, err
    header = next(line for line in out.splitlines() if line.startswith("run "))
    assert header.split()[:2] == ["run", "net_lr"]  # the swept flag, not only a hash
    assert sorted(line.split("]")[1].split()[0] for line in out.splitlines()
                  if line.startswith("sap (1, 2) [")) == ["0.01", "0.03"]
    with open(tmp_path / "report" / "report.csv") as f:
        assert sorted(r["net_lr"] for r in csv.DictReader(f)) == ["0.01", "0.03"]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| net_lr |" in md and "net_warmup" not in md  # only what differs


def test_sweep_progress_counts_and_estimates_time_left():
    from types import SimpleNamespace as R

    from incop.cli import sweep_eta

    done = [R(status="skipped"), R(status="done"), R(status="done")]
    # 2 runs trained in 600 s: 300 s each, 5 left -> 25 min; 2 workers: 2 running, 3 waiting
    assert sweep_eta(done, 8, 600.0, 2) == " (2 running, 3 waiting, about 25 min to go)"
    assert sweep_eta(done[:1], 8, 5.0, 1) == " (1 running, 6 waiting)"  # no pace yet
    assert sweep_eta(done, 8, 600.0, None) == " (5 left, about 25 min to go)"
    assert sweep_eta(done, 3, 600.0, 2) == ""
