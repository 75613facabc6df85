"""Where and how reproducibly a run computes: the device, and the seeds of every training run
(each round reseeds, so a round depends only on its starting state and resumes bit-identically)."""
from __future__ import annotations

import random
from typing import Optional

import numpy as np
import torch

from ..base.errors import UsageError


def resolve_device(device: str, gpu_id: Optional[int] = None) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without it is a usage error."""
    if device == "auto":
        device = "cuda" if (torch.cuda.is_available() or gpu_id is not None) else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda (or --exper_gpu_id) asked for a GPU, but torch sees no "
                             "CUDA device; use --device cpu or auto")
        index = gpu_id or 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"--exper_gpu_id {index}: only {torch.cuda.device_count()} CUDA "
                             f"device(s) present")
        return torch.device("cuda", index)
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def round_seed(seed: int, round_index: int) -> int:
    """Each round reseeds shuffling and dropout, so a round depends only on its starting state."""
    return seed * 100_003 + round_index + 1


WARMUP_ROUND, TICKET_ROUND = -1, -2  # their own seeds, apart from the rounds'


def versions() -> dict:
    """The software a run was computed with (stored in its config.json)."""
    import platform

    from ..base.version import __version__
    return {"incop": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}
