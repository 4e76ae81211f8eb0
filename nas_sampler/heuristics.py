"""Training-free scores of a network on one batch of images, each oriented so that lower is better.

* :func:`ntk_condition_number` (TE-NAS, Chen et al. 2021): the condition number of the empirical
  neural tangent kernel ``Theta = J J^T``, ``J`` the ``B x P`` per-sample gradients of each sample's
  summed logits with respect to the trainable parameters. A well-conditioned kernel trains fast and
  evenly in every direction, so a *small* condition number is good.
* :func:`activation_score` (NASWOT, Mellor et al. 2021): minus ``log|det K|``, ``K`` the Hamming-type
  kernel of the samples' binary ReLU codes. Distinct, uncorrelated codes (the network tells the
  inputs apart) give a large determinant, so a *small* negative log-determinant is good.
* :func:`jacobian_score` (NASWOT v1, "jacob_cov"): ``sum(log(v + k) + 1/(v + k))`` over the
  eigenvalues ``v`` of the correlation matrix of the input Jacobians, ``k = 1e-5``; NASWOT's score is
  its negative. Uncorrelated input Jacobians (eigenvalues near 1) are good, correlated ones give
  eigenvalues near 0 and a large ``1/(v + k)``.
* :func:`swap_score` (SWAP, Peng et al. 2024), an optional fourth score: minus the number of distinct
  *sample-wise* activation patterns, the binary vector of one ReLU unit's signs over the batch,
  counted over every unit of the network. More distinct patterns, a more expressive network, so a
  *small* (very negative) value is good. It reads the same ReLU codes as the activation score.
* :func:`score_all` computes the three sharing work: one forward pass gives the ReLU codes and the
  layer inputs, one backward pass of the summed logits gives the input Jacobians and the gradient
  at every layer output, from which the per-sample weight gradients come in a few batched matrix
  products (no per-sample loop).

How BatchNorm is treated (the scores are defined on the batch, not on running statistics):

* Every BatchNorm normalises with the statistics of the scored batch, whatever the module's mode,
  and never updates its running statistics; the network is scored in ``eval`` mode otherwise
  (Dropout off) and every module's mode is restored afterwards. Weights are never changed.
* ``fast`` (default for the NTK, always for the Jacobian score): the batch statistics are treated as
  constants in the gradients. Sample ``i``'s logits then depend on sample ``i`` alone, so all
  per-sample gradients come from one backward pass, and a large batch can be split into chunks that
  give the same result as no chunking.
* ``exact`` (NTK only): the gradients flow through the batch statistics, as in TE-NAS's code (train
  mode, one backward per sample), so sample ``i``'s gradient also carries every other sample's
  influence on the statistics. ``J`` then has ``B`` rows that each need a backward pass of the whole
  batch, so it costs about ``B`` backward passes, like TE-NAS's loop (see ``_exact_theta`` for the
  vectorised alternatives measured and why they lose on CPU). The whole batch is needed at once
  (no chunking); prefer ``fast`` for searches.

Degenerate networks (a cell whose output ignores its input, NaN or infinite values, a singular
kernel) have no meaningful score. By default the functions raise :class:`HeuristicError` (a
:class:`~nas_sampler.errors.NASError`) whose ``reasons`` say which score failed and why, so the
objective marks the trial failed with the reason stored. ``on_degenerate="worst"`` returns
:data:`WORST_SCORE` for the failed score instead, a finite value above every score a
non-degenerate network can get (``+inf`` would break Optuna's Pareto and rank arithmetic).

Parameters are found through ``torch.nn.functional`` calls: ``conv2d``, ``linear`` and
``batch_norm`` get vectorised per-sample gradients; a parameter used by any other operation gets
its per-sample gradients from a per-sample backward loop (correct, slower).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from nas_sampler.device import resolve_device
from nas_sampler.errors import ConfigError, NASError

__all__ = [
    "JACOBIAN_K",
    "NTK_RTOL",
    "ALL_SCORES",
    "SCORE_NAMES",
    "WORST_SCORE",
    "HeuristicError",
    "activation_score",
    "jacobian_score",
    "ntk_condition_number",
    "score_all",
    "swap_score",
]

#: The three score names, as keys of :func:`score_all` and Optuna metric names.
SCORE_NAMES: tuple[str, ...] = ("ntk_cond", "activation", "jacobian")

#: Every score :func:`score_all` can compute: the three, and SWAP (``swap``), which is asked for by name.
ALL_SCORES: tuple[str, ...] = (*SCORE_NAMES, "swap")

#: Returned for a degenerate score with ``on_degenerate="worst"``. Above every non-degenerate value:
#: ``activation <= 0`` (a non-singular integer matrix has ``|det| >= 1``), ``jacobian <= B (1/k + log B)``
#: (about ``6.4e6`` at ``B = 64``) and ``ntk_cond <= 1 / NTK_RTOL``.
WORST_SCORE: float = 1e15

#: ``Theta`` is treated as singular when ``lambda_min <= NTK_RTOL * lambda_max``: ``Theta`` is built from
#: float32 gradients, whose rounding (about 1e-7 relative) hides eigenvalues below that level.
NTK_RTOL: float = 1e-7

#: NASWOT v1's regulariser ``k`` in ``log(v + k) + 1 / (v + k)``.
JACOBIAN_K: float = 1e-5

#: Default memory budget on CPU (bytes); on CUDA the default is half the free device memory.
DEFAULT_CPU_BUDGET: int = 4 * 2**30

_MODES = ("fast", "exact")


class HeuristicError(NASError, ValueError):
    """A network whose score is undefined (degenerate): ``reasons`` maps each failed score to why;
    ``scores`` holds every score, :data:`WORST_SCORE` in place of the failed ones."""

    def __init__(self, reasons: dict[str, str], scores: dict[str, float] | None = None):
        self.reasons = dict(reasons)
        self.scores = dict(scores or {})
        detail = "; ".join(f"{name}: {why}" for name, why in self.reasons.items())
        super().__init__(
            f"degenerate network, score undefined ({detail}). Mark the trial failed, or pass "
            f"on_degenerate='worst' to get {WORST_SCORE:g} for such scores"
        )


# ----------------------------------------------------------------------------- public functions


def ntk_condition_number(
    net: nn.Module,
    images: torch.Tensor,
    mode: str = "fast",
    *,
    device: str | torch.device = "auto",
    memory_budget: int | None = None,
    seed: int | None = 0,
    on_degenerate: str = "raise",
) -> float:
    """``lambda_max / lambda_min`` of ``Theta = J J^T`` (TE-NAS); lower is better (a well-conditioned
    kernel trains evenly in every direction).

    ``J[i]`` is the gradient of ``sum(logits[i])`` with respect to every trainable parameter.
    ``mode="fast"`` treats BatchNorm's batch statistics as constants (one vectorised backward pass;
    chunkable); ``mode="exact"`` lets gradients flow through them as TE-NAS does (one backward
    pass per sample, so about ``B`` times the fast mode's cost). See :func:`score_all` for ``device``,
    ``memory_budget``, ``seed`` and ``on_degenerate``.
    """
    return _run(net, images, ("ntk_cond",), mode, device, memory_budget, seed, on_degenerate)["ntk_cond"]


def activation_score(
    net: nn.Module,
    images: torch.Tensor,
    *,
    device: str | torch.device = "auto",
    memory_budget: int | None = None,
    seed: int | None = 0,
    on_degenerate: str = "raise",
) -> float:
    """``-log|det K|`` with ``K = C C^T + (1 - C)(1 - C)^T`` (NASWOT), ``C[i]`` the concatenated binary
    codes (input > 0) of every ``nn.ReLU`` module for sample ``i``. NASWOT maximises ``log|det K|``
    (distinct codes: the network separates the inputs); its negative is minimised. ``K`` is an
    integer matrix, so a non-singular one has ``|det K| >= 1`` and the score is ``<= 0``."""
    return _run(net, images, ("activation",), "fast", device, memory_budget, seed, on_degenerate)["activation"]


def jacobian_score(
    net: nn.Module,
    images: torch.Tensor,
    *,
    device: str | torch.device = "auto",
    memory_budget: int | None = None,
    seed: int | None = 0,
    on_degenerate: str = "raise",
) -> float:
    """``sum(log(v + k) + 1/(v + k))``, ``v`` the eigenvalues of ``corrcoef(J)``, ``J[i]`` the gradient
    of ``sum(logits[i])`` with respect to image ``i`` (BatchNorm statistics as constants, so it is
    exactly sample ``i``'s own Jacobian), ``k = 1e-5``. NASWOT v1 maximises the negative; correlated
    Jacobians (eigenvalues near 0) are bad, so lower is better. Ill-conditioned by design: an error
    ``e`` in an eigenvalue ``v`` moves the score by about ``e / (v + k)^2``."""
    return _run(net, images, ("jacobian",), "fast", device, memory_budget, seed, on_degenerate)["jacobian"]


def swap_score(
    net: nn.Module,
    images: torch.Tensor,
    *,
    device: str | torch.device = "auto",
    memory_budget: int | None = None,
    seed: int | None = 0,
    on_degenerate: str = "raise",
) -> float:
    """Minus the number of distinct sample-wise activation patterns (SWAP): every unit of every
    ``nn.ReLU`` output gives the ``B``-bit vector of which samples make it positive; the score counts
    the distinct vectors over the whole network. SWAP maximises the count (units that tell the inputs
    apart in many different ways); its negative is minimised. Alone it ranks NAS-Bench-201 a little
    below the activation score, but in its place beside the NTK, the Jacobian score and the parameter
    count it picks better (README, "How well the scores rank")."""
    return _run(net, images, ("swap",), "fast", device, memory_budget, seed, on_degenerate)["swap"]


def check_ntk_batch(ntk_batch: Any) -> int | None:
    """``ntk_batch`` if it is None or an integer >= 2, else :class:`ConfigError`."""
    if ntk_batch is not None and (not isinstance(ntk_batch, int) or isinstance(ntk_batch, bool) or ntk_batch < 2):
        raise ConfigError(f"ntk_batch={ntk_batch!r} is invalid: give an integer >= 2 (images for the NTK), or None")
    return ntk_batch


def check_metrics(metrics: Sequence[str]) -> list[str]:
    """``metrics`` as a list if it names one or more distinct scores, else :class:`ConfigError`."""
    names = [] if isinstance(metrics, str) else list(metrics)
    if not names or sorted(set(names) & set(ALL_SCORES)) != sorted(names):
        raise ConfigError(f"metrics={metrics!r} is invalid: give one or more distinct names of {list(ALL_SCORES)}")
    return names


def score_all(
    net: nn.Module,
    images: torch.Tensor,
    ntk_mode: str = "fast",
    *,
    device: str | torch.device = "auto",
    memory_budget: int | None = None,
    seed: int | None = 0,
    on_degenerate: str = "raise",
    ntk_batch: int | None = None,
    metrics: Sequence[str] = SCORE_NAMES,
) -> dict[str, float]:
    """``{"ntk_cond", "activation", "jacobian"}`` of ``net`` on ``images``, all lower-is-better, equal to
    the individual functions, computed together: one forward pass (ReLU codes, layer inputs), one
    backward pass (input Jacobians, per-sample weight gradients); ``ntk_mode="exact"`` adds the
    exact NTK's forward pass and one backward pass per sample.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), or a device. A network on another device
            is copied there; the given network is not moved.
        memory_budget: bytes the scoring may use; when one pass over the batch would need more (an
            estimate from a one-sample probe), the batch is split into chunks (fast mode only; the
            result does not change). An out-of-memory error retries with half the chunk.
            Default: 4 GiB on CPU, half the free memory on CUDA.
        seed: seeds torch's generators (restored afterwards) for anything random inside the network;
            None leaves them alone. The scores are deterministic either way on CPU; on CUDA, cuDNN is
            made deterministic for the call.
        on_degenerate: ``"raise"`` (default) raises :class:`HeuristicError` with the reasons;
            ``"worst"`` returns :data:`WORST_SCORE` for each undefined score.
        ntk_batch: the NTK on the first ``ntk_batch`` images only (None: all). The exact mode costs one
            backward pass per image, so it is usually run on fewer images than the other two scores
            (TE-NAS used 32); the fast mode then needs a pass of its own.
        metrics: the scores to compute (default the three; ``"swap"`` adds :func:`swap_score`); the
            result has only these keys, and a score left out costs nothing (without the NTK, no
            per-sample weight gradients).
    """
    want = tuple(m for m in ALL_SCORES if m in check_metrics(metrics))
    B = images.shape[0] if isinstance(images, torch.Tensor) and images.dim() == 4 else None
    if check_ntk_batch(ntk_batch) is not None and "ntk_cond" in want:
        if B is not None and ntk_batch < B:
            _check_args(net, images, ntk_mode, memory_budget, on_degenerate)
            args = (device, memory_budget, seed)
            others = tuple(m for m in want if m != "ntk_cond")
            scores, reasons = _run_raw(net, images, others, "fast", *args) if others else ({}, {})
            ntk, ntk_reasons = _run_raw(net, images[:ntk_batch], ("ntk_cond",), ntk_mode, *args)
            return _verdict({"ntk_cond": ntk["ntk_cond"], **scores}, {**ntk_reasons, **reasons}, on_degenerate)
    return _run(net, images, want, ntk_mode, device, memory_budget, seed, on_degenerate)


# ----------------------------------------------------------------------------- capture of one forward pass


@dataclass
class _Call:
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


class _Capture(TorchFunctionMode):
    """Records the parameter-using calls of one forward pass and replaces BatchNorm's statistics.

    ``bn="frozen"``: normalise with the batch's statistics, detached (or with ``stats`` given in call
    order, for chunks), recorded in ``stats``; ``bn="coupled"``: normalise with the batch's statistics,
    gradients through them (BatchNorm calls are then not recorded). Running statistics are never
    read or written.
    """

    def __init__(self, tracked: dict[int, nn.Parameter], bn: str, stats: list | None = None, record: bool = True):
        super().__init__()
        self.tracked = tracked
        self.bn = bn
        self.stats_in = stats
        self.stats: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.record = record
        self.calls: list[_Call] = []
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
                self.calls.append(_Call("bn", found, x, out, {"mean": mean, "var": var, "eps": eps, "dims": dims}))
        else:
            out = func(*args, **kwargs)
            if self.record and func is F.conv2d:
                x, weight, bias, conv = _conv_args(*args, **kwargs)
                found = self._params(weight, bias)
                if found:
                    if isinstance(conv["padding"], str):
                        self.unhandled_padding = True  # left to the generic per-sample loop
                    else:
                        conv["weight_shape"] = tuple(weight.shape)
                        self.calls.append(_Call("conv", found, x, out, conv))
            elif self.record and func is F.linear:
                x, weight, bias = _linear_args(*args, **kwargs)
                found = self._params(weight, bias)
                if found:
                    self.calls.append(_Call("linear", found, x, out))
        if isinstance(out, torch.Tensor):
            self.out_bytes += out.numel() * out.element_size()
        return out


# ----------------------------------------------------------------------------- per-sample gradients


def _per_sample(call: _Call, dy: torch.Tensor) -> list[tuple[nn.Parameter, torch.Tensor]]:
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
                xhat = _xhat(call)
                res.append((p, (dy * xhat).sum(dim=dims) if dims else dy * xhat))
    return res


def _xhat(call: _Call) -> torch.Tensor:
    shape = [1, -1] + [1] * (call.inp.dim() - 2)
    a = call.args
    return (call.inp - a["mean"].reshape(shape)) * torch.rsqrt(a["var"].reshape(shape) + a["eps"])


class _GramSink:
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


@contextmanager
def _scoring_state(net: nn.Module, device: torch.device, seed: int | None) -> Iterator[None]:
    """eval mode (restored per module), seeded and deterministic; nothing of ``net`` changed after."""
    modes = {m: m.training for m in net.modules()}
    devices = [device] if device.type == "cuda" else []
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        net.eval()
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            if device.type == "cuda":
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
            yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        for m, t in modes.items():
            m.training = t


def _check_args(net: Any, images: Any, mode: str, memory_budget: Any, on_degenerate: str) -> None:
    if not isinstance(net, nn.Module):
        raise ConfigError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        what = (
            f"a {images.dim()}-d {images.dtype} tensor" if isinstance(images, torch.Tensor) else type(images).__name__
        )
        raise ConfigError(f"images must be a float tensor B x C x H x W, got {what}")
    if images.shape[0] < 2:
        raise ConfigError(f"images has batch size {images.shape[0]}: the scores compare samples, give at least 2")
    if mode not in _MODES:
        raise ConfigError(f"ntk mode {mode!r} is unknown: use 'fast' or 'exact'")
    if memory_budget is not None and (
        not isinstance(memory_budget, int) or isinstance(memory_budget, bool) or memory_budget <= 0
    ):
        raise ConfigError(f"memory_budget={memory_budget!r} is invalid: give a positive number of bytes, or None")
    if on_degenerate not in ("raise", "worst"):
        raise ConfigError(f"on_degenerate={on_degenerate!r} is unknown: use 'raise' or 'worst'")


def _run(
    net: nn.Module,
    images: torch.Tensor,
    want: tuple[str, ...],
    mode: str,
    device: str | torch.device,
    memory_budget: int | None,
    seed: int | None,
    on_degenerate: str,
) -> dict[str, float]:
    _check_args(net, images, mode, memory_budget, on_degenerate)
    return _verdict(*_run_raw(net, images, want, mode, device, memory_budget, seed), on_degenerate)


def _verdict(scores: dict[str, float], reasons: dict[str, str], on_degenerate: str) -> dict[str, float]:
    """The scores, or for undefined ones :class:`HeuristicError` / WORST_SCORE by ``on_degenerate``."""
    if reasons:
        full = {k: (WORST_SCORE if k in reasons else v) for k, v in scores.items()}
        if on_degenerate == "raise":
            raise HeuristicError(reasons, full)
        return full
    return scores


def _run_raw(
    net: nn.Module,
    images: torch.Tensor,
    want: tuple[str, ...],
    mode: str,
    device: str | torch.device,
    memory_budget: int | None,
    seed: int | None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Scores and the reasons of undefined ones; the arguments are checked by the caller."""
    dev = resolve_device(device)
    p0 = next(iter(net.parameters()), None)
    if p0 is not None and p0.device != dev:
        net = copy.deepcopy(net).to(dev)
    images = images.detach().to(dev, torch.float32)
    B = images.shape[0]
    if memory_budget is None:
        memory_budget = int(torch.cuda.mem_get_info(dev)[0] // 2) if dev.type == "cuda" else DEFAULT_CPU_BUDGET

    with _scoring_state(net, dev, seed):
        per_sample = _probe_bytes(net, images[:1])
        params = [p for p in net.parameters() if p.requires_grad]
        extra = B * sum(p.numel() for p in params) * 4 if "ntk_cond" in want else 0
        chunk = B
        if mode == "fast" or want != ("ntk_cond",):
            chunk = max(1, min(B, int((memory_budget - extra) // max(per_sample, 1))))
        while True:
            try:
                scores, reasons = _score(net, images, want, mode, chunk, params)
                break
            except torch.OutOfMemoryError:
                if chunk == 1:
                    raise
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                chunk = max(1, chunk // 2)
    return scores, reasons


def _probe_bytes(net: nn.Module, one: torch.Tensor) -> int:
    """Bytes one sample needs in a scoring pass: the outputs of every operation of a one-sample
    forward, times 4 (saved activations, their gradients, unfolded inputs, ReLU codes)."""
    mode = _Capture({}, "frozen", record=False)
    with torch.no_grad(), mode:
        net(one)
    return 4 * mode.out_bytes


def _score(
    net: nn.Module, images: torch.Tensor, want: tuple[str, ...], mode: str, chunk: int, params: list[nn.Parameter]
) -> tuple[dict[str, float], dict[str, str]]:
    B = images.shape[0]
    tracked = {id(p): p for p in params}
    need_ntk_fast = "ntk_cond" in want and mode == "fast"
    need_codes = "activation" in want or "swap" in want
    need_frozen = need_ntk_fast or need_codes or "jacobian" in want
    reasons: dict[str, str] = {}
    scores: dict[str, float] = {}

    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    codes: dict[tuple[int, int], list[torch.Tensor]] = {}
    calls_seen: dict[int, int] = {}

    def relu_hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        k = calls_seen.get(id(m), 0)
        calls_seen[id(m)] = k + 1
        codes.setdefault((id(m), k), []).append((inp[0] > 0).reshape(inp[0].shape[0], -1))

    in_jac: list[torch.Tensor] = []
    nonfinite = False
    sink = None
    if need_frozen:
        stats = None
        if chunk < B:  # batch statistics of the whole batch first, then chunks that reuse them
            cap = _Capture(tracked, "frozen", record=False)
            with torch.no_grad(), cap:
                net(images)
            stats = cap.stats
        handles = [m.register_forward_hook(relu_hook) for m in relus] if need_codes else []
        try:
            for start in range(0, B, chunk):
                rows = slice(start, min(B, start + chunk))
                calls_seen.clear()
                x = images[rows].clone().requires_grad_("jacobian" in want)
                cap = _Capture(tracked, "frozen", stats=stats, record=need_ntk_fast)
                with torch.set_grad_enabled(need_ntk_fast or "jacobian" in want), cap:
                    out = net(x)
                if not torch.isfinite(out).all():
                    nonfinite = True
                    break
                if not (need_ntk_fast or "jacobian" in want):
                    continue
                S = out.reshape(out.shape[0], -1).sum(1)
                if need_ntk_fast and sink is None:
                    uses: dict[int, int] = {}
                    for c in cap.calls:
                        for p, _ in c.params:
                            uses[id(p)] = uses.get(id(p), 0) + 1
                    sink = _GramSink(params, B, uses, keep_j=chunk < B, device=images.device)
                _frozen_backward(x, S, cap, want, need_ntk_fast, params, sink, rows, in_jac)
        finally:
            for h in handles:
                h.remove()
    if nonfinite:
        return dict.fromkeys(want, WORST_SCORE), dict.fromkeys(want, "the network's output has NaN or infinite values")

    if "activation" in want:
        _finish(scores, reasons, "activation", lambda: _activation_from_codes(codes, relus, B))
    if "swap" in want:
        _finish(scores, reasons, "swap", lambda: _swap_from_codes(codes, B))
    if "jacobian" in want:
        _finish(scores, reasons, "jacobian", lambda: _jacobian_from_grads(torch.cat(in_jac)))
    if "ntk_cond" in want:
        if mode == "fast":
            theta = sink.result() if sink is not None else torch.zeros(B, B, dtype=torch.float64)
        else:
            theta = _exact_theta(net, images, params)
            if theta is None:
                scores["ntk_cond"] = WORST_SCORE
                reasons["ntk_cond"] = "the network's output has NaN or infinite values"
                return {k: scores[k] for k in want}, reasons
        _finish(scores, reasons, "ntk_cond", lambda: _condition_number(theta))
    return {k: scores[k] for k in want}, reasons


def _frozen_backward(
    x: torch.Tensor,
    S: torch.Tensor,
    cap: _Capture,
    want: tuple[str, ...],
    need_ntk: bool,
    params: list[nn.Parameter],
    sink: _GramSink | None,
    rows: slice,
    in_jac: list[torch.Tensor],
) -> None:
    """One backward pass of ``sum(S)``: per-sample input gradients and layer-output gradients."""
    targets: list[torch.Tensor] = [x] if "jacobian" in want else []
    calls = [c for c in cap.calls if c.out.requires_grad] if need_ntk else []
    targets += [c.out for c in calls]
    others = _other_params(params, calls, cap) if need_ntk else []
    if targets:
        grads = torch.autograd.grad(S.sum(), targets, allow_unused=True, retain_graph=bool(others))
        if "jacobian" in want:
            g = grads[0] if grads[0] is not None else torch.zeros_like(x)
            in_jac.append(g.detach().reshape(x.shape[0], -1))
            grads = grads[1:]
        with torch.no_grad():
            for c, dy in zip(calls, grads, strict=True):
                dy = torch.zeros_like(c.out) if dy is None else dy
                for p, G in _per_sample(c, dy):
                    sink.add(p, rows, G)
    if others:
        _loop_grads(S, others, sink, rows)


def _other_params(params: list[nn.Parameter], calls: list[_Call], cap: _Capture) -> list[nn.Parameter]:
    """Trainable parameters not seen in a handled call (used by other operations, or unused)."""
    seen = {id(p) for c in calls for p, _ in c.params}
    return [p for p in params if id(p) not in seen]


def _loop_grads(S: torch.Tensor, others: list[nn.Parameter], sink: _GramSink, rows: slice) -> None:
    """Per-sample gradients of parameters used by unhandled operations: one backward per sample."""
    probe = torch.autograd.grad(S.sum(), others, allow_unused=True, retain_graph=True)
    used = [p for p, g in zip(others, probe, strict=True) if g is not None]
    if not used:
        return
    per = [torch.autograd.grad(S[i], used, retain_graph=True, allow_unused=True) for i in range(S.shape[0])]
    for j, p in enumerate(used):
        G = torch.stack([torch.zeros_like(p) if g[j] is None else g[j] for g in per])
        sink.add(p, rows, G)


def _exact_theta(net: nn.Module, images: torch.Tensor, params: list[nn.Parameter]) -> torch.Tensor | None:
    """``Theta`` with gradients through BatchNorm's batch statistics: one backward pass per sample.

    ``J`` has rank ``B`` and every row needs the whole batch's backward pass, so one forward and ``B``
    backward passes are the floor in floating-point work, and batching the passes could only save
    per-call overhead. The vectorised forms tried (``torch.func`` ``vjp`` + ``vmap`` over one-hot
    cotangents, ``is_grads_batched``, activation-only passes with separate weight-gradient products)
    were slower than these plain passes on the CPU: their convolution and BatchNorm batch rules loop
    and copy, and autograd's fused convolution backward computes both gradients at once. The figures
    are in ``docs/results.md`` (``benchmarks/heuristics_cost.py``)."""
    B = images.shape[0]
    with torch.enable_grad(), _Capture({}, "coupled", record=False):
        out = net(images)
    if not torch.isfinite(out).all():
        return None
    S = out.reshape(B, -1).sum(1)
    n = sum(p.numel() for p in params)
    if not (params and S.requires_grad):
        return torch.zeros(B, B, dtype=torch.float64, device=images.device)
    J = torch.empty(B, n, device=images.device)
    for i in range(B):
        grads = torch.autograd.grad(S[i], params, retain_graph=i < B - 1, allow_unused=True)
        o = 0
        for p, g in zip(params, grads, strict=True):
            J[i, o : o + p.numel()] = 0 if g is None else g.reshape(-1)
            o += p.numel()
    theta = torch.zeros(B, B, dtype=torch.float64, device=images.device)
    for start in range(0, n, 1 << 20):
        blk = J[:, start : start + (1 << 20)]
        theta += (blk @ blk.t()).double()
    return theta


# ----------------------------------------------------------------------------- the three numbers


def _finish(scores: dict[str, float], reasons: dict[str, str], name: str, compute: Any) -> None:
    try:
        scores[name] = float(compute())
    except _Degenerate as e:
        scores[name] = WORST_SCORE
        reasons[name] = str(e)


class _Degenerate(Exception):
    pass


def _condition_number(theta: torch.Tensor) -> float:
    if not torch.isfinite(theta).all():
        raise _Degenerate("the NTK has NaN or infinite entries")
    ev = torch.linalg.eigvalsh(theta.cpu())
    lo, hi = float(ev[0]), float(ev[-1])
    if hi <= 0:
        raise _Degenerate("every per-sample weight gradient is zero")
    if lo <= NTK_RTOL * hi:
        raise _Degenerate(
            f"the NTK is singular (lambda_min {lo:.3g} <= {NTK_RTOL:g} * lambda_max {hi:.3g}): "
            "some samples' weight gradients are linearly dependent, e.g. the output ignores the input"
        )
    return hi / lo


def _activation_from_codes(codes: dict[tuple[int, int], list[torch.Tensor]], relus: list[nn.Module], B: int) -> float:
    if not codes:
        raise _Degenerate("the network has no nn.ReLU module (or none was called), so there are no codes")
    A = torch.zeros(B, B, dtype=torch.float64)
    s = torch.zeros(B, dtype=torch.float64)
    M = 0
    for parts in codes.values():
        c = torch.cat(parts)
        for start in range(0, c.shape[1], 1 << 22):  # float32 sums of 0/1 stay exact below 2**24
            blk = c[:, start : start + (1 << 22)].float()
            A += (blk @ blk.t()).double().cpu()
            s += blk.sum(1).double().cpu()
        M += c.shape[1]
    K = 2 * A - s[:, None] - s[None, :] + M
    sign, logabs = torch.linalg.slogdet(K)
    if sign <= 0 or not math.isfinite(float(logabs)) or float(logabs) < math.log(0.5):
        raise _Degenerate(
            "the activation kernel K is singular: two samples share a ReLU code pattern "
            "(an integer matrix with |det K| < 1/2 is singular up to rounding)"
        )
    return -float(logabs)


def _swap_from_codes(codes: dict[tuple[int, int], list[torch.Tensor]], B: int) -> float:
    if not codes:
        raise _Degenerate("the network has no nn.ReLU module (or none was called), so there are no patterns")
    keys = []
    for parts in codes.values():
        c = torch.cat(parts)  # B x units
        # each unit's pattern packed into int64 words of 64 samples (bit 63 wraps to the sign: still exact)
        words = torch.zeros(c.shape[1], (B + 63) // 64, dtype=torch.int64, device=c.device)
        for i in range(B):
            words[:, i // 64] |= c[i].to(torch.int64) << (i % 64)
        keys.append(words)
    k = torch.cat(keys)
    return -float(torch.unique(k[:, 0]).numel() if k.shape[1] == 1 else torch.unique(k, dim=0).shape[0])


def _jacobian_from_grads(J: torch.Tensor) -> float:
    J = J.double().cpu()
    if not torch.isfinite(J).all():
        raise _Degenerate("the input Jacobian has NaN or infinite entries")
    Jc = J - J.mean(1, keepdim=True)
    norms = Jc.norm(dim=1)
    if bool((norms == 0).any()):
        i = int(torch.nonzero(norms == 0)[0])
        raise _Degenerate(f"sample {i}'s logits do not depend on its input (constant Jacobian), corrcoef undefined")
    Jn = Jc / norms[:, None]
    sigma = Jn @ Jn.t()
    v = torch.linalg.eigvalsh(sigma)
    if not torch.isfinite(v).all() or float(v[0]) + JACOBIAN_K <= 0:
        raise _Degenerate("the Jacobian correlation matrix has invalid eigenvalues")
    return float(torch.sum(torch.log(v + JACOBIAN_K) + 1.0 / (v + JACOBIAN_K)))
