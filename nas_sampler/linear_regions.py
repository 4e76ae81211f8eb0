"""TE-NAS's second score: the number of linear regions a ReLU network cuts its input space into,
counted as the distinct sign patterns of every ``nn.ReLU`` output over many random inputs.

It is not one of the fused pass's scores (:mod:`nas_sampler.scores`): TE-NAS counts on a network of
its own (:func:`thin_network`: width 1, one cell, one input channel) and on 3,000 random 3x3
inputs, not on the scored batch. On the scored network and a batch of CIFAR-10 images the count
saturates: every sample gets a pattern of its own (all 8 reference networks give 128 of 128), so it
cannot rank. Counting on the thin network costs a few milliseconds.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from nas_sampler.capture import Capture
from nas_sampler.device import resolve_device
from nas_sampler.errors import ConfigError
from nas_sampler.genotype import Genotype
from nas_sampler.heuristics import scoring_state
from nas_sampler.phenotype import StagedNetwork
from nas_sampler.space import SearchSpace

__all__ = ["linear_region_count", "thin_network", "random_region_inputs"]


def thin_network(space: SearchSpace, g: Genotype, num_classes: int = 10) -> nn.Module:
    """TE-NAS's network for counting regions: a width-1 stem on one input channel, one cell of ``g``,
    then BatchNorm, ReLU, pooling and the classifier (``TinyNetwork(1, 1, g, C_in=1, depth=1)``)."""
    return StagedNetwork(
        lambda C_in: space.cell(g, C_in), width=1, cells_per_stage=1, num_classes=num_classes, in_channels=1, depth=1
    )


def random_region_inputs(seed: int = 0, batches: int = 3, size: int = 1000) -> list[torch.Tensor]:
    """TE-NAS's inputs: ``batches`` batches of ``size`` standard-normal 1 x 3 x 3 images."""
    g = torch.Generator().manual_seed(seed)
    return list(torch.randn(batches, size, 1, 3, 3, generator=g))


def linear_region_count(
    net: nn.Module, batches: Sequence[torch.Tensor], *, device: str | torch.device = "auto", seed: int | None = 0
) -> int:
    """The number of distinct patterns of ``sign(output)`` of every ``nn.ReLU`` with a 4-d input, over
    all samples of ``batches`` (higher is better). Each batch is one forward pass whose BatchNorms
    normalise with that batch's statistics, as TE-NAS's train mode does; nothing of ``net`` changes."""
    if not batches or not all(isinstance(b, torch.Tensor) and b.dim() == 4 and b.shape[0] >= 2 for b in batches):
        raise ConfigError("batches must be one or more B x C x H x W tensors with B >= 2 (e.g. random_region_inputs())")
    dev = resolve_device(device)
    p0 = next(iter(net.parameters()), None)
    if p0 is not None and p0.device != dev:
        net = copy.deepcopy(net).to(dev)  # the given network is not moved
    patterns: list[torch.Tensor] = []
    found: list[torch.Tensor] = []

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if inp[0].dim() == 4:
            found.append((out > 0).reshape(out.shape[0], -1))

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        with scoring_state(net, dev, seed), torch.no_grad():
            for b in batches:
                found.clear()
                with Capture({}, "frozen", record=False):
                    net(b.to(dev, torch.float32))
                if found:
                    patterns.append(torch.cat(found, 1).to(torch.uint8))
    finally:
        for h in handles:
            h.remove()
    if not patterns:
        return 0
    return int(torch.unique(torch.cat(patterns), dim=0).shape[0])
