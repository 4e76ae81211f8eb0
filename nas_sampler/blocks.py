"""A network's feature blocks and what the fused scoring pass records of them (AZ-NAS's scores).

A *block* is a module whose output is one stage of the network's features. A network declares its
blocks with a ``feature_blocks()`` method (the skeletons of every space do: their cells and reduction
blocks, in order); any other network's blocks are its direct children. The features are the first
block's input and every block call's output, in call order, so a chain of blocks gives its stages
from the stem's output to the last cell's.

For every feature the pass keeps, summed over the chunks of the batch, the count, sum and outer
products of its channel vectors (one per position of each sample), which give its channel covariance
(AZ-NAS's expressivity and progressivity). For every block call it keeps a Monte-Carlo estimate of
the block's channel-to-channel Jacobian from its own input to its own output (trainability): a
Rademacher cotangent ``v`` at the output, ``u = J^T v`` at the input from one backward pass through
that block alone, and ``E[u v^T]`` over positions, which is the Jacobian's same-position block
(``E[v v^T] = I``). A strided block's input gradient is first folded into channels
(``pixel_unshuffle``) so each output position pairs with the input positions it reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle


def feature_blocks(net: nn.Module) -> list[nn.Module]:
    """The modules whose outputs are ``net``'s successive features: what ``net.feature_blocks()``
    declares, else its direct children."""
    declared = getattr(net, "feature_blocks", None)
    return list(declared()) if callable(declared) else list(net.children())


def channel_rows(t: torch.Tensor) -> torch.Tensor:
    """``b x C x ...`` as ``(b * positions) x C``: one row per position of each sample."""
    return t.movedim(1, -1).reshape(-1, t.shape[1])


@dataclass
class Moments:
    """Count, sum and outer products (float64) of one feature's channel vectors."""

    n: int = 0
    total: torch.Tensor | None = None
    outer: torch.Tensor | None = None

    def add(self, t: torch.Tensor) -> None:
        X = channel_rows(t.detach()).double()
        s, o = X.sum(0), X.t() @ X
        self.total = s if self.total is None else self.total + s
        self.outer = o if self.outer is None else self.outer + o
        self.n += X.shape[0]

    def covariance(self) -> torch.Tensor:
        assert self.total is not None and self.outer is not None
        mean = self.total / self.n
        return (self.outer / self.n - torch.outer(mean, mean)).cpu()


@dataclass
class JacobianSketch:
    """``sum(u v^T)`` over positions of one block call (``paired``: its input and output shapes could
    be matched position by position); ``identity``: ``u == v`` exactly in every chunk."""

    n: int = 0
    cross: torch.Tensor | None = None
    paired: bool = True
    identity: bool = True

    def add(self, u: torch.Tensor, v: torch.Tensor) -> None:
        self.identity = self.identity and u.shape == v.shape and bool(torch.equal(u, v))
        folded = fold_to(u, v)
        if folded is None:
            self.paired = False
            return
        U, V = channel_rows(folded).double(), channel_rows(v).double()
        c = U.t() @ V
        self.cross = c if self.cross is None else self.cross + c
        self.n += U.shape[0]

    def jacobian(self) -> torch.Tensor:
        """The estimate of the block's same-position channel Jacobian (transposed: in x out)."""
        assert self.cross is not None
        return (self.cross / self.n).cpu()


def fold_to(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor | None:
    """``u`` with the positions of ``v``: as it is when they agree, folded into channels when ``u``'s
    spatial size is an integer multiple ``s >= 2`` of ``v``'s in both dimensions; else None."""
    if u.dim() != v.dim() or u.dim() < 2 or u.shape[0] != v.shape[0]:
        return None
    if u.shape[2:] == v.shape[2:]:
        return u
    if u.dim() != 4 or v.shape[2] == 0 or v.shape[3] == 0:
        return None
    s = u.shape[2] // v.shape[2]
    if s < 2 or u.shape[2] != s * v.shape[2] or u.shape[3] != s * v.shape[3]:
        return None
    return F.pixel_unshuffle(u, s)


@dataclass
class BlockRecord:
    """What the pass recorded of the blocks: ``features[0]`` is the first block's input, then one per
    block call's output; ``jacobians[k]`` is block call ``k``'s sketch."""

    features: list[Moments] = field(default_factory=list)
    jacobians: list[JacobianSketch] = field(default_factory=list)


class BlockRecorder:
    """Hooks the blocks for the chunks of one pass; :meth:`finish_chunk` after each chunk's forward
    (before any backward frees its graph) adds the chunk's features and Jacobian sketches.

    The cotangent of block call ``k`` is drawn for the whole batch from a generator seeded with
    ``seed + k`` and the chunk's rows taken from it, so chunking does not change the draws.
    """

    def __init__(self, net: nn.Module, batch: int, seed: int, device: torch.device):
        self.blocks = feature_blocks(net)
        self.batch = batch
        self.seed = seed
        self.device = device
        self.record = BlockRecord()
        self._calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hooks(self) -> list[RemovableHandle]:
        return [b.register_forward_hook(self._hook) for b in self.blocks]

    def _hook(self, m: nn.Module, inp: tuple, out: object) -> None:
        if inp and isinstance(inp[0], torch.Tensor) and isinstance(out, torch.Tensor) and out.dim() >= 2:
            self._calls.append((inp[0], out))

    def finish_chunk(self, rows: slice) -> None:
        calls, self._calls = self._calls, []
        rec = self.record
        if not rec.features and calls:
            rec.features = [Moments() for _ in range(len(calls) + 1)]
            rec.jacobians = [JacobianSketch() for _ in calls]
        if len(calls) + 1 != len(rec.features):
            raise RuntimeError(
                f"the blocks were called {len(calls)} times in this chunk, {len(rec.features) - 1} before"
            )
        for k, (a, y) in enumerate(calls):
            if k == 0:
                rec.features[0].add(a)
            rec.features[k + 1].add(y)
            v = self._cotangent(k, y, rows)
            u = None
            if a.requires_grad and y.requires_grad:
                (u,) = torch.autograd.grad(y, a, v, retain_graph=True, allow_unused=True)
            rec.jacobians[k].add(torch.zeros_like(a) if u is None else u.detach(), v)

    def _cotangent(self, k: int, y: torch.Tensor, rows: slice) -> torch.Tensor:
        g = torch.Generator(device=self.device).manual_seed(self.seed + k)
        full = torch.randint(0, 2, (self.batch, *y.shape[1:]), generator=g, device=self.device)
        return (full[rows].to(y.dtype) * 2 - 1).contiguous()
