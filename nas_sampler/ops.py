"""The registry of operations: one table of constructors ``(C_in, C_out, stride) -> nn.Module``.

Built-ins cover the original design (separable convolutions, gated conv-linear-conv, skip,
pooling) and NAS-Bench-201 (none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3).
Every ReLU is an ``nn.ReLU`` module (never in-place) so the heuristics can hook activations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nas_sampler.errors import UnknownOperationError
from nas_sampler.genotype import OP_NAME

OpFactory = Callable[[int, int, int], nn.Module]
_REGISTRY: dict[str, OpFactory] = {}


def register_op(name: str, factory: OpFactory | None = None, *, overwrite: bool = False):
    """Register ``factory(C_in, C_out, stride)`` under ``name``; usable as a decorator.

    The module must map ``(N, C_in, H, W)`` to ``(N, C_out, ceil(H / stride), ceil(W / stride))``.
    """
    if not isinstance(name, str) or not OP_NAME.match(name):
        raise ValueError(f"invalid operation name {name!r}: use letters, digits and '_' (not starting with a digit)")

    def _register(f: OpFactory) -> OpFactory:
        if not callable(f):
            raise TypeError(f"operation {name!r}: factory must be callable, got {f!r}")
        if name in _REGISTRY and not overwrite and _REGISTRY[name] is not f:
            raise ValueError(f"operation {name!r} is already registered; pass overwrite=True to replace it")
        _REGISTRY[name] = f
        return f

    return _register if factory is None else _register(factory)


def unregister_op(name: str) -> None:
    """Remove a user operation (mainly for tests)."""
    _REGISTRY.pop(name, None)


def known_ops() -> list[str]:
    return sorted(_REGISTRY)


def check_op(name: str) -> None:
    if name not in _REGISTRY:
        raise UnknownOperationError(
            f"unknown operation {name!r}; known operations: {', '.join(known_ops())}. "
            "Register new ones with nas_sampler.register_op(name, factory)"
        )


def build_op(name: str, C_in: int, C_out: int, stride: int = 1) -> nn.Module:
    check_op(name)
    return _REGISTRY[name](C_in, C_out, stride)


# ----------------------------------------------------------------------------- building blocks


class ReLUConvBN(nn.Module):
    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, dilation: int = 1):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel, stride, padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(C_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class SepConv(nn.Module):
    """ReLU, depthwise kxk, pointwise 1x1, BatchNorm."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel, stride, kernel // 2, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class GatedConv(nn.Module):
    """Conv-linear-conv: a pooled global descriptor, through a linear layer, gates a 1x1 conv.

    The descriptor is the input pooled to ``grid x grid`` (average or max), so the gate sees
    coarse spatial layout, not only channel means.
    """

    def __init__(self, C_in: int, C_out: int, stride: int, grid: int, pool: str):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.pool = nn.AdaptiveAvgPool2d(grid) if pool == "avg" else nn.AdaptiveMaxPool2d(grid)
        self.fc = nn.Linear(C_in * grid * grid, C_out)
        self.conv = nn.Conv2d(C_in, C_out, 1, stride, bias=False)
        self.bn = nn.BatchNorm2d(C_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        gate = torch.sigmoid(self.fc(self.pool(x).flatten(1)))
        return self.bn(self.conv(x) * gate[:, :, None, None])


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """NAS-Bench-201's ``none``: zeros of the output shape (the edge carries nothing)."""

    def __init__(self, C_out: int, stride: int):
        super().__init__()
        self.C_out, self.stride = C_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (x.shape[2] + self.stride - 1) // self.stride
        w = (x.shape[3] + self.stride - 1) // self.stride
        return x.new_zeros(x.shape[0], self.C_out, h, w)


class Pool(nn.Module):
    """3x3 pooling, preceded by a 1x1 projection when the channel count changes."""

    def __init__(self, C_in: int, C_out: int, stride: int, mode: str):
        super().__init__()
        self.preprocess = ReLUConvBN(C_in, C_out, 1, 1, 0) if C_in != C_out else None
        if mode == "avg":
            self.op = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        else:
            self.op = nn.MaxPool2d(3, stride=stride, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x if self.preprocess is None else self.preprocess(x))


def skip_connect(C_in: int, C_out: int, stride: int) -> nn.Module:
    """Identity, or a 1x1 projection with BatchNorm when channels or resolution change."""
    if stride == 1 and C_in == C_out:
        return Identity()
    return nn.Sequential(nn.Conv2d(C_in, C_out, 1, stride, bias=False), nn.BatchNorm2d(C_out))


# ----------------------------------------------------------------------------- the table

register_op("none", lambda C_in, C_out, stride: Zero(C_out, stride))
register_op("skip_connect", skip_connect)
register_op("nor_conv_1x1", lambda C_in, C_out, stride: ReLUConvBN(C_in, C_out, 1, stride, 0))
register_op("nor_conv_3x3", lambda C_in, C_out, stride: ReLUConvBN(C_in, C_out, 3, stride, 1))
register_op("avg_pool_3x3", lambda C_in, C_out, stride: Pool(C_in, C_out, stride, "avg"))
register_op("max_pool_3x3", lambda C_in, C_out, stride: Pool(C_in, C_out, stride, "max"))
register_op("sep_conv_3x3", lambda C_in, C_out, stride: SepConv(C_in, C_out, 3, stride))
register_op("sep_conv_5x5", lambda C_in, C_out, stride: SepConv(C_in, C_out, 5, stride))
register_op("sep_conv_7x7", lambda C_in, C_out, stride: SepConv(C_in, C_out, 7, stride))
register_op("clc_avg_3x3", lambda C_in, C_out, stride: GatedConv(C_in, C_out, stride, 3, "avg"))
register_op("clc_max_7x7", lambda C_in, C_out, stride: GatedConv(C_in, C_out, stride, 7, "max"))

CELL_OPS: tuple[str, ...] = (
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
    "clc_avg_3x3",
    "clc_max_7x7",
    "skip_connect",
    "avg_pool_3x3",
    "max_pool_3x3",
)
NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
