"""CIFAR batches are pickles (incop.data.safe_pickle): nothing in one runs code, every pickle
protocol of a real batch still reads, and labels that are not integers are one line."""
import pickle
import subprocess

import numpy as np
import pytest
import torch

from conftest import Evil, evil_cifar, make_cifar, one_line_error


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
    folder = evil_cifar(tmp_path / "cifar-10-batches-py", marker, payloads[payload])
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
