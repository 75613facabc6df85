"""What makes a run the run it is: the part of its configuration that changes results (hashed
into its run id and compared on resume), the checksum that tells a hand-edited config.json from
the one the run wrote, and fingerprints of a user's own model and data (so a run directory only
ever returns results for the model and data that made them)."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch import nn

from ..base.bounded import load_json
from ..base.errors import UsageError
from ..data.batches import DataSource, is_tensor_pair
from ..data.checks import _first_batch


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def model_fingerprint(model: nn.Module) -> str:
    """Module types (and their forward code, so ``torch.relu`` vs ``torch.tanh`` in a custom
    class differ), parameter and buffer names, shapes and dtypes, and the initial values."""
    h = hashlib.sha256()
    for name, module in model.named_modules():
        cls = type(module)
        code = getattr(cls.forward, "__code__", None)
        h.update(f"{name}:{cls.__module__}.{cls.__qualname__};".encode())
        if code is not None:
            h.update(code.co_code + repr(code.co_names).encode())
    for name, t in model.state_dict().items():
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()[:16]


def data_fingerprint(*sources: Optional[DataSource]) -> str:
    """Sizes, dtypes, every label and a strided sample of the inputs of tensor pairs; the
    length and first batch of loaders. Cheap, and different for different data."""
    h = hashlib.sha256()
    for source in sources:
        if source is None:
            h.update(b"none;")
        elif is_tensor_pair(source):
            x, y = source
            h.update(f"{tuple(x.shape)}:{x.dtype}:{tuple(y.shape)}:{y.dtype};".encode())
            step = max(1, len(x) // 64)
            h.update(_tensor_bytes(x[::step]) + _tensor_bytes(y))
        else:
            xb, yb = _first_batch(source)
            size = len(getattr(source, "dataset", ())) if hasattr(source, "dataset") else -1
            h.update(f"loader:{size};".encode() + _tensor_bytes(xb) + _tensor_bytes(yb))
    return h.hexdigest()[:16]


# The settings every run has had since incop's first release (the seed's flags): always hashed.
# Every later setting is left out of hashes and resume checks while at its baseline, the value
# runs had before it existed (``Baselines``: RunConfig's field metadata says it), so adding an
# option never changes an existing run's id or stops it resuming. Nothing is ever added here.
FIRST_SETTINGS = frozenset({
    ("data", "dataset"), ("data", "data_dir"), ("data", "val_size"), ("data", "batch_size"),
    ("model", "arch"), ("model", "pretrained"),
    ("train", "lr"), ("train", "epochs"), ("train", "warmup"), ("train", "momentum"),
    ("train", "weight_decay"),
    ("prune", "method"), ("prune", "p"), ("prune", "q"), ("prune", "ratio"), ("prune", "eta"),
    ("prune", "gamma"), ("prune", "beta"), ("prune", "epsilon"), ("prune", "rule"),
    ("prune", "criterion"), ("prune", "flow_probe_size"), ("prune", "flow_stat"),
    ("prune", "stop_on_recovery"),
    ("experiment", "imp_total_iter"), ("experiment", "num_trial"), ("experiment", "seed"),
    ("experiment", "device"), ("experiment", "gpu_id"), ("experiment", "exper_type"),
    ("experiment", "download"), ("experiment", "tensorboard"),
    ("experiment", "allow_untrained"), ("experiment", "output_dir"),
    ("experiment", "run_name")})

Baselines = Mapping[Tuple[str, str], Any]  # (section, field) -> the value that is not hashed

# What names a run without changing what it computes: the recipe (its settings are hashed).
NAMES_NOT_SETTINGS = (("prune", "recipe"),)


# Options that were integers before they took fractions: 20.0 hashes as 20 did.
WIDENED_TO_FLOAT = (("train", "epochs"),)


def _without_unset_additions(d: Dict[str, Any], baselines: Baselines) -> Dict[str, Any]:
    d = {s: dict(v) if isinstance(v, dict) else v for s, v in d.items()}
    for (section, name), baseline in baselines.items():
        if d.get(section, {}).get(name, baseline) == baseline:
            d.get(section, {}).pop(name, None)
    for section, name in NAMES_NOT_SETTINGS:
        d.get(section, {}).pop(name, None)
    for section, name in WIDENED_TO_FLOAT:
        value = d.get(section, {}).get(name)
        if isinstance(value, float) and value.is_integer():
            d[section][name] = int(value)
    return d


def comparable(cfg: Dict[str, Any], baselines: Baselines) -> Dict[str, Any]:
    """The part of a config that must match for a run to be resumed (not where it is written,
    nor on which device); ``baselines``: the later settings' (``RunConfig.baselines``)."""
    cfg = _without_unset_additions(cfg, baselines)
    exp = {k: v for k, v in cfg["experiment"].items() if k not in WHERE_NOT_WHAT}
    return {**cfg, "experiment": exp}


WHERE_NOT_WHAT = ("output_dir", "run_name", "device", "gpu_id", "threads", "allow_untrained",
                  "download", "tensorboard", "wandb", "wandb_project")


def _checksum(cfg: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()


def checked_config(cfg: Dict[str, Any], versions: Dict[str, str]) -> Dict[str, Any]:
    """What config.json holds: the configuration, the versions, and a checksum that tells a
    hand-edited copy from the one the run wrote."""
    return {**cfg, "versions": versions, "checksum": _checksum(cfg)}


def read_checked_config(path) -> Optional[Dict[str, Any]]:
    """The configuration in a config.json, or None when it is missing, not JSON, or edited
    (its checksum does not match). Files written before checksums are taken as they are."""
    try:  # a regular file (a pipe would block), of a bounded size and depth, never a link
        saved = load_json(path)
    except (OSError, ValueError, UsageError):
        return None
    if not isinstance(saved, dict):
        return None
    checksum = saved.pop("checksum", None)
    saved.pop("versions", None)
    if checksum is not None and checksum != _checksum(saved):
        return None
    return saved


# What a dense warm-up's weights depend on besides the data and the model: the training settings
# it runs with (--net_train_epochs, the pruning and stopping settings do not touch it).
WARMUP_TRAIN_FIELDS = ("lr", "optimizer", "warmup", "momentum", "weight_decay", "lr_schedule",
                       "lr_warmup_iters", "lr_milestones", "lr_gamma", "rewind_to", "precision",
                       "channels_last", "augment", "ticket_rewind")


def warmup_identity(cfg: Dict[str, Any], baselines: Baselines, seed: int,
                    versions: Dict[str, str], device: str, threads: int) -> Dict[str, Any]:
    """Everything that determines a trial's dense warm-up and rewind point, as plain values:
    two runs with the same identity train bit-identical warm-ups, so one can be shared. The
    device and the thread count are in it because they change floating-point sums."""
    cfg = _without_unset_additions(cfg, baselines)
    train = {k: v for k, v in cfg["train"].items() if k in WARMUP_TRAIN_FIELDS}
    return {"data": cfg["data"], "model": cfg["model"], "train": train,
            "batch_size": cfg["data"].get("batch_size"), "seed": seed,
            "versions": {k: str(v) for k, v in versions.items()},
            "device": device, "threads": threads}


def identity_key(identity: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
