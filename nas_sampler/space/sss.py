"""NATS-Bench's size search space, :class:`SSSSpace`: one fixed network, five searched layer widths.

The network is the NAS-Bench-201 skeleton with one cell per stage (cell, reduction, cell, reduction,
cell) and the cell fixed to the topology space's best one; what varies is each layer's channel count,
so the space has 8^5 = 32,768 networks (Dong et al., 2021). A genotype is a chain of widths
(:meth:`Genotype.of_widths`), written as the benchmark writes it, e.g. ``64:64:56:64:24``, so the
benchmark's ground truth (:func:`read_ground_truth`) is looked up by the genotype string itself.
The genetic operators are the cell space's channel operators (:mod:`nas_sampler.space.channel_ops`):
each layer is one gene with a channel count.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from torch import nn

from nas_sampler.errors import ConfigError, DataError, GenotypeError
from nas_sampler.genotype import Genotype
from nas_sampler.ops import Identity, ReLUConvBN
from nas_sampler.phenotype import ResNetBasicBlock, SkeletonNetwork
from nas_sampler.space.base import Crossover, Mutation, SearchSpace, register_space
from nas_sampler.space.channel_ops import grow_channels, minimum, resize_channels, shrink_channels, snap, uniform

CHANNEL_CHOICES: tuple[int, ...] = (8, 16, 24, 32, 40, 48, 56, 64)  # the benchmark's
LAYERS: tuple[str, ...] = ("cell", "reduction", "cell", "reduction", "cell")  # what each width is the width of
CELL = Genotype.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
"""The fixed cell: NAS-Bench-201's best topology, the one every size-space network uses."""
BEST = "64:64:56:64:24"  # the benchmark's best CIFAR-10 network: the example in messages


# ---- the cell's entries: (C_in, C_out, stride) -> module, and their closed-form parameter counts ------


class _Op(NamedTuple):
    build: Callable[[int, int, int], nn.Module]
    params: Callable[[int, int], int]  # (C_in, C_out) -> trainable parameters, BatchNorm's included


def _conv_3x3(C_in: int, C_out: int, stride: int) -> nn.Module:
    return ReLUConvBN(C_in, C_out, 3, stride, 1)


def _skip(C_in: int, C_out: int, stride: int) -> nn.Module:
    """NATS-Bench's skip: the identity, or where the width changes its ``FactorizedReduce`` at stride 1,
    which is ReLU, 1x1 convolution, BatchNorm (the project's ``skip_connect`` has no ReLU there)."""
    return Identity() if stride == 1 and C_in == C_out else ReLUConvBN(C_in, C_out, 1, stride, 0)


CELL_OPS: dict[str, _Op] = {
    "nor_conv_3x3": _Op(_conv_3x3, lambda C_in, C_out: 9 * C_in * C_out + 2 * C_out),
    "skip_connect": _Op(_skip, lambda C_in, C_out: 0 if C_in == C_out else C_in * C_out + 2 * C_out),
}


class SizeCell(nn.Module):
    """The fixed cell from ``C_in`` to ``C_out`` channels, built as NATS-Bench's ``InferCell``: an entry
    reading the cell input maps ``C_in`` to ``C_out`` (and carries the stride), every other entry maps
    ``C_out`` to ``C_out``; a node is the sum of its entries, the cell's output its last node."""

    def __init__(self, C_in: int, C_out: int, stride: int = 1):
        super().__init__()
        self.layers = nn.ModuleList()  # xautodl's name, so the state dicts look alike
        self._wiring: list[list[tuple[int, int]]] = []  # per node: (layer index, source node)
        for node in CELL.nodes:
            wiring = []
            for e in node:
                first = e.src == 0
                self.layers.append(CELL_OPS[e.op].build(C_in if first else C_out, C_out, stride if first else 1))
                wiring.append((len(self.layers) - 1, e.src))
            self._wiring.append(wiring)
        self.out_channels = C_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for wiring in self._wiring:
            states.append(sum(self.layers[k](states[src]) for k, src in wiring))
        return states[-1]


def _cell_params(C_in: int, C_out: int) -> int:
    return sum(CELL_OPS[e.op].params(C_in if e.src == 0 else C_out, C_out) for _, e in CELL.edges())


def _reduction_params(C_in: int, C_out: int) -> int:
    """ResNetBasicBlock: two 3x3 ReLU-conv-BN (the first strided) and a pooled 1x1 shortcut."""
    return 9 * C_in * C_out + 2 * C_out + 9 * C_out * C_out + 2 * C_out + C_in * C_out


class _Layer(NamedTuple):
    build: Callable[[int, int], nn.Module]
    params: Callable[[int, int], int]


LAYER_KINDS: dict[str, _Layer] = {
    "cell": _Layer(SizeCell, _cell_params),
    "reduction": _Layer(lambda C_in, C_out: ResNetBasicBlock(C_in, C_out, stride=2), _reduction_params),
}


class SizeNetwork(SkeletonNetwork):
    """NATS-Bench's size-space network (xautodl's ``DynamicShapeTinyNet`` with one cell per stage): a
    3x3 stem of the first width, then each layer of ``LAYERS`` from the previous layer's width to its
    own, then BatchNorm, ReLU, global average pooling and a linear classifier."""

    def __init__(self, widths: Sequence[int], num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        C = widths[0]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers = []
        for kind, width in zip(LAYERS, widths, strict=True):
            layers.append(LAYER_KINDS[kind].build(C, width))
            C = width
        self.cells = nn.Sequential(*layers)
        self._add_head(C, num_classes)


def parameter_count(widths: Sequence[int], num_classes: int = 10, in_channels: int = 3) -> int:
    """The trainable parameters of ``SizeNetwork(widths, ...)``, in closed form (no weights built):
    what the benchmark's ``params`` column counts, for all 32,768 rows in milliseconds."""
    C = widths[0]
    total = 9 * in_channels * C + 2 * C  # stem
    for kind, width in zip(LAYERS, widths, strict=True):
        total += LAYER_KINDS[kind].params(C, width)
        C = width
    return total + 2 * C + C * num_classes + num_classes  # last BatchNorm, classifier


# ---- the space ------------------------------------------------------------------------------------

MUTATIONS: dict[str, Mutation] = {
    "grow_channels": grow_channels,
    "shrink_channels": shrink_channels,
    "resize_channels": resize_channels,
}
CROSSOVERS: dict[str, Crossover] = {"uniform": uniform, "min": minimum}


def _check_choices(choices: tuple[int, ...]) -> None:
    if (
        not choices
        or any(not isinstance(c, int) or isinstance(c, bool) or c < 1 for c in choices)
        or list(choices) != sorted(set(choices))
    ):
        raise ConfigError(
            f"channel_choices={list(choices)} is invalid: give increasing distinct positive integers, "
            f"e.g. {list(CHANNEL_CHOICES)} (the benchmark's)"
        )


@register_space
class SSSSpace(SearchSpace):
    """NATS-Bench's size space: the widths of the five layers (``LAYERS``), each one of
    ``channel_choices`` (default the benchmark's 8..64 in steps of 8).

    Optuna parameters ``channels_0``..``channels_4``, integers with a step where the choices are evenly
    spaced (so TPE and NSGA-II see their order), else categorical. The scoring and the final network
    are both the benchmark's network (:class:`SizeNetwork`), so its ground truth applies to either;
    a final network is built from one genotype (``final_cells = max_final_cells = 1``) and takes no
    options. ``ops`` are the fixed cell's operations; no mutation chooses one.
    """

    kind = "nats_sss"
    mutations = MUTATIONS
    crossovers = CROSSOVERS
    final_cells = 1  # the final network is the benchmark's network of one genotype
    max_final_cells = 1

    def __init__(self, channel_choices: tuple[int, ...] | list[int] = CHANNEL_CHOICES):
        choices = tuple(channel_choices)
        _check_choices(choices)
        super().__init__(tuple(CELL_OPS), width=choices[-1], cells_per_stage=1)
        self.channel_choices = choices
        self._distributions: dict[str, BaseDistribution] | None = None

    def definition(self) -> dict[str, Any]:
        return {"kind": self.kind, "channel_choices": list(self.channel_choices)}

    # ---- the Optuna bridge --------------------------------------------------------------------
    def param_name(self, layer: int) -> str:
        return f"channels_{layer}"

    def distributions(self) -> dict[str, BaseDistribution]:
        if self._distributions is None:  # built once: every suggest, read and store walks it
            c = self.channel_choices
            steps = {b - a for a, b in zip(c, c[1:], strict=False)}
            dist: BaseDistribution = (
                IntDistribution(c[0], c[-1], step=steps.pop() if steps else 1)
                if len(steps) <= 1
                else CategoricalDistribution(c)
            )
            self._distributions = {self.param_name(i): dist for i in range(len(LAYERS))}
        return self._distributions

    def to_params(self, g: Genotype) -> dict[str, Any]:
        return {self.param_name(i): w for i, w in enumerate(self.widths_of(g))}

    def _raw_from_params(self, params: dict[str, Any]) -> Genotype:
        return Genotype.of_widths(_as_width(name, params[name]) for name in self.distributions())

    # ---- genotypes ----------------------------------------------------------------------------
    def widths_of(self, g: Genotype) -> tuple[int, ...]:
        """The five widths of a valid genotype (raises GenotypeError naming what is wrong otherwise)."""
        return self.validate(g).widths or ()

    def problems(self, g: Genotype) -> list[str]:
        widths = g.widths
        if widths is None:
            return [
                f"it is not a chain of layer widths; a size-space genotype is its {len(LAYERS)} widths "
                f"joined by ':', e.g. '{BEST}'"
            ]
        found = []
        if len(widths) != len(LAYERS):
            found.append(f"it has {len(widths)} widths, the size space has {len(LAYERS)} ({', '.join(LAYERS)})")
        for i, (w, kind) in enumerate(zip(widths, LAYERS, strict=False)):
            if w not in self.channel_choices:
                found.append(f"layer {i} ({kind}) has width {w}, not one of {list(self.channel_choices)}")
        return found

    def repair(self, g: Genotype) -> Genotype:
        """Each layer's width snapped to the nearest choice (a node's widest entry counts; a missing
        layer gets the smallest width, extra nodes are dropped)."""
        found = [max((e.channels or 0 for e in node), default=0) for node in g.nodes[: len(LAYERS)]]
        found += [0] * (len(LAYERS) - len(found))
        fixed = Genotype.of_widths(snap(self.channel_choices, w) for w in found)
        return g if fixed == g else fixed

    def random(self, rng: np.random.Generator) -> Genotype:
        c = self.channel_choices
        return Genotype.of_widths(c[int(i)] for i in rng.integers(len(c), size=len(LAYERS)))

    def parameter_count(self, g: Genotype, num_classes: int = 10, in_channels: int = 3) -> int:
        """``count_parameters(self.final_network([g], ...))`` without building it."""
        return parameter_count(self.widths_of(g), num_classes, in_channels)

    # ---- networks -----------------------------------------------------------------------------
    def cell(self, g: Genotype, C_in: int, stride: int = 1) -> nn.Module:
        """The first cell of ``g``'s network, read from ``C_in`` channels (for the DARTS tournament and
        TE-NAS's thin network, which place one cell of a genotype themselves). The benchmark's cells
        never reduce; at ``stride=2`` the skip entry is a strided 1x1 ReLU-conv-BN."""
        return SizeCell(C_in, self.widths_of(g)[0], stride)

    def scoring_network(self, g: Genotype, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        return SizeNetwork(self.widths_of(g), num_classes=num_classes, in_channels=in_channels)

    def final_network(
        self, genotypes: list[Genotype], num_classes: int = 10, in_channels: int = 3, **kwargs: Any
    ) -> nn.Module:
        if len(genotypes) != 1:
            raise ConfigError(
                f"SSSSpace's final network is the benchmark's network of one genotype (its {len(LAYERS)} widths); "
                f"got {len(genotypes)} genotypes: choose one trial (n_cells=1)"
            )
        if kwargs:
            raise ConfigError(
                f"SSSSpace's final network takes no options (the genotype is its widths); got {sorted(kwargs)}"
            )
        return self.scoring_network(genotypes[0], num_classes=num_classes, in_channels=in_channels)


def _as_width(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer) or int(value) != value:
        raise GenotypeError(f"parameter {name!r} is {value!r}: a width is an integer such as 64")
    return int(value)


# ---- the benchmark's ground truth -----------------------------------------------------------------


def read_ground_truth(path: str | os.PathLike) -> dict[str, tuple[float, int]]:
    """``{genotype string: (CIFAR-10 test accuracy %, parameters)}`` from the benchmark's table
    (columns ``channels``, ``test_accuracy``, ``params``; ``channels`` is the genotype string)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise DataError(f"NATS-Bench size-space table not found at {os.fspath(path)!r}") from None
    needed = {"channels", "test_accuracy", "params"}
    if not rows or not needed <= rows[0].keys():
        raise DataError(f"{os.fspath(path)!r} is not the size-space table: it needs the columns {sorted(needed)}")
    return {r["channels"]: (float(r["test_accuracy"]), int(r["params"])) for r in rows}
