"""Direct sparse convolution on a CPU (issue 29): a pruned Conv2d's nonzero weights applied to
shifted views of the zero-padded input by incop's C kernel (``incop_conv2d_*`` in csr_tiled.c),
with no unfolded input. Inference only: float32 or float64, any kernel size, stride, zero
padding, dilation and groups; optionally with the ReLU and 2x2 max-pooling that follow the
convolution computed as its output is stored (the epilogue).

The input is laid out in groups of ``group`` images interleaved, (n / group, C, Hp, Wp, group):
1 is the usual channels-first layout, whose vectors run along a map's rows; a larger group puts
that many images in each position's vector, which fills the registers where maps are small or
strided. Which is faster depends on the layer and the batch, so incop measures it."""
from __future__ import annotations

import ctypes
from typing import Dict, Optional, Tuple

import torch

from .csr_tiled import _SUFFIX, _load


def _pair(v) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class TiledConv:
    """``conv2d(x, weight, bias, stride, padding, dilation, groups)`` for a CPU ``weight``
    whose zeros are its pruned entries. Each output channel keeps its nonzeros as (input
    channel, kh, kw, value); their offsets into a padded image depend on the input's size and
    are computed, and checked against the buffer the C code reads, once per size."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], stride=1, padding=0,
                 dilation=1, groups: int = 1, images: int = 1, relu: bool = False,
                 pool: bool = False) -> None:
        lib, why = _load()
        if lib is None:
            raise RuntimeError(f"csr-tiled is unavailable: {why}")
        if weight.device.type != "cpu" or weight.dtype not in _SUFFIX or weight.dim() != 4:
            raise ValueError(f"sparse conv needs a CPU 4-d float32 or float64 weight; got "
                             f"{tuple(weight.shape)} {weight.dtype} on {weight.device}")
        self.K, cg, self.KH, self.KW = weight.shape
        self.stride, self.padding = _pair(stride), _pair(padding)
        self.dilation, self.groups = _pair(dilation), int(groups)
        if min(self.stride + self.dilation) < 1 or min(self.padding) < 0 or self.groups < 1 \
                or self.K % self.groups:
            raise ValueError("sparse conv: stride and dilation must be >= 1, padding >= 0, and "
                             "the output channels a multiple of groups")
        if int(images) < 1:
            raise ValueError(f"sparse conv: images interleaved must be at least 1, not {images}")
        self.images = int(images)  # interleaved in the input's layout
        # the epilogue: ReLU, and a 2x2 max-pooling of stride 2 (floor), as the output is stored
        self.relu, self.pool = int(bool(relu)), int(bool(pool))
        self.C, self.dtype = cg * self.groups, weight.dtype
        w = weight.detach().contiguous()
        k, ci, kh, kw = torch.nonzero(w, as_tuple=True)  # row-major: grouped by output channel
        self.val = w[k, ci, kh, kw].contiguous()
        self.ci = ci + (k // (self.K // self.groups)) * cg  # the input channel in the whole input
        self.kh, self.kw = kh, kw
        counts = torch.bincount(k, minlength=self.K)
        self.crow = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
        if bias is not None:
            bias = bias.detach().clone(memory_format=torch.contiguous_format)  # its own copy
            if tuple(bias.shape) != (self.K,) or bias.dtype != self.dtype:
                raise ValueError(f"sparse conv: the bias must be ({self.K},) {self.dtype}")
        self.bias = bias
        self._fn = getattr(lib, f"incop_conv2d_{_SUFFIX[self.dtype]}")
        self._offsets: Dict[Tuple[int, int], torch.Tensor] = {}
        self._plans: Dict[Tuple[int, int, int, int], tuple] = {}

    def geometry(self, H: int, W: int) -> Tuple[int, int, int, int]:
        """(Hp, Wp, OH, OW) for an input of H x W."""
        (ph, pw), (dh, dw), (sh, sw) = self.padding, self.dilation, self.stride
        Hp, Wp = H + 2 * ph, W + 2 * pw
        OH = (Hp - dh * (self.KH - 1) - 1) // sh + 1
        OW = (Wp - dw * (self.KW - 1) - 1) // sw + 1
        if OH < 1 or OW < 1 or self.pool and (OH < 2 or OW < 2):
            raise ValueError(f"sparse conv: a {H}x{W} input is smaller than the kernel"
                             + (" and the pooling" if self.pool else ""))
        return Hp, Wp, OH, OW

    def slack(self, Wp: int) -> int:
        """Positions of zeros after the last image (each ``images`` values): a stride-1 plane
        computed Wp wide reads this far past."""
        return (self.KW - 1) * self.dilation[1] + Wp

    def offsets(self, H: int, W: int) -> torch.Tensor:
        """Each nonzero's offset into one padded image, in positions, checked: no read the C code
        makes for any output position leaves the image and the slack after it (a group of
        interleaved images scales both by the same factor)."""
        if (H, W) not in self._offsets:
            Hp, Wp, OH, OW = self.geometry(H, W)
            dh, dw = self.dilation
            off = (self.ci * Hp * Wp + self.kh * dh * Wp + self.kw * dw).to(torch.int64).contiguous()
            sh, sw = self.stride
            reach = OH * Wp - 1 if (sh, sw) == (1, 1) else (OH - 1) * sh * Wp + (OW - 1) * sw
            if off.numel() and (int(off.min()) < 0 or
                                int(off.max()) + reach >= self.C * Hp * Wp + self.slack(Wp)):
                raise ValueError("sparse conv: an offset would read outside the input")
            self._offsets[H, W] = off
        return self._offsets[H, W]

    def plan(self, N: int, H: int, W: int, threads: int):
        """For an input of N x C x H x W on ``threads``: the dimensions the C code reads (a
        ctypes array), the values its packed input and scratch buffers take, where the scratch
        starts, the output's shape and the checked offsets; remembered per input size."""
        key = (N, H, W, threads)
        plan = self._plans.get(key)
        if plan is None:
            Hp, Wp, OH, OW = self.geometry(H, W)
            off = self.offsets(H, W)
            G, slack = self.images, self.slack(Wp)
            slots = min(-(-N // G), threads)  # the kernel packs a group of images into each
            packed = slots * (self.C * Hp * Wp + slack) * G
            scratch = threads * (OH * Wp + OH * OW) * G
            (ph, pw), (sh, sw) = self.padding, self.stride
            dims = (ctypes.c_int64 * 15)(N, self.C, H, W, self.K, G, ph, pw, Hp, Wp, OH, OW, sh,
                                         sw, slack)
            shape = (N, self.K, OH // 2, OW // 2) if self.pool else (N, self.K, OH, OW)
            if len(self._plans) > 64:  # input sizes seen: a handful in practice
                self._plans.clear()
            plan = self._plans[key] = (dims, packed + scratch, packed, shape, off)
        return plan

    def __call__(self, x: torch.Tensor, threads: int = 1) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.C or x.dtype != self.dtype or x.device.type != "cpu":
            raise ValueError(f"sparse conv: the input must be a CPU (n, {self.C}, h, w) "
                             f"{self.dtype} tensor; got {tuple(x.shape)} {x.dtype} on {x.device}")
        x = x.contiguous()  # the kernel reads it as (N, C, H, W) rows
        N, _, H, W = x.shape
        threads = max(1, int(threads))
        dims, buffer, scratch_at, shape, off = self.plan(N, H, W, threads)
        work = torch.empty(buffer, dtype=self.dtype)  # packed input, then scratch: one block
        y = torch.empty(shape, dtype=self.dtype)
        start = work.data_ptr()
        self._fn(dims, self.crow.data_ptr(), off.data_ptr(), self.val.data_ptr(),
                 None if self.bias is None else self.bias.data_ptr(), x.data_ptr(), start,
                 start + scratch_at * work.element_size(), y.data_ptr(), threads, self.relu,
                 self.pool)
        return y
