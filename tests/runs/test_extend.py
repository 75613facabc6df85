"""A finished search asked for more rounds, or for a ticket it did not train (incop.runs.extend),
goes on from its finished rounds instead of starting again, and ends where a fresh run ends,
bit for bit; no run id changes."""
import pytest

from conftest import WARMED as BASE, copy_of, run_dir, spy_round_starts, table


FILES = ("rounds.csv", "epochs.csv", "layers.csv", "similarity.csv", "trials.csv")


def _run_dir(out, rounds):
    from incop.runs.reading import run_config

    return next(d for d in run_dir(*BASE, "--output_dir", out).parent.iterdir()
                if run_config(d)["experiment"]["imp_total_iter"] == rounds)


def _equal_runs(a, b, rounds, trials=1, ticket=False):
    for name in FILES:
        assert [dict(r, warmup_reused="") for r in table(a, name)] == \
            [dict(r, warmup_reused="") for r in table(b, name)], name
    for t in range(trials):
        for k in range(rounds):
            assert (a / f"models/trial{t}_round{k}.pt").read_bytes() == \
                (b / f"models/trial{t}_round{k}.pt").read_bytes()
        if ticket:
            assert table(a, "tickets.csv") == table(b, "tickets.csv")
            assert (a / f"models/trial{t}_ticket.pt").read_bytes() == \
                (b / f"models/trial{t}_ticket.pt").read_bytes()


@pytest.mark.parametrize("extra", [[], ["--rewind_to", "5it"], ["--exper_num_trial", "2"]])
def test_more_rounds_go_on_from_the_finished_ones(cli, monkeypatch, tmp_path, extra,
                                                   warmed_search):
    if extra:
        assert cli(*BASE, *extra, "--exper_imp_total_iter", "3",
                   "--output_dir", str(tmp_path / "o"))[0] == 0
    else:
        copy_of(warmed_search, tmp_path)  # tmp_path / "o": the same three rounds
    starts = spy_round_starts(monkeypatch)
    code, out, err = cli(*BASE, *extra, "--exper_imp_total_iter", "5",
                         "--output_dir", str(tmp_path / "o"))
    assert code == 0 and "going on from the finished search" in out, err
    trials = 2 if extra == ["--exper_num_trial", "2"] else 1
    assert len(starts) == 2 * trials  # rounds 3 and 4 of each trial only
    monkeypatch.undo()
    assert cli(*BASE, *extra, "--exper_imp_total_iter", "5", "--output_dir", str(tmp_path / "f"))[0] == 0
    _equal_runs(_run_dir(tmp_path / "o", 5), _run_dir(tmp_path / "f", 5), 5, trials)


def test_a_later_ticket_trains_only_the_ticket(cli, warmed_search, monkeypatch, tmp_path):
    copy_of(warmed_search, tmp_path)  # tmp_path / "o": BASE with --exper_imp_total_iter 3
    starts = spy_round_starts(monkeypatch)
    code, out, err = cli(*BASE, "--exper_imp_total_iter", "3", "--ticket_epochs", "1",
                         "--output_dir", str(tmp_path / "o"))
    assert code == 0 and "going on from the finished search" in out, err
    assert len(starts) == 1  # the ticket
    monkeypatch.undo()
    assert cli(*BASE, "--exper_imp_total_iter", "3", "--ticket_epochs", "1",
               "--output_dir", str(tmp_path / "f"))[0] == 0
    ours = [d for d in run_dir(*BASE, "--output_dir", tmp_path / "o").parent.iterdir()
            if (d / "tickets.csv").exists()]
    fresh = next(run_dir(*BASE, "--output_dir", tmp_path / "f").parent.iterdir())
    assert len(ours) == 1 and ours[0].name == fresh.name  # the run id a fresh run has
    _equal_runs(ours[0], fresh, 3, ticket=True)


def test_a_search_with_other_settings_is_not_a_prefix(cli, warmed_search, tmp_path):
    copy_of(warmed_search, tmp_path)  # tmp_path / "o": BASE with --exper_imp_total_iter 3
    code, out, _ = cli(*BASE, "--exper_imp_total_iter", "5", "--net_lr", "0.04",
                       "--output_dir", str(tmp_path / "o"))
    assert code == 0 and "going on" not in out
    code, out, _ = cli(*BASE, "--exper_imp_total_iter", "2", "--output_dir", str(tmp_path / "o"))
    assert code == 0 and "going on" not in out  # fewer rounds than the finished run: its own


def test_an_interrupted_continuation_resumes(cli, monkeypatch, tmp_path):
    from conftest import killed_then_resumed

    assert cli(*BASE, "--exper_num_trial", "2", "--exper_imp_total_iter", "3",
               "--output_dir", str(tmp_path / "o"))[0] == 0
    # trial 0's rounds 3 and 4, then inside trial 1's round 3
    assert killed_then_resumed(cli, monkeypatch, 3, *BASE, "--exper_num_trial", "2",
                               "--exper_imp_total_iter", "5",
                               "--output_dir", str(tmp_path / "o"))[0] == 0
    assert cli(*BASE, "--exper_num_trial", "2", "--exper_imp_total_iter", "5",
               "--output_dir", str(tmp_path / "f"))[0] == 0
    _equal_runs(_run_dir(tmp_path / "o", 5), _run_dir(tmp_path / "f", 5), 5, 2)


def test_a_damaged_finished_search_is_not_gone_on_from(cli, warmed_search, tmp_path):
    copy_of(warmed_search, tmp_path)  # tmp_path / "o": BASE with --exper_imp_total_iter 3
    prefix = _run_dir(tmp_path / "o", 3)
    for name in ("progress.pt", "progress.prev.pt"):
        (prefix / name).write_bytes(b"not a progress file")
    code, out, err = cli(*BASE, "--exper_imp_total_iter", "4", "--output_dir", str(tmp_path / "o"))
    assert code == 0, err
    assert "not going on from" in out and "starting from scratch" in out
    assert cli(*BASE, "--exper_imp_total_iter", "4", "--output_dir", str(tmp_path / "f"))[0] == 0
    _equal_runs(_run_dir(tmp_path / "o", 4), _run_dir(tmp_path / "f", 4), 4)
