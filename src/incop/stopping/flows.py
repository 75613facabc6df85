"""Flow monitors: information flow (correlation of consecutive layers' outputs) and gradient flow
(per-layer mean |dL/dW| from a real backward pass), both on a fixed probe set.

Measuring never changes the model: it runs in eval mode (no batch-norm statistic updates, no
dropout), under ``no_grad`` for activations, and with ``torch.autograd.grad`` for gradients so the
parameters' ``.grad`` fields and the optimizer state are untouched.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ..data.batches import eval_batch_size
from ..base.errors import UsageError
from ..pruning.masks import PRUNABLE_TYPES, Masks, prunable_parameters

SHORTCUT_NAMES = ("shortcut", "downsample")


def unwrap(model: nn.Module) -> nn.Module:
    """The module a ``torch.compile``d model wraps (hooks and names live there), else ``model``."""
    return getattr(model, "_orig_mod", model) if type(model).__name__ == "OptimizedModule" else model


def monitored_layers(model: nn.Module, sample: torch.Tensor) -> List[Tuple[str, nn.Module]]:
    """Conv/Linear modules in forward-execution order, residual shortcut projections excluded.

    The order is read off one forward pass of ``sample`` (a single input is enough). Modules a
    forward pass never calls (an attention layer's ``out_proj``) are not on the path."""
    model = unwrap(model)
    candidates = {m: n for n, m in model.named_modules()
                  if isinstance(m, PRUNABLE_TYPES)
                  and not any(s in n.split(".") for s in SHORTCUT_NAMES)}
    order: List[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: order.append(mod)) for m in candidates]
    try:
        with _eval_mode(model), torch.no_grad():
            model(sample)
    finally:
        for h in hooks:
            h.remove()
    seen, layers = set(), []
    for m in order:
        if m not in seen:
            seen.add(m)
            layers.append((candidates[m], m))
    return layers


def _resolve(model: nn.Module, names: Sequence[str]) -> List[Tuple[str, nn.Module]]:
    """Look layers up by name in ``model``, so a monitor built on one model measures any copy."""
    model = unwrap(model)
    return [(n, model.get_submodule(n)) for n in names]


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _pooled(module: nn.Module, output: torch.Tensor) -> torch.Tensor:
    """A module output as (N, units): the units of a convolution are its channels (dim 1), those
    of a Linear layer its last dimension; every other dimension (space, sequence positions) is
    averaged (docs/methods.md, "Information flow")."""
    if output.dim() <= 2:
        return output.reshape(output.shape[0], -1)
    if isinstance(module, nn.modules.conv._ConvNd):
        return output.flatten(2).mean(2)
    return output.reshape(output.shape[0], -1, output.shape[-1]).mean(1)


def _batches(x: torch.Tensor, batch_size: Optional[int]) -> Iterator[torch.Tensor]:
    batch_size = batch_size or eval_batch_size(x.device)
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size]


class _Capture:
    """Forward hooks that keep each monitored layer's pooled output of the latest batch."""

    def __init__(self, layers: Sequence[Tuple[str, nn.Module]]) -> None:
        self.outputs: List[Optional[torch.Tensor]] = [None] * len(layers)
        self._hooks = [m.register_forward_hook(self._hook(i)) for i, (_, m) in enumerate(layers)]

    def _hook(self, i: int):
        def keep(module, inputs, output):
            self.outputs[i] = _pooled(module, output.detach())
        return keep

    def close(self) -> None:
        for h in self._hooks:
            h.remove()


class _StreamingCorrelation:
    """Accumulates, in float64, what the Pearson correlation of consecutive layers needs."""

    def __init__(self) -> None:
        self.n = 0
        self.sums: List[torch.Tensor] = []
        self.squares: List[torch.Tensor] = []
        self.cross: List[torch.Tensor] = []

    def add(self, acts: Sequence[torch.Tensor]) -> None:
        acts = [a.double() for a in acts]
        if not self.sums:
            self.sums = [torch.zeros(a.shape[1], dtype=torch.float64, device=a.device) for a in acts]
            self.squares = [torch.zeros_like(s) for s in self.sums]
            self.cross = [torch.zeros(a.shape[1], b.shape[1], dtype=torch.float64, device=a.device)
                          for a, b in zip(acts, acts[1:])]
        self.n += acts[0].shape[0]
        for i, a in enumerate(acts):
            self.sums[i] += a.sum(0)
            self.squares[i] += (a * a).sum(0)
        for i, (a, b) in enumerate(zip(acts, acts[1:])):
            self.cross[i] += a.T @ b

    def matrices(self, std_floor: float = 1e-6) -> List[torch.Tensor]:
        means = [s / self.n for s in self.sums]
        stds = [(sq / self.n - m * m).clamp_min(0).sqrt().clamp_min(std_floor)
                for sq, m in zip(self.squares, means)]
        return [((c / self.n - torch.outer(means[i], means[i + 1]))
                 / torch.outer(stds[i], stds[i + 1])).cpu()
                for i, c in enumerate(self.cross)]


def correlation_matrix(a: torch.Tensor, b: torch.Tensor, std_floor: float = 1e-6) -> torch.Tensor:
    """``C[i, j] = corr(a[:, i], b[:, j])`` with population statistics (a direct computation)."""
    a, b = a.double(), b.double()
    a = a - a.mean(0)
    b = b - b.mean(0)
    sa = a.pow(2).mean(0).sqrt().clamp_min(std_floor)
    sb = b.pow(2).mean(0).sqrt().clamp_min(std_floor)
    return (a.T @ b / a.shape[0]) / torch.outer(sa, sb)


@dataclass
class InformationFlowSnapshot:
    """The correlation matrices of consecutive layers and their summary vector ``rho``."""

    matrices: List[torch.Tensor]
    rho: torch.Tensor


class InformationFlow:
    """Measures the information flow of a model on a probe set in one streaming pass.

    ``stat`` chooses the summary: ``mean`` (signed mean of each matrix, the paper's), ``abs_mean``
    (mean of |C|), or ``fro`` (distance = relative Frobenius distance of the matrices)."""

    STATS = ("mean", "abs_mean", "fro")

    def __init__(self, model: nn.Module, probe_x: torch.Tensor, stat: str = "mean",
                 batch_size: Optional[int] = None) -> None:
        if stat not in self.STATS:
            raise UsageError(f"--flow_stat {stat}: choose one of {', '.join(self.STATS)}")
        self.probe_x, self.stat, self.batch_size = probe_x, stat, batch_size
        self.layer_names = [n for n, _ in monitored_layers(model, probe_x[:1])]
        if len(self.layer_names) < 2:
            raise UsageError(f"information flow needs at least two Conv/Linear layers on the "
                             f"model's forward path and this model has {len(self.layer_names)}; "
                             f"use a method without flows (sap or lth)")

    @torch.no_grad()
    def measure(self, model: nn.Module) -> InformationFlowSnapshot:
        capture, acc = _Capture(_resolve(model, self.layer_names)), _StreamingCorrelation()
        model = unwrap(model)
        try:
            with _eval_mode(model):
                for xb in _batches(self.probe_x, self.batch_size):
                    model(xb)
                    acc.add(capture.outputs)
        finally:
            capture.close()
        mats = acc.matrices()
        summary = (lambda c: c.abs().mean()) if self.stat == "abs_mean" else (lambda c: c.mean())
        return InformationFlowSnapshot(mats, torch.stack([summary(c) for c in mats]))

    def distance(self, now: InformationFlowSnapshot, reference: InformationFlowSnapshot) -> float:
        if self.stat == "fro":
            diff = sum(float((a - b).pow(2).sum()) for a, b in zip(now.matrices, reference.matrices))
            ref = sum(float(b.pow(2).sum()) for b in reference.matrices)
            return (diff / max(ref, 1e-30)) ** 0.5
        return float(torch.linalg.vector_norm(now.rho - reference.rho))


class GradientFlow:
    """Per prunable layer, ``mean |dL/dW|`` over surviving weights, where L is the mean
    cross-entropy on the probe set, from a real backward pass."""

    def __init__(self, model: nn.Module, probe_x: torch.Tensor, probe_y: torch.Tensor,
                 batch_size: Optional[int] = None, names: Optional[Sequence[str]] = None) -> None:
        """``names``: the weights to watch (default: the prunable ones)."""
        self.probe_x, self.probe_y = probe_x, probe_y
        self.batch_size = batch_size or eval_batch_size(probe_x.device)
        self.names = list(names if names is not None else prunable_parameters(unwrap(model)))
        if len(self.names) < 2:
            raise UsageError(f"gradient flow needs at least two pruned weights and this model has "
                             f"{len(self.names)}; use a method without flows (sap or lth)")

    def measure(self, model: nn.Module, masks: Optional[Masks] = None) -> torch.Tensor:
        model = unwrap(model)
        params = dict(model.named_parameters())
        weights = [params[n] for n in self.names]
        grads = [torch.zeros_like(w, dtype=torch.float64) for w in weights]
        n = len(self.probe_y)
        with _eval_mode(model), torch.enable_grad():
            for i in range(0, n, self.batch_size):
                xb, yb = self.probe_x[i:i + self.batch_size], self.probe_y[i:i + self.batch_size]
                loss = F.cross_entropy(model(xb), yb, reduction="sum") / n
                for g, gb in zip(grads, torch.autograd.grad(loss, weights)):
                    g += gb.double()
        flow = []
        for name, g in zip(self.names, grads):
            alive = masks[name].bool() if masks is not None else torch.ones_like(g, dtype=torch.bool)
            flow.append(g.abs()[alive].mean() if alive.any() else g.new_zeros(()))
        return torch.stack(flow).cpu()

    @staticmethod
    def distance(now: torch.Tensor, reference: torch.Tensor) -> float:
        return float(torch.linalg.vector_norm(now - reference)
                     / torch.linalg.vector_norm(reference).clamp_min(1e-30))


@torch.no_grad()
def layer_activations(model: nn.Module, layers: Sequence[str], probe_x: torch.Tensor,
                      batch_size: Optional[int] = None) -> List[torch.Tensor]:
    """Pooled (N, units) outputs of the named layers on the probe set, in float32 on the CPU."""
    capture = _Capture(_resolve(model, layers))
    model = unwrap(model)
    chunks: List[List[torch.Tensor]] = [[] for _ in layers]
    try:
        with _eval_mode(model):
            for xb in _batches(probe_x, batch_size):
                model(xb)
                for i, out in enumerate(capture.outputs):
                    chunks[i].append(out.float().cpu())
    finally:
        capture.close()
    return [torch.cat(c) for c in chunks]


def activation_similarity(reference: Sequence[torch.Tensor],
                          current: Sequence[torch.Tensor]) -> List[float]:
    """Per layer, the mean over probe samples of the cosine similarity between the reference
    network's and the current network's pooled activations."""
    return [float(F.cosine_similarity(r.double(), c.double(), dim=1, eps=1e-12).mean())
            for r, c in zip(reference, current)]

