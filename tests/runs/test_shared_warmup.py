"""Shared warm-ups (incop.runs.warmups): a dense warm-up is trained once per set of settings that
determine it and shared by the runs under one --output_dir; a run that reuses one equals a fresh
run bit for bit; a stale, damaged, linked, forged, piped or memory-bombing one is never used and
leaves no record."""
import hashlib
import io
import json
import re
from pathlib import Path

import pytest
import torch

from conftest import WARMED, copy_of, fifo, run_dir, small_run, table
from crafted_files import (GROWTH_MB, bounded, nested_pickle, shared_rows, spliced_torch,
                           torch_bytes, write)


ARGS = small_run(prune_method=None, net_warmup=2)
FILES = ("rounds.csv", "epochs.csv", "layers.csv", "similarity.csv")


def _run(cli, out, method, name, *extra):
    code, stdout, err = cli(*ARGS, "--prune_method", method, "--run_name", name,
                            "--output_dir", str(out), *extra)
    assert code == 0, err
    return run_dir(*ARGS, "--prune_method", method, "--run_name", name, "--output_dir", out,
                   *extra), stdout


def _same_as_fresh(cli, tmp_path, run, method):
    fresh, out = _run(cli, tmp_path / "fresh", method, run.name)
    assert "reused" not in out
    for name in FILES:
        assert table(run, name) == table(fresh, name), name
    for k in (0, 1, 2):
        assert (run / f"models/trial0_round{k}.pt").read_bytes() == \
            (fresh / f"models/trial0_round{k}.pt").read_bytes()


def test_a_second_run_reuses_the_warm_up_and_equals_a_fresh_one(cli, tmp_path):
    _run(cli, tmp_path / "o", "sap", "a")
    b, out = _run(cli, tmp_path / "o", "ciap", "b")
    assert "dense warm-up 2 epochs reused" in out
    assert [r["warmup_reused"] for r in table(b, "trials.csv")] == ["True"]
    assert len(list((tmp_path / "o" / "warmups").glob("*.pt"))) == 1
    _same_as_fresh(cli, tmp_path, b, "ciap")
    # other warm-up settings: another warm-up
    c, out = _run(cli, tmp_path / "o", "sap", "c", "--net_lr", "0.04")
    assert "reused" not in out and len(list((tmp_path / "o" / "warmups").glob("*.pt"))) == 2
    # settings that do not touch the warm-up share it
    d, out = _run(cli, tmp_path / "o", "sap", "d", "--net_train_epochs", "2")
    assert "reused" in out


def _shared(out):
    return next((out / "warmups").glob("*.pt"))


@pytest.mark.parametrize("spoil,why", [
    ("damage", "damaged"), ("stale", "stale"), ("link", "symbolic link"),
    ("foreign", "plain tensors|not a torch.save zip file"), ("list", "not a warm-up incop wrote")])
def test_a_spoiled_shared_warm_up_is_never_used(cli, tmp_path, spoil, why):
    _run(cli, tmp_path / "o", "sap", "a")
    path = _shared(tmp_path / "o")
    sha = path.with_suffix(".sha256")
    if spoil == "damage":
        blob = bytearray(path.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        path.write_bytes(bytes(blob))
    elif spoil == "stale":  # a valid file whose identity is another's, its hash rewritten
        data = torch.load(path, weights_only=True)
        data["identity"]["seed"] = 12345
        buf = io.BytesIO()
        torch.save(data, buf)
        path.write_bytes(buf.getvalue())
        sha.write_text(hashlib.sha256(buf.getvalue()).hexdigest())
    elif spoil == "link":
        target = tmp_path / "elsewhere.pt"
        target.write_bytes(path.read_bytes())
        path.unlink()
        path.symlink_to(target)
    elif spoil == "list":  # plain tensors, with a matching hash, but not a warm-up's dict
        buf = io.BytesIO()
        torch.save([torch.zeros(3)], buf)
        path.write_bytes(buf.getvalue())
        sha.write_text(hashlib.sha256(buf.getvalue()).hexdigest())
    else:  # a pickle that is not plain tensors, with a matching hash
        import pickle

        blob = pickle.dumps(__import__("collections").OrderedDict)  # a class, not a tensor
        path.write_bytes(blob)
        sha.write_text(hashlib.sha256(blob).hexdigest())
    b, out = _run(cli, tmp_path / "o", "ciap", "b")
    # a link in the folder refuses the whole folder (issue 35): nothing is shared through it
    assert re.search("not using the shared warm-up|not sharing warm-ups", out), out
    assert re.search(why, out) and "reused" not in out
    _same_as_fresh(cli, tmp_path, b, "ciap")


@pytest.fixture
def out(warmed_search, tmp_path):
    return copy_of(warmed_search, tmp_path)


def _forge_warmup(out, change):
    path = next((out / "warmups").glob("*.pt"))
    data = torch.load(path, weights_only=True)
    change(data["warmup"])
    buf = io.BytesIO()
    torch.save(data, buf)
    path.write_bytes(buf.getvalue())
    path.with_suffix(".sha256").write_text(hashlib.sha256(buf.getvalue()).hexdigest())


@pytest.mark.parametrize("change", [
    {"warmup_val_acc": 99.9, "warmup_test_acc": "x"},  # refused after its record was told
    {"warmup_val_acc": 1e308}, {"warmup_val_acc": float("nan")}, {"warmup_test_acc": -3.0},
    {"seed": 7},  # another seed's record in this trial
    {"warmup_epochs": 5}, {"rewind_iteration": "42"}, {"rewind_iteration": None},
    {"untrained": "x" * 100_000}, {"extra": [1, 2, 3]}])
def test_a_refused_shared_warm_up_leaves_no_record(cli, out, change):
    _forge_warmup(out, lambda record: record.update(change))
    code, stdout, err = cli(*WARMED, "--exper_imp_total_iter", "2", "--prune_method", "lth",
                            "--output_dir", str(out))
    assert code == 0, err
    assert "not using the shared warm-up" in stdout and "reused" not in stdout
    assert max(len(line) for line in stdout.splitlines()) < 600
    (run,) = run_dir(*WARMED, "--prune_method", "lth", "--output_dir", out).parent.iterdir()
    (row,) = json.loads((run / "trials.json").read_text())  # one warm-up: the one trained
    assert row["warmup_reused"] is False and row["seed"] == 0 and row["warmup_val_acc"] < 99.9


def test_a_missing_field_in_a_shared_warm_up_leaves_no_record(cli, out):
    _forge_warmup(out, lambda record: record.pop("rewind_iteration"))
    code, stdout, err = cli(*WARMED, "--exper_imp_total_iter", "2", "--prune_method", "lth",
                            "--output_dir", str(out))
    assert code == 0 and "not using the shared warm-up" in stdout, err
    (run,) = run_dir(*WARMED, "--prune_method", "lth", "--output_dir", out).parent.iterdir()
    assert len(json.loads((run / "trials.json").read_text())) == 1


def _forge_states(change):
    """``change(data)`` applied to a shared warm-up's weights, its checksum rewritten."""
    def forge(out):
        path = next((out / "warmups").glob("*.pt"))
        data = torch.load(path, weights_only=True)
        change(data)
        buf = io.BytesIO()
        torch.save(data, buf)
        path.write_bytes(buf.getvalue())
        path.with_suffix(".sha256").write_text(hashlib.sha256(buf.getvalue()).hexdigest())
    return forge


def _reshaped(key):
    def change(data):
        data[key] = {**data["rewind"], "fc2.weight": torch.zeros(3, 3)}
    return change


@pytest.mark.parametrize("change", [
    _reshaped("rewind"), _reshaped("dense"), _reshaped("ticket"),  # the last loaded first
    lambda d: d.update(ticket={**d["rewind"], "extra.bias": torch.zeros(3)}),
    lambda d: d["rewind"].pop("fc3.weight")])
def test_a_shared_warm_up_of_another_network_leaves_the_trial_as_fresh(cli, out, tmp_path, change):
    """Weights that do not fit are refused before any is loaded: the warm-up trained instead
    starts from the trial's own initialisation, as a fresh run's does."""
    _forge_states(change)(out)
    args = [*WARMED, "--exper_imp_total_iter", "2", "--prune_method", "lth", "--run_name", "r"]
    code, stdout, err = cli(*args, "--output_dir", str(out))
    assert code == 0, err
    assert "does not fit this model" in stdout and "reused" not in stdout
    code, _, err = cli(*args, "--output_dir", str(tmp_path / "fresh"))
    assert code == 0, err
    runs = [run_dir(*args, "--output_dir", o) for o in (out, tmp_path / "fresh")]
    for name in ("models/trial0_round0.pt", "models/trial0_round1.pt", "rounds.json"):
        if name.endswith(".json"):
            a, b = (json.loads((r / name).read_text()) for r in runs)
            assert [x["val_acc"] for x in a] == [x["val_acc"] for x in b]
        else:
            assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name
    (row,) = json.loads((runs[0] / "trials.json").read_text())
    assert row["warmup_reused"] is False


@pytest.mark.usefixtures("no_hang")
def test_a_shared_warmup_or_its_checksum_as_a_pipe_is_skipped(tmp_path):
    from incop.runs.warmups import SharedWarmups

    said = []
    fifo(tmp_path / "warmups" / "k.pt")
    (tmp_path / "warmups" / "k.sha256").write_text("0" * 64 + "\n")
    assert SharedWarmups(tmp_path, said.append).shared_warmup("k", {}) is None
    (tmp_path / "warmups" / "k.pt").unlink()
    (tmp_path / "warmups" / "k.pt").write_bytes(b"x")
    fifo(tmp_path / "warmups" / "k.sha256")
    assert SharedWarmups(tmp_path, said.append).shared_warmup("k", {}) is None
    assert len(said) == 2 and all("named pipe" in s and "\n" not in s for s in said), said


def _warmup_file(folder: Path, key: str, identity, record) -> None:
    from incop.runs.warmups import FORMAT

    blob = torch_bytes({"format": FORMAT, "identity": identity, "warmup": record,
                        "rewind": {"w": torch.ones(2)}, "dense": None, "ticket": None})
    _warmup_blob(folder, key, blob)


def _warmup_blob(folder: Path, key: str, blob: bytes) -> None:
    import hashlib

    write(folder / "warmups" / f"{key}.pt", blob)
    (folder / "warmups" / f"{key}.sha256").write_text(hashlib.sha256(blob).hexdigest() + "\n")


def test_a_shared_warmup_with_shared_or_deep_lists_is_skipped_in_little_memory(tmp_path):
    """Its identity is compared as JSON, and its record checked: lists shared a million times,
    nested a hundred thousand deep or holding themselves are refused before either, and the
    run trains its own warm-up (a warning, no traceback)."""
    selfish: list = []
    selfish.append(selfish)
    record = {"seed": 0, "warmup_epochs": 1}
    cases = {}
    for key, identity, rec in (("shared_identity", {"data": shared_rows(300_000)}, record),
                               ("shared_record", {"seed": 0}, {**record, "x": shared_rows(300_000)}),
                               ("cyclic_identity", {"data": selfish}, record),
                               ("text_identity", {"data": ["x" * (1 << 20)] * 4000}, record)):
        _warmup_file(tmp_path / key, key, identity, rec)
        cases[key] = f"look({str(tmp_path / key)!r}, {key!r})"
    from incop.runs.warmups import FORMAT

    _warmup_blob(tmp_path / "deep", "deep", spliced_torch(
        {"format": FORMAT, "identity": "DEEP", "warmup": record, "rewind": {}}, "DEEP",
        nested_pickle(100_000)))
    cases["deep_identity"] = f"look({str(tmp_path / 'deep')!r}, 'deep')"
    results = bounded("from incop.runs.warmups import SharedWarmups\n"
                      "def look(folder, key):\n"
                      "    said = []\n"
                      "    got = SharedWarmups(Path(folder), said.append).shared_warmup(key, {})\n"
                      "    return got is None and said", cases)
    for key, result in results.items():
        assert result["outcome"] == "returned" and result["growth_mb"] < GROWTH_MB, result
        said = eval(result["text"])  # the warnings, a list of texts
        assert len(said) == 1 and "not using the shared warm-up" in said[0], result
        assert len(said[0]) < 600 and "\n" not in said[0], result
