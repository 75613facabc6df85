"""--prune_steps N in a run: each step's count recorded exactly, layer by layer, and a killed run
resumes to the same rounds."""
import json

from conftest import kept_by_hand, killed_then_resumed, run_dir, table

from incop.pruning.rules import target_count


STEPS = ["run", "--prune_method", "lth", "--prune_steps", "3", "--prune_target_remaining", "7.3",
         "--net_warmup", "1", "--net_train_epochs", "0.5", "--quiet", "--run_name", "r"]


def test_a_run_in_three_steps_records_the_exact_counts_and_resumes_identically(
        cli, monkeypatch, tmp_path):
    code, out, err = cli(*STEPS, "--output_dir", str(tmp_path / "a"))
    assert code == 0, err
    run = run_dir(*STEPS, "--output_dir", tmp_path / "a")
    rounds = json.loads((run / "rounds.json").read_text())
    layers = table(run, "layers.csv")
    sizes = {r["layer"]: int(r["total"]) for r in layers if r["round"] == "0"}
    assert [r["round"] for r in rounds] == [0, 1, 2, 3]
    for j in (1, 2):  # lth's rule is layer-wise: each layer keeps ceil(n q^(j/3))
        got = {r["layer"]: int(r["remaining"]) for r in layers if r["round"] == str(j)}
        assert got == {k: kept_by_hand(n, "7.3", j, 3) for k, n in sizes.items()}, j
    assert rounds[-1]["remaining"] == target_count(sum(sizes.values()), 7.3)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["target"]["reached"] and summary["target"]["max_rounds"] == 4
    # killed in round 2, resumed: the same rounds to the last count
    code, out, err = killed_then_resumed(cli, monkeypatch, 3, *STEPS,
                                         "--output_dir", str(tmp_path / "b"))
    assert code == 0 and "resuming" in out, err
    again = run_dir(*STEPS, "--output_dir", tmp_path / "b")
    assert table(again, "layers.csv") == layers
    assert [r["val_acc"] for r in json.loads((again / "rounds.json").read_text())] == \
        [r["val_acc"] for r in rounds]
