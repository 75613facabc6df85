"""--net_dataset npz and folder (incop.data.own_data) from the command line: vectors and images
run end to end, and bad files (missing arrays, objects, absurd labels, sizes announced but not
held, one class, an empty class folder, a pipe for an image) are one line."""
import io
import resource
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import fifo, one_line_error, small_run

from incop.base.errors import UsageError
from incop.data.datasets import load_raw


RUN = small_run(net_warmup=2, exper_imp_total_iter=2)


def _learnable(n, d=20, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[np.arange(n), y] += 4.0  # one feature per class
    return x, y


def test_npz_vectors_run_end_to_end(cli, tmp_path):
    x, y = _learnable(600)
    tx, ty = _learnable(150, seed=1)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=tx, y_test=ty)
    raw = load_raw("npz", str(tmp_path / "d.npz"))
    assert raw.train_x.shape == (600, 1, 1, 20) and raw.num_classes == 3 and len(raw.test_y) == 150
    assert torch.equal(raw.train_x.reshape(600, 20), torch.from_numpy(x))
    code, out, err = cli(*RUN, "--net_dataset", "npz", "--data_dir", str(tmp_path / "d.npz"),
                         "--output_dir", str(tmp_path / "o"))
    assert code == 0, err
    assert "sap/lenet300/npz" in out


def test_npz_without_test_split_and_channels_last_images(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.integers(0, 255, (50, 6, 6, 3), dtype=np.uint8),
             y_train=np.arange(50) % 5)
    raw = load_raw("npz", str(tmp_path / "d.npz"))
    assert raw.train_x.shape == (40, 3, 6, 6) and raw.test_x.shape == (10, 3, 6, 6)  # fixed 20%


@pytest.mark.parametrize("arrays,message", [
    ({"x_train": np.zeros((4, 3))}, "missing y_train"),
    ({"x_train": np.zeros((4, 3)), "y_train": np.zeros(4)}, "labels are float64"),
    ({"x_train": np.zeros((4, 3)), "y_train": np.array([0, 1, 3, 3])}, "classes [2] are missing"),
    ({"x_train": np.zeros((4, 3)), "y_train": np.arange(3)}, "4 training samples but 3 labels"),
    ({"x_train": np.zeros((4, 3)), "y_train": np.arange(4) % 2, "x_test": np.zeros((2, 3))},
     "x_test and y_test go together"),
    ({"x_train": np.zeros((4, 3)), "y_train": np.arange(4) % 2, "x_test": np.zeros((2, 3)),
      "y_test": np.array([0, 2])}, "labels go up to 2")])
def test_npz_bad_files_are_one_line(cli, tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    code, _, err = cli(*RUN, "--net_dataset", "npz", "--data_dir", str(tmp_path / "d.npz"),
                       "--output_dir", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1 and message in err, err


def _image_tree(root, mode, size=(10, 10), per_class=12, split=False, sizes=None):
    from PIL import Image

    rng = np.random.default_rng(0)
    for part in (["train", "test"] if split else [""]):
        for c, name in enumerate(["cat", "dog", "eel"]):
            folder = root / part / name
            folder.mkdir(parents=True)
            for i in range(per_class if part != "test" else 4):
                w, h = sizes[i % len(sizes)] if sizes else size
                a = rng.integers(0, 60, (h, w) if mode == "L" else (h, w, 3)).astype(np.uint8)
                a[: h // 3 * (c + 1)] += 150  # learnable: a class-dependent bright band
                Image.fromarray(a, mode).save(folder / f"{i}.png")


def test_folder_grey_and_rgb_are_detected(tmp_path):
    _image_tree(tmp_path / "g", "L")
    raw = load_raw("folder", str(tmp_path / "g"))
    assert raw.train_x.shape[1:] == (1, 10, 10) and raw.num_classes == 3
    assert len(raw.train_y) + len(raw.test_y) == 36
    _image_tree(tmp_path / "c", "RGB", split=True)
    raw = load_raw("folder", str(tmp_path / "c"))
    assert raw.train_x.shape == (36, 3, 10, 10) and raw.test_x.shape == (12, 3, 10, 10)
    assert sorted(raw.test_y.tolist()) == [0] * 4 + [1] * 4 + [2] * 4  # classes by folder name


def test_folder_sizes_need_image_size_and_run_end_to_end(cli, tmp_path):
    _image_tree(tmp_path / "m", "RGB", sizes=[(10, 10), (12, 9)], per_class=80)
    code, _, err = cli(*RUN, "--net_dataset", "folder", "--data_dir", str(tmp_path / "m"),
                       "--output_dir", str(tmp_path / "o"))
    assert code == 2 and "pass --net_image_size N" in err and err.count("\n") == 1
    code, out, err = cli(*RUN, "--net_dataset", "folder", "--data_dir", str(tmp_path / "m"),
                         "--net_image_size", "8", "--net_arch", "conv2", "--net_val_size", "60",
                         "--allow_untrained",  # the pipeline, not learning, is tested here
                         "--output_dir", str(tmp_path / "o"))
    assert code == 0, err
    with pytest.raises(UsageError, match="--net_image_size applies to --net_dataset folder"):
        load_raw("digits", None, image_size=8)


def test_folder_errors(tmp_path):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(UsageError, match="a class folder with no images"):
        load_raw("folder", str(tmp_path / "empty"))
    (tmp_path / "flat").mkdir()
    with pytest.raises(UsageError, match="no images in class subfolders"):
        load_raw("folder", str(tmp_path / "flat"))
    with pytest.raises(UsageError, match="no such folder"):
        load_raw("folder", str(tmp_path / "nope"))
    (tmp_path / "bad" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "a" / "x.png").write_bytes(b"not a png")
    (tmp_path / "bad" / "b").mkdir(parents=True)
    (tmp_path / "bad" / "b" / "y.png").write_bytes(b"not a png")
    with pytest.raises(UsageError, match="not a readable image"):
        load_raw("folder", str(tmp_path / "bad"))


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


def test_an_npz_holding_objects_is_one_line(cli, tmp_path):
    f = tmp_path / "d.npz"
    np.savez(f, x_train=np.array([[1], "a"] * 50, dtype=object), y_train=np.arange(100) % 2)
    code, _, err = cli("run", "--net_dataset", "npz", "--data_dir", str(f), "--quiet",
                       "--output_dir", str(tmp_path / "o"))
    assert one_line_error(code, err) and "Python objects" in err


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


@pytest.mark.usefixtures("no_hang")
def test_an_image_folder_with_a_pipe_for_an_image_is_one_line(tmp_path):
    from PIL import Image

    from incop.data.datasets import load_raw

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.new("L", (8, 8)).save(tmp_path / c / "0.png")
    fifo(tmp_path / "b" / "1.png")
    with pytest.raises(UsageError, match=r"1\.png is a named pipe"):
        load_raw("folder", str(tmp_path))
