from __future__ import annotations

import numpy as np
import optuna
import pytest

from nas_sampler import CellSpace, NB201Space, SpaceMismatchError, recorded_space
from nas_sampler.errors import ConfigError, UnknownOperationError
from nas_sampler.space import REPAIRED_ATTR, make_space, space_from_definition

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize(
    "space",
    [CellSpace(), NB201Space(), CellSpace(max_nodes=2, channel_choices=(0, 8)), CellSpace(encoding="flat")],
)
def test_definition_round_trip(space) -> None:
    assert space_from_definition(space.definition()) == space
    assert make_space(space.kind, **{k: v for k, v in space.definition().items() if k != "kind"}) == space


def test_param_names_are_stable_and_readable() -> None:
    names = list(NB201Space().distributions())
    assert names == ["node1_in0", "node2_in0", "node2_in1", "node3_in0", "node3_in1", "node3_in2"]
    cell = CellSpace()
    g = cell.parse("|sep_conv_3x3:8~0|+|skip_connect:4~0|max_pool_3x3:16~1|")
    assert cell.to_params(g) == {
        "nodes": 2,
        "node1_entry1_op": "sep_conv_3x3", "node1_entry1_src": 0, "node1_entry1_channels": 8,
        "node1_entry2": False,
        "node2_entry1_op": "skip_connect", "node2_entry1_src": 0, "node2_entry1_channels": 4,
        "node2_entry2": True,
        "node2_entry2_op": "max_pool_3x3", "node2_entry2_src": 1, "node2_entry2_channels": 16,
        "node2_entry3": False,
    }  # fmt: skip
    assert set(cell.distributions_of(g)) == set(cell.to_params(g))
    flat = CellSpace(encoding="flat")
    assert "node3_in1_sep_conv_5x5" in flat.distributions()
    assert len(flat.distributions()) == (1 + 2 + 3 + 4) * len(flat.ops)
    assert flat.to_params(g)["node2_in1_max_pool_3x3"] == 16 and flat.from_params(flat.to_params(g)) == g


def test_random_sampler_draws_cells_of_the_size_the_genetic_search_starts_from() -> None:
    """The conditional encoding: Random through ``suggest`` and ``space.random`` draw cells whose
    scoring networks have median parameter counts within 2x of each other (the flat encoding: 50x)."""
    from statistics import median

    from nas_sampler.phenotype import count_parameters

    space = CellSpace()
    rng = np.random.default_rng(0)
    own = median(count_parameters(space.scoring_network(space.random(rng))) for _ in range(200))
    drawn: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        drawn.append(count_parameters(space.scoring_network(space.suggest(trial))))
        return 0.0

    optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).optimize(objective, n_trials=200)
    assert 0.5 <= median(drawn) / own <= 2.0


@pytest.mark.parametrize("seed", range(3))
def test_every_valid_cell_genotype_round_trips_through_its_parameters(seed: int) -> None:
    space = CellSpace()
    rng = np.random.default_rng(seed)
    for _ in range(50):
        g = space.random(rng)
        for _ in range(int(rng.integers(0, 6))):  # grown by mutation: more entries than random draws
            g, _ = space.mutate(g, "add_op", rng, np.full(len(space.ops), 1 / len(space.ops)))
        assert space.from_params(space.to_params(g)) == g


def test_a_study_made_with_the_flat_encoding_is_extended_with_it(tmp_path) -> None:
    """A study recorded before the conditional encoding (its space has no ``encoding`` entry) goes on
    with the flat parameters, asked for with today's default ``CellSpace()``."""
    storage = f"sqlite:///{tmp_path / 'old.db'}"
    old = CellSpace(encoding="flat")
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: float(len(str(old.suggest(t)))), n_trials=2)
    definition = {k: v for k, v in old.definition().items() if k != "encoding"}
    study.set_user_attr("nas_sampler:space", definition)  # as an earlier version recorded it
    assert recorded_space(study) == old
    study = optuna.load_study(study_name="s", storage=storage)
    study.optimize(lambda t: float(len(str(CellSpace().suggest(t)))), n_trials=2)
    assert all(len(t.params) == 80 for t in study.trials)
    assert study.user_attrs["nas_sampler:space"] == definition  # nothing rewritten
    with pytest.raises(SpaceMismatchError, match="was searched with space"):
        study.optimize(lambda t: float(len(str(CellSpace(max_nodes=3).suggest(t)))), n_trials=1)


@pytest.mark.parametrize(
    "sampler_cls",
    [optuna.samplers.RandomSampler, optuna.samplers.TPESampler, optuna.samplers.NSGAIISampler],
)
@pytest.mark.parametrize("space", [CellSpace(max_nodes=3), NB201Space()])
def test_any_optuna_sampler_yields_valid_genotypes(sampler_cls, space) -> None:
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler_cls(seed=1))
    seen = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        g = space.suggest(trial)
        assert space.is_valid(g)
        assert trial.user_attrs["genotype"] == str(g)
        seen.append(g)
        return float(len(str(g))), float(g.num_nodes)

    study.optimize(objective, n_trials=15)
    assert len(seen) == 15
    assert recorded_space(study) == space


def test_repair_is_recorded_on_the_trial() -> None:
    space = CellSpace(max_nodes=3, encoding="flat")
    # node 1 empty, node 2 present: suggest must give node 1 an input and say what it repaired
    params = dict.fromkeys(space.distributions(), 0)
    params["node2_in0_skip_connect"] = 8
    study = optuna.create_study(directions=["minimize"])
    study.enqueue_trial(params)

    def objective(trial: optuna.Trial) -> float:
        g = space.suggest(trial)
        assert space.is_valid(g)
        return 0.0

    study.optimize(objective, n_trials=1)
    t = study.trials[0]
    assert t.user_attrs[REPAIRED_ATTR] == "||+|skip_connect:8~0|"
    assert t.user_attrs["genotype"] == "|sep_conv_3x3:4~0|+|skip_connect:8~0|"


def test_a_study_refuses_a_different_space() -> None:
    study = optuna.create_study()
    study.optimize(lambda t: float(len(str(NB201Space().suggest(t)))), n_trials=1)
    with pytest.raises(SpaceMismatchError) as err:
        study.optimize(lambda t: float(len(str(CellSpace().suggest(t)))), n_trials=1)
    assert '"kind": "nb201"' in str(err.value) and '"kind": "cell"' in str(err.value)
    # nothing already stored was lost and the refused trial is marked failed by Optuna, not completed
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]


def test_fixed_trial_suggest_works_without_a_study() -> None:
    space = NB201Space()
    g = space.random(np.random.default_rng(0))
    assert space.suggest(optuna.trial.FixedTrial(space.to_params(g))) == g


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"ops": ["sep_conv_3x3", "sep_conv_3x3"]}, "twice"),
        ({"ops": []}, "empty"),
        ({"max_nodes": 0}, "max_nodes"),
        ({"channel_choices": (4, 8)}, "channel_choices"),
        ({"channel_choices": (0, 16, 8)}, "channel_choices"),
        ({"width": -1}, "width"),
    ],
)
def test_bad_space_arguments(kwargs, word) -> None:
    with pytest.raises(ConfigError, match=word):
        CellSpace(**kwargs)


def test_unknown_operation_lists_known_ones() -> None:
    with pytest.raises(UnknownOperationError) as err:
        CellSpace(ops=["sep_conv_3x3", "sepconv"])
    assert "'sepconv'" in str(err.value) and "sep_conv_5x5" in str(err.value)
    with pytest.raises(ConfigError, match="cell, nb201"):
        make_space("darts")


@pytest.mark.parametrize("encoding", ["flat", "conditional"])
def test_sampled_genotype_is_stored_in_one_transaction_on_rdb_storage(tmp_path, encoding: str) -> None:
    """A flat CellSpace genotype is 80 parameters; Optuna alone commits each one (80 commits per trial)."""
    import sqlalchemy

    from nas_sampler import GeneticCellSampler

    space = CellSpace(encoding=encoding)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'p.db'}")
    study = optuna.create_study(
        storage=storage, directions=["minimize"], sampler=GeneticCellSampler(population_size=4, seed=0, space=space)
    )
    commits = []
    sqlalchemy.event.listen(storage.engine, "commit", lambda conn: commits.append(1))
    genotypes = []

    def objective(trial: optuna.Trial) -> float:
        genotypes.append(space.suggest(trial))
        return float(len(str(genotypes[-1])))

    study.optimize(objective, n_trials=6)
    assert len(commits) < 20 * 6  # with one commit per parameter it would be over 80 per trial (flat)
    assert sum(len(t.params) for t in study.trials) == (
        80 * 6 if encoding == "flat" else sum(len(space.to_params(g)) for g in genotypes)
    )
    for t, g in zip(study.trials, genotypes, strict=True):  # what was stored is what was scored
        assert t.params == space.to_params(g) and t.user_attrs["genotype"] == str(g)
    # the values are the sampler's: the same seed in memory proposes the same genotypes
    again = optuna.create_study(
        directions=["minimize"], sampler=GeneticCellSampler(population_size=4, seed=0, space=space)
    )
    again.optimize(lambda t: float(len(str(space.suggest(t)))), n_trials=6)
    assert [t.user_attrs["genotype"] for t in again.trials] == [str(g) for g in genotypes]


def test_a_trial_whose_parameters_are_all_given_does_not_ask_the_sampler(tmp_path) -> None:
    """An enqueued trial (or a retry) carries its genotype: the sampler is not asked for one (at a
    generation boundary that would wait for the previous generation for nothing)."""
    from nas_sampler import GeneticCellSampler

    space = CellSpace()
    asked: list[int] = []

    class Counting(GeneticCellSampler):
        def sample_relative(self, study, trial, search_space):  # noqa: ANN001, ANN201
            asked.append(trial.number)
            return super().sample_relative(study, trial, search_space)

    given = space.to_params(space.random(np.random.default_rng(0)))
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'q.db'}")
    study = optuna.create_study(storage=storage, sampler=Counting(population_size=4, seed=0, space=space))
    study.enqueue_trial(given)
    study.optimize(lambda t: float(len(str(space.suggest(t)))), n_trials=2)
    assert study.trials[0].params == given
    assert asked == [1]


def test_optunas_finished_trial_line_shows_the_genotype_not_its_parameters() -> None:
    import logging

    space = CellSpace()
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("optuna").addHandler(handler)
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        study = optuna.create_study()
        study.optimize(lambda t: float(len(str(space.suggest(t)))), n_trials=2)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)  # not a space: left alone
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        logging.getLogger("optuna").removeHandler(handler)
    lines = [line for line in seen if "finished with value" in line]
    assert len(lines) == 3
    for t, line in zip(study.trials[:2], lines, strict=False):
        assert line.startswith(f"Trial {t.number} finished with value: ")
        assert f"and genotype: {t.user_attrs['genotype']}." in line and "node1_entry1_op" not in line
    assert "and parameters: {'x': " in lines[2]
