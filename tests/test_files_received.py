"""Issue 25: files you did not write. Datasets, configs, run directories and the kernel cache are
read as data: nothing in them runs code, allocates in proportion to a value it holds, leads a
write out of its folder, or ends in a traceback."""
import io
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_cifar
from incop.base.errors import UsageError

RUN = ["run", "--net_dataset", "digits", "--prune_method", "sap", "--net_lr", "0.05",
       "--net_momentum", "0.9", "--net_warmup", "1", "--net_train_epochs", "1",
       "--exper_imp_total_iter", "3", "--quiet"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run of three rounds, copied by each test that damages it."""
    from incop.cli import main

    out = tmp_path_factory.mktemp("finished")
    assert main([*RUN, "--output_dir", str(out), "--run_name", "r"]) == 0
    return out / "sap" / "lenet300" / "digits" / "r"


@pytest.fixture
def run(finished, tmp_path):
    copy = tmp_path / "out" / "sap" / "lenet300" / "digits" / "r"
    shutil.copytree(finished, copy)
    return copy


def one_line_error(code, err):
    """Exit 2 and one line of error (a warning that the machine is busy may precede it)."""
    lines = [ln for ln in err.splitlines() if not ln.startswith("incop: warning: the machine")]
    return code == 2 and len(lines) == 1 and lines[0].startswith("incop: error:") \
        and "Traceback" not in err


class Evil:
    """A pickle that runs a shell command when loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---------------------------------------------------------------- 1. nothing in a file runs code

def _evil_cifar(folder: Path, marker: Path, payload=None):
    make_cifar(folder, n_per_batch=4)
    payload = payload if payload is not None else {b"data": Evil(marker), b"labels": [0]}
    (folder / "data_batch_1").write_bytes(pickle.dumps(payload))
    return folder


@pytest.mark.parametrize("payload", [
    "system", "eval", "object_array", "nested", "popen"])
def test_a_cifar_pickle_never_runs_code(cli, tmp_path, payload):
    marker = tmp_path / "pwned"
    payloads = {
        "system": {b"data": Evil(marker), b"labels": [0]},
        "eval": {b"data": type("E", (), {"__reduce__": lambda s: (eval, (f"open('{marker}', 'w')",))})(),
                 b"labels": [0]},
        "object_array": {b"data": np.array([Evil(marker)], dtype=object), b"labels": [0]},
        "nested": {b"data": [[1, 2], {b"x": Evil(marker)}], b"labels": [0]},
        "popen": {b"data": type("P", (), {"__reduce__": lambda s: (
            subprocess.Popen, (["touch", str(marker)],))})(), b"labels": [0]},
    }
    folder = _evil_cifar(tmp_path / "cifar-10-batches-py", marker, payloads[payload])
    code, _, err = cli("run", "--net_dataset", "cifar", "--data_dir", str(folder.parent),
                       "--print_config")
    assert code == 0  # --print_config reports that the data could not be read, and runs nothing
    assert not marker.exists()
    code, _, err = cli("run", "--net_dataset", "cifar", "--data_dir", str(folder.parent),
                       "--output_dir", str(tmp_path / "o"), "--quiet")
    assert one_line_error(code, err) and "data_batch_1" in err and not marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_real_cifar_batches_of_every_pickle_protocol_still_read(tmp_path, protocol):
    from incop.data.datasets import load_cifar10

    folder = make_cifar(tmp_path / "cifar-10-batches-py", n_per_batch=4)
    rng = np.random.default_rng(1)
    batch = {b"batch_label": b"training batch 1 of 5",
             b"labels": [np.int64(3), 1, 2, 0],  # numpy scalars too
             b"data": rng.integers(0, 256, (4, 3072)).astype(np.uint8),
             b"filenames": [b"a.png", b"b.png", b"c.png", b"d.png"]}
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=protocol))
    raw = load_cifar10(str(tmp_path))
    assert raw.train_y[:4].tolist() == [3, 1, 2, 0]
    assert torch.equal(raw.train_x[:4].reshape(4, -1), torch.from_numpy(batch[b"data"]))


def test_labels_that_are_not_integers_are_one_line(tmp_path):
    from incop.data.datasets import load_cifar10

    folder = make_cifar(tmp_path / "cifar-10-batches-py", n_per_batch=4)
    for labels in ([10**30, 1, 2, 3], [b"x", 1, 2, 3]):
        (folder / "data_batch_2").write_bytes(pickle.dumps(
            {b"data": np.zeros((4, 3072), np.uint8), b"labels": labels}))
        with pytest.raises(UsageError, match="not arrays of integers"):
            load_cifar10(str(tmp_path))


def test_export_and_speed_read_the_checked_configuration(cli, run, tmp_path):
    """An edited config.json can neither relabel a run nor point incop at other files: export
    and speed take the configuration the run wrote (its checksum, else the progress file)."""
    marker = tmp_path / "pwned"
    evil = _evil_cifar(tmp_path / "data" / "cifar-10-batches-py", marker)
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
    evil = _evil_cifar(tmp_path / "data" / "cifar-10-batches-py", marker)
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


# ---------------------------------------------------------------- 3, 4. no input exhausts memory

def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("labels,message", [
    ([0, 1, 3 * 10**7], "more classes than incop accepts"),
    ([0, 1, 10**9], "more classes than incop accepts"),
    ([0, 2, 999_999], "classes [1, 3, 4, 5, 6] are missing"),
    ([2**62, 0, 1], "more classes than incop accepts")])
def test_absurd_labels_cost_nothing_in_proportion_to_their_value(labels, message):
    from incop.data.checks import check_labels

    before = _peak_mb()
    with pytest.raises(UsageError) as e:
        check_labels("train", torch.tensor(labels * 100))
    assert message in str(e.value)
    assert _peak_mb() - before < 300  # a set of range(3e7) alone takes over 1 GB


def test_an_absurd_label_in_an_npz_is_one_line(cli, tmp_path):
    f = tmp_path / "d.npz"
    y = np.arange(100) % 2
    y[7] = 10**9
    np.savez(f, x_train=np.zeros((100, 4), np.float32), y_train=y)
    code, _, err = cli("run", "--net_dataset", "npz", "--data_dir", str(f), "--quiet",
                       "--output_dir", str(tmp_path / "o"))
    assert one_line_error(code, err) and "1000000000" in err


def _npz_with_header(path: Path, shape, dtype="<f4", data=b""):
    """An .npz whose x_train announces ``shape`` but holds ``data``."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data
    buf = io.BytesIO()
    np.savez(buf, y_train=np.arange(4) % 2)
    import zipfile
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x_train.npy", npy)
        with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src:
            z.writestr("y_train.npy", src.read("y_train.npy"))
    return path


@pytest.mark.parametrize("shape,message", [
    ((2**20, 2**20), "announces shape"), ((4, 2**40), "announces shape"),
    ((4, 4), "announces shape")])
def test_an_npz_announcing_more_than_it_holds_is_refused_before_allocating(tmp_path, shape, message):
    from incop.data.datasets import load_raw

    before = _peak_mb()
    with pytest.raises(UsageError, match=message):
        load_raw("npz", str(_npz_with_header(tmp_path / "d.npz", shape, data=b"\0" * 16)))
    assert _peak_mb() - before < 300


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


# ---------------------------------------------------------------- 5. writes stay in their folder

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


def test_a_link_in_a_report_folder_is_refused(cli, run, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "report.md").symlink_to(victim)
    code, _, err = cli("report", str(run), "--output", str(tmp_path / "rep"))
    assert one_line_error(code, err) and "symbolic link" in err and victim.read_text() == "keep"


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


def _tar(path: Path, members):
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _member(name, kind=tarfile.REGTYPE, data=b"x", link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


@pytest.mark.parametrize("with_filter", [True, False])
@pytest.mark.parametrize("case", ["dir_symlink", "hardlink", "abs_symlink", "dotdot"])
def test_tar_extraction_never_writes_outside_the_data_folder(tmp_path, monkeypatch, case,
                                                             with_filter):
    from incop.data import downloads

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep")
    members = {
        "dir_symlink": [_member("c/evil", tarfile.SYMTYPE, link=str(outside)),
                        _member("c/evil/victim", data=b"changed")],
        "hardlink": [_member("c/h", tarfile.LNKTYPE, link=str(outside / "victim")),
                     _member("c/h", data=b"changed")],
        "abs_symlink": [_member("c/l", tarfile.SYMTYPE, link=str(outside / "victim"))],
        "dotdot": [_member("c/../../outside/victim", data=b"changed")],
    }[case]
    archive = _tar(tmp_path / "a.tar.gz", members)
    if not with_filter:
        monkeypatch.delattr(tarfile, "data_filter")
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(UsageError):
        downloads._extract(archive, root)
    assert (outside / "victim").read_text() == "keep"


def test_a_plain_archive_still_unpacks(tmp_path):
    from incop.data import downloads

    archive = _tar(tmp_path / "a.tar.gz", [_member("c/", tarfile.DIRTYPE),
                                           _member("c/f", data=b"hello")])
    downloads._extract(archive, tmp_path / "root")
    assert (tmp_path / "root" / "c" / "f").read_bytes() == b"hello"


# ---------------------------------------------------------------- 7, 8. the kernel's cache

needs_cc = pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None,
                              reason="no C compiler")


def _kernel_check(cache: Path) -> subprocess.CompletedProcess:
    """A fresh process that loads the kernel from ``cache`` and runs it once."""
    code = ("import torch; from incop import csr_tiled as c; why = c.unavailable(); "
            "print('UNAVAILABLE', why) if why else None; "
            "w = (torch.rand(5, 7) > 0.5).float().to_sparse_csr(); "
            "y = c.TiledCsr(w, None)(torch.ones(3, 7)) if not why else None; "
            "print('OK', float(y.sum()) == float(w.to_dense().sum()) * 3 if y is not None else '')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "INCOP_CACHE_DIR": str(cache)})


def _library(cache: Path) -> Path:
    return next(cache.glob("csr_tiled-*.so"))


@needs_cc
def test_the_cache_is_private_and_a_planted_library_never_runs(tmp_path):
    cache = tmp_path / "cache"
    assert "OK True" in _kernel_check(cache).stdout
    assert cache.stat().st_mode & 0o777 == 0o700
    lib = _library(cache)
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.c"
    src.write_text('#include <stdio.h>\n__attribute__((constructor)) static void f(void) '
                   f'{{ FILE *o = fopen("{marker}", "w"); if (o) fclose(o); }}\n'
                   'int incop_csr_abi(void) { return 2; }\n')
    subprocess.run([os.environ.get("CC", "cc"), "-shared", "-fPIC", str(src), "-o", str(lib)],
                   check=True)
    out = _kernel_check(cache)
    assert not marker.exists(), "the planted library's constructor ran"
    assert "OK True" in out.stdout, out.stderr  # rebuilt in its place
    # a library (and record) of another user's, or writable by others, is rebuilt too
    os.chmod(lib, 0o666)
    assert "OK True" in _kernel_check(cache).stdout and lib.stat().st_mode & 0o022 == 0


@needs_cc
def test_a_cache_folder_others_can_write_is_not_used(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chmod(cache, 0o777)
    out = _kernel_check(cache)
    assert "UNAVAILABLE" in out.stdout and "others can write" in out.stdout
    assert out.returncode == 0 and not list(cache.glob("*.so"))


@needs_cc
@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_a_damaged_library_is_rebuilt_before_it_is_mapped(tmp_path, damage):
    cache = tmp_path / "cache"
    assert "OK True" in _kernel_check(cache).stdout
    lib = _library(cache)
    blob = lib.read_bytes()
    lib.write_bytes({"truncate": blob[:len(blob) // 2], "empty": b"",
                     "garbage": b"\x7fELF" + b"\0" * 4000}[damage])
    out = _kernel_check(cache)
    assert out.returncode == 0, out.stderr  # SIGBUS would be -7
    assert "OK True" in out.stdout and lib.read_bytes() == blob


@needs_cc
def test_a_saved_fast_model_loads_over_a_damaged_cache(tmp_path):
    from torch import nn

    import incop

    cache = tmp_path / "cache"
    assert "OK True" in _kernel_check(cache).stdout
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    masks = incop.Masks({"0.weight": (torch.rand(32, 16) > 0.9).float(),
                         "2.weight": (torch.rand(4, 32) > 0.9).float()})
    from incop.deploy.sparse_inference import sparse_model

    masks.apply(model)
    fast = sparse_model(model, dict(masks), {"0": "csr-tiled", "2": "csr-tiled"})
    torch.save(fast, tmp_path / "fast.pt")
    lib = _library(cache)
    lib.write_bytes(lib.read_bytes()[:1000])
    code = (f"import torch; m = torch.load('{tmp_path / 'fast.pt'}', weights_only=False); "
            f"print('SUM', float(m(torch.ones(2, 16)).sum()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "INCOP_CACHE_DIR": str(cache)})
    assert out.returncode == 0 and "SUM" in out.stdout, out.stderr
    with torch.no_grad():
        want = float(model(torch.ones(2, 16)).sum())
    assert float(out.stdout.split()[-1]) == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("crow,col", [
    ([0, 1, 2], [0, 99]),       # a column outside the matrix
    ([0, 1, 2], [0, -1]),       # a negative column
    ([0, 2, 1], [0, 1]),        # row pointers going back
    ([1, 1, 2], [0, 1]),        # not starting at 0
    ([0, 1, 5], [0, 1])])       # pointing past the values
def test_a_malformed_csr_is_refused_before_the_c_code_runs(crow, col):
    from incop.deploy import csr_tiled

    if csr_tiled.unavailable():
        pytest.skip(csr_tiled.unavailable())
    w = torch.sparse_csr_tensor(torch.tensor(crow), torch.tensor(col), torch.ones(2), (2, 4),
                                check_invariants=False)
    with pytest.raises(ValueError, match="malformed CSR"):
        csr_tiled.TiledCsr(w, None)


# ---------------------------------------------------------------- 9. damaged run files

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


@pytest.mark.parametrize("file,content", [
    ("rounds.json", '{"a": 1}'), ("rounds.json", "[1]"), ("rounds.json", '[{"trial": 0}]'),
    ("rounds.json", '[{"trial": 0, "round": "x"}]'), ("summary.json", "[1]"),
    ("config.json", "{not json"), ("tickets.json", '"x"'), ("epochs.csv", "\0\0\0")])
def test_report_reports_the_good_run_and_skips_the_bad_one(cli, finished, tmp_path, file, content):
    good, bad = tmp_path / "good", tmp_path / "bad"
    shutil.copytree(finished, good)
    shutil.copytree(finished, bad)
    (bad / file).write_text(content)
    if file == "config.json":
        for f in ("progress.pt", "progress.prev.pt"):
            (bad / f).unlink()
    code, out, err = cli("report", str(good), str(bad), "--output", str(tmp_path / "rep"))
    if file == "epochs.csv":  # a CSV of garbage reads as no rows: nothing to skip
        assert code == 0 and "Traceback" not in err
        return
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "skipping" in lines[0] and str(bad) in lines[0]
    assert str(good) in (tmp_path / "rep" / "report.csv").read_text()


def test_a_garbage_speed_json_leaves_the_speed_column_out_with_a_warning(cli, run, tmp_path):
    for content in ("garbage", '{"whole": 3}', '{"whole": [{"batch": 64, "threads": 1, '
                                               '"round": 0, "speedup": "fast"}]}'):
        (run / "speed.json").write_text(content)
        code, out, err = cli("report", str(run), "--output", str(tmp_path / "rep"))
        assert code == 0 and err.count("\n") == 1 and "speed.json" in err


# ---------------------------------------------------------------- 10. bad flags: one line

@pytest.mark.parametrize("argv", [
    ["--net_image_size", "0"], ["--net_image_size", "-3"], ["--net_image_size", "100000"],
    ["--seed", str(2**64)], ["--seed", str(-2**63)], ["--net_lr", "1e300"],
    ["--net_lr_gamma", "1e300"],
    ["--net_lr_milestones", "2", "4"], ["--net_lr_schedule", "cosine", "--net_lr_milestones", "2"]])
def test_bad_run_flags_are_one_line(cli, tmp_path, argv):
    code, _, err = cli("run", "--net_dataset", "digits", *argv, "--quiet",
                       "--output_dir", str(tmp_path))
    assert one_line_error(code, err)
    assert not any(tmp_path.iterdir())  # and nothing is left behind


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


@pytest.mark.parametrize("name,content,message", [
    ("c.toml", b"net_lr = 0.1\n\xff\xfe\n", "not UTF-8"),
    ("c.json", b'{"net_lr": null}', "--net_lr is null"),
    ("c.json", b'{"net_warmup": null}', "--net_warmup is null"),
    ("c.json", b'{"allow_untrained": null}', "is null"),
    ("c.json", b'{"train": {"lr": true}}', "--net_lr expects a number, not True"),
    ("c.toml", b"net_warmup = 1.7\n", "--net_warmup expects a whole number, not 1.7"),
    ("c.toml", b"net_batch_size = 10.5\n", "--net_batch_size expects a whole number, not 10.5"),
    ("c.json", b'{"net_arch": ["lenet300"]}', "takes one value"),
    ("c.json", b'{"net_arch": {"a": 1}}', "--net_arch expects a text value"),
    ("c.json", b'{"seed": 1e400}', "--seed expects a whole number")])
def test_config_files_are_typed_like_the_command_line(cli, tmp_path, name, content, message):
    f = tmp_path / name
    f.write_bytes(content)
    code, _, err = cli("run", "--config", str(f), "--print_config")
    assert one_line_error(code, err) and message in err, err


def test_config_files_accept_what_loses_nothing(cli, tmp_path):
    f = tmp_path / "c.json"
    f.write_text('{"net_warmup": 2.0, "net_lr": 1, "net_pretrained": null, "prune_epsilon": null}')
    code, out, err = cli("run", "--config", str(f), "--print_config")
    assert code == 0, err
    cfg = json.loads(out)
    assert cfg["train"]["warmup"] == 2 and isinstance(cfg["train"]["warmup"], int)
    assert cfg["train"]["lr"] == 1.0


def test_an_npz_holding_objects_is_one_line(cli, tmp_path):
    f = tmp_path / "d.npz"
    np.savez(f, x_train=np.array([[1], "a"] * 50, dtype=object), y_train=np.arange(100) % 2)
    code, _, err = cli("run", "--net_dataset", "npz", "--data_dir", str(f), "--quiet",
                       "--output_dir", str(tmp_path / "o"))
    assert one_line_error(code, err) and "Python objects" in err


# ---------------------------------------------------------------- 12. data that cannot train

@pytest.mark.parametrize("kind", ["npz_one_class", "npz_complex", "npz_one_class_with_test"])
def test_data_that_cannot_train_is_refused_before_training(cli, tmp_path, kind):
    f = tmp_path / "d.npz"
    x = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    arrays = {"x_train": x, "y_train": np.zeros(100, np.int64)}
    if kind == "npz_complex":
        arrays = {"x_train": x + 1j * x, "y_train": np.arange(100) % 2}
    if kind == "npz_one_class_with_test":
        arrays.update(x_test=x[:10], y_test=np.zeros(10, np.int64))
    np.savez(f, **arrays)
    code, _, err = cli("run", "--net_dataset", "npz", "--data_dir", str(f), "--quiet",
                       "--output_dir", str(tmp_path / "o"))
    assert one_line_error(code, err)
    assert ("one class" in err) if "one_class" in kind else ("complex" in err)
    assert not (tmp_path / "o").exists()


def test_the_api_refuses_one_class_and_complex_inputs():
    from torch import nn

    import incop

    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 2))
    x = torch.randn(100, 8)
    with pytest.raises(UsageError, match="one class"):
        incop.prune_model(model, (x, torch.zeros(100, dtype=torch.long)),
                          (x[:60], torch.zeros(60, dtype=torch.long)))
    y = torch.arange(100) % 2
    with pytest.raises(UsageError, match="complex"):
        incop.prune_model(model, (x.to(torch.complex64), y), (x[:60].to(torch.complex64), y[:60]))


def test_an_empty_class_folder_is_said_not_dropped(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    from incop.data.datasets import load_raw

    for c in ("a", "c"):
        (tmp_path / c).mkdir()
        for i in range(3):
            pil.fromarray(np.full((4, 4), 40 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "b").mkdir()  # empty: c would silently become class 1
    with pytest.raises(UsageError, match="b: a class folder with no images"):
        load_raw("folder", str(tmp_path))


# ---------------------------------------------------------------- 13. downloads

def test_part_files_against_a_server_answering_416(tmp_path):
    import hashlib

    from test_downloads import Server

    from incop.data import downloads

    blob = b"the whole file" * 100
    md5 = hashlib.md5(blob).hexdigest()
    server = Server({"f.gz": blob}, ranges="refuse")
    target, part = tmp_path / "f.gz", tmp_path / "f.gz.part"
    try:
        part.write_bytes(blob)  # complete: recognised by its checksum, nothing is asked
        downloads._fetch("X", "f.gz", md5, [server.url], target, False)
        assert target.read_bytes() == blob and server.requests == []
        target.unlink()
        part.write_bytes(blob[:10] + b"junk")  # the server will not continue it: restarted
        downloads._fetch("X", "f.gz", md5, [server.url], target, False)
        assert target.read_bytes() == blob and not part.exists()
        assert server.requests == [("f.gz", "bytes=14-"), ("f.gz", None)]
    finally:
        server.close()


def test_a_failing_download_says_which_part_file_to_delete(tmp_path, monkeypatch):
    import urllib.error

    from incop.data import downloads

    def get(url, part, progress):
        part.write_bytes(b"partial")
        raise urllib.error.URLError("connection reset")

    monkeypatch.setattr(downloads, "_get", get)
    with pytest.raises(UsageError) as e:
        downloads._fetch("X", "f.gz", "0" * 32, ["http://127.0.0.1:9/"], tmp_path / "f.gz", False)
    assert f"delete {tmp_path / 'f.gz.part'}" in str(e.value)


# ---------------------------------------------------------------- 14. speed takes the lock

def test_speed_refuses_a_run_directory_in_use(cli, run):
    from incop.runs.directory import RunDirectory

    before = (run / "rounds.json").read_text()
    with RunDirectory(run).lock():
        code, _, err = cli("speed", str(run), "--batches", "1", "--threads", "1", "--repeats",
                           "1", "--quiet")
    assert one_line_error(code, err) and "in use" in err
    assert not (run / "speed.json").exists() and (run / "rounds.json").read_text() == before


# ---------------------------------------------------------------- 15. advice in the API's words

def test_api_advice_names_config_fields():
    from incop.config.schema import api_name
    from incop.engine.learned import advice

    text = advice("vgg16", 0.01, 0.0, 2, api_name)
    assert "TrainConfig.warmup" in text and "TrainConfig.lr" in text
    assert "TrainConfig.momentum 0.9" in text and "ModelConfig.arch vgg16_bn" in text
    assert "--net" not in text
    assert "--net_warmup" in advice("vgg16", 0.01, 0.0, 2)  # the command line's words


def test_an_untrained_api_run_names_config_fields(tmp_path):
    from torch import nn

    import incop
    from incop.engine.failures import Untrained

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 8, generator=g), torch.randint(0, 2, (300,), generator=g)
    cfg = incop.RunConfig()
    cfg.train.lr, cfg.train.warmup, cfg.experiment.imp_total_iter = 1e-9, 1, 2
    cfg.prune.method = "sap"
    with pytest.raises(Untrained) as e:
        incop.prune_model(nn.Sequential(nn.Linear(8, 2)), (x, y), (x[:100], y[:100]), config=cfg,
                          output_dir=tmp_path)
    assert "TrainConfig.lr" in str(e.value) and "ExperimentConfig.allow_untrained" in str(e.value)
    assert "--net_" not in str(e.value) and "--allow_untrained" not in str(e.value)


# ---------------------------------------------------------------- 16. Masks is a mapping

def test_every_function_taking_masks_takes_masks_and_dicts_alike(tmp_path):
    from torch import nn

    import incop
    from incop.deploy.sparse_inference import measure
    from incop.pruning.torch_prune import to_torch_prune

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    plain = {"1.weight": (torch.rand(32, 64) > 0.8).float(), "3.weight": torch.ones(10, 32)}
    masks = incop.Masks(plain)
    masks.save(tmp_path / "m.pt")
    loaded = incop.Masks.load(tmp_path / "m.pt")
    assert dict(loaded).keys() == plain.keys() and "1.weight" in loaded
    assert torch.equal(loaded["1.weight"], plain["1.weight"])
    for given in (masks, loaded, plain):
        fast, m = incop.fastest_sparse_model(model, given, (1, 8, 8), batch=4, repeats=1, warmup=0)
        assert m["max_abs_diff"] < 1e-5
        measure(model, given, (1, 8, 8), 2, 1, 0)
        incop.export_model(model, given, tmp_path / "d.pt", "sparse")
        incop.save_sparse(model, given, tmp_path / "s.pt")
        to_torch_prune(__import__("copy").deepcopy(model), given)
    assert masks == masks and masks != loaded and len({masks, loaded}) == 2


# ---------------------------------------------------------------- 17. nothing left behind

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


# ---------------------------------------------------------------- 18. said, not silent

def test_one_round_says_it_prunes_nothing(cli, tmp_path):
    code, out, err = cli("run", "--net_dataset", "digits", "--prune_method", "sap", "--net_lr",
                         "0.05", "--net_momentum", "0.9", "--net_warmup", "1",
                         "--net_train_epochs", "1", "--exper_imp_total_iter", "1", "--quiet",
                         "--output_dir", str(tmp_path))
    assert code == 0, err
    assert "--exper_imp_total_iter 1 runs round 0 only" in out and "prunes nothing" in out
    assert "1 epochs" not in out and "warm-up 1 epoch," in out
    assert "in all 1 rounds" not in out


def test_the_speedup_figure_draws_what_the_table_says():
    from incop.report.figures import speedup_figure
    from incop.deploy.timing import speed_text

    rows = [{"round": 1, "remaining_pct": 50.0, "batch": 1, "threads": 1, "dense_us": 36.0,
             "sparse_us": 36.0, "speedup": 1.0, "sparse_layers": 0, "best_sparse_us": 100.0},
            {"round": 2, "remaining_pct": 5.0, "batch": 1, "threads": 1, "dense_us": 30.0,
             "sparse_us": 10.0, "speedup": 3.0, "sparse_layers": 2, "best_sparse_us": 10.0}]
    assert "sparse: 0.36x" in speed_text(rows)
    line = speedup_figure(rows).axes[0].lines[0]
    assert list(line.get_ydata()) == pytest.approx([3.0, 0.36])  # sorted by remaining %
