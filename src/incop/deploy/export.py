"""Export a pruned network: a plain state dict with zeros (dense), ``torch.nn.utils.prune``'s
``weight_orig`` / ``weight_mask`` (torch_prune), incop's compact file (sparse), or ONNX (checked
in onnxruntime against PyTorch's outputs)."""
from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ..base.errors import UsageError
from ..base.files import atomic_write_file
from ..pruning.masks import Masks
from ..runs.layout import check_masks_fit, existing_run, model_state, round_masks, saved_rounds
from ..runs.reading import run_config
from ..pruning.sparse_files import save_sparse
from ..pruning.torch_prune import to_torch_prune

FORMATS = ("dense", "torch_prune", "sparse", "onnx")
ONNX_TOLERANCE = 1e-4
# (C, H, W) and classes of the built-in datasets, to rebuild a run's model without its data
DATASET_SHAPES: Dict[str, Tuple[Tuple[int, int, int], int]] = {
    "MNIST": ((1, 28, 28), 10), "FashionMNIST": ((1, 28, 28), 10), "CIFAR10": ((3, 32, 32), 10),
    "CIFAR100": ((3, 32, 32), 100), "digits": ((1, 8, 8), 10)}


def export_model(model: nn.Module, masks, path, fmt: str,
                 example_input: Optional[torch.Tensor] = None) -> Dict[str, object]:
    """Write ``model`` (pruned weights are zeros) with its ``masks`` (an incop.Masks or a dict
    of 0/1 tensors) to ``path`` in ``fmt``; ONNX needs ``example_input`` (one batch). Returns
    what was written (and, for ONNX, the largest difference to PyTorch's outputs)."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    masks = Masks({n: masks[n].float() for n in masks})
    model = copy.deepcopy(model).cpu().eval()
    path = _output_path(path)
    if fmt == "onnx" and example_input is None:
        raise UsageError("ONNX export needs an example input (one batch of the model's inputs)")
    info: Dict[str, object] = {"path": str(path), "format": fmt}

    def write(tmp: Path) -> None:
        if fmt == "dense":
            torch.save(model.state_dict(), tmp)
        elif fmt == "torch_prune":
            torch.save(to_torch_prune(model, masks.bind(model)).state_dict(), tmp)
        elif fmt == "sparse":
            save_sparse(model, masks.state_dict(), tmp)
        else:
            info["max_abs_diff"] = _export_onnx(model, example_input.cpu(), tmp)

    _write_whole(path, write)
    return info


def _output_path(output) -> Path:
    """``--output`` as a file path: named, not a folder, in a folder that can be made."""
    if output is None or not str(output).strip():
        raise UsageError("--output is empty; name the file to write (e.g. model.pt)")
    path = Path(output).expanduser()
    if path.is_dir():
        raise UsageError(f"--output {path} is a folder; name a file inside it (e.g. "
                         f"{path / 'model.pt'})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--output {path}: cannot create {path.parent} ({e.strerror or e})") from None
    return path


def _write_whole(path: Path, write) -> None:
    """``write`` fills a temporary file beside ``path`` that replaces it once complete, so a
    failed export leaves neither half a file nor a stray temporary."""
    try:
        atomic_write_file(path, write)
    except OSError as e:
        raise UsageError(f"--output {path}: cannot write it ({e.strerror or e}); pick a folder "
                         f"you can write to") from None


def _onnx_modules():
    try:
        import onnx  # noqa: F401  (torch.onnx.export writes through it)
        import onnxruntime
    except Exception:
        raise UsageError("ONNX export needs onnx and onnxruntime, which are not importable; "
                         "install them with pip install 'incop[export]'") from None
    return onnxruntime


def _export_onnx(model: nn.Module, x: torch.Tensor, path: Path) -> float:
    """Export with a dynamic batch axis, run it in onnxruntime and compare with PyTorch."""
    ort = _onnx_modules()
    with warnings.catch_warnings():  # the TorchScript exporter warns that it is legacy
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["input"],
                          output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).float().numpy()
    diff = float(abs(got - want).max())
    if diff > ONNX_TOLERANCE:
        raise UsageError(f"{path}: onnxruntime's outputs differ from PyTorch's by {diff:.2e} "
                         f"(more than {ONNX_TOLERANCE:g}); the ONNX file is not faithful")
    return diff


def run_model(run: Path) -> Tuple[nn.Module, Tuple[int, ...]]:
    """The registry model a run directory was made with (weights not loaded) and its input
    shape (C, H, W)."""
    from ..models.architectures import build_model
    from ..models.pretrained import imagenet_model, wants_imagenet

    cfg = run_config(run)  # the checked copy: an edited config.json cannot relabel the run
    arch, dataset = cfg["model"]["arch"], cfg["data"]["dataset"]
    if dataset == "custom":
        raise UsageError(f"{run} was made through the Python API with its own model and data "
                         f"({arch}); export it there with incop.export_model(model, "
                         f"result.masks, path, format)")
    if dataset in DATASET_SHAPES:
        shape, classes = DATASET_SHAPES[dataset]
    else:  # npz or an image folder: the data says
        from ..data.datasets import load_raw

        raw = load_raw(dataset, cfg["data"].get("data_dir"), cfg["data"].get("image_size"))
        shape, classes = tuple(raw.train_x.shape[1:]), raw.num_classes
    if wants_imagenet(cfg["model"].get("pretrained")):
        return imagenet_model(arch, shape, classes), shape
    return build_model(arch, shape, classes, cfg["model"].get("init", "pytorch")), shape


def export_run(run: Path, output, fmt: str, trial: int = 0, round_index: Optional[int] = None,
               ticket: bool = False, batch: int = 2) -> Dict[str, object]:
    """Export trial ``trial`` of a run directory after round ``round_index`` (default: its last
    saved round) or its ticket; the model is rebuilt from the run's configuration."""
    run = existing_run(run)
    rounds = saved_rounds(run, trial)
    if not rounds:
        raise UsageError(f"{run}: trial {trial} has no saved round")
    k = rounds[-1] if round_index is None else round_index
    model, shape = run_model(run)
    state = model_state(run, trial, k, ticket=ticket)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise UsageError(f"{run}: the saved weights do not fit the rebuilt {type(model).__name__} "
                         f"({str(e).splitlines()[0][:200]})") from None
    masks = round_masks(run, trial, rounds[-1] if ticket else k)
    check_masks_fit(masks, model, run / "masks")
    example = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))
    info = export_model(model, masks, output, fmt, example)
    return {**info, "trial": trial, "round": None if ticket else k, "ticket": ticket,
            "remaining_pct": 100.0 * Masks(masks).remaining_fraction()}

