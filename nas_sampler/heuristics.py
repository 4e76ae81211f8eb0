"""Training-free scores of a network on one batch of images, each oriented so that lower is better.

(Over 450 lines: the fused pass, its chunking and its exact-mode NTK are one algorithm whose steps
share state; the scores themselves are in :mod:`nas_sampler.scores`, the capture in
:mod:`nas_sampler.capture`.)

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
* AZ-NAS's four (Lee & Ham 2024; ``metrics=[...]`` by name, :mod:`nas_sampler.scores`): expressivity
  and progressivity from the spectral entropy of each block's features, trainability from a sketch
  of each block's Jacobian (one backward pass through each block alone), complexity the
  multiply-accumulates. The blocks are the network's declared ``feature_blocks()``
  (:mod:`nas_sampler.blocks`).
* :func:`score_all` computes any of them sharing work: one forward pass gives the ReLU codes and the
  layer inputs, one backward pass of the summed logits gives the input Jacobians and the gradient
  at every layer output, from which the per-sample weight gradients come in a few batched matrix
  products (no per-sample loop, :mod:`nas_sampler.capture`). Each score is an entry of
  :data:`nas_sampler.scores.SCORES` that declares what it needs from the pass; the pass records only
  that.

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from nas_sampler.blocks import BlockRecorder
from nas_sampler.capture import Call, Capture, GramSink, per_sample_grads
from nas_sampler.device import resolve_device
from nas_sampler.errors import ConfigError, NASError
from nas_sampler.scores import JACOBIAN_K, NTK_RTOL, SCORES, WORST_SCORE, Degenerate, Pass, needs_of

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

#: The three default score names, as keys of :func:`score_all` and Optuna metric names.
SCORE_NAMES: tuple[str, ...] = ("ntk_cond", "activation", "jacobian")

#: The built-in scores (:data:`nas_sampler.scores.SCORES` also holds any registered later).
ALL_SCORES: tuple[str, ...] = tuple(SCORES)

#: Default memory budget on CPU (bytes); on CUDA the default is half the free device memory.
DEFAULT_CPU_BUDGET: int = 4 * 2**30

_MODES = ("fast", "exact")

#: What the NTK scores need: with ``ntk_batch`` they are computed on the first images only.
_NTK_NEEDS = frozenset({"ntk", "ntk_weights_coupled"})

#: What needs one forward pass with BatchNorm's statistics coupling the samples (the whole batch).
_COUPLED_NEEDS = frozenset({"coupled_jacobian", "ntk_weights_coupled"})


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
    count it picks better (``docs/results.md``)."""
    return _run(net, images, ("swap",), "fast", device, memory_budget, seed, on_degenerate)["swap"]


def check_ntk_batch(ntk_batch: Any) -> int | None:
    """``ntk_batch`` if it is None or an integer >= 2, else :class:`ConfigError`."""
    if ntk_batch is not None and (not isinstance(ntk_batch, int) or isinstance(ntk_batch, bool) or ntk_batch < 2):
        raise ConfigError(f"ntk_batch={ntk_batch!r} is invalid: give an integer >= 2 (images for the NTK), or None")
    return ntk_batch


def check_metrics(metrics: Sequence[str]) -> list[str]:
    """``metrics`` as a list if it names one or more distinct scores, else :class:`ConfigError`."""
    names = [] if isinstance(metrics, str) else list(metrics)
    if not names or sorted(set(names) & set(SCORES)) != sorted(names):
        raise ConfigError(f"metrics={metrics!r} is invalid: give one or more distinct names of {list(SCORES)}")
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
    want = tuple(m for m in SCORES if m in check_metrics(metrics))
    B = images.shape[0] if isinstance(images, torch.Tensor) and images.dim() == 4 else None
    ntks = tuple(m for m in want if SCORES[m].needs & _NTK_NEEDS)
    if check_ntk_batch(ntk_batch) is not None and ntks and B is not None and ntk_batch < B:
        _check_args(net, images, ntk_mode, memory_budget, on_degenerate)
        args = (device, memory_budget, seed)
        others = tuple(m for m in want if m not in ntks)
        scores, reasons = _run_raw(net, images, others, "fast", *args) if others else ({}, {})
        ntk, ntk_reasons = _run_raw(net, images[:ntk_batch], ntks, ntk_mode, *args)
        merged = {**ntk, **scores}
        return _verdict({m: merged[m] for m in want}, {**ntk_reasons, **reasons}, on_degenerate)
    return _run(net, images, want, ntk_mode, device, memory_budget, seed, on_degenerate)


@contextmanager
def scoring_state(net: nn.Module, device: torch.device, seed: int | None) -> Iterator[None]:
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

    with scoring_state(net, dev, seed):
        per_sample = _probe_bytes(net, images[:1])
        params = [p for p in net.parameters() if p.requires_grad]
        needs = needs_of(want)
        extra = B * sum(p.numel() for p in params) * 4 if "ntk" in needs else 0
        chunk = B
        if needs - _COUPLED_NEEDS - ({"ntk"} if mode == "exact" else set()):  # coupled: the whole batch at once
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
    mode = Capture({}, "frozen", record=False)
    with torch.no_grad(), mode:
        net(one)
    return 4 * mode.out_bytes


def _score(
    net: nn.Module, images: torch.Tensor, want: tuple[str, ...], mode: str, chunk: int, params: list[nn.Parameter]
) -> tuple[dict[str, float], dict[str, str]]:
    B = images.shape[0]
    tracked = {id(p): p for p in params}
    needs = needs_of(want)
    need_ntk_fast = "ntk" in needs and mode == "fast"
    need_codes = bool(needs & {"relu_codes", "module_codes"})
    need_jac = "input_jacobian" in needs
    need_macs = "macs" in needs
    # AZ-NAS's blocks: their features, and a backward pass through each block alone
    blocks = BlockRecorder(net, B, _draw_seed(), images.device) if "block_features" in needs else None
    need_grad = need_ntk_fast or need_jac or blocks is not None
    need_frozen = need_ntk_fast or need_codes or need_jac or need_macs or blocks is not None
    macs = 0
    reasons: dict[str, str] = {}
    scores: dict[str, float] = {}

    # nn.ReLU modules for "relu_codes"; NASWOT's test (the class name contains ReLU) for "module_codes"
    stores: dict[int, tuple[nn.Module, list[dict]]] = {}
    codes: dict[tuple[int, int], list[torch.Tensor]] = {}
    module_codes: dict[tuple[int, int], list[torch.Tensor]] = {}
    for m in net.modules():
        into = [codes] if isinstance(m, nn.ReLU) and "relu_codes" in needs else []
        into += [module_codes] if "ReLU" in str(type(m)) and "module_codes" in needs else []
        if into:
            stores[id(m)] = (m, into)
    calls_seen: dict[int, int] = {}

    def relu_hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        k = calls_seen.get(id(m), 0)
        calls_seen[id(m)] = k + 1
        code = (inp[0] > 0).reshape(inp[0].shape[0], -1)
        for store in stores[id(m)][1]:
            store.setdefault((id(m), k), []).append(code)

    in_jac: list[torch.Tensor] = []
    nonfinite = False
    sink = None
    if need_frozen:
        stats = None
        if chunk < B:  # batch statistics of the whole batch first, then chunks that reuse them
            cap = Capture(tracked, "frozen", record=False)
            with torch.no_grad(), cap:
                net(images)
            stats = cap.stats
        handles = [m.register_forward_hook(relu_hook) for m, _ in stores.values()]
        handles += blocks.hooks() if blocks is not None else []
        try:
            for start in range(0, B, chunk):
                rows = slice(start, min(B, start + chunk))
                calls_seen.clear()
                x = images[rows].clone().requires_grad_(need_jac or blocks is not None)
                cap = Capture(tracked, "frozen", stats=stats, record=need_ntk_fast, count_macs=need_macs and start == 0)
                with torch.set_grad_enabled(need_grad), cap:
                    out = net(x)
                if not torch.isfinite(out).all():
                    nonfinite = True
                    break
                macs += cap.macs
                if blocks is not None:
                    blocks.finish_chunk(rows)
                if not (need_ntk_fast or need_jac):
                    continue
                S = out.reshape(out.shape[0], -1).sum(1)
                if need_ntk_fast and sink is None:
                    uses: dict[int, int] = {}
                    for c in cap.calls:
                        for p, _ in c.params:
                            uses[id(p)] = uses.get(id(p), 0) + 1
                    sink = GramSink(params, B, uses, keep_j=chunk < B, device=images.device)
                _frozen_backward(x, S, cap, need_jac, need_ntk_fast, params, sink, rows, in_jac)
        finally:
            for h in handles:
                h.remove()
    coupled = _coupled_pass(net, images, params, needs) if needs & _COUPLED_NEEDS and not nonfinite else None
    if nonfinite or (needs & _COUPLED_NEEDS and coupled is None):
        return dict.fromkeys(want, WORST_SCORE), dict.fromkeys(want, "the network's output has NaN or infinite values")

    def ntk() -> torch.Tensor | None:
        if mode == "exact":
            return _exact_theta(net, images, params)
        return sink.result() if sink is not None else torch.zeros(B, B, dtype=torch.float64)

    recorded = Pass(B, codes, in_jac, ntk, module_codes, macs=macs)
    if blocks is not None:
        recorded.blocks = blocks.record
    if coupled is not None:
        recorded.coupled_jacobian, theta = coupled
        recorded.ntk_weights_coupled = lambda: theta
    for name in want:
        _finish(scores, reasons, name, lambda name=name: SCORES[name].compute(recorded))
    return {k: scores[k] for k in want}, reasons


def _draw_seed() -> int:
    """A seed from torch's generator (seeded by ``score_all``'s ``seed``) for the pass's own draws."""
    return int(torch.randint(0, 2**62, (1,)))


def _frozen_backward(
    x: torch.Tensor,
    S: torch.Tensor,
    cap: Capture,
    need_jac: bool,
    need_ntk: bool,
    params: list[nn.Parameter],
    sink: GramSink | None,
    rows: slice,
    in_jac: list[torch.Tensor],
) -> None:
    """One backward pass of ``sum(S)``: per-sample input gradients and layer-output gradients."""
    targets: list[torch.Tensor] = [x] if need_jac else []
    calls = [c for c in cap.calls if c.out.requires_grad] if need_ntk else []
    targets += [c.out for c in calls]
    others = _other_params(params, calls, cap) if need_ntk else []
    if targets:
        grads = torch.autograd.grad(S.sum(), targets, allow_unused=True, retain_graph=bool(others))
        if need_jac:
            g = grads[0] if grads[0] is not None else torch.zeros_like(x)
            in_jac.append(g.detach().reshape(x.shape[0], -1))
            grads = grads[1:]
        with torch.no_grad():
            for c, dy in zip(calls, grads, strict=True):
                dy = torch.zeros_like(c.out) if dy is None else dy
                for p, G in per_sample_grads(c, dy):
                    sink.add(p, rows, G)
    if others:
        _loop_grads(S, others, sink, rows)


def _other_params(params: list[nn.Parameter], calls: list[Call], cap: Capture) -> list[nn.Parameter]:
    """Trainable parameters not seen in a handled call (used by other operations, or unused)."""
    seen = {id(p) for c in calls for p, _ in c.params}
    return [p for p in params if id(p) not in seen]


def _loop_grads(S: torch.Tensor, others: list[nn.Parameter], sink: GramSink, rows: slice) -> None:
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
    with torch.enable_grad(), Capture({}, "coupled", record=False):
        out = net(images)
    if not torch.isfinite(out).all():
        return None
    return _coupled_theta(out.reshape(images.shape[0], -1).sum(1), params)


def _coupled_pass(
    net: nn.Module, images: torch.Tensor, params: list[nn.Parameter], needs: frozenset[str]
) -> tuple[torch.Tensor | None, torch.Tensor | None] | None:
    """The published codes' train-mode pass (batch statistics couple the samples): the input Jacobian
    of the summed logits and TE-NAS's NTK of the parameters named ``weight``, each None when not
    needed; None when the output is not finite."""
    x = images.clone().requires_grad_("coupled_jacobian" in needs)
    with torch.enable_grad(), Capture({}, "coupled", record=False):
        out = net(x)
    if not torch.isfinite(out).all():
        return None
    S = out.reshape(x.shape[0], -1).sum(1)
    want_ntk = "ntk_weights_coupled" in needs
    jac = None
    if x.requires_grad:
        (g,) = torch.autograd.grad(S.sum(), [x], allow_unused=True, retain_graph=want_ntk)
        jac = (torch.zeros_like(x) if g is None else g).detach().reshape(x.shape[0], -1)
    theta = None
    if want_ntk:
        tracked = {id(p) for p in params}
        theta = _coupled_theta(S, [p for name, p in net.named_parameters() if "weight" in name and id(p) in tracked])
    return jac, theta


def _coupled_theta(S: torch.Tensor, params: list[nn.Parameter]) -> torch.Tensor:
    """``J J^T`` with ``J[i]`` the gradient of ``S[i]`` with respect to ``params``: ``B`` backward passes."""
    B = S.shape[0]
    n = sum(p.numel() for p in params)
    if not (params and S.requires_grad):
        return torch.zeros(B, B, dtype=torch.float64, device=S.device)
    J = torch.empty(B, n, device=S.device)
    for i in range(B):
        grads = torch.autograd.grad(S[i], params, retain_graph=i < B - 1, allow_unused=True)
        o = 0
        for p, g in zip(params, grads, strict=True):
            J[i, o : o + p.numel()] = 0 if g is None else g.reshape(-1)
            o += p.numel()
    theta = torch.zeros(B, B, dtype=torch.float64, device=S.device)
    for start in range(0, n, 1 << 20):
        blk = J[:, start : start + (1 << 20)]
        theta += (blk @ blk.t()).double()
    return theta


# ----------------------------------------------------------------------------- the three numbers


def _finish(scores: dict[str, float], reasons: dict[str, str], name: str, compute: Any) -> None:
    try:
        scores[name] = float(compute())
    except Degenerate as e:
        scores[name] = WORST_SCORE
        reasons[name] = str(e)
