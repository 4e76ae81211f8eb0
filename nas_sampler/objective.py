"""The objective: data + space + heuristics, the callable passed to ``study.optimize``.

Every trial turns its parameters into a genotype (``space.suggest``), builds the scoring network
with weights seeded by ``(seed, genotype string)`` (so a genotype always gets the same weights,
whatever the trial order or worker), and scores it on the study's fixed batch with
:func:`nas_sampler.heuristics.score_all`. All values are minimised.

What the study holds, so a resumed run or another worker scores the same way:

* ``nas_sampler:space`` (by ``space.suggest``) and ``nas_sampler:data``, the data spec of the scoring
  batch (:func:`nas_sampler.data.data_spec`). A run whose data spec differs from the recorded one
  fails with :class:`SpaceMismatchError` before scoring anything: scores on other images are not
  comparable, and silently switching to the recorded batch would hide that the command changed.
* the metric names (``study.set_metric_names``), set once, so optuna-dashboard labels its axes.

The three heuristics are minimised. An extra objective is minimised too unless it says
``":maximize"``: ``"params"`` asks for small networks (size against quality), ``"params:maximize"``
uses the parameter count as one more accuracy proxy (in NAS-Bench-201 the larger cell is usually the
better one, and the count ranks about as well as each heuristic: ``docs/results.md``).

With ``max_params=N`` every scored trial (a degenerate one too) records the parameter budget as
Optuna's constraint ``params`` (``trial.set_constraint``: the count minus ``N``, feasible when <= 0).
A limit, not one more objective to trade against: constrained domination (the genetic sampler's
survival, NSGA-II) ranks every trial within the budget above every one outside it,
``study.best_trials`` holds feasible trials only, and :func:`nas_sampler.final.export_final` chooses
among them only.

Each trial records the user attributes ``genotype``, ``params`` (parameter count), ``seconds``
(``build``, ``heuristics``, each extra objective, ``total``), ``device`` and, for a degenerate
network, ``degenerate`` (which score is undefined and why) and ``fail_reason``.

Degenerate networks (a cell whose output ignores its input, NaN or infinite values, a singular
kernel: :class:`nas_sampler.heuristics.HeuristicError`) have no meaningful score. With
``on_degenerate="fail"`` (default) the trial stores the reason and returns NaN values, which Optuna
marks as a FAILED trial without stopping ``study.optimize`` (no ``catch=`` needed); any NaN or
``-inf`` value (e.g. from a user's extra objective) fails the trial the same way. With
``on_degenerate="worst"`` the trial completes with :data:`~nas_sampler.heuristics.WORST_SCORE`
(1e15, finite, above every real score) for the undefined scores, so a sampler can rank it last.
Running out of memory or a non-converging eigenvalue solver also stores ``fail_reason`` and
re-raises; pass ``catch=objective.catch`` to ``study.optimize`` to go on past such trials.
Configuration errors (a study with other directions, space, metrics or data) always stop the run.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from torch import nn
from torch.utils.data import Dataset

from nas_sampler import data as _data
from nas_sampler.device import resolve_device
from nas_sampler.draw import cell_svg
from nas_sampler.errors import ConfigError, SpaceMismatchError
from nas_sampler.genotype import Genotype
from nas_sampler.phenotype import count_flops, count_parameters
from nas_sampler.schema import PARAMS_CONSTRAINT
from nas_sampler.space import SearchSpace

HEURISTIC_METRICS = ("ntk_cond", "activation", "jacobian")
BUILTIN_EXTRAS = ("params", "flops")
DIRECTIONS = ("minimize", "maximize")
ExtraFn = Callable[[nn.Module, Genotype], float]
ExtraObjective = str | tuple[str, ExtraFn] | tuple[str, ExtraFn, str]

_log = optuna.logging.get_logger(__name__)


@dataclass
class Scored:
    """One genotype's scores: ``values`` by metric name, ``seconds`` by step (``build``,
    ``heuristics``, each extra, ``total``), the scored network, and ``degenerate``: the undefined
    scores (name: reason) that got WORST_SCORE under ``on_degenerate="worst"``."""

    values: dict[str, float]
    seconds: dict[str, float]
    net: nn.Module
    degenerate: dict[str, str] = field(default_factory=dict)


def parse_extra(spec: str) -> tuple[str, str]:
    """``"params"`` -> ``("params", "minimize")``; ``"flops:maximize"`` -> ``("flops", "maximize")``."""
    name, _, direction = spec.partition(":")
    direction = direction or "minimize"
    if name not in BUILTIN_EXTRAS or direction not in DIRECTIONS:
        raise ConfigError(
            f"extra objective {spec!r} is unknown; built in: {', '.join(BUILTIN_EXTRAS)}, each optionally followed "
            "by ':minimize' (default) or ':maximize' (e.g. 'params:maximize'); or pass (name, fn) in Python"
        )
    return name, direction


def init_seed(seed: int, genotype: Genotype | str) -> int:
    """The weight-init seed of a genotype: a hash of ``(seed, genotype string)``."""
    return int.from_bytes(hashlib.sha256(f"{seed}|{genotype}".encode()).digest()[:8], "big") >> 1


class TrainingFreeObjective:
    """Score a trial's cell without training; callable for ``study.optimize``.

    Args:
        space: the search space (``space.suggest(trial)`` draws the genotype).
        data: a data set name, an ImageFolder folder or a ``Dataset`` (see :mod:`nas_sampler.data`);
            ``"builtin"`` is the offline synthetic task, for smoke runs only.
        batch_size, seed, strategy, focus_class, train: the fixed scoring batch
            (:func:`nas_sampler.data.scoring_batch`); ``seed`` also seeds weight initialisation.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        ntk_mode: ``"fast"`` or ``"exact"`` (see :func:`nas_sampler.heuristics.ntk_condition_number`).
        ntk_batch: the NTK on the first ``ntk_batch`` images of the batch (None: all of them); the exact
            mode costs one backward pass per image (``studies/nb201-cifar10.toml``: exact on 8).
        metrics: which training-free scores are objectives: any of ``"ntk_cond"``, ``"activation"``,
            ``"jacobian"`` (the default, all three) and ``"swap"`` (:func:`nas_sampler.heuristics.swap_score`).
        extra_objectives: more values: ``"params"``, ``"flops"`` (minimised; ``"params:maximize"``,
            ``"flops:maximize"`` to reward capacity instead), or ``(name, fn)`` / ``(name, fn, direction)``
            with ``fn(net, genotype) -> float``.
        memory_budget: passed to ``score_all`` (chunks large networks instead of running out of memory).
        on_degenerate: ``"fail"`` (default) or ``"worst"``: what a degenerate network's trial does (above).
        root, download, transform: passed to :func:`nas_sampler.data.load_dataset`.
        artifact_store: an Optuna artifact store; when given, each trial uploads its cell as SVG.
        max_params: a parameter budget (the scoring network's trainable parameters), set on each trial as
            the constraint ``params`` (above); None: no constraint.
    """

    #: Errors that fail one trial, not the search: pass ``catch=objective.catch`` to ``study.optimize``
    #: (the trial stores the reason in ``fail_reason``). Out of memory on one large network, or an
    #: eigenvalue solver that does not converge on one ill-conditioned matrix.
    catch: tuple[type[Exception], ...] = (torch.OutOfMemoryError, torch.linalg.LinAlgError)

    def __init__(
        self,
        space: SearchSpace,
        data: str | os.PathLike | Dataset = _data.BUILTIN,
        batch_size: int = 64,
        device: str | torch.device = "auto",
        seed: int = 0,
        ntk_mode: str = "fast",
        ntk_batch: int | None = None,
        extra_objectives: Sequence[ExtraObjective] = (),
        strategy: str = "random",
        focus_class: int | str | None = None,
        metrics: Sequence[str] = HEURISTIC_METRICS,
        memory_budget: int | None = None,
        on_degenerate: str = "fail",
        train: bool = True,
        root: str | os.PathLike | None = None,
        download: bool = False,
        transform: Callable[..., Any] | None = None,
        artifact_store: Any | None = None,
        max_params: int | None = None,
    ):
        if not isinstance(space, SearchSpace):
            raise ConfigError(f"space must be a SearchSpace (CellSpace, NB201Space), got {type(space).__name__}")
        self._options = {k: v for k, v in locals().items() if k not in ("self", "seed", "__class__")}
        if ntk_mode not in ("fast", "exact"):
            raise ConfigError(f"ntk_mode={ntk_mode!r} is unknown; choose 'fast' or 'exact'")
        if on_degenerate not in ("fail", "worst"):
            raise ConfigError(f"on_degenerate={on_degenerate!r} is unknown; choose 'fail' or 'worst'")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"seed={seed!r} is invalid: give an integer")
        bad_budget = not isinstance(max_params, int) or isinstance(max_params, bool) or max_params < 1
        if max_params is not None and bad_budget:
            raise ConfigError(
                f"max_params={max_params!r} is invalid: give the parameter budget as a positive integer "
                "(e.g. max_params=300_000), or None for no budget"
            )
        from nas_sampler.heuristics import check_metrics, check_ntk_batch

        self.metrics = check_metrics(metrics)
        self.space = space
        self.seed = seed
        self.ntk_mode = ntk_mode
        self.ntk_batch = check_ntk_batch(ntk_batch)
        self.memory_budget = memory_budget
        self.on_degenerate = on_degenerate
        self.device = resolve_device(device)
        self.artifact_store = artifact_store
        self.max_params = max_params
        self._extras = self._check_extras(extra_objectives)
        self._prepared: weakref.WeakSet[optuna.Study] = weakref.WeakSet()

        self.dataset = (
            data
            if isinstance(data, Dataset)
            else _data.load_dataset(data, root=root, train=train, download=download, transform=transform)
        )
        self.images, self.labels = _data.scoring_batch(
            self.dataset, batch_size=batch_size, seed=seed, strategy=strategy, focus_class=focus_class
        )
        self.num_classes = _data.num_classes(self.dataset) or int(self.labels.max()) + 1
        self.in_channels = int(self.images.shape[1])
        self.data_spec = _data.data_spec(
            data, batch_size=batch_size, seed=seed, strategy=strategy, focus_class=focus_class, train=train
        )
        self.data_spec.update(
            num_images=len(self.dataset),
            num_classes=self.num_classes,
            image_shape=list(self.images.shape[1:]),
            fingerprint=_data.batch_fingerprint(self.images),
        )

    def reseeded(self, seed: int) -> TrainingFreeObjective:
        """The same objective with another ``seed``: another scoring batch and other initial weights.
        For re-scoring a few finalists (:func:`nas_sampler.final.choose_trials`), never for trials of
        the same study (their scores would not be comparable)."""
        return TrainingFreeObjective(seed=seed, **{**self._options, "data": self.dataset})  # data loaded once

    # ---- what the study sees -------------------------------------------------------------------
    @property
    def metric_names(self) -> list[str]:
        return [*self.metrics, *(name for name, _, _ in self._extras)]

    @property
    def directions(self) -> list[str]:
        """``"minimize"`` for the heuristics, each extra objective's own direction after them: pass
        to ``optuna.create_study(directions=...)``."""
        return ["minimize"] * len(self.metrics) + [d for _, _, d in self._extras]

    def _check_extras(self, extras: Sequence[ExtraObjective]) -> list[tuple[str, ExtraFn, str]]:
        if isinstance(extras, str):
            extras = [extras]
        out: list[tuple[str, ExtraFn, str]] = []
        for item in extras:
            if isinstance(item, str):
                name, direction = parse_extra(item)
                out.append((name, self._params if name == "params" else self._flops, direction))
            elif (
                isinstance(item, tuple)
                and len(item) in (2, 3)
                and isinstance(item[0], str)
                and callable(item[1])
                and (len(item) == 2 or item[2] in DIRECTIONS)
            ):
                out.append((item[0], item[1], item[2] if len(item) == 3 else "minimize"))
            else:
                raise ConfigError(
                    f"extra objective {item!r} is invalid: give 'params', 'flops' (optionally with ':maximize'), or "
                    "(name, fn) / (name, fn, 'minimize' | 'maximize') with fn(net, genotype) -> float"
                )
        names = [*self.metrics, *(n for n, _, _ in out)]
        if len(set(names)) != len(names):
            raise ConfigError(f"objective names repeat: {names}; give every extra objective its own name")
        return out

    def _params(self, net: nn.Module, genotype: Genotype) -> float:
        return float(count_parameters(net))

    def _flops(self, net: nn.Module, genotype: Genotype) -> float:
        return float(count_flops(net, (1, *self.images.shape[1:])))

    def prepare(self, study: optuna.Study) -> None:
        """Check ``study`` against this objective and record the data spec and metric names there
        (done by the first trial anyway; call it to fail early)."""
        names = self.metric_names
        got = [d.name.lower() for d in study.directions]
        if got != self.directions:
            raise ConfigError(
                f"study {study.study_name!r} has directions {got}, this objective's values {names} need "
                f"{self.directions}; create it with optuna.create_study(directions=objective.directions)"
            )
        existing = study.metric_names
        if existing is not None and list(existing) != names:
            raise SpaceMismatchError(
                f"study {study.study_name!r} records the objectives {list(existing)}, this objective returns "
                f"{names}; use the same metrics and extra objectives, or a new study name"
            )
        recorded = _data.recorded_data_spec(study)
        _data.record_data_spec(study, self.data_spec)
        if recorded is not None and recorded.get("fingerprint") not in (None, self.data_spec["fingerprint"]):
            warnings.warn(
                f"study {study.study_name!r}: the scoring batch's images differ from the recorded ones although "
                "the data spec is the same (did the data set's files change?); scores may not be comparable",
                stacklevel=2,
            )
        if existing is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(names)

    # ---- one trial -------------------------------------------------------------------------------
    def build(self, genotype: Genotype) -> nn.Module:
        """The scoring network of ``genotype`` with its seeded weights (same genotype, same weights)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed(self.seed, genotype))
            return self.space.scoring_network(genotype, num_classes=self.num_classes, in_channels=self.in_channels)

    def score(self, genotype: Genotype) -> Scored:
        """Score one genotype without a trial. A degenerate network raises
        :class:`~nas_sampler.heuristics.HeuristicError` with ``on_degenerate="fail"`` (when one of
        ``metrics`` is undefined) and gets WORST_SCORE for the undefined scores with ``"worst"``."""
        from nas_sampler.heuristics import HeuristicError, score_all

        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        net = self.build(genotype)
        seconds["build"] = time.perf_counter() - t0
        t = time.perf_counter()
        kwargs: dict[str, Any] = {
            "device": self.device,
            "seed": init_seed(self.seed, genotype),
            "ntk_batch": self.ntk_batch,
            "metrics": self.metrics,  # a score that is not an objective is not computed
        }
        if self.memory_budget is not None:
            kwargs["memory_budget"] = self.memory_budget
        degenerate: dict[str, str] = {}
        try:
            scores = score_all(net, self.images, self.ntk_mode, **kwargs)
        except HeuristicError as e:
            degenerate = dict(e.reasons)
            if degenerate and self.on_degenerate == "fail":
                raise
            scores = e.scores
        seconds["heuristics"] = time.perf_counter() - t
        values = {m: float(scores[m]) for m in self.metrics}
        for name, fn, _ in self._extras:
            t = time.perf_counter()
            values[name] = float(fn(net, genotype))
            seconds[name] = time.perf_counter() - t
        seconds["total"] = time.perf_counter() - t0
        return Scored(values, seconds, net, degenerate)

    def __call__(self, trial: optuna.trial.BaseTrial) -> tuple[float, ...] | float:
        from nas_sampler.heuristics import HeuristicError

        study = getattr(trial, "study", None)
        if study is not None and study not in self._prepared:
            self.prepare(study)
            self._prepared.add(study)
        genotype = self.space.suggest(trial)
        names = self.metric_names
        try:
            result = self.score(genotype)
        except HeuristicError as e:
            trial.set_user_attr("degenerate", e.reasons)
            if self.max_params is not None:  # the network was not kept: build it again to count it
                self._set_budget(trial, count_parameters(self.build(genotype)))
            return self._fail(trial, f"genotype '{genotype}': {e}", len(names))
        except self.catch as e:
            trial.set_user_attr("fail_reason", f"{type(e).__name__} scoring '{genotype}': {e}"[:2000])
            raise
        params = count_parameters(result.net)
        trial.set_user_attr("params", params)
        self._set_budget(trial, params)
        trial.set_user_attr("seconds", {k: round(v, 6) for k, v in result.seconds.items()})
        trial.set_user_attr("device", str(self.device))
        if result.degenerate:
            trial.set_user_attr("degenerate", result.degenerate)
        if self.artifact_store is not None and isinstance(trial, optuna.Trial):
            self._upload_cell(trial, genotype)
        out = [result.values[m] for m in names]
        worst = {"minimize": -math.inf, "maximize": math.inf}  # "better than everything": cannot be ranked
        bad = [
            f"{m}={v}" for m, v, d in zip(names, out, self.directions, strict=True) if math.isnan(v) or v == worst[d]
        ]
        if bad:
            return self._fail(trial, f"score {', '.join(bad)} of genotype '{genotype}' cannot be ranked", len(names))
        return out[0] if len(out) == 1 else tuple(out)

    def _set_budget(self, trial: optuna.trial.BaseTrial, params: int) -> None:
        """The budget as Optuna's constraint, not as a value: samplers then rank any network within it
        above every one outside it, instead of trading size against the scores."""
        if self.max_params is not None:
            trial.set_constraint(PARAMS_CONSTRAINT, float(params - self.max_params))

    def _fail(self, trial: optuna.trial.BaseTrial, reason: str, n: int) -> tuple[float, ...] | float:
        """Store ``reason`` and return NaN values: Optuna marks the trial FAILED and goes on."""
        trial.set_user_attr("fail_reason", reason[:2000])
        _log.warning(f"Trial {getattr(trial, 'number', '?')} failed: {reason}")
        return math.nan if n == 1 else (math.nan,) * n

    def _upload_cell(self, trial: optuna.Trial, genotype: Genotype) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"cell_trial{trial.number}.svg")
            with open(path, "w", encoding="utf-8") as f:
                f.write(cell_svg(genotype))  # the dashboard names it by its file
            optuna.artifacts.upload_artifact(
                artifact_store=self.artifact_store, file_path=path, study_or_trial=trial, mimetype="image/svg+xml"
            )
