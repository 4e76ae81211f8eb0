"""The DARTS tournament: a second way to choose parents, by brief joint training instead of scores.

(Over 450 lines: the supernet, its training loop and the selector that stores and reuses its
results are one mechanism.)

Every ``every``-th generation the sampler hands the generation's candidates to
:meth:`DartsTournament.select`. The candidates are split into groups of ``size``; one supernet holds
every candidate cell. A stem (3x3 convolution, stride 2 by default: the cells work at half
resolution, a quarter of the cost) feeds all groups: every group reads the same stem output (so a
group of useless cells cannot starve another group), the cells of a group sit side by side at that
one depth, and their outputs are mixed by a softmax over one learnable ``alpha`` per candidate. Each
group's mix has its own ReLU, global average pooling and linear classifier, and the loss is the sum
of the groups' losses, so a group's alpha follows only its own loss. (With one classifier on the
concatenation of all groups, the other groups' features already explained the labels and a group's
alpha gradient was mostly noise: the group's best NAS-Bench-201 cell won far less often, at the same
cost; figures in docs/results.md.) The network weights are
trained for ``warmup_steps`` alone, then weights and alphas together for ``steps`` (first-order DARTS:
a weight step on a training batch, then an alpha step on a validation batch drawn from a disjoint part
of the data). The candidate with the largest alpha in each group wins.

Cells map ``C_in`` to their own width (CellSpace cells have differing output channels): a cell whose
output width differs from the supernet width is projected by a 1x1 convolution and an affine-free
BatchNorm (affine-free, as in DARTS's search phase, so that a learned output scale cannot stand in for
alpha); a cell that already has the supernet width is mixed as it is, as DARTS mixes operations.
There is no normalisation between the mix and its classifier, so the mix's scale, and therefore the
share of a cell whose output carries nothing, matters to the loss.

DARTS is known to favour parameter-free operations (skip connections, pooling); see
``benchmarks/tournament_bias.py`` for which cells this tournament favours.

Results are stored in the study (``nas_sampler:tournament:<generation>`` study user attribute: groups,
winners, survivors, every candidate's alpha, the loss curves), so a resumed search reuses them.
Optuna forbids changing a finished trial, so the alphas cannot be written as user attributes of the
candidate trials themselves; :func:`tournament_alphas` reads them back per trial number.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import optuna
import torch
import torch.nn.functional as F
from optuna.trial import FrozenTrial
from torch import nn
from torch.utils.data import Dataset

from nas_sampler import schema
from nas_sampler.data import decode
from nas_sampler.device import resolve_device
from nas_sampler.errors import ConfigError, DataError
from nas_sampler.genotype import Genotype
from nas_sampler.selection import constraint_violations
from nas_sampler.space import SearchSpace, recorded_space

logger = logging.getLogger(__name__)

TOURNAMENT_ATTR_PREFIX = schema.TOURNAMENT_PREFIX
DataLike = str | os.PathLike | Dataset | tuple[torch.Tensor, torch.Tensor]


# ----------------------------------------------------------------------------- small helpers


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name}={value!r} is invalid: give an integer of at least {minimum}")
    return int(value)


def _check_positive_float(name: str, value: Any, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = "non-negative" if allow_zero else "positive"
        raise ConfigError(f"{name}={value!r} is invalid: give a {bound} finite number")
    return float(value)


# ----------------------------------------------------------------------------- data


class _BatchSource:
    """Seeded, disjoint training and validation batches from a data set or a pair of tensors.

    Only the images a batch uses are decoded (one permutation of the data set, its first half feeds
    the weights and its second half the alphas, each read in order and wrapped around)."""

    def __init__(self, data: DataLike, batch_size: int, seed: int, root: str | os.PathLike | None = None):
        self.tensors: tuple[torch.Tensor, torch.Tensor] | None = None
        self.dataset: Dataset | None = None
        if isinstance(data, tuple):
            if len(data) != 2 or not all(isinstance(t, torch.Tensor) for t in data):
                raise DataError("data as a tuple must be (images N x C x H x W tensor, labels N tensor)")
            images, labels = data
            if images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels):
                raise DataError(
                    f"data tensors have shapes {tuple(images.shape)} and {tuple(labels.shape)}; "
                    "expected images N x C x H x W and labels N"
                )
            self.tensors = (images.float(), labels.long())
            n = len(labels)
        else:
            if isinstance(data, Dataset):
                self.dataset = data
            else:
                from nas_sampler.data import load_dataset

                self.dataset = load_dataset(data, root=root, train=True)
            n = len(self.dataset)  # type: ignore[arg-type]
        if n < 4:
            raise DataError(f"the tournament needs at least 4 images (2 for training, 2 for validation); got {n}")
        perm = np.random.default_rng([int(seed), 0x70A]).permutation(n)
        half = n // 2
        self.train_idx, self.val_idx = perm[:half], perm[half:]
        self.batch_size = min(batch_size, half, n - half)
        self._pos = {"train": 0, "val": 0}

    def num_classes(self) -> int:
        if self.tensors is not None:
            return int(self.tensors[1].max()) + 1
        from nas_sampler.data import num_classes

        k = num_classes(self.dataset)  # type: ignore[arg-type]
        if k is None:
            raise DataError("cannot tell the number of classes of the data set; pass num_classes=")
        return k

    def rewind(self, split: str) -> None:
        """Start ``split`` again from its first batch."""
        self._pos[split] = 0

    def next(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        idx_all = self.train_idx if split == "train" else self.val_idx
        start = self._pos[split]
        idx = np.take(idx_all, np.arange(start, start + self.batch_size), mode="wrap")
        self._pos[split] = (start + self.batch_size) % len(idx_all)
        if self.tensors is not None:
            t = torch.as_tensor(idx, dtype=torch.long)
            return self.tensors[0][t], self.tensors[1][t]
        images, labels = decode(self.dataset, idx)
        return torch.stack(images).float(), torch.as_tensor(labels, dtype=torch.long)


# ----------------------------------------------------------------------------- the supernet


class _Candidate(nn.Module):
    """One candidate cell, projected to the supernet width when its own width differs."""

    def __init__(self, cell: nn.Module, width: int):
        super().__init__()
        self.cell = cell
        out = int(getattr(cell, "out_channels", width))
        self.project: nn.Module = (
            nn.Identity()
            if out == width
            else nn.Sequential(nn.Conv2d(out, width, 1, bias=False), nn.BatchNorm2d(width, affine=False))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.cell(x))


class _MixedGroup(nn.Module):
    def __init__(self, candidates: list[nn.Module]):
        super().__init__()
        self.candidates = nn.ModuleList(candidates)
        self.alpha = nn.Parameter(torch.zeros(len(candidates)))  # uniform start: no candidate favoured

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.softmax(self.alpha, dim=0)
        return sum(w[i] * c(x) for i, c in enumerate(self.candidates))


class TournamentSupernet(nn.Module):
    """Stem, the groups side by side on the stem output, each with its own ReLU, pooling and classifier.

    ``forward`` returns the logits of every group, ``groups x batch x classes``."""

    def __init__(
        self,
        space: SearchSpace,
        genotypes: Sequence[Genotype],
        groups: Sequence[Sequence[int]],
        num_classes: int,
        in_channels: int = 3,
        width: int = 16,
        stem_stride: int = 2,
    ):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=stem_stride, padding=1, bias=False), nn.BatchNorm2d(width)
        )
        self.groups = nn.ModuleList(
            _MixedGroup([_Candidate(space.cell(genotypes[i], width, 1), width) for i in group]) for group in groups
        )
        self.heads = nn.ModuleList(nn.Linear(width, num_classes) for _ in groups)

    def alphas(self) -> list[nn.Parameter]:
        return [g.alpha for g in self.groups]

    def weights(self) -> list[nn.Parameter]:
        ids = {id(a) for a in self.alphas()}
        return [p for p in self.parameters() if id(p) not in ids]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        pooled = (F.adaptive_avg_pool2d(F.relu(g(s)), 1).flatten(1) for g in self.groups)
        return torch.stack([head(h) for h, head in zip(pooled, self.heads, strict=True)])

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The sum of the groups' cross-entropies: each group trains as if it were alone on the stem."""
        logits = self.forward(x)
        return F.cross_entropy(logits.flatten(0, 1), y.repeat(len(logits)), reduction="sum") / len(y)


# ----------------------------------------------------------------------------- the pure function


@dataclass
class TournamentResult:
    """What one tournament found; indices refer to the ``genotypes`` it was given."""

    groups: list[list[int]]
    alphas: list[float]  # raw alpha per candidate
    weights: list[float]  # softmax of alpha within the candidate's group
    winners: list[int]  # one per group: the largest alpha (ties: the earlier candidate)
    loss_curve: list[float]  # mean group training loss of every weight step (warm-up first)
    val_loss_curve: list[float] = field(default_factory=list)  # mean group validation loss of every alpha step
    seconds: float = 0.0

    def share(self, i: int) -> float:
        """Candidate ``i``'s softmax weight times its group's size: 1 means an even share, so groups
        of different sizes compare fairly."""
        group = next(g for g in self.groups if i in g)
        return self.weights[i] * len(group)

    def survivors(self, n: int) -> list[int]:
        """``n`` indices: the winners first, then, to keep the population size, the other candidates.

        Both parts are ordered by :meth:`share` (highest first, ties: the earlier candidate). When
        there are more winners than ``n``, the winners with the highest share survive."""
        if n < 0:
            raise ConfigError(f"n={n} survivors is invalid: give a non-negative integer")
        key = lambda i: (-self.share(i), i)  # noqa: E731
        won = sorted(self.winners, key=key)
        rest = sorted((i for g in self.groups for i in g if i not in set(self.winners)), key=key)
        return (won + rest)[:n]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_groups(n: int, size: int, seed: int | None = None) -> list[list[int]]:
    """Indices ``0..n-1`` in groups of ``size`` (the last may be smaller; a last group of one joins the
    group before it, since a group of one has nothing to compete with). ``seed`` shuffles first."""
    order = list(range(n)) if seed is None else np.random.default_rng([int(seed), 0x6E0]).permutation(n).tolist()
    groups = [order[k : k + size] for k in range(0, n, size)]
    if len(groups) > 1 and len(groups[-1]) == 1:
        groups[-2].extend(groups.pop())
    return groups


def run_tournament(
    space: SearchSpace,
    genotypes: Sequence[Genotype | str],
    data: DataLike = "builtin",
    *,
    size: int = 4,
    groups: Sequence[Sequence[int]] | None = None,
    steps: int = 40,
    warmup_steps: int = 20,
    batch_size: int = 32,
    lr: float = 0.025,
    alpha_lr: float = 3e-3,
    weight_decay: float = 3e-4,
    width: int = 16,
    stem_stride: int = 2,
    num_classes: int | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
    progress: bool = False,
    root: str | os.PathLike | None = None,
) -> TournamentResult:
    """Train one supernet holding every candidate and return each group's winner and every alpha.

    ``groups`` (lists of indices into ``genotypes``) overrides the default: consecutive groups of
    ``size``. ``stem_stride`` 2 halves the resolution the cells see (32 -> 16 pixels on CIFAR), a
    quarter of the cost at full resolution. Weights: SGD with momentum 0.9, gradient norm clipped at
    5; alphas: Adam (betas 0.5, 0.999, weight decay 1e-3), as DARTS. Deterministic for ``seed`` on
    CPU; the global RNG state is left as it was.
    """
    _check_int("size", size, 2)
    _check_int("steps", steps, 1)
    _check_int("warmup_steps", warmup_steps, 0)
    _check_int("batch_size", batch_size, 2)
    _check_int("width", width, 1)
    _check_int("stem_stride", stem_stride, 1)
    _check_positive_float("lr", lr)
    _check_positive_float("alpha_lr", alpha_lr)
    _check_positive_float("weight_decay", weight_decay, allow_zero=True)
    gens = [space.parse(g) if isinstance(g, str) else space.validate(g) for g in genotypes]
    if len(gens) < 2:
        raise ConfigError(f"a tournament needs at least 2 candidates; got {len(gens)}")
    if groups is None:
        groups = split_groups(len(gens), size)
    groups = [[int(i) for i in g] for g in groups]
    flat = [i for g in groups for i in g]
    if sorted(flat) != list(range(len(gens))) or any(len(g) < 1 for g in groups):
        raise ConfigError(
            f"groups={groups} must hold every candidate index 0..{len(gens) - 1} exactly once, each group non-empty"
        )
    dev = resolve_device(device)
    t0 = time.perf_counter()
    source = _BatchSource(data, batch_size, seed, root=root)
    k = source.num_classes() if num_classes is None else _check_int("num_classes", num_classes, 2)
    probe, _ = source.next("train")
    source.rewind("train")
    in_channels = probe.shape[1]

    fork_devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        net = TournamentSupernet(
            space, gens, groups, k, in_channels=in_channels, width=width, stem_stride=stem_stride
        ).to(dev)
        net.train()
        w_opt = torch.optim.SGD(net.weights(), lr=lr, momentum=0.9, weight_decay=weight_decay)
        a_opt = torch.optim.Adam(net.alphas(), lr=alpha_lr, betas=(0.5, 0.999), weight_decay=1e-3)
        loss_curve: list[float] = []
        val_curve: list[float] = []
        total = warmup_steps + steps
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="darts tournament", unit="step", dynamic_ncols=True)
        log_every = max(1, total // 10)
        logger.info(
            "DARTS tournament: %d candidates in %d groups, %d warm-up + %d steps, batch %d, on %s",
            len(gens),
            len(groups),
            warmup_steps,
            steps,
            source.batch_size,
            dev,
        )
        try:
            for step in range(total):
                x, y = source.next("train")
                x, y = x.to(dev), y.to(dev)
                w_opt.zero_grad(set_to_none=True)
                a_opt.zero_grad(set_to_none=True)
                loss = net.loss(x, y)
                loss.backward()
                nn.utils.clip_grad_norm_(net.weights(), 5.0)
                w_opt.step()
                loss_curve.append(float(loss.detach()) / len(groups))  # per group: comparable across sizes
                if step >= warmup_steps:  # first-order DARTS: alphas follow the validation loss
                    xv, yv = source.next("val")
                    xv, yv = xv.to(dev), yv.to(dev)
                    w_opt.zero_grad(set_to_none=True)
                    a_opt.zero_grad(set_to_none=True)
                    vloss = net.loss(xv, yv)
                    vloss.backward()
                    a_opt.step()
                    val_curve.append(float(vloss.detach()) / len(groups))
                if not math.isfinite(loss_curve[-1]):
                    raise ConfigError(
                        f"the tournament's training loss became {loss_curve[-1]} at step {step}; pass a smaller lr "
                        f"(now {lr}) or alpha_lr (now {alpha_lr})"
                    )
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_curve[-1]:.3f}", refresh=False)
                if (step + 1) % log_every == 0 or step + 1 == total:
                    logger.info("tournament step %d/%d: train loss %.4f", step + 1, total, loss_curve[-1])
        finally:
            if bar is not None:
                bar.close()

    alphas = [0.0] * len(gens)
    weights = [0.0] * len(gens)
    winners = []
    for group, mixed in zip(groups, net.groups, strict=True):
        a = mixed.alpha.detach().cpu().double()
        w = torch.softmax(a, 0)
        for j, i in enumerate(group):
            alphas[i], weights[i] = float(a[j]), float(w[j])
        winners.append(group[int(torch.argmax(a))])  # argmax returns the first maximum: ties go to the earlier
    result = TournamentResult(
        groups=groups,
        alphas=alphas,
        weights=weights,
        winners=winners,
        loss_curve=loss_curve,
        val_loss_curve=val_curve,
        seconds=time.perf_counter() - t0,
    )
    logger.info("DARTS tournament done in %.1f s: winners %s", result.seconds, winners)
    return result


# ----------------------------------------------------------------------------- the sampler's side


class DartsTournament:
    """Parent selection by DARTS tournament every ``every``-th generation, for ``GeneticCellSampler``.

    ``data``: a data set name, an ImageFolder folder, or a Dataset (the training split is used and
    halved into weight and alpha batches). ``size``: candidates per group. ``steps``: joint
    weight/alpha steps after ``warmup_steps`` weight-only steps, each on ``batch_size`` images, so the
    cost is bounded by ``(warmup_steps + 2 * steps) * batch_size`` forward/backward passes of the
    supernet, whose cells see the images at 1/``stem_stride`` resolution. ``device="auto"`` uses the
    GPU when present.
    """

    def __init__(
        self,
        data: DataLike = "builtin",
        every: int = 3,
        size: int = 4,
        steps: int = 40,
        warmup_steps: int = 20,
        batch_size: int = 32,
        lr: float = 0.025,
        alpha_lr: float = 3e-3,
        width: int = 16,
        stem_stride: int = 2,
        device: str | torch.device = "auto",
        seed: int = 0,
        progress: bool = False,
        root: str | os.PathLike | None = None,
    ):
        if data is None:
            raise ConfigError("data=None: the DARTS tournament trains on data; give a data set name or folder")
        self.data = data
        self.every = _check_int("every", every, 1)
        self.size = _check_int("size", size, 2)
        self.steps = _check_int("steps", steps, 1)
        self.warmup_steps = _check_int("warmup_steps", warmup_steps, 0)
        self.batch_size = _check_int("batch_size", batch_size, 2)
        self.lr = _check_positive_float("lr", lr)
        self.alpha_lr = _check_positive_float("alpha_lr", alpha_lr)
        self.width = _check_int("width", width, 1)
        self.stem_stride = _check_int("stem_stride", stem_stride, 1)
        resolve_device(device)  # refuse a bad device now, not at the first tournament generation
        self.device = device
        self.seed = _check_int("seed", seed, 0)
        self.progress = bool(progress)
        self.root = root
        self._dataset: Dataset | None = None

    def __repr__(self) -> str:
        return (
            f"DartsTournament(data={self.data!r}, every={self.every}, size={self.size}, steps={self.steps}, "
            f"warmup_steps={self.warmup_steps}, batch_size={self.batch_size}, device={self.device!r}, "
            f"seed={self.seed})"
        )

    def config(self) -> dict[str, Any]:
        """The settings that decide a tournament's outcome (stored with each result)."""
        data = (
            self.data
            if isinstance(self.data, str)
            else str(self.data)
            if isinstance(self.data, os.PathLike)
            else type(self.data).__name__
        )
        return {
            "data": data,
            "size": self.size,
            "steps": self.steps,
            "warmup_steps": self.warmup_steps,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "alpha_lr": self.alpha_lr,
            "width": self.width,
            "stem_stride": self.stem_stride,
            "seed": self.seed,
        }

    def is_tournament_generation(self, generation: int) -> bool:
        """Whether the parents of ``generation`` are chosen by tournament (generations every, 2*every, ...)."""
        return generation > 0 and generation % self.every == 0

    def _data(self) -> DataLike:
        if isinstance(self.data, (str, os.PathLike)):
            if self._dataset is None:
                from nas_sampler.data import load_dataset

                self._dataset = load_dataset(self.data, root=self.root, train=True)
            return self._dataset
        return self.data

    def run(self, space: SearchSpace, genotypes: Sequence[Genotype | str], generation: int = 0) -> TournamentResult:
        """One tournament; groups are a seeded shuffle, different in every generation."""
        groups = split_groups(len(genotypes), self.size, seed=self.seed * 100_003 + generation)
        return run_tournament(
            space,
            genotypes,
            self._data(),
            groups=groups,
            steps=self.steps,
            warmup_steps=self.warmup_steps,
            batch_size=self.batch_size,
            lr=self.lr,
            alpha_lr=self.alpha_lr,
            width=self.width,
            stem_stride=self.stem_stride,
            device=self.device,
            seed=self.seed * 100_003 + generation,
            progress=self.progress,
        )

    def select(
        self,
        study: optuna.Study,
        space: SearchSpace | None,
        candidates: Sequence[FrozenTrial],
        n_survivors: int,
        generation: int,
    ) -> list[FrozenTrial]:
        """The ``n_survivors`` parents of ``generation`` among ``candidates``, by tournament.

        Runs once: the result is stored in the study (``nas_sampler:tournament:<generation>``) and a
        later call with the same candidates (a resumed search, another worker) reuses it. The
        population size is kept: the group winners first, then the best remaining candidates by alpha
        share (see :meth:`TournamentResult.survivors`).
        """
        _check_int("n_survivors", n_survivors, 0)
        unique: dict[int, FrozenTrial] = {}
        for t in candidates:
            unique.setdefault(t.number, t)
        # under constraints (a parameter budget) only the networks within them compete, as survival ranks
        # every feasible trial above every infeasible one; the others follow, least violation first
        violations = constraint_violations(list(unique.values()))
        # groups are drawn over the candidates in slot order (trial order when the sampler has no slots):
        # a retried slot's trial has a later number, and must land in the group the uninterrupted run gave it
        slot_of = getattr(study.sampler, "slot_of", None)
        trials = sorted(unique.values(), key=lambda t: slot_of(study, t) if slot_of else (t.number,))
        tail: list[int] = []
        if violations is not None:
            over = dict(zip(unique, violations, strict=True))
            tail = sorted((n for n, v in over.items() if v > 0), key=lambda n: (over[n], n))
            trials = [t for t in trials if over[t.number] <= 0]
        numbers = [t.number for t in trials]
        key = f"{TOURNAMENT_ATTR_PREFIX}{generation}"
        stored = study.user_attrs.get(key)
        if stored is not None and sorted(stored.get("candidates", [])) == sorted(numbers):
            logger.info("generation %d: reusing the stored DARTS tournament", generation)
            return self._pick(unique, stored["survivors"], n_survivors)
        if stored is not None:
            logger.warning(
                "generation %d: the stored tournament had other candidates (%s, now %s); running it again",
                generation,
                stored.get("candidates"),
                numbers,
            )
        if space is None:
            space = recorded_space(study)
            if space is None:
                raise ConfigError(f"study {study.study_name!r} records no search space; pass the space to select()")
        if len(trials) < 2:
            return self._pick(unique, numbers + tail, n_survivors)
        genotypes = [space.genotype_of(t) for t in trials]
        result = self.run(space, genotypes, generation)
        survivors = [numbers[i] for i in result.survivors(len(trials))] + tail
        record = {
            "generation": generation,
            "candidates": numbers,
            "genotypes": [str(g) for g in genotypes],
            "groups": [[numbers[i] for i in g] for g in result.groups],
            "winners": [numbers[i] for i in result.winners],
            "survivors": survivors,
            "alpha": {str(numbers[i]): round(a, 6) for i, a in enumerate(result.alphas)},
            "weight": {str(numbers[i]): round(w, 6) for i, w in enumerate(result.weights)},
            "loss_curve": [round(v, 5) for v in result.loss_curve],
            "val_loss_curve": [round(v, 5) for v in result.val_loss_curve],
            "seconds": round(result.seconds, 3),
            "config": self.config(),
        }
        study.set_user_attr(key, record)
        return self._pick(unique, survivors, n_survivors)

    @staticmethod
    def _pick(by_number: dict[int, FrozenTrial], survivors: list[int], n: int) -> list[FrozenTrial]:
        return [by_number[k] for k in survivors if k in by_number][:n]


def tournament_records(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """Every stored tournament of ``study`` by generation."""
    out = {}
    for key, value in study.user_attrs.items():
        if key.startswith(TOURNAMENT_ATTR_PREFIX):
            out[int(key[len(TOURNAMENT_ATTR_PREFIX) :])] = value
    return dict(sorted(out.items()))


def tournament_alphas(study: optuna.Study) -> dict[int, float]:
    """Every tournament candidate's final softmax weight (``darts_alpha``) by trial number; a trial in
    several tournaments gets its latest."""
    out: dict[int, float] = {}
    for record in tournament_records(study).values():
        out.update({int(k): float(v) for k, v in record["weight"].items()})
    return out
