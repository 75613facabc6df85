"""Issue 28: a dense warm-up is trained once per set of settings that determine it and shared by
the runs under one --output_dir; a run that reuses one equals a fresh run bit for bit, and a
stale, damaged or linked shared warm-up is never used."""
import hashlib
import io
import re

import pytest
import torch

from conftest import table

ARGS = ["run", "--net_warmup", "2", "--net_train_epochs", "1", "--exper_imp_total_iter", "3",
        "--net_lr", "0.05", "--net_momentum", "0.9", "--quiet"]
FILES = ("rounds.csv", "epochs.csv", "layers.csv", "similarity.csv")


def _run(cli, out, method, name, *extra):
    code, stdout, err = cli(*ARGS, "--prune_method", method, "--run_name", name,
                            "--output_dir", str(out), *extra)
    assert code == 0, err
    return out / method / "lenet300" / "digits" / name, stdout


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
