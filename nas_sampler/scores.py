"""The table of training-free scores: each score's name, what it needs from the fused pass, and how it
turns that into one number (lower is better).

:func:`nas_sampler.heuristics.score_all` runs one forward and one backward pass for every score it is
asked for, recording only what their ``needs`` add up to:

* ``"relu_codes"``: the binary code (input > 0) of every ``nn.ReLU`` call, per sample;
* ``"input_jacobian"``: each sample's gradient of its summed logits with respect to its image;
* ``"ntk"``: the empirical NTK ``Theta = J J^T`` of the per-sample weight gradients (the costly one:
  it is all the batched per-sample gradient products, and in exact mode one backward per sample).

The published codes define their scores a little differently; the ``*_tenas`` and ``*_naswot``
scores are those definitions exactly (``docs/scores.md`` says how each differs), and need:

* ``"module_codes"``: NASWOT's codes, the input code of every module whose class name contains
  ``ReLU`` (so also the input of each ``ReLUConvBN`` block, a second time);
* ``"coupled_jacobian"``: the input gradients of the summed logits with BatchNorm's batch statistics
  coupling the samples (NASWOT v1 runs the network in train mode);
* ``"ntk_weights_coupled"``: TE-NAS's NTK, of the parameters whose name contains ``weight`` only,
  with the batch statistics coupling the samples (one backward per sample).

AZ-NAS's scores (Lee & Ham, 2024) need:

* ``"block_features"``: the channel covariances of the network's successive features and a sketch
  of each block's Jacobian, from one backward pass through each block alone (:mod:`nas_sampler.blocks`);
* ``"macs"``: the multiply-accumulates of every ``conv2d`` and ``linear`` call, per sample.

A new score is one function decorated with :func:`register_score`; it then works everywhere a metric
name does (``TrainingFreeObjective(metrics=...)``, presets, ``--metrics``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from nas_sampler.blocks import BlockRecord

#: What a score can ask the fused pass for.
NEEDS: tuple[str, ...] = (
    "relu_codes", "input_jacobian", "ntk", "module_codes", "coupled_jacobian", "ntk_weights_coupled",
    "block_features", "macs",
)  # fmt: skip

#: Returned for a degenerate score with ``on_degenerate="worst"``. Above every non-degenerate value:
#: ``activation <= 0`` (a non-singular integer matrix has ``|det| >= 1``), ``jacobian <= B (1/k + log B)``
#: (about ``6.4e6`` at ``B = 64``), ``ntk_cond <= 1 / NTK_RTOL``; ``expressivity`` and ``complexity`` are
#: ``<= 0``, ``progressivity <= log C`` and ``trainability`` is degenerate from this value on.
WORST_SCORE: float = 1e15

#: ``Theta`` is treated as singular when ``lambda_min <= NTK_RTOL * lambda_max``: ``Theta`` is built from
#: float32 gradients, whose rounding (about 1e-7 relative) hides eigenvalues below that level.
NTK_RTOL: float = 1e-7

#: NASWOT v1's regulariser ``k`` in ``log(v + k) + 1 / (v + k)``.
JACOBIAN_K: float = 1e-5


class Degenerate(Exception):
    """The score is undefined for this network; the message says why (stored on the trial)."""


@dataclass
class Pass:
    """What one fused pass recorded, for the scores that asked for it."""

    batch: int
    relu_codes: dict[tuple[int, int], list[torch.Tensor]]  # (module id, call index) -> chunks of B x units
    input_jacobian: list[torch.Tensor]  # chunks of B x pixels
    ntk: Callable[[], torch.Tensor | None]  # Theta, computed on demand; None: the output was not finite
    module_codes: dict[tuple[int, int], list[torch.Tensor]] = field(default_factory=dict)
    coupled_jacobian: torch.Tensor | None = None  # B x pixels
    ntk_weights_coupled: Callable[[], torch.Tensor | None] = lambda: None
    blocks: BlockRecord = field(default_factory=BlockRecord)
    macs: int = 0  # per sample


@dataclass(frozen=True)
class Score:
    name: str
    needs: frozenset[str]
    compute: Callable[[Pass], float]


SCORES: dict[str, Score] = {}


def register_score(name: str, needs: tuple[str, ...]) -> Callable[[Callable[[Pass], float]], Callable[[Pass], float]]:
    """Decorator: ``compute(pass) -> float`` is the score ``name``, computed from ``needs``."""
    unknown = sorted(set(needs) - set(NEEDS))
    if unknown or name in SCORES:
        raise ValueError(f"score {name!r}: needs {unknown} are unknown (known: {NEEDS}), or the name is taken")

    def add(compute: Callable[[Pass], float]) -> Callable[[Pass], float]:
        SCORES[name] = Score(name, frozenset(needs), compute)
        return compute

    return add


def needs_of(names: Any) -> frozenset[str]:
    """What the scores ``names`` need together."""
    return frozenset().union(*(SCORES[n].needs for n in names))


@register_score("ntk_cond", ("ntk",))
def condition_number(p: Pass) -> float:
    """TE-NAS: ``lambda_max / lambda_min`` of the NTK (every trainable parameter)."""
    return _condition_number(p.ntk())


@register_score("ntk_cond_tenas", ("ntk_weights_coupled",))
def condition_number_tenas(p: Pass) -> float:
    """TE-NAS's code (``get_ntk_n``, train mode): the NTK of the parameters named ``weight`` only, its
    eigenvalues in float32 as there (the code's own rounding, about 1e-6 of the condition number)."""
    theta = p.ntk_weights_coupled()
    return _condition_number(None if theta is None else theta.float())


def _condition_number(theta: torch.Tensor | None) -> float:
    if theta is None:
        raise Degenerate("the network's output has NaN or infinite values")
    if not torch.isfinite(theta).all():
        raise Degenerate("the NTK has NaN or infinite entries")
    ev = torch.linalg.eigvalsh(theta.cpu()).double()
    lo, hi = float(ev[0]), float(ev[-1])
    if hi <= 0:
        raise Degenerate("every per-sample weight gradient is zero")
    if lo <= NTK_RTOL * hi:
        raise Degenerate(
            f"the NTK is singular (lambda_min {lo:.3g} <= {NTK_RTOL:g} * lambda_max {hi:.3g}): "
            "some samples' weight gradients are linearly dependent, e.g. the output ignores the input"
        )
    return hi / lo


@register_score("activation", ("relu_codes",))
def activation(p: Pass) -> float:
    """NASWOT: minus ``log|det K|`` of the Hamming-type kernel of the samples' ``nn.ReLU`` codes."""
    return _minus_logdet(p.relu_codes, p.batch)


@register_score("activation_naswot", ("module_codes",))
def activation_naswot(p: Pass) -> float:
    """NASWOT's code (``hook_logdet``): its hook is on every module whose class name contains ``ReLU``."""
    return _minus_logdet(p.module_codes, p.batch)


def _minus_logdet(codes: dict[tuple[int, int], list[torch.Tensor]], B: int) -> float:
    if not codes:
        raise Degenerate("the network has no nn.ReLU module (or none was called), so there are no codes")
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
        raise Degenerate(
            "the activation kernel K is singular: two samples share a ReLU code pattern "
            "(an integer matrix with |det K| < 1/2 is singular up to rounding)"
        )
    return -float(logabs)


@register_score("jacobian", ("input_jacobian",))
def jacobian(p: Pass) -> float:
    """NASWOT v1: ``sum(log(v + k) + 1/(v + k))`` over the eigenvalues of the input Jacobians' correlations."""
    return _jacobian_score(torch.cat(p.input_jacobian))


@register_score("jacobian_naswot", ("coupled_jacobian",))
def jacobian_naswot(p: Pass) -> float:
    """NASWOT v1's code (``eval_score``, train mode): the batch statistics couple the samples' Jacobians."""
    assert p.coupled_jacobian is not None
    return _jacobian_score(p.coupled_jacobian)


def _jacobian_score(J: torch.Tensor) -> float:
    J = J.double().cpu()
    if not torch.isfinite(J).all():
        raise Degenerate("the input Jacobian has NaN or infinite entries")
    Jc = J - J.mean(1, keepdim=True)
    norms = Jc.norm(dim=1)
    if bool((norms == 0).any()):
        i = int(torch.nonzero(norms == 0)[0])
        raise Degenerate(f"sample {i}'s logits do not depend on its input (constant Jacobian), corrcoef undefined")
    Jn = Jc / norms[:, None]
    v = torch.linalg.eigvalsh(Jn @ Jn.t())
    if not torch.isfinite(v).all() or float(v[0]) + JACOBIAN_K <= 0:
        raise Degenerate("the Jacobian correlation matrix has invalid eigenvalues")
    return float(torch.sum(torch.log(v + JACOBIAN_K) + 1.0 / (v + JACOBIAN_K)))


@register_score("swap", ("relu_codes",))
def swap(p: Pass) -> float:
    """SWAP: minus the number of distinct sample-wise activation patterns over every ReLU unit."""
    if not p.relu_codes:
        raise Degenerate("the network has no nn.ReLU module (or none was called), so there are no patterns")
    B = p.batch
    keys = []
    for parts in p.relu_codes.values():
        c = torch.cat(parts)  # B x units
        # each unit's pattern packed into int64 words of 64 samples (bit 63 wraps to the sign: still exact)
        words = torch.zeros(c.shape[1], (B + 63) // 64, dtype=torch.int64, device=c.device)
        for i in range(B):
            words[:, i // 64] |= c[i].to(torch.int64) << (i % 64)
        keys.append(words)
    k = torch.cat(keys)
    return -float(torch.unique(k[:, 0]).numel() if k.shape[1] == 1 else torch.unique(k, dim=0).shape[0])


# ----------------------------------------------------------------------------- AZ-NAS (Lee & Ham, 2024)


@register_score("expressivity", ("block_features",))
def expressivity(p: Pass) -> float:
    """AZ-NAS's expressivity, negated: minus the sum over the features (:mod:`nas_sampler.blocks`) of the
    entropy of the normalised eigenvalues of each one's channel covariance. Features that use every
    direction of their channel space alike (isotropic) have the largest entropy, ``log C``; features on
    one line have 0. AZ-NAS maximises the sum, so its negative is minimised."""
    return -sum(feature_entropies(p))


@register_score("progressivity", ("block_features",))
def progressivity(p: Pass) -> float:
    """AZ-NAS's progressivity, negated: minus the smallest increase of that entropy from one feature to
    the next. A network whose every block adds expressivity is good; one block that loses much of it
    (a cell that collapses its features) makes the score large."""
    h = feature_entropies(p)
    if len(h) < 2:
        raise Degenerate("the network has no block, so no feature follows another")
    return 0.0 - min(b - a for a, b in zip(h, h[1:], strict=False))  # 0.0 -: no negative zero


@register_score("trainability", ("block_features",))
def trainability(p: Pass) -> float:
    """AZ-NAS's trainability, negated: the mean over the block calls of ``sigma + 1/sigma - 2``, ``sigma``
    the spectral norm of the estimate of the block's Jacobian from its input to its output. 0, the best,
    when every block passes gradients on neither amplified nor damped (``sigma = 1``), so they neither
    explode nor vanish through depth. As in AZ-NAS's code, a block that is exactly the identity (the
    gradient passes unchanged: a cell of skips alone, nothing to train) makes the network degenerate."""
    terms = []
    for k, sketch in enumerate(p.blocks.jacobians):
        if not sketch.paired:
            continue
        if sketch.identity:
            raise Degenerate(f"block call {k} is the identity map: it passes the gradient unchanged, nothing to train")
        sigma = float(torch.linalg.matrix_norm(sketch.jacobian(), ord=2))
        if not (math.isfinite(sigma) and sigma > 0):
            raise Degenerate(f"block call {k}'s output does not depend on its input (Jacobian estimate {sigma:g})")
        terms.append(sigma + 1.0 / sigma - 2.0)
    if not terms:
        raise Degenerate("no block's input and output could be paired position by position")
    value = sum(terms) / len(terms)
    if value >= WORST_SCORE:
        raise Degenerate(f"a block's Jacobian is near zero (trainability {value:.3g})")
    return value


@register_score("complexity", ("macs",))
def complexity(p: Pass) -> float:
    """AZ-NAS's complexity, negated: minus the multiply-accumulates per sample of every ``conv2d`` and
    ``linear`` call (the FLOPs it counts; :func:`nas_sampler.phenotype.count_flops` on the same network).
    AZ-NAS rewards capacity, so more is better. Alone it is a size proxy, like the parameter count."""
    return -float(p.macs)


def feature_entropies(p: Pass) -> list[float]:
    """The spectral entropy of every recorded feature's channel covariance, in order."""
    if not p.blocks.features:
        raise Degenerate("the network has no feature block (or none was called)")
    return [_spectral_entropy(m.covariance(), k) for k, m in enumerate(p.blocks.features)]


def _spectral_entropy(cov: torch.Tensor, k: int) -> float:
    """``-sum(q log q)``, ``q`` the covariance's eigenvalues over their sum (rounding's negatives as 0)."""
    if not torch.isfinite(cov).all():
        raise Degenerate(f"feature {k} has NaN or infinite values")
    ev = torch.linalg.eigvalsh(cov).clamp(min=0)
    total = float(ev.sum())
    if total <= 0:
        raise Degenerate(f"feature {k} is constant over the batch: its covariance is zero")
    q = ev[ev > 0] / total
    return float(-(q * q.log()).sum())
