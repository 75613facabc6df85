"""Pruning schedules by name (``SPARSITY_SCHEDULES``, ``--prune_schedule``): the settings imply
one when it is not named; naming the implied one is the same run; and a schedule added to the
registry alone, here a throwaway one, runs from the command line with no other edit."""
import json

import pytest

from conftest import run_dir, small_run
from incop.pruning import sparsity_schedules as ss
from incop.pruning.rules import remove_smallest


@pytest.mark.parametrize("method, steps, name", [("sap", None, "rounds"), ("lth", 3, "steps"),
                                                 ("gmp", None, "cubic")])
def test_the_settings_imply_a_schedule(method, steps, name):
    assert ss.implied_schedule(method, steps) == name


def test_the_implied_schedule_named_is_the_same_run():
    plain = run_dir(*small_run("--output_dir", "o"))
    named = run_dir(*small_run("--output_dir", "o", "--prune_schedule", "rounds"))
    assert named == plain


@pytest.mark.parametrize("argv, words", [
    (["--prune_schedule", "cubic"], "use --prune_method gmp"),
    (["--prune_schedule", "steps"], "needs --prune_steps"),
    (["--prune_schedule", "halves"], "choose one of: cubic, rounds, steps"),
    (["--prune_schedule", "rounds", "--prune_steps", "2", "--prune_target_remaining", "50"],
     "keep one"),
    (["--prune_schedule", "rounds", "--recipe", "gmp", "--prune_target_remaining", "50"],
     "drop --prune_schedule rounds")])
def test_a_schedule_the_settings_contradict_is_one_line(cli, argv, words):
    code, _, err = cli(*small_run(*argv, prune_method=None if "--recipe" in argv else "sap"))
    assert code == 2 and err.count("\n") == 1 and words in err


class Halves(ss.SparsitySchedule):
    """Each step keeps half the survivors network-wide (ceil), smallest magnitudes first."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds

    def prune(self, k, weights, masks):
        keep = -(-masks.remaining() // 2)
        return remove_smallest(weights, masks, masks.names(), masks.remaining() - keep), {}


def test_a_new_schedule_is_one_registry_entry(cli, tmp_path, monkeypatch):
    """What a contributor writes: a class and one registry entry (here undone after the test);
    the flag's choices, its check and the loop follow from the registry."""
    registry = ss.SPARSITY_SCHEDULES
    monkeypatch.setitem(registry._items, "halves", lambda i: Halves(i.rounds))
    monkeypatch.setitem(registry._canonical, "halves", "halves")
    argv = small_run("--prune_schedule", "halves", "--output_dir", str(tmp_path),
                     exper_imp_total_iter=4)
    code, _, err = cli(*argv)
    assert code == 0, err
    rounds = json.loads((run_dir(*argv) / "rounds.json").read_text())
    remaining = [r["remaining"] for r in rounds]
    assert len(remaining) == 4 and remaining[0] == rounds[0]["total"]
    assert remaining[1:] == [-(-before // 2) for before in remaining[:-1]]
