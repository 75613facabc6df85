"""incop export and incop speed on run folders incop did not write: they read the checked
configuration (an edited config.json points them at nothing), masks and model files that are
damaged, announce what they do not hold or belong to another model are one line, bad flags and
outputs are one line, and a run in use is refused."""
import json
import os
import resource
from pathlib import Path

import pytest
import torch

from conftest import Evil, evil_cifar, one_line_error


def test_export_and_speed_read_the_checked_configuration(cli, run, tmp_path):
    """An edited config.json can neither relabel a run nor point incop at other files: export
    and speed take the configuration the run wrote (its checksum, else the progress file)."""
    marker = tmp_path / "pwned"
    evil = evil_cifar(tmp_path / "data" / "cifar-10-batches-py", marker)
    config = json.loads((run / "config.json").read_text())
    config["model"]["arch"] = "conv2"
    config["data"].update(dataset="cifar", data_dir=str(evil.parent))
    (run / "config.json").write_text(json.dumps(config))
    code, out, err = cli("export", str(run), "--format", "sparse", "--output", str(tmp_path / "m.pt"))
    assert code == 0, err
    code, out, err = cli("speed", str(run), "--batches", "1", "--threads", "1", "--repeats", "1",
                         "--quiet")
    assert code == 0, err
    assert not marker.exists()
    from incop.models.architectures import build_model
    from incop.pruning.sparse_files import load_sparse

    load_sparse(build_model("lenet300", (1, 8, 8), 10), tmp_path / "m.pt")  # lenet300, as run
    code, out, err = cli("report", str(run), "--output", str(tmp_path / "rep"))
    assert code == 0 and "lenet300" in (tmp_path / "rep" / "report.md").read_text()
    assert "conv2" not in (tmp_path / "rep" / "report.md").read_text()


def test_a_received_run_naming_an_evil_cifar_folder_runs_nothing(cli, run, tmp_path):
    """Even with a checksum made to match, a config.json that points at a crafted CIFAR folder
    only reaches the data unpickler, which refuses the file."""
    from incop.config.identity import checked_config

    marker = tmp_path / "pwned"
    evil = evil_cifar(tmp_path / "data" / "cifar-10-batches-py", marker)
    config = json.loads((run / "config.json").read_text())
    versions = config.pop("versions")
    config.pop("checksum")
    config["data"].update(dataset="cifar", data_dir=str(evil.parent))
    (run / "config.json").write_text(json.dumps(checked_config(config, versions)))
    for argv in (("export", str(run), "--format", "dense", "--output", str(tmp_path / "m.pt")),
                 ("speed", str(run), "--batches", "1", "--threads", "1", "--repeats", "1",
                  "--quiet")):
        code, _, err = cli(*argv)
        assert one_line_error(code, err) and "posix.system" in err
    assert not marker.exists()


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pack(shape, bits):
    return {"shape": list(shape), "bits": torch.zeros(bits, dtype=torch.uint8)}


@pytest.mark.parametrize("packed", [
    _pack((2**20, 2**20), 10), _pack((2**40,), 1), _pack((300, 64), 2399), _pack((-1, 8), 1),
    {"shape": [8, 8], "bits": torch.zeros(8, dtype=torch.float32)}, {"shape": "8x8", "bits": b""}])
def test_a_masks_file_announcing_a_shape_it_does_not_hold_is_refused(run, cli, tmp_path, packed):
    from incop.pruning.sparse_files import MASKS_FORMAT

    torch.save({"format": MASKS_FORMAT, "masks": {"fc1.weight": packed}},
               run / "masks" / "trial0_round2.pt")
    before = _peak_mb()
    code, _, err = cli("export", str(run), "--format", "sparse", "--output", str(tmp_path / "m.pt"))
    assert one_line_error(code, err) and "trial0_round2.pt" in err
    code, _, err = cli("speed", str(run), "--batches", "1", "--threads", "1", "--repeats", "1",
                       "--quiet")
    assert one_line_error(code, err)
    assert _peak_mb() - before < 300


def test_masks_of_the_wrong_shape_for_the_model_are_refused(run, cli, tmp_path):
    from incop.pruning.sparse_files import pack_masks

    torch.save(pack_masks({"fc1.weight": torch.ones(3, 3)}), run / "masks" / "trial0_round2.pt")
    code, _, err = cli("export", str(run), "--format", "dense", "--output", str(tmp_path / "m.pt"))
    assert one_line_error(code, err) and "belongs to another run" in err


def _damage(run: Path, what: str) -> None:
    masks, model = run / "masks" / "trial0_round2.pt", run / "models" / "trial0_round2.pt"
    if what == "truncated_masks":
        masks.write_bytes(masks.read_bytes()[:100])
    elif what == "truncated_model":
        model.write_bytes(model.read_bytes()[:300])
    elif what == "pickled_object":
        torch.save({"x": Evil(run / "pwned")}, masks)
    elif what == "list_masks":
        torch.save([1, 2, 3], masks)
    elif what == "unknown_dtype":
        obj = torch.load(model, weights_only=True)
        obj["sparse"]["fc1.weight"]["dtype"] = "load"
        torch.save(obj, model)
    elif what == "too_few_values":
        obj = torch.load(model, weights_only=True)
        obj["sparse"]["fc1.weight"]["values"] = obj["sparse"]["fc1.weight"]["values"][:5]
        torch.save(obj, model)
    elif what in ("config_not_json", "config_no_section"):
        (run / "config.json").write_text("{not json" if what == "config_not_json"
                                         else json.dumps({"model": {"arch": "lenet300"}}))
        for f in ("progress.pt", "progress.prev.pt"):
            (run / f).unlink()


@pytest.mark.parametrize("what", ["truncated_masks", "truncated_model", "pickled_object",
                                  "list_masks", "unknown_dtype", "too_few_values",
                                  "config_not_json", "config_no_section"])
def test_damaged_run_files_are_one_line_in_export_and_speed(cli, run, tmp_path, what):
    _damage(run, what)
    code, _, err = cli("export", str(run), "--format", "dense", "--output", str(tmp_path / "m.pt"))
    assert one_line_error(code, err), err
    code, _, err = cli("speed", str(run), "--batches", "1", "--threads", "1", "--repeats", "1",
                       "--quiet")
    # speed times the sparsity pattern: without readable weights it times the masked model
    model_damage = what in ("truncated_model", "unknown_dtype", "too_few_values")
    assert (code == 0 and model_damage) or one_line_error(code, err), err
    assert not (run / "pwned").exists()


@pytest.mark.parametrize("argv,message", [
    (["--threads", "0"], "between 1 and"), (["--threads", "-1"], "between 1 and"),
    (["--threads", "4096"], "between 1 and"), (["--batches", "100000000"], "between 1 and"),
    (["--batches", "0"], "at least 1"), (["--repeats", "0"], "at least 1")])
def test_bad_speed_flags_are_one_line(cli, run, argv, message):
    code, _, err = cli("speed", str(run), "--quiet", *argv)
    assert one_line_error(code, err) and message in err


def test_bad_export_outputs_are_one_line(cli, run, tmp_path):
    (tmp_path / "a_file").write_text("x")
    for output, message in ((str(tmp_path), "is a folder"), ("", "is empty"), ("  ", "is empty"),
                            (str(tmp_path / "a_file" / "m.pt"), "cannot create")):
        code, _, err = cli("export", str(run), "--format", "dense", "--output", output)
        assert one_line_error(code, err) and message in err, (output, err)
    if os.getuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        os.chmod(ro, 0o500)
        code, _, err = cli("export", str(run), "--format", "dense", "--output", str(ro / "m.pt"))
        assert one_line_error(code, err) and "cannot write" in err
    # a failed export leaves no temporary behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a_file", "out"] + (
        ["ro"] if os.getuid() != 0 else []))


def test_speed_refuses_a_run_directory_in_use(cli, run):
    from incop.runs.directory import RunDirectory

    before = (run / "rounds.json").read_text()
    with RunDirectory(run).lock():
        code, _, err = cli("speed", str(run), "--batches", "1", "--threads", "1", "--repeats",
                           "1", "--quiet")
    assert one_line_error(code, err) and "in use" in err
    assert not (run / "speed.json").exists() and (run / "rounds.json").read_text() == before
