"""Your own data from the command line: ``--net_dataset npz --data_dir FILE.npz`` (arrays) and
``--net_dataset folder --data_dir PATH`` (an image-folder tree, read with Pillow). Without a
test split, a fixed 20% of the samples (seed 0, whatever the trial seed) is the test set, as for
the digits. Labels get the same checks as the API's data."""
from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..base.bounded import (COMPRESSION_RATIO, MIB, check_zip, memory_limit, open_regular,
                            short_repr)
from .datasets import DATASETS, RawDataset
from ..base.errors import UsageError
from .checks import check_labels

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
TEST_SHARE = 0.2


def _as_images(x: np.ndarray, name: str) -> torch.Tensor:
    """Samples of any shape as (N, C, H, W): vectors become 1 x 1 x D, grey images 1 x H x W,
    and channels-last images (N, H, W, 1 or 3) are transposed."""
    if x.ndim < 2:
        raise UsageError(f"{name}: x has shape {x.shape}; need one row per sample")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise UsageError(f"{name}: x holds {str(x.dtype)[:80]}, not numbers")
    if np.issubdtype(x.dtype, np.complexfloating):
        raise UsageError(f"{name}: x holds complex numbers ({x.dtype}); incop's networks take "
                         f"real numbers: store the real part, the magnitude, or both as channels")
    t = torch.from_numpy(np.ascontiguousarray(x))
    if x.ndim == 2:
        return t.reshape(len(x), 1, 1, x.shape[1])
    if x.ndim == 3:
        return t.unsqueeze(1)
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        return t.permute(0, 3, 1, 2).contiguous()
    return t.reshape(len(x), x.shape[1], x.shape[2], -1)


def _labels(y: np.ndarray, name: str) -> torch.Tensor:
    if not np.issubdtype(y.dtype, np.integer):
        raise UsageError(f"{name}: labels are {str(y.dtype)[:80]}; store integer class indices "
                         f"0..K-1")
    return torch.from_numpy(np.asarray(y).astype(np.int64).reshape(-1))


def _fixed_test_split(x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    n_test = max(1, int(round(TEST_SHARE * len(y))))
    return x[perm[n_test:]], y[perm[n_test:]], x[perm[:n_test]], y[perm[:n_test]]


def _finish(name: str, source: str, x, y, tx, ty, k: Optional[int] = None) -> RawDataset:
    """``k``: the class count, when the labels were checked before the fixed test split."""
    if k is None:
        k = check_labels(f"{name} training", y)
    check_labels(f"{name} test", ty, num_classes=k)
    return RawDataset(x, y, tx, ty, k, name, source)


@DATASETS.register("npz")
def load_npz(data_dir: Optional[str] = None) -> RawDataset:
    """x_train, y_train and optionally x_test, y_test from a NumPy .npz file."""
    if not data_dir:
        raise UsageError("--net_dataset npz reads --data_dir FILE.npz (arrays x_train, y_train, "
                         "and optionally x_test, y_test)")
    path = Path(data_dir).expanduser()
    arrays, held = _read_npz(path)
    missing = [k for k in ("x_train", "y_train") if k not in arrays]
    if missing:
        raise UsageError(f"{path}: missing {', '.join(missing)} (it has "
                         f"{short_repr(held[:20]) if held else 'no arrays'})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise UsageError(f"{path}: x_test and y_test go together; add the other or drop both")
    x, y = _as_images(arrays["x_train"], str(path)), _labels(arrays["y_train"], str(path))
    if len(x) != len(y):
        raise UsageError(f"{path}: {len(x)} training samples but {len(y)} labels")
    if "x_test" in arrays:
        tx, ty = _as_images(arrays["x_test"], str(path)), _labels(arrays["y_test"], str(path))
        if tx.shape[1:] != x.shape[1:]:
            raise UsageError(f"{path}: x_test samples are {tuple(tx.shape[1:])}, x_train's "
                             f"{tuple(x.shape[1:])}")
        if len(tx) != len(ty):
            raise UsageError(f"{path}: {len(tx)} test samples but {len(ty)} labels")
        return _finish("npz", str(path), x, y, tx, ty)
    k = check_labels("npz", y)  # all of them, before the fixed test split
    return _finish("npz", str(path), *_fixed_test_split(x, y), k=k)


NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}


def _read_npz(path: Path) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """The arrays incop uses from an .npz, each checked before it is read: numbers only (no
    pickled objects), and no more bytes than the file holds for it: its members stored as they
    are or deflated at most :data:`~incop.base.bounded.COMPRESSION_RATIO` times the file
    (:func:`~incop.base.bounded.check_zip`; zeros deflate a thousandfold, so an announced size
    within this machine's memory proves nothing). Returns them and the names of all the arrays
    the file holds."""
    try:  # a regular file: a named pipe would block, a device never end
        f = open_regular(path, follow_links=True)
    except FileNotFoundError:
        raise UsageError(f"--data_dir {path}: no such file") from None
    except OSError as e:
        raise UsageError(f"--data_dir {path}: cannot read it ({e.strerror or e})") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        try:
            archive = zipfile.ZipFile(f)
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
            raise UsageError(f"--data_dir {path}: not a readable .npz file "
                             f"({type(e).__name__})") from None
        with archive:
            check_zip(archive, size, f"--data_dir {path}")
            names = {i.filename[:-4]: i for i in archive.infolist() if i.filename.endswith(".npy")}
            out = {name: _read_npy_member(path, archive, names[name])
                   for name in NPZ_ARRAYS if name in names}
            return out, list(names)


def _read_npy_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    what = f"{path}: {info.filename[:-4]}"
    try:
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version not in _NPY_HEADERS:
                raise UsageError(f"{what} is in .npy format {version}, which incop does not "
                                 f"read; save it with numpy.savez")
            shape, fortran, dtype = _NPY_HEADERS[version](f)
            header = f.tell()
            if dtype.hasobject:
                raise UsageError(f"{what} holds Python objects ({str(dtype)[:80]}), which incop "
                                 f"never unpickles; store numbers (e.g. x.astype(np.float32))")
            need = math.prod(shape) * dtype.itemsize
            if need > info.file_size - header:
                raise UsageError(f"{what} announces shape {short_repr(shape)} ({_count(need)} "
                                 f"bytes) but the file holds {info.file_size - header:,}; the "
                                 f"file is corrupt")
            if need > memory_limit():
                raise UsageError(f"{what} needs {need / 2**30:.1f} GiB, more than the "
                                 f"{memory_limit() / 2**30:.1f} GiB this process may use")
        with archive.open(info) as f:
            array = np.lib.format.read_array(f, allow_pickle=False)
    except UsageError:
        raise
    except Exception as e:  # a damaged member raises many kinds of error
        raise UsageError(f"{what} cannot be read ({type(e).__name__}: {str(e)[:120]}); the "
                         f"file is corrupt") from None
    return array


def _count(n: int) -> str:
    """A count from a file's header: thousands separated, or its size when it is absurd."""
    return f"{n:,}" if n.bit_length() <= 64 else f"more than 2**{n.bit_length() - 1:,}"


def _image_files(folder: Path, empty_ok: bool = False) -> List[Tuple[Path, str]]:
    """(image, class) pairs of ``folder/<class>/...``. Classes are numbered by folder name, so a
    class folder without images would shift the numbers of the classes after it: refused, unless
    ``empty_ok`` (a test part may lack images of a class the training part has)."""
    files = []
    for c in sorted(folder.iterdir()):
        if not c.is_dir():
            continue
        images = [(p, c.name) for p in sorted(c.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not images and not empty_ok:
            raise UsageError(f"{c}: a class folder with no images (of "
                             f"{', '.join(sorted(IMAGE_SUFFIXES))}); classes are numbered by "
                             f"folder name, so add its images or remove the folder")
        files += images
    return files


def read_image_folder(root: Path, size: Optional[int]) -> RawDataset:
    """``root/<class>/*.png`` or ``root/train/<class>/...`` and ``root/test/<class>/...``."""
    try:
        from PIL import Image
    except ImportError:
        raise UsageError("--net_dataset folder reads images with Pillow, which is not "
                         "installed; pip install pillow") from None
    split = (root / "train").is_dir()
    parts = {"train": _image_files(root / "train" if split else root)}
    if split and (root / "test").is_dir():
        parts["test"] = _image_files(root / "test", empty_ok=True)
    if not parts["train"]:
        raise UsageError(f"{root}: no images in class subfolders (expected {root}/<class>/"
                         f"<image>, optionally under train/ and test/)")
    classes = sorted({c for p in parts.values() for _, c in p})
    if len(classes) < 2:
        raise UsageError(f"{root}: one class ({classes[0]}) only; a classifier needs two "
                         f"classes at least (one subfolder of images per class)")
    _check_image_sizes(root, [path for files in parts.values() for path, _ in files])
    images, grey, shapes = {}, True, set()
    for part, files in parts.items():
        loaded = []
        for path, _ in files:
            img = _open_image(Image, path, decode=True)[0]
            grey &= img.mode in ("1", "L", "I;16", "I", "F")
            loaded.append(img)
        images[part] = loaded
        shapes |= {im.size for im in loaded}
    if size is None and len(shapes) > 1:
        raise UsageError(f"{root}: images of {len(shapes)} sizes ({', '.join(f'{w}x{h}' for w, h in sorted(shapes)[:3])}"
                         f"...); pass --net_image_size N to resize them all to N x N")
    mode = "L" if grey else "RGB"
    out = {}
    for part, loaded in images.items():
        arrays = [np.asarray((im.convert(mode) if size is None else
                              im.convert(mode).resize((size, size), Image.BILINEAR)), np.uint8)
                  for im in loaded]
        x = torch.from_numpy(np.stack(arrays))
        x = x.unsqueeze(1) if grey else x.permute(0, 3, 1, 2).contiguous()
        y = torch.tensor([classes.index(c) for _, c in parts[part]])
        out[part] = (x, y)
    x, y = out["train"]
    tx, ty = out["test"] if "test" in out else (None, None)
    if tx is None:
        return _finish("folder", str(root), *_fixed_test_split(x, y), k=len(classes))
    return _finish("folder", str(root), x, y, tx, ty, k=len(classes))


# Decoded pixels may take this many times the bytes an image file stores (a photo's PNG or
# JPEG grows 2-20x; a blank one a thousandfold), beyond a floor that blank thumbnails fit in.
IMAGE_FLOOR = 64 * MIB
PIXEL_BYTES = 4  # Pillow holds a pixel in up to 4 bytes (RGB as RGBX, I and F as 32 bits)


def _open_image(Image, path: Path, decode: bool) -> Tuple[Any, int]:
    """The image at ``path`` (its header alone, or with ``decode`` its pixels too) and the bytes
    the file stores; refused in one line if it is not an image or not a regular file."""
    try:  # a regular file: a named pipe where an image belongs would block
        f = open_regular(path, follow_links=True)
    except OSError as e:
        raise UsageError(f"{path}: cannot read it ({e.strerror or e})") from None
    with f:
        try:
            img = Image.open(f)
            if decode:
                img.load()
            return img, os.fstat(f.fileno()).st_size
        except Image.DecompressionBombError:
            raise UsageError(f"{path}: the image has more than the {2 * Image.MAX_IMAGE_PIXELS:,} "
                             f"pixels Pillow decodes; resize it, or leave it out") from None
        except Exception as e:
            raise UsageError(f"{path}: not a readable image ({type(e).__name__}); replace or "
                             f"remove it") from None


def _check_image_sizes(root: Path, paths: List[Path]) -> None:
    """Refuse, before any pixel is decoded, images announcing more pixels than the bytes they
    store make plausible: a few megabytes of blank PNGs decode to gigabytes. Each image alone,
    then the folder, may grow :data:`~incop.base.bounded.COMPRESSION_RATIO` times what it
    stores, beyond :data:`IMAGE_FLOOR`."""
    from PIL import Image

    stored = decoded = 0
    for path in paths:
        img, size = _open_image(Image, path, decode=False)
        need = img.size[0] * img.size[1] * PIXEL_BYTES
        if need > COMPRESSION_RATIO * size + IMAGE_FLOOR:
            raise UsageError(f"{path}: a {img.size[0]} x {img.size[1]} image ({need:,} bytes "
                             f"decoded) stored in {size:,} bytes, more than {COMPRESSION_RATIO} "
                             f"times as much; incop refuses such images (a few kilobytes could "
                             f"fill the memory): crop or resize it, or leave it out")
        stored, decoded = stored + size, decoded + need
    limit = min(COMPRESSION_RATIO * stored + IMAGE_FLOOR, memory_limit())
    if decoded > limit:
        raise UsageError(f"{root}: its {len(paths):,} images decode to {decoded:,} bytes, more "
                         f"than {COMPRESSION_RATIO} times the {stored:,} they store or the "
                         f"memory this process may use; incop refuses such folders (a few "
                         f"megabytes of blank images could fill the memory): resize the images "
                         f"or use fewer")


@DATASETS.register("folder", "imagefolder")
def load_folder(data_dir: Optional[str] = None, image_size: Optional[int] = None) -> RawDataset:
    if not data_dir:
        raise UsageError("--net_dataset folder reads --data_dir PATH (one subfolder per class, "
                         "optionally under train/ and test/)")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise UsageError(f"--data_dir {root}: no such folder")
    return read_image_folder(root, image_size)
