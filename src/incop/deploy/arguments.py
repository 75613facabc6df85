"""The arguments of :func:`incop.deploy.sparse_inference.fastest_sparse_model`, checked before
anything is timed: a shape the model cannot take, masks of another model, a batch below 1 or
one that would not fit in memory, a model off the CPU. Each is one ``UsageError`` line naming
what the user gave (torch's own error would come from deep inside a timed layer)."""
from __future__ import annotations

import math
import operator
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from ..base.bounded import short_repr
from ..base.errors import UsageError
from ..base.machine import physical_memory

# A batch's inputs and activations must fit in memory many times over: a typo such as
# --batches 100000000 (or an input_shape with a digit too many) is refused instead of
# exhausting the machine.
MEMORY_SHARE = 0.25
# Timed runs per case (and warm-up runs): a median settles within a few dozen, and the cases
# multiply them, so a typo such as --repeats 1000000000000 is refused instead of never ending.
MAX_REPEATS = 10_000


def _dtype(model: nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters()), torch.float32)


_WHO = "fastest_sparse_model"
_SHAPE_HINT = "give the shape of one input without the batch dimension"


def check_arguments(model: nn.Module, masks: Mapping[str, torch.Tensor],
                     input_shape: Sequence[int], batch: int, repeats: int,
                     warmup: int) -> Tuple[int, ...]:
    """fastest_sparse_model's arguments checked without running anything; the input shape as
    a tuple of ints."""
    if not isinstance(model, nn.Module):
        raise UsageError(f"{_WHO}: model is a {type(model).__name__}, not a torch nn.Module; "
                         f"give the pruned network itself")
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        example = f" e.g. ({input_shape},)" if isinstance(input_shape, int) else ""
        raise UsageError(f"{_WHO}: input_shape {input_shape!r} is not a shape; give the shape "
                         f"of one input without the batch dimension as a tuple of sizes,"
                         f"{example or ' e.g. (1, 28, 28)'}")
    try:
        shape = tuple(operator.index(d) for d in input_shape)
    except TypeError:
        raise UsageError(f"{_WHO}: input_shape {tuple(input_shape)!r} holds something that is "
                         f"not a whole number; {_SHAPE_HINT} as a tuple of sizes, e.g. "
                         f"(1, 28, 28)") from None
    if any(d < 1 for d in shape):
        bad = next(d for d in shape if d < 1)
        raise UsageError(f"{_WHO}: input_shape {shape} has a dimension of {bad}; every size "
                         f"must be at least 1: {_SHAPE_HINT}, e.g. (1, 28, 28)")
    try:
        whole = operator.index(batch)
    except TypeError:
        whole = None
    if whole is None or whole < 1:
        raise UsageError(f"{_WHO}: batch {batch!r} (input_shape {shape}) must be a whole "
                         f"number of at least 1: the number of inputs timed together, "
                         f"e.g. batch=64")
    batch = whole
    if not (_whole(repeats, 1) and _whole(warmup, 0)):
        raise UsageError(f"{_WHO}: repeats {short_repr(repeats, 40)} and warmup "
                         f"{short_repr(warmup, 40)} must be whole numbers, repeats from 1 and "
                         f"warmup from 0, both to {MAX_REPEATS:,} (a median settles within a "
                         f"few dozen runs)")
    params = dict(model.named_parameters())
    off_cpu = next((t.device for t in [*params.values(), *model.buffers()]
                    if t.device.type != "cpu"), None)
    if off_cpu is not None:
        raise UsageError(f"{_WHO}: the model is on {off_cpu}, but the sparse forms are timed "
                         f"on this CPU; give a CPU copy, e.g. copy.deepcopy(model).cpu()")
    itemsize = torch.empty((), dtype=_dtype(model)).element_size()
    need = batch * math.prod(shape) * itemsize
    if need > MEMORY_SHARE * physical_memory():
        raise UsageError(f"{_WHO}: inputs of shape {(batch, *shape)} (input_shape {shape} at "
                         f"batch {batch}) take {need / 2**30:,.1f} GiB, over "
                         f"{MEMORY_SHARE:.0%} of this machine's memory; give a smaller batch, "
                         f"or the shape of one input without the batch dimension")
    _check_masks(model, params, masks)
    return shape


def _whole(value: object, low: int) -> bool:
    """``value`` is an int (not a bool) from ``low`` to MAX_REPEATS."""
    return isinstance(value, int) and not isinstance(value, bool) and \
        low <= value <= MAX_REPEATS


def _check_masks(model: nn.Module, params: Dict[str, nn.Parameter],
                 masks: Mapping[str, torch.Tensor]) -> None:
    """Masks that name parameters of ``model``, each a tensor of its parameter's shape."""
    fix = "give the masks made for this model (e.g. result.masks, or incop.Masks.ones_like(model))"
    if not isinstance(masks, Mapping):
        raise UsageError(f"{_WHO}: masks is a {type(masks).__name__}, not a mapping of "
                         f"parameter names to 0/1 tensors; {fix}")
    for name, mask in masks.items():
        if name not in params:
            weights = [n for n, p in params.items() if p.dim() > 1]
            listed = ", ".join(weights[:6]) + (", ..." if len(weights) > 6 else "")
            what = f" (a {_shape(mask)} mask)" if isinstance(mask, torch.Tensor) else ""
            raise UsageError(f"{_WHO}: masks name {name!r}{what}, which the "
                             f"{type(model).__name__} does not have (its weights: "
                             f"{listed or 'none'}); {fix}")
        want = tuple(params[name].shape)
        if not isinstance(mask, torch.Tensor):
            raise UsageError(f"{_WHO}: the mask of {name} is a {type(mask).__name__}, not a "
                             f"tensor; give a 0/1 tensor of the weight's shape {want}")
        if tuple(mask.shape) != want:
            raise UsageError(f"{_WHO}: the mask of {name} has shape {_shape(mask)} but the "
                             f"weight has shape {want}; {fix}")
        if mask.dtype != torch.bool and bool(((mask != 0) & (mask != 1)).any()):
            raise UsageError(f"{_WHO}: the mask of {name} holds values other than 0 and 1 "
                             f"(a mask keeps or removes a weight; it does not scale it); {fix}")


def _shape(t: torch.Tensor) -> Tuple[int, ...]:
    return tuple(t.shape)


def check_input_shape(model: nn.Module, shape: Tuple[int, ...], batch: int) -> None:
    """One plain forward pass of ``model`` (masked, in eval mode) on zeros of the timed shape;
    where it fails, one UsageError line: the shape, the layer that refused it, torch's reason,
    and a shape that runs where one close to the given one does."""
    running: List[Tuple[str, nn.Module, object]] = []  # the modules entered and not yet left

    def enter(name: str):
        def hook(module, args) -> None:
            running.append((name, module, args[0] if args else None))
        return hook

    def leave(module, args, out) -> None:
        running.pop()

    hooks = [h for name, module in model.named_modules()
             for h in (module.register_forward_pre_hook(enter(name)),
                       module.register_forward_hook(leave))]
    dtype = _dtype(model)
    try:
        with torch.no_grad():
            model(torch.zeros(batch, *shape, dtype=dtype))
        return
    except Exception as e:  # whatever the model raises on this shape
        reason = next((line.strip() for line in str(e).splitlines() if line.strip()),
                      type(e).__name__)
        failure = running[-1] if running else None
    finally:
        for h in hooks:
            h.remove()
    where = ""
    if failure is not None and failure[0]:  # a named layer, not the model's own forward
        name, module, inp = failure
        given = f", given {_shape(inp)}" if isinstance(inp, torch.Tensor) else ""
        where = f" at layer {name} ({type(module).__name__}{given})"
    example = _working_shape(model, shape, batch, dtype, failure)
    if len(reason) > 300:
        reason = reason[:297] + "..."
    raise UsageError(f"{_WHO}: the model cannot take inputs of shape {(batch, *shape)} "
                     f"(input_shape {shape} at batch {batch}){where}: {reason}; {_SHAPE_HINT}"
                     + (f", e.g. {example}" if example else ", as the model was built for"))


def _working_shape(model: nn.Module, shape: Tuple[int, ...], batch: int, dtype: torch.dtype,
                   failure) -> Optional[Tuple[int, ...]]:
    """A shape close to ``shape`` that the layer which refused it takes, where that layer got
    the model's input as given (or flattened), and only one the whole model runs on."""
    if failure is None or not isinstance(failure[2], torch.Tensor):
        return None
    _, module, inp = failure
    rest, size = tuple(inp.shape[1:]), math.prod(shape)
    if inp.dim() == 0 or inp.shape[0] != batch:
        return None
    candidates: List[Tuple[int, ...]] = []
    if isinstance(module, nn.Linear):
        f = module.in_features
        if rest == shape and shape:  # applied along the last dimension
            candidates.append((*shape[:-1], f))
        elif rest == (size,):  # flattened first: a shape of f values
            for i in reversed(range(len(shape))):
                others = size // shape[i]
                if f % others == 0:
                    candidates.append((*shape[:i], f // others, *shape[i + 1:]))
            if len(shape) == 3:
                for c in (1, 3):
                    s = math.isqrt(f // c)
                    if c * s * s == f:
                        candidates.append((c, s, s))
            candidates.append((f,))
    elif isinstance(module, nn.modules.conv._ConvNd):
        c, dims = module.in_channels, len(module.kernel_size)
        if rest == shape and len(shape) == dims:  # the channel dimension left out
            candidates.append((c, *shape))
        elif rest == shape and len(shape) == dims + 1:
            if shape[-1] == c:  # channels last
                candidates.append((c, *shape[:-1]))
            candidates.append((c, *shape[1:]))
    tried = set()
    for candidate in candidates:
        if candidate == shape or candidate in tried or len(tried) == 3:
            continue
        tried.add(candidate)
        try:
            with torch.no_grad():
                model(torch.zeros(1, *candidate, dtype=dtype))
        except Exception:
            continue
        return candidate
    return None
