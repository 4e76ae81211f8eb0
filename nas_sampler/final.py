"""The end product of a search: choose cells from a finished study, build the final network, and
export it so that it can be rebuilt exactly anywhere.

:func:`export_final` writes two files: ``<name>.json`` (the genotype strings, the space definition,
the choices made, the study name and trial numbers, the network options and the seed) and
``<name>.pt`` (``torch.save`` of the initialised model's state dict). :func:`build_final_network`
reads the JSON back and returns the same network: same parameter count, and with the saved weights
(or the same seed, ``weights=False``) the same output on the same input.

For :class:`~nas_sampler.NB201Space` the final network is the benchmark's own skeleton with the
chosen cell (one cell); for :class:`~nas_sampler.CellSpace` it is
:class:`~nas_sampler.phenotype.FinalNetwork`, which stacks the chosen cells in order.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from nas_sampler.errors import ConfigError, DataError, GenotypeError
from nas_sampler.evolution import AGGREGATIONS, crowding_order, non_dominated_sort
from nas_sampler.genotype import Genotype
from nas_sampler.phenotype import count_parameters
from nas_sampler.portable import save_program
from nas_sampler.schema import PARAMS_CONSTRAINT
from nas_sampler.selection import feasible_trials
from nas_sampler.space import SearchSpace, recorded_space, space_from_definition

FORMAT = "nas-sampler-final/1"
RULES = (*AGGREGATIONS, "crowding", "tournament")  # rank_sum, log_rank, ...
NO_FEASIBLE_ADVICE = "search longer (more trials), or search again with a larger max_params"


def _load_study(study: optuna.Study | str, storage: str | None) -> optuna.Study:
    if isinstance(study, optuna.Study):
        return study
    if not isinstance(study, str) or storage is None:
        raise ConfigError(
            f"study={study!r}: give an optuna.Study, or a study name together with storage= (e.g. sqlite:///nas.db)"
        )
    try:
        return optuna.load_study(study_name=study, storage=storage)
    except KeyError as e:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise ConfigError(f"no study {study!r} in {storage}; studies there: {names}") from e


class Rescorer(Protocol):
    """Scores a genotype afresh: ``score(genotype).values`` maps each of the study's metric names to a
    value (:meth:`TrainingFreeObjective.reseeded` gives such objectives)."""

    def score(self, genotype: Genotype) -> Any: ...


def choose_trials(
    study: optuna.Study,
    n_cells: int,
    rule: str = "rank_sum",
    space: SearchSpace | None = None,
    rescore: Sequence[Rescorer] = (),
    finalists: int = 10,
) -> list[FrozenTrial]:
    """``n_cells`` completed trials with distinct genotypes, best first, by ``rule``.

    In a study with constraints (e.g. ``TrainingFreeObjective(max_params=...)``) only the trials within
    them are chosen from: a network over the budget is not a result, however it scores. None within
    them is a :class:`ConfigError` naming the smallest network found and the budget.

    * ``rank_sum`` (default): the first Pareto front ordered by the sum of each trial's per-objective
      ranks among the completed (feasible) trials (the most balanced first: no single training-free
      score is a reliable accuracy predictor, their agreement is); when the front holds fewer than
      ``n_cells`` distinct genotypes, the next fronts follow in the same order. (Survival keeps the best of each
      objective first, for diversity; a final choice should not pick an extreme.)
    * ``log_rank``: the same fronts ordered by AZ-NAS's aggregation of the same ranks
      (:func:`~nas_sampler.evolution.log_rank_sums`), which punishes one very bad rank more.
    * ``crowding``: the same fronts, each ordered by NSGA-II crowding distance (most isolated first).
    * ``tournament``: the survivors of the study's latest DARTS tournament (group winners first).

    ``rescore`` (with ``rank_sum`` or ``log_rank``): objectives that score genotypes on other batches
    and initial weights, e.g. ``[objective.reseeded(s) for s in (1, 2)]``. The first ``finalists``
    genotypes of the order above are scored again by each, and reordered by their per-objective ranks
    among the finalists, aggregated by the rule and summed over the study's values and every
    re-scoring. Each score is one noisy draw; the finalists are the ones whose draws came out best, so
    picking among them by the same draws favours luck (the winner's curse). Fresh draws do not.
    """
    if rule not in RULES:
        raise ConfigError(f"rule={rule!r} is unknown; choose one of {', '.join(RULES)} (or pass trials=)")
    space = space or recorded_space(study)
    if space is None:
        raise ConfigError(f"study {study.study_name!r} records no search space: it has no trial scored by a space")
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values is not None]
    if not done:
        raise ConfigError(f"study {study.study_name!r} has no completed trial to choose cells from")
    within = feasible_trials(done)
    if not within:
        raise no_feasible_error(study, done)
    done = within
    if rule == "tournament":
        from nas_sampler.tournament import tournament_records

        records = tournament_records(study)
        if not records:
            raise ConfigError(
                f"study {study.study_name!r} has run no DARTS tournament; use rule='rank_sum' or search with "
                "GeneticCellSampler(tournament=DartsTournament(...))"
            )
        by_number = {t.number: t for t in done}
        ordered = [by_number[n] for n in records[max(records)]["survivors"] if n in by_number]
    else:
        values = [t.values for t in done]
        ordered = []
        score = AGGREGATIONS[rule](values, study.directions) if rule in AGGREGATIONS else None
        for front in non_dominated_sort(values, study.directions):
            if score is not None:
                ordered += [done[i] for i in sorted(front, key=lambda i: (score[i], i))]
            else:
                ordered += [done[front[i]] for i in crowding_order([values[j] for j in front], study.directions)]
    chosen: list[FrozenTrial] = []
    seen: set[str] = set()
    wanted = max(n_cells, finalists) if rescore and rule in AGGREGATIONS else n_cells
    for t in ordered:
        text = str(space.genotype_of(t))
        if text not in seen:
            seen.add(text)
            chosen.append(t)
        if len(chosen) == wanted:
            break
    if rescore and rule in AGGREGATIONS and len(chosen) >= n_cells:
        chosen = _rescored_order(study, space, chosen, rescore, rule)
    if len(chosen) >= n_cells:
        return chosen[:n_cells]
    raise ConfigError(
        f"n_cells={n_cells} but study {study.study_name!r} offers only {len(chosen)} distinct genotypes by rule "
        f"{rule!r}; pass a smaller n_cells"
    )


def no_feasible_error(study: optuna.Study, done: Sequence[FrozenTrial]) -> ConfigError:
    """No completed trial within the constraints: the smallest network found against the budget (what
    the user weighs to decide between a larger budget and a longer search), else the constraints' names."""
    sizes = [
        (int(t.user_attrs["params"]), t.constraints[PARAMS_CONSTRAINT])
        for t in done
        if PARAMS_CONSTRAINT in t.constraints and isinstance(t.user_attrs.get("params"), int)
    ]
    if sizes:
        smallest, over = min(sizes)
        return ConfigError(
            f"study {study.study_name!r} has no completed trial within its parameter budget: the smallest network "
            f"found has {smallest:,} parameters, the budget is {round(smallest - over):,} (max_params); "
            f"{NO_FEASIBLE_ADVICE}"
        )
    names = sorted({k for t in done for k in t.constraints})
    return ConfigError(
        f"study {study.study_name!r} has no completed trial within its constraints ({', '.join(names)}); "
        "search longer or loosen the constraints"
    )


def _rescored_order(
    study: optuna.Study,
    space: SearchSpace,
    finalists: list[FrozenTrial],
    rescore: Sequence[Rescorer],
    rule: str = "rank_sum",
) -> list[FrozenTrial]:
    """``finalists`` by their per-objective ranks among themselves aggregated by ``rule``, summed over
    the stored values and each re-scoring; a genotype degenerate under a re-scoring ranks last in it."""
    from nas_sampler.heuristics import HeuristicError

    aggregate = AGGREGATIONS[rule]

    names = study.metric_names
    if names is None:
        raise ConfigError(f"study {study.study_name!r} records no metric names; it cannot be re-scored by name")
    worst = [np.inf if d == optuna.study.StudyDirection.MINIMIZE else -np.inf for d in study.directions]
    total = aggregate([t.values for t in finalists], study.directions).astype(float)
    for objective in rescore:
        rows = []
        for t in finalists:
            try:
                values = objective.score(space.parse(str(space.genotype_of(t)))).values
                rows.append([float(values[m]) for m in names])
            except HeuristicError:
                rows.append(worst)
        values_array = np.array(rows, dtype=float)
        total += aggregate(np.where(np.isnan(values_array), np.array(worst), values_array), study.directions)
    return [finalists[i] for i in sorted(range(len(finalists)), key=lambda i: (total[i], i))]


def _data_shape(study: optuna.Study) -> tuple[int | None, tuple[int, ...] | None]:
    """(classes, image shape C x H x W) of the data the study was scored on, when it can be opened here."""
    from nas_sampler import data as _data

    spec = _data.recorded_data_spec(study)
    if not spec or str(spec.get("data", "")).startswith("<"):
        return None, None
    try:
        ds = _data.load_dataset(spec["data"], train=bool(spec.get("train", True)))
        return _data.num_classes(ds), tuple(int(d) for d in ds[0][0].shape)
    except (DataError, OSError):
        return None, None


def _recorded_data(study: optuna.Study) -> str | None:
    """The data set name or folder the study was scored on (what ``train`` uses by default)."""
    from nas_sampler.data import recorded_data_spec

    spec = recorded_data_spec(study)
    source = None if not spec else spec.get("data")
    return None if source is None or str(source).startswith("<") else str(source)


def export_final(
    study: optuna.Study | str,
    path: str | os.PathLike,
    n_cells: int | None = None,
    rule: str = "rank_sum",
    num_classes: int | None = None,
    in_channels: int | None = None,
    trials: Sequence[int] | None = None,
    seed: int = 0,
    storage: str | None = None,
    rescore: Sequence[Rescorer] = (),
    finalists: int = 10,
    image_size: tuple[int, int] | None = None,
    **network_options: Any,
) -> dict[str, Any]:
    """Choose cells from a finished ``study``, build the final network and write ``path`` (JSON) and
    the initialised weights beside it (same name, ``.pt``). Returns the JSON record.

    ``study``: an ``optuna.Study`` or a study name with ``storage``. ``n_cells``: cells to stack
    (default: the space's ``final_cells``; 3 for CellSpace, 1 for NB201Space). ``rule``: see
    :func:`choose_trials` (within the study's constraints); ``trials`` (trial numbers) overrides it.
    ``num_classes``/``in_channels``: default to the data the study was scored on (when it can be opened
    here). ``network_options``: passed to ``space.final_network`` (CellSpace: ``width``, ``reductions``,
    ``dropout``). ``seed`` seeds the initial weights. ``rescore``, ``finalists``: see :func:`choose_trials`.

    Beside them it writes the network as a ``torch.export`` program (``.pt2``, any batch size, images of
    ``image_size``: default the data's, else 32 x 32) that plain PyTorch loads
    (:mod:`nas_sampler.portable`); ``nas-sampler train`` writes one with the trained weights.
    """
    study = _load_study(study, storage)
    space = recorded_space(study)
    if space is None:
        raise ConfigError(f"study {study.study_name!r} records no search space: it has no trial scored by a space")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed={seed!r} is invalid: give a non-negative integer")
    if trials is not None:
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        missing = [n for n in trials if n not in by_number or by_number[n].state != TrialState.COMPLETE]
        if missing or not trials:
            raise ConfigError(f"trials={list(trials)}: trials {missing} are not completed trials of the study")
        chosen = [by_number[int(n)] for n in trials]
        rule_used = "trials"
    else:
        if n_cells is None:
            n_cells = space.final_cells
        if not isinstance(n_cells, int) or isinstance(n_cells, bool) or n_cells < 1:
            raise ConfigError(f"n_cells={n_cells!r} is invalid: give a positive integer")
        most = space.max_final_cells
        if most is not None and n_cells > most:
            raise ConfigError(
                f"n_cells={n_cells}: {type(space).__name__}'s final network holds "
                f"{'one cell' if most == 1 else f'at most {most} cells'}; give n_cells={most} or fewer"
            )
        chosen = choose_trials(study, n_cells, rule, space, rescore=rescore, finalists=finalists)
        rule_used = rule if not rescore else f"{rule}, {len(rescore)} re-scorings of {finalists} finalists"
    genotypes = [str(space.genotype_of(t)) for t in chosen]
    k, shape = _data_shape(study) if num_classes is None or in_channels is None or image_size is None else (None, None)
    if num_classes is None or in_channels is None:
        num_classes = num_classes if num_classes is not None else k
        in_channels = in_channels if in_channels is not None else (shape[0] if shape else None)
        if num_classes is None or in_channels is None:
            raise ConfigError(
                f"cannot open the data study {study.study_name!r} was scored on to learn its classes and channels; "
                "pass num_classes= and in_channels="
            )
    record: dict[str, Any] = {
        "format": FORMAT,
        "study_name": study.study_name,
        "space": space.definition(),
        "genotypes": genotypes,
        "trials": [t.number for t in chosen],
        "values": [list(t.values) for t in chosen],
        "metric_names": study.metric_names,
        "rule": rule_used,
        "n_cells": len(chosen),
        "num_classes": int(num_classes),
        "in_channels": int(in_channels),
        "network_options": network_options,
        "seed": seed,
        "data": _recorded_data(study),
    }
    net = _build(record)
    record["parameters"] = count_parameters(net)
    json_path = Path(path)
    if json_path.suffix != ".json":
        json_path = json_path.with_name(json_path.name + ".json")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    weights = json_path.with_suffix(".pt")
    record["weights"] = weights.name  # beside the JSON, so the pair can move together
    record["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    record["torch_version"] = torch.__version__
    torch.save(net.state_dict(), weights)
    hw = tuple(image_size) if image_size is not None else (tuple(shape[1:]) if shape else (32, 32))
    record["input_shape"] = [int(in_channels), *(int(d) for d in hw)]
    program = json_path.with_suffix(".pt2")
    save_program(net, program, tuple(record["input_shape"]), genotypes=genotypes, space=record["space"])
    record["program"] = program.name
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    record["path"] = str(json_path)
    return record


def _build(record: dict[str, Any]) -> nn.Module:
    space = space_from_definition(record["space"])
    genotypes: list[Genotype] = [space.parse(g) for g in record["genotypes"]]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(record.get("seed", 0)))
        try:
            return space.final_network(
                genotypes,
                num_classes=int(record["num_classes"]),
                in_channels=int(record["in_channels"]),
                **dict(record.get("network_options") or {}),
            )
        except TypeError as e:
            raise ConfigError(f"network options {record.get('network_options')} do not fit {space!r}: {e}") from e


def read_export(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON record of an export, checked."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no export file {str(p)!r}; pass the .json written by export_final / nas-sampler export")
    try:
        record = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{str(p)!r} is not JSON ({e}); pass the .json written by export_final") from e
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ConfigError(f"{str(p)!r} is not a nas-sampler final-network export (format {FORMAT!r} expected)")
    missing = [k for k in ("space", "genotypes", "num_classes", "in_channels") if k not in record]
    if missing:
        raise ConfigError(
            f"{str(p)!r} has no {', '.join(repr(k) for k in missing)} entry; write it again with nas-sampler export "
            "(or export_final)"
        )
    try:
        space = space_from_definition(record["space"])
        for g in record["genotypes"]:
            space.parse(g)
    except (GenotypeError, TypeError) as e:
        raise ConfigError(f"{str(p)!r} holds an invalid entry: {e}; write it again with nas-sampler export") from e
    return record


def build_final_network(path: str | os.PathLike, weights: bool = True, map_location: str = "cpu") -> nn.Module:
    """Rebuild the network of an export: the same architecture, initialised from the same seed, and,
    with ``weights=True`` (default) and the ``.pt`` file beside the JSON, the saved weights."""
    p = Path(path)
    record = read_export(p)
    net = _build(record)
    n = count_parameters(net)
    if "parameters" in record and n != record["parameters"]:
        raise ConfigError(
            f"rebuilt network has {n} parameters, the export records {record['parameters']}: an operation "
            "is registered differently here than where it was exported (check register_op calls)"
        )
    if weights and record.get("weights"):
        wpath = p.with_name(record["weights"])
        if not wpath.is_file():
            raise ConfigError(f"weights file {str(wpath)!r} is missing; put it beside the JSON or pass weights=False")
        net.load_state_dict(torch.load(wpath, map_location=map_location, weights_only=True))
    return net
