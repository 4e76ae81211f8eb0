"""What the fused scoring pass records of a network: every parameterised ``conv2d``, ``linear`` and
``batch_norm`` call (through a ``TorchFunctionMode``), the per-sample weight gradients computed from
those calls' inputs and output gradients in a few batched products (no per-sample loop), and the
NTK's Gram matrix accumulated from them. :mod:`nas_sampler.heuristics` drives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode


@dataclass
class Call:
    """One call of conv2d / linear / batch_norm that uses trainable parameters."""

    kind: str  # "conv", "linear", "bn"
    params: list[tuple[nn.Parameter, str]]  # (parameter, role: "weight" | "bias")
    inp: torch.Tensor
    out: torch.Tensor
    args: dict[str, Any] = field(default_factory=dict)


def _bn_args(
    input: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, float]:
    return input, weight, bias, eps


def _conv_args(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, dict[str, Any]]:
    return input, weight, bias, {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}


def _linear_args(
    input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    return input, weight, bias


class Capture(TorchFunctionMode):
    """Records the parameter-using calls of one forward pass and replaces BatchNorm's statistics.

    ``bn="frozen"``: normalise with the batch's statistics, detached (or with ``stats`` given in call
    order, for chunks), recorded in ``stats``; ``bn="coupled"``: normalise with the batch's statistics,
    gradients through them (BatchNorm calls are then not recorded). Running statistics are never
    read or written. ``count_macs``: add up the multiply-accumulates per sample of every ``conv2d`` and
    ``linear`` call in ``macs``.
    """

    def __init__(
        self,
        tracked: dict[int, nn.Parameter],
        bn: str,
        stats: list | None = None,
        record: bool = True,
        count_macs: bool = False,
    ):
        super().__init__()
        self.count_macs = count_macs
        self.macs = 0
        self.tracked = tracked
        self.bn = bn
        self.stats_in = stats
        self.stats: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.record = record
        self.calls: list[Call] = []
        self.unhandled_padding = False
        self.out_bytes = 0

    def _params(self, weight: Any, bias: Any) -> list[tuple[nn.Parameter, str]]:
        found = []
        for t, role in ((weight, "weight"), (bias, "bias")):
            if isinstance(t, torch.Tensor) and id(t) in self.tracked:
                found.append((self.tracked[id(t)], role))
        return found

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func is F.batch_norm and self.bn == "coupled":
            x, weight, bias, eps = _bn_args(*args, **kwargs)
            out = F.batch_norm(x, None, None, weight, bias, True, 0.0, eps)
        elif func is F.batch_norm:
            x, weight, bias, eps = _bn_args(*args, **kwargs)
            dims = [0, *range(2, x.dim())]
            if self.stats_in is not None:
                mean, var = self.stats_in[len(self.stats)]
            else:
                with torch.no_grad():
                    mean, var = x.mean(dims), x.var(dims, unbiased=False)
            out = F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)
            self.stats.append((mean, var))
            found = self._params(weight, bias)
            if self.record and found:
                self.calls.append(Call("bn", found, x, out, {"mean": mean, "var": var, "eps": eps, "dims": dims}))
        else:
            out = func(*args, **kwargs)
            if self.count_macs and (func is F.conv2d or func is F.linear) and isinstance(out, torch.Tensor):
                self.macs += _macs_per_sample(args[1] if len(args) > 1 else kwargs["weight"], out)
            if self.record and func is F.conv2d:
                x, weight, bias, conv = _conv_args(*args, **kwargs)
                found = self._params(weight, bias)
                if found:
                    if isinstance(conv["padding"], str):
                        self.unhandled_padding = True  # left to the generic per-sample loop
                    else:
                        conv["weight_shape"] = tuple(weight.shape)
                        self.calls.append(Call("conv", found, x, out, conv))
            elif self.record and func is F.linear:
                x, weight, bias = _linear_args(*args, **kwargs)
                found = self._params(weight, bias)
                if found:
                    self.calls.append(Call("linear", found, x, out))
        if isinstance(out, torch.Tensor):
            self.out_bytes += out.numel() * out.element_size()
        return out


def _macs_per_sample(weight: torch.Tensor, out: torch.Tensor) -> int:
    """A conv2d or linear call's multiply-accumulates per sample: each output element costs one row of
    the weight (``C_in / groups * kh * kw``, or ``in_features``)."""
    per_sample_out = out.numel() // out.shape[0] if out.dim() > 1 else out.numel()
    return per_sample_out * weight[0].numel()


# ----------------------------------------------------------------------------- per-sample gradients


def per_sample_grads(call: Call, dy: torch.Tensor) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """``[(parameter, b x parameter.shape)]``: the per-sample gradients of ``call``'s parameters, given
    ``dy``, the per-sample gradient at its output (valid because ``call`` acts on each sample alone)."""
    b = dy.shape[0]
    res = []
    if call.kind == "conv":
        a = call.args
        C_out, C_in_g, kh, kw = a["weight_shape"]
        g = int(a["groups"])
        for p, role in call.params:
            if role == "bias":
                res.append((p, dy.sum(dim=(2, 3))))
                continue
            # the samples as groups of one grouped convolution: its weight gradient is per sample
            x = call.inp
            G = torch.nn.grad.conv2d_weight(
                x.reshape(1, -1, *x.shape[2:]),
                (b * C_out, C_in_g, kh, kw),
                dy.reshape(1, -1, *dy.shape[2:]),
                a["stride"],
                a["padding"],
                a["dilation"],
                b * g,
            )
            res.append((p, G.reshape(b, C_out, C_in_g, kh, kw)))
    elif call.kind == "linear":
        x2 = call.inp.reshape(b, -1, call.inp.shape[-1])
        d2 = dy.reshape(b, -1, dy.shape[-1])
        for p, role in call.params:
            res.append((p, d2.sum(1) if role == "bias" else torch.bmm(d2.transpose(1, 2), x2)))
    else:  # bn
        dims = call.args["dims"][1:]
        for p, role in call.params:
            if role == "bias":
                res.append((p, dy.sum(dim=dims) if dims else dy))
            else:
                xhat = normalised_input(call)
                res.append((p, (dy * xhat).sum(dim=dims) if dims else dy * xhat))
    return res


def normalised_input(call: Call) -> torch.Tensor:
    shape = [1, -1] + [1] * (call.inp.dim() - 2)
    a = call.args
    return (call.inp - a["mean"].reshape(shape)) * torch.rsqrt(a["var"].reshape(shape) + a["eps"])


class GramSink:
    """Accumulates ``Theta`` from per-parameter gradient blocks without keeping ``J`` when one chunk
    covers the batch; otherwise fills ``J`` (``B x P``) and forms ``Theta`` at the end."""

    def __init__(self, params: list[nn.Parameter], B: int, uses: dict[int, int], keep_j: bool, device: torch.device):
        self.B = B
        self.keep_j = keep_j
        self.uses = dict(uses)
        self.theta = torch.zeros(B, B, dtype=torch.float64, device=device)
        self.pending: dict[int, torch.Tensor] = {}
        self.offset: dict[int, int] = {}
        n = 0
        for p in params:
            self.offset[id(p)] = n
            n += p.numel()
        self.J = torch.zeros(B, n, device=device) if keep_j else None

    def add(self, p: nn.Parameter, rows: slice, G: torch.Tensor) -> None:
        G = G.reshape(G.shape[0], -1)
        if self.J is not None:
            o = self.offset[id(p)]
            self.J[rows, o : o + G.shape[1]] += G
            return
        key = id(p)
        self.pending[key] = self.pending[key] + G if key in self.pending else G
        self.uses[key] = self.uses.get(key, 1) - 1  # a loop-path parameter arrives once, summed
        if self.uses[key] == 0:
            Gp = self.pending.pop(key)
            self.theta += (Gp @ Gp.t()).double()

    def result(self) -> torch.Tensor:
        if self.J is not None:
            for start in range(0, self.J.shape[1], 1 << 20):
                blk = self.J[:, start : start + (1 << 20)]
                self.theta += (blk @ blk.t()).double()
        for Gp in self.pending.values():  # parameters whose uses were not all seen (never for static nets)
            self.theta += (Gp @ Gp.t()).double()
        return self.theta


# ----------------------------------------------------------------------------- the driver
