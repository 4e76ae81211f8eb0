"""Networks built from genotypes: the cell, the staged network the heuristics score, and the
final network that stacks searched cells and adds pooling and a classifier."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nas_sampler.genotype import Genotype
from nas_sampler.ops import ReLUConvBN, build_op


class Cell(nn.Module):
    """A cell of a genotype. ``combine="concat"`` (CellSpace): a node is the concatenation of its
    entries, each with its own channel count. ``combine="sum"`` (NAS-Bench-201): every entry maps to
    ``C_in`` channels and a node is their sum. Entries reading node 0 carry the stride."""

    def __init__(self, genotype: Genotype, C_in: int, stride: int = 1, combine: str = "concat"):
        super().__init__()
        if combine not in ("concat", "sum"):
            raise ValueError(f"combine={combine!r}: use 'concat' or 'sum'")
        self.genotype = genotype
        self.combine = combine
        self.edges = nn.ModuleList()
        self._wiring: list[list[tuple[int, int]]] = []  # per node: (edge index, source node)
        channels = [C_in]
        for node in genotype.nodes:
            wiring = []
            for e in node:
                C_out = e.channels if combine == "concat" else C_in
                op_stride = stride if e.src == 0 else 1
                self.edges.append(build_op(e.op, channels[e.src], C_out, op_stride))
                wiring.append((len(self.edges) - 1, e.src))
            self._wiring.append(wiring)
            channels.append(sum(e.channels for e in node) if combine == "concat" else C_in)
        self.out_channels = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for wiring in self._wiring:
            outs = [self.edges[k](states[src]) for k, src in wiring]
            states.append(torch.cat(outs, dim=1) if self.combine == "concat" else sum(outs))
        return states[-1]


class ResNetBasicBlock(nn.Module):
    """NAS-Bench-201's reduction block: two ReLU-conv-BN (the first strided) plus a shortcut of
    2x2 average pooling and a 1x1 convolution."""

    def __init__(self, C_in: int, C_out: int, stride: int = 2):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, stride, 1)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1)
        if stride == 2:
            self.downsample = nn.Sequential(nn.AvgPool2d(2, 2, ceil_mode=True), nn.Conv2d(C_in, C_out, 1, bias=False))
        elif C_in != C_out:
            self.downsample = ReLUConvBN(C_in, C_out, 1, 1, 0)
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return residual + self.conv_b(self.conv_a(x))


class SkeletonNetwork(nn.Module):
    """What NAS-Bench-201's skeleton and its size space share: ``stem``, then ``cells``, then BN, ReLU,
    global average pooling and a linear classifier (xautodl's module names, so state dicts match)."""

    stem: nn.Module
    cells: nn.Sequential

    def _add_head(self, C: int, num_classes: int) -> None:
        self.lastact = nn.Sequential(nn.BatchNorm2d(C), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(self.global_pooling(x).flatten(1))

    def feature_blocks(self) -> list[nn.Module]:
        """The cells and reduction blocks in order: the first reads the stem's output, each the one
        before's (AZ-NAS's blocks, :mod:`nas_sampler.blocks`)."""
        return list(self.cells)


class StagedNetwork(SkeletonNetwork):
    """NAS-Bench-201's macro skeleton: a 3x3 stem, three stages of cells at ``width``, 2x and 4x
    channels joined by ResNet reductions, then BN, ReLU, global average pooling and a linear layer.
    ``make_cell(C_in)`` builds one cell; cells whose output width differs chain on it. ``depth`` keeps
    only the first ``depth`` cells and reductions (TE-NAS's thin network for counting linear regions)."""

    def __init__(
        self,
        make_cell: Callable[[int], nn.Module],
        width: int = 16,
        cells_per_stage: int = 5,
        num_classes: int = 10,
        in_channels: int = 3,
        stages: int = 3,
        depth: int | None = None,
    ):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        layers: list[nn.Module] = []
        C = width
        for s in range(stages):
            if s > 0 and (depth is None or len(layers) < depth):
                layers.append(ResNetBasicBlock(C, width * 2**s, stride=2))
                C = width * 2**s
            for _ in range(cells_per_stage):
                if depth is not None and len(layers) >= depth:
                    break
                cell = make_cell(C)
                layers.append(cell)
                C = getattr(cell, "out_channels", C)
        self.cells = nn.Sequential(*layers)
        self._add_head(C, num_classes)


class FinalNetwork(nn.Module):
    """The original design's final network: a stem, then each searched cell in turn, its output
    concatenated with its (pooled) input, so features of every depth reach the classifier; then
    BN, dropout, global pooling, linear. The first ``reductions`` cells halve the resolution."""

    def __init__(
        self,
        make_cells: list[Callable[[int, int], nn.Module]],
        width: int = 16,
        num_classes: int = 10,
        in_channels: int = 3,
        reductions: int = 3,
        dropout: float = 0.2,
    ):
        super().__init__()
        if not make_cells:
            raise ValueError("the final network needs at least one cell")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        self.cells = nn.ModuleList()
        self.pools = nn.ModuleList()
        C = width
        for k, make in enumerate(make_cells):
            stride = 2 if k < reductions else 1
            cell = make(C, stride)
            self.cells.append(cell)
            self.pools.append(nn.AvgPool2d(2, 2, ceil_mode=True) if stride == 2 else nn.Identity())
            C = cell.out_channels + C
        self.head = nn.Sequential(
            nn.BatchNorm2d(C),
            nn.ReLU(inplace=False),
            nn.Dropout(dropout),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(C, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell, pool in zip(self.cells, self.pools, strict=True):
            x = torch.cat([cell(x), pool(x)], dim=1)
        return self.head(x)

    def feature_blocks(self) -> list[nn.Module]:
        """The searched cells in order (AZ-NAS's blocks, :mod:`nas_sampler.blocks`)."""
        return list(self.cells)


def count_parameters(net: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def count_flops(net: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> int:
    """Multiply-accumulates of convolutions and linear layers for one forward pass of one sample."""
    total = 0

    def conv_hook(m: nn.Conv2d, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out.shape[1] * out.shape[2] * out.shape[3] * k

    def linear_hook(m: nn.Linear, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    handles = []
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            p = next(iter(net.parameters()), None)
            net(torch.zeros((1, *input_shape[1:]), device=None if p is None else p.device))
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    return int(total)
