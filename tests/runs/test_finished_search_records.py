"""A finished search's records are checked before a longer search goes on from them
(incop.runs.extend): records that contradict the configuration, foreign or reshaped files,
files of another network and a neighbour's broken config are not gone on from, or are one line."""
import json

import pytest
import torch

from conftest import WARMED, copy_of, edit_progress, one_line_error, searches_of


@pytest.fixture
def out(warmed_search, tmp_path):
    return copy_of(warmed_search, tmp_path)


def _prefix(out):
    (run,) = searches_of(out).iterdir()
    return run


def _longer(cli, out, rounds=4):
    return cli(*WARMED, "--exper_imp_total_iter", str(rounds), "--output_dir", str(out))


def _new_run(out, prefix):
    return next(d for d in searches_of(out).iterdir() if d != prefix)


def _all_rows(key, value, kinds=("trials", "rounds")):
    def change(progress):
        for kind in kinds:
            for row in progress["records"][kind]:
                row[key] = value
    return change


def _one_round(key, value, k=1):
    def change(progress):
        progress["records"]["rounds"][k][key] = value
    return change


def _config_seed(progress):
    progress["config"]["experiment"]["seed"] = 5


def _no_rounds(progress):
    for kind in ("rounds", "epochs", "layers", "similarity"):
        progress["records"][kind] = []


def _stray_rows(progress):
    progress["records"]["similarity"].append({"trial": 3, "round": 0, "layer": "fc1", "cosine": 1.0})


def _twice(progress):
    progress["records"]["trials"].append(dict(progress["records"]["trials"][0]))


@pytest.mark.parametrize("change,why", [
    (_all_rows("seed", 5), "seed"),  # trial 0 with another seed than the configuration's
    (_one_round("seed", 5), "seed"),  # seeds mixed in one trial
    (_one_round("val_acc", 1e308), "val_acc"), (_one_round("test_acc", -3.0), "test_acc"),
    (_one_round("val_acc", float("nan")), "val_acc"), (_one_round("val_acc", "97"), "val_acc"),
    (_one_round("round", 5), "numbered"), (_one_round("remaining", 10**9), "remaining"),
    (_one_round("remaining", 50_000, 2), "fewer weights"), (_config_seed, "another configuration"),
    (_no_rounds, "no finished rounds"), (_stray_rows, "no warm-up or round"), (_twice, "twice"),
    (_all_rows("trial", 2), "trial")])
def test_records_that_contradict_the_configuration_are_not_gone_on_from(cli, out, change, why):
    prefix = _prefix(out)
    edit_progress(prefix, change)
    code, stdout, err = _longer(cli, out)
    assert code == 0, err
    assert "not going on from" in stdout and why in stdout, stdout
    assert "going on from the finished search" not in stdout
    new = _new_run(out, prefix)
    rows = json.loads((new / "rounds.json").read_text())
    assert [(r["trial"], r["seed"], r["round"]) for r in rows] == [(0, 0, k) for k in range(4)]
    assert all(0 <= r["val_acc"] <= 100 for r in rows)


def _pack(masks):
    from incop.pruning.sparse_files import pack_masks

    return pack_masks(masks)


@pytest.mark.parametrize("file,content", [
    ("masks/trial0_round2.pt", lambda: _pack({"other.weight": torch.ones(3, 3)})),  # foreign
    ("masks/trial0_round2.pt", lambda: _pack({"fc1.weight": torch.ones(3, 3)})),  # reshaped
    ("models/trial0_round1.pt", lambda: {"fc1.weight": torch.zeros(3, 3)})])
def test_foreign_or_reshaped_files_are_not_gone_on_from(cli, out, file, content):
    prefix = _prefix(out)
    torch.save(content(), prefix / file)
    code, stdout, err = _longer(cli, out)
    assert code == 0 and "Traceback" not in err, err
    assert "not going on from" in stdout and "belongs to another run" in stdout


def test_files_of_another_network_throughout_are_one_line(cli, out):
    """Masks, networks and rewind point consistent with each other, but not of the network the
    configuration builds: refused in one line when the trial would load them."""
    prefix = _prefix(out)
    for path in [prefix / "models" / "trial0_rewind.pt", *prefix.glob("models/trial0_round*.pt")]:
        state = torch.load(path, weights_only=True)
        if "dense" in state:  # a sparse network file: its plain entries
            state["dense"]["extra.bias"] = torch.zeros(3)
            state["order"].append("extra.bias")
        else:
            state["extra.bias"] = torch.zeros(3)
        torch.save(state, path)
    code, stdout, err = _longer(cli, out)
    assert one_line_error(code, err), err
    assert "are not of this" in err and "another run" in err


def _rewrite_config(run, change):
    from incop.config.identity import checked_config

    saved = json.loads((run / "config.json").read_text())
    versions = saved.pop("versions")
    saved.pop("checksum")
    change(saved)
    (run / "config.json").write_text(json.dumps(checked_config(saved, versions)))


@pytest.mark.parametrize("value", ["3", None, 3.5, [3]])
def test_a_neighbours_broken_config_never_breaks_a_new_run(cli, out, value):
    prefix = _prefix(out)
    _rewrite_config(prefix, lambda c: c["experiment"].update(imp_total_iter=value))
    code, stdout, err = _longer(cli, out)
    assert code == 0 and "Traceback" not in err, err
    assert "going on from the finished search" not in stdout
    assert f"not going on from {prefix}" in err and "exper_imp_total_iter" in err
