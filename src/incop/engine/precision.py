"""How a run computes: numeric precision (fp32; bf16 or fp16 autocast, fp16 with a gradient
scaler) and channels-last memory for convolutional models (CPU threads: incop.base.machine).

Only training and evaluation forward passes run in the chosen precision. Weights, masks and
optimizer state stay fp32 (autocast casts per operation), so pruned weights stay exact zeros;
the PQ index, the pruning order, the flows and every recorded metric are computed in fp32 or
float64 whatever the precision."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from ..base.errors import UsageError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


@dataclass
class Compute:
    """Precision and memory format of one run's training and evaluation."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision}: choose fp32, bf16 or fp16")
        if self.precision == "fp16" and self.device.type != "cuda":
            raise UsageError("--precision fp16 needs a CUDA device (CPUs have no fast fp16 "
                             "training); use --precision bf16 on CPU")
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None

    @classmethod
    def for_model(cls, device: torch.device, precision: str, channels_last: str,
                  model: nn.Module) -> "Compute":
        """``channels_last``: ``on``, ``off``, or ``auto`` (on for 2-D convolutional models in
        bf16/fp16, where it measured faster; fp32 stays as earlier releases computed it)."""
        conv = has_conv2d(model)
        use = {"on": conv, "off": False, "auto": conv and precision != "fp32"}[channels_last]
        return cls(device, precision, use)

    def autocast(self):
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                          mask_grads: Callable[[], None]) -> None:
        """Backward, pruned gradients zeroed, optimizer step (through the fp16 scaler)."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            mask_grads()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        mask_grads()
        self.scaler.step(optimizer)
        self.scaler.update()


FP32 = Compute()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively. CPUs without AVX-512 BF16 or AMX emulate it:
    on an AVX2 machine bf16 autocast steps measured 3.4x (LeNet-300-100) to 13x (conv4)
    slower than fp32 (docs/training.md, "Speed")."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def precision_warning(device: torch.device, precision: str) -> Optional[str]:
    if precision == "bf16" and not native_bf16(device):
        capability = torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else "this GPU"
        return (f"warning: --precision bf16 on a device without native bf16 ({capability}): it is "
                f"emulated and slower than fp32 here; use fp32")
    return None
