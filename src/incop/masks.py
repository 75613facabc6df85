"""Masks over the prunable tensors of a model.

Prunable tensors are the weights (dim > 1) of Conv and Linear modules, keyed by their
``state_dict`` names (``features.0.weight``). A mask is a 0/1 tensor of the weight's shape, as in
``torch.nn.utils.prune`` (``weight_mask``). A pruned weight is kept exactly 0 during training by
zeroing its gradient before each optimizer step and multiplying by the mask after it.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Tuple

import torch
from torch import nn

PRUNABLE_TYPES = (nn.Linear, nn.modules.conv._ConvNd)


def prunable_parameters(model: nn.Module) -> Dict[str, nn.Parameter]:
    """Weights of Conv/Linear modules in registration order, keyed by state_dict name."""
    found: Dict[str, nn.Parameter] = {}
    for mod_name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, PRUNABLE_TYPES) and isinstance(weight, nn.Parameter) and weight.dim() > 1:
            found[f"{mod_name}.weight" if mod_name else "weight"] = weight
    return found


class Masks:
    """A set of 0/1 masks keyed by parameter name. Masks live on the weights' device and dtype."""

    def __init__(self, masks: Dict[str, torch.Tensor]) -> None:
        self._masks = dict(masks)
        self._bound: List[Tuple[torch.Tensor, torch.Tensor]] = []

    @classmethod
    def ones_like(cls, model: nn.Module) -> "Masks":
        return cls({n: torch.ones_like(p, memory_format=torch.contiguous_format)
                    for n, p in prunable_parameters(model).items()})

    # -- mapping behaviour
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._masks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def items(self):
        return self._masks.items()

    def names(self) -> List[str]:
        return list(self._masks)

    # -- applying to a model
    def bind(self, model: nn.Module) -> "Masks":
        """Cache (parameter, mask) pairs of ``model`` for the fast in-training calls below."""
        params = prunable_parameters(model)
        missing = [n for n in self._masks if n not in params]
        if missing:
            raise KeyError(f"masks name tensors the model does not have: {missing[:3]}")
        self._bound = []
        for n, m in self._masks.items():
            p = params[n]
            if m.device != p.device or m.dtype != p.dtype:
                self._masks[n] = m = m.to(device=p.device, dtype=p.dtype)
            self._bound.append((p, m))
        return self

    @torch.no_grad()
    def apply(self, model: nn.Module = None) -> None:
        """Multiply every masked weight by its mask (pruned weights become exactly 0)."""
        if model is not None:
            self.bind(model)
        if self._bound:
            torch._foreach_mul_([p for p, _ in self._bound], [m for _, m in self._bound])

    @torch.no_grad()
    def mask_grads(self) -> None:
        """Zero the gradients of pruned weights (call between backward() and step())."""
        pairs = [(p.grad, m) for p, m in self._bound if p.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])

    # -- counting
    def remaining(self) -> int:
        return int(sum(int(m.count_nonzero()) for m in self._masks.values()))

    def total(self) -> int:
        return int(sum(m.numel() for m in self._masks.values()))

    def remaining_fraction(self) -> float:
        return self.remaining() / max(self.total(), 1)

    def layer_table(self) -> List[Dict[str, object]]:
        """Per-layer rows: name, shape, total, remaining, remaining % (ShrinkBench style)."""
        rows = []
        for n, m in self._masks.items():
            rem = int(m.count_nonzero())
            rows.append({"layer": n, "shape": "x".join(map(str, m.shape)), "total": m.numel(),
                         "remaining": rem, "remaining_pct": 100.0 * rem / m.numel()})
        return rows

    # -- (de)serialisation
    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {n: m.detach().to("cpu", torch.bool) for n, m in self._masks.items()}

    @classmethod
    def from_state_dict(cls, state: Dict[str, torch.Tensor]) -> "Masks":
        return cls({n: m.float() for n, m in state.items()})

    def save(self, path) -> None:
        """Save as a state dict of bool tensors (``torch.load`` reads it back)."""
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path) -> "Masks":
        return cls.from_state_dict(torch.load(path, map_location="cpu", weights_only=True))

    def clone(self) -> "Masks":
        return Masks({n: m.clone() for n, m in self._masks.items()})
