"""Exporting the final network from a study and rebuilding it exactly."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
import torch

from nas_sampler.errors import ConfigError
from nas_sampler.final import build_final_network, choose_trials, export_final
from nas_sampler.phenotype import count_parameters
from nas_sampler.space import CellSpace, NB201Space, record_space


def _study(
    space,
    values: list[tuple[float, float]],
    genotypes: list[str],
    storage: str | None = None,
    sizes: list[int] | None = None,
    max_params: int | None = None,
) -> optuna.Study:
    """Trials with these values; with ``sizes`` and ``max_params``, as TrainingFreeObjective(max_params=)
    records them (the ``params`` user attribute and the constraint ``params - max_params``)."""
    study = optuna.create_study(storage=storage, study_name="final", directions=["minimize", "minimize"])
    record_space(study, space)
    for i, (v, g) in enumerate(zip(values, genotypes, strict=True)):
        budget = {} if sizes is None or max_params is None else {"params": float(sizes[i] - max_params)}
        study.add_trial(
            optuna.trial.create_trial(
                params=space.to_params(space.parse(g)),
                distributions=space.distributions_of(space.parse(g)),
                values=list(v),
                user_attrs={"genotype": g, **({} if sizes is None else {"params": sizes[i]})},
                constraints=budget or None,
            )
        )
    return study


def _random_genotypes(space, n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < n:
        g = str(space.random(rng))
        if g not in out:
            out.append(g)
    return out


def test_rank_sum_rule_orders_the_first_front_then_the_next() -> None:
    space = CellSpace(width=8)
    gens = _random_genotypes(space, 6)
    # front 1: trials 0, 1, 2; front 2: trials 3, 4; trial 5 is dominated by trial 4. Ranks among all six
    # (0 = best): objective 0 -> 0 1 3 2 4 5, objective 1 -> 5 3 0 4 1 2; sums 5 4 3 6 5 7. The best of
    # objective 0 (trial 0) is an extreme and comes last in its front.
    values = [(0.0, 10.0), (5.0, 5.0), (10.0, 0.0), (6.0, 6.0), (11.0, 1.0), (12.0, 2.0)]
    study = _study(space, values, gens)
    assert [t.number for t in choose_trials(study, 3)] == [2, 1, 0]
    assert [t.number for t in choose_trials(study, 5)] == [2, 1, 0, 4, 3]
    with pytest.raises(ConfigError, match="n_cells=7"):
        choose_trials(study, 7)
    with pytest.raises(ConfigError, match="rule='best'"):
        choose_trials(study, 2, rule="best")
    with pytest.raises(ConfigError, match="no DARTS tournament"):
        choose_trials(study, 2, rule="tournament")


def test_only_networks_within_the_budget_are_chosen(tmp_path) -> None:
    space = CellSpace(width=8)
    gens = _random_genotypes(space, 5)
    # trial 0 dominates every other but is over the budget of 1,000; so is trial 4; trials 1-3 are within it
    values = [(0.0, 0.0), (1.0, 3.0), (2.0, 2.0), (3.0, 1.0), (0.5, 0.5)]
    study = _study(space, values, gens, sizes=[1500, 900, 1000, 700, 1200], max_params=1000)
    assert [t.number for t in choose_trials(study, 3)] == [1, 2, 3]  # rank sums 2, 2, 2 among the three
    assert [t.number for t in choose_trials(study, 2, rule="crowding")] == [1, 3]  # the front's ends
    with pytest.raises(ConfigError, match="offers only 3 distinct genotypes"):  # none over the budget fills in
        choose_trials(study, 4)
    record = export_final(study, tmp_path / "final.json", n_cells=2, num_classes=10, in_channels=3, width=8)
    assert record["trials"] == [1, 2]


def test_no_network_within_the_budget_says_the_smallest_and_what_to_do(tmp_path) -> None:
    space = CellSpace(width=8)
    study = _study(space, [(0.0, 1.0), (1.0, 0.0)], _random_genotypes(space, 2), sizes=[4200, 3100], max_params=3000)
    with pytest.raises(ConfigError) as e:
        export_final(study, tmp_path / "final.json", n_cells=1, num_classes=10, in_channels=3)
    assert str(e.value) == (
        "study 'final' has no completed trial within its parameter budget: the smallest network found has 3,100 "
        "parameters, the budget is 3,000 (max_params); search longer (more trials), or search again with a larger "
        "max_params"
    )
    assert not (tmp_path / "final.json").exists()
    other = optuna.create_study(directions=["minimize", "minimize"])  # someone else's constraint: named
    record_space(other, space)
    g = _random_genotypes(space, 1)[0]
    other.add_trial(
        optuna.trial.create_trial(
            params=space.to_params(space.parse(g)),
            distributions=space.distributions_of(space.parse(g)),
            values=[0.0, 0.0],
            constraints={"latency": 2.0},
        )
    )
    with pytest.raises(ConfigError, match=r"no completed trial within its constraints \(latency\)"):
        choose_trials(other, 1)


class _FreshDraw:
    """A re-scoring that sees the genotypes in another order than the stored (lucky) values."""

    def __init__(self, values: dict[str, tuple[float, float]]) -> None:
        self.values, self.calls = values, []

    def score(self, genotype):  # noqa: ANN001, ANN201
        self.calls.append(str(genotype))
        return type("Scored", (), {"values": dict(zip(["a", "b"], self.values[str(genotype)], strict=True))})


def test_rescoring_reorders_the_finalists_by_fresh_draws() -> None:
    space = CellSpace(width=8)
    gens = _random_genotypes(space, 5)
    # stored ranks among all five: trial 0 is best, then 1, 2; trials 3 and 4 come last
    study = _study(space, [(0.0, 0.0), (1.0, 1.0), (2.0, 2.0), (3.0, 3.0), (4.0, 4.0)], gens)
    study.set_metric_names(["a", "b"])
    assert [t.number for t in choose_trials(study, 1)] == [0]
    # two fresh draws both put trial 2's genotype first and trial 0's last among the finalists 0, 1, 2
    fresh = {gens[0]: (9.0, 9.0), gens[1]: (5.0, 5.0), gens[2]: (1.0, 1.0)}
    draws = [_FreshDraw(fresh), _FreshDraw(fresh)]
    picked = choose_trials(study, 2, rescore=draws, finalists=3)
    assert [t.number for t in picked] == [2, 1]  # ranks 2+0+0 < 1+1+1 < 0+2+2
    assert all(sorted(d.calls) == sorted(gens[:3]) for d in draws)  # only the finalists, once each
    # one fresh draw against the stored order is a tie broken by the stored order
    assert [t.number for t in choose_trials(study, 1, rescore=draws[:1], finalists=2)] == [0]


def test_export_and_rebuild_cell_space_exactly(tmp_path) -> None:
    space = CellSpace(width=8)
    gens = _random_genotypes(space, 4, seed=1)
    study = _study(space, [(0.0, 3.0), (1.0, 1.0), (2.0, 2.0), (3.0, 0.0)], gens)
    record = export_final(study, tmp_path / "final.json", n_cells=2, num_classes=7, in_channels=3, width=8)
    saved = json.loads((tmp_path / "final.json").read_text())
    assert (tmp_path / "final.pt").is_file()
    assert saved["genotypes"] == [gens[1], gens[0]]  # rank sums 2 and 3 (trial 3 ties at 3, later)
    assert saved["trials"] == [1, 0] and saved["study_name"] == "final" and saved["rule"] == "rank_sum"
    assert saved["space"] == space.definition() and saved["network_options"] == {"width": 8}

    direct = space.final_network([space.parse(g) for g in saved["genotypes"]], num_classes=7, width=8)
    net = build_final_network(tmp_path / "final.json")
    assert count_parameters(net) == count_parameters(direct) == record["parameters"]
    fresh = build_final_network(tmp_path / "final.json", weights=False)  # same seed, no weight file
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    saved_state = torch.load(tmp_path / "final.pt", weights_only=True)
    for k, v in net.state_dict().items():
        assert torch.equal(v, saved_state[k])
    net.eval()
    fresh.eval()
    with torch.no_grad():
        out = net(x)
        assert out.shape == (2, 7)
        assert torch.equal(out, fresh(x))


def test_nb201_final_network_is_the_benchmark_skeleton(tmp_path) -> None:
    space = NB201Space()
    gens = _random_genotypes(space, 3, seed=2)
    study = _study(space, [(0.0, 1.0), (1.0, 0.0), (2.0, 2.0)], gens)
    export_final(study, tmp_path / "nb", num_classes=10, in_channels=3)  # ".json" is added
    net = build_final_network(tmp_path / "nb.json")
    assert count_parameters(net) == count_parameters(space.scoring_network(space.parse(gens[0])))
    with pytest.raises(ConfigError, match="one cell"):
        export_final(study, tmp_path / "nb2.json", n_cells=2, num_classes=10, in_channels=3)


def test_export_by_name_with_storage_and_explicit_trials(tmp_path) -> None:
    space = CellSpace(width=8)
    storage = f"sqlite:///{tmp_path / 'nas.db'}"
    gens = _random_genotypes(space, 3, seed=3)
    _study(space, [(0.0, 1.0), (1.0, 0.0), (2.0, 2.0)], gens, storage=storage)
    record = export_final("final", tmp_path / "x.json", storage=storage, trials=[2], num_classes=10, in_channels=3)
    assert record["genotypes"] == [gens[2]] and record["rule"] == "trials"
    with pytest.raises(ConfigError, match="not completed trials"):
        export_final("final", tmp_path / "y.json", storage=storage, trials=[9], num_classes=10, in_channels=3)
    with pytest.raises(ConfigError, match="no study 'nope'"):
        export_final("nope", tmp_path / "y.json", storage=storage)


def test_export_reads_classes_and_channels_from_the_recorded_data(tmp_path) -> None:
    from nas_sampler.data import data_spec, record_data_spec

    space = CellSpace(width=8)
    study = _study(space, [(0.0, 1.0)], _random_genotypes(space, 1))
    with pytest.raises(ConfigError, match="num_classes"):
        export_final(study, tmp_path / "a.json", n_cells=1)
    record_data_spec(study, data_spec("builtin"))
    assert export_final(study, tmp_path / "a.json", n_cells=1)["num_classes"] == 10


def test_bad_export_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no export file"):
        build_final_network(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(ConfigError, match="not a nas-sampler final-network export"):
        build_final_network(tmp_path / "other.json")
