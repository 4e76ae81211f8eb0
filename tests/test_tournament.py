"""The DARTS tournament: it prefers a cell that carries information, is deterministic, runs once per
generation in a study, and keeps the population size."""

from __future__ import annotations

import optuna
import pytest
import torch
from torch import nn

from nas_sampler import tournament as tmod
from nas_sampler.errors import ConfigError
from nas_sampler.internals import storage_of, study_id_of
from nas_sampler.ops import build_op, register_op, unregister_op
from nas_sampler.space import CellSpace, NB201Space
from nas_sampler.tournament import DartsTournament, TournamentResult, run_tournament, split_groups

INFORMATIVE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
CONSTANT = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"  # output is zeros whatever the input
FAST = dict(steps=12, warmup_steps=6, batch_size=16)
TINY = dict(steps=4, warmup_steps=2, batch_size=8, width=4)  # for tests of bookkeeping, not of the outcome


class TimesZero(nn.Module):
    """A convolution whose output is multiplied by zero: parameters, but no information."""

    def __init__(self, C_in: int, C_out: int, stride: int):
        super().__init__()
        self.conv = build_op("sep_conv_3x3", C_in, C_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * 0.0


@pytest.fixture
def zero_op():
    register_op("times_zero_test", TimesZero, overwrite=True)
    yield "times_zero_test"
    unregister_op("times_zero_test")


@pytest.mark.parametrize("order", [0, 1])
def test_nb201_group_picks_the_informative_cell(order: int) -> None:
    space = NB201Space()
    cands = [INFORMATIVE, CONSTANT] if order == 0 else [CONSTANT, INFORMATIVE]
    r = run_tournament(space, cands, "builtin", size=2, seed=0, device="cpu", **FAST)
    assert r.winners == [cands.index(INFORMATIVE)]
    assert r.weights[cands.index(INFORMATIVE)] > 0.5 > r.weights[cands.index(CONSTANT)]
    assert len(r.loss_curve) == FAST["steps"] + FAST["warmup_steps"]
    assert len(r.val_loss_curve) == FAST["steps"]


def test_cell_space_group_picks_the_informative_cell_over_zeroed_cells(zero_op: str) -> None:
    space = CellSpace(ops=("sep_conv_3x3", zero_op, "max_pool_3x3"), width=8)
    cands = [f"|{zero_op}:16~0|+|{zero_op}:32~1|", "|sep_conv_3x3:16~0|+|sep_conv_3x3:32~1|", f"|{zero_op}:8~0|"]
    r = run_tournament(space, cands, "builtin", size=3, seed=1, device="cpu", width=8, **FAST)
    assert r.groups == [[0, 1, 2]]
    assert r.winners == [1]


def test_a_groups_alpha_follows_only_its_own_loss() -> None:
    """Each group has its own classifier: another group's cells cannot change a group's alpha gradient
    (with one classifier on every group's features they did, and the alphas were mostly noise)."""
    space = NB201Space()
    rng = __import__("numpy").random.default_rng(4)
    gens = [space.random(rng) for _ in range(4)]
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 3

    def alpha_grads(perturb: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        net = tmod.TournamentSupernet(space, gens, [[0, 1], [2, 3]], num_classes=3, width=4)
        if perturb:
            with torch.no_grad():
                for p in [*net.groups[1].parameters(), *net.heads[1].parameters()]:
                    p.add_(torch.randn_like(p))
        net.loss(x, y).backward()
        return [a.grad.clone() for a in net.alphas()]

    plain, perturbed = alpha_grads(False), alpha_grads(True)
    assert torch.equal(plain[0], perturbed[0])
    assert not torch.equal(plain[1], perturbed[1])
    assert tmod.TournamentSupernet(space, gens, [[0, 1], [2, 3]], 3, width=4)(x).shape == (2, 8, 3)


def test_deterministic_for_a_seed_on_cpu() -> None:
    space = NB201Space()
    rng = __import__("numpy").random.default_rng(3)
    cands = [space.random(rng) for _ in range(4)]
    state = torch.get_rng_state()
    a = run_tournament(space, cands, "builtin", size=2, seed=5, device="cpu", **TINY)
    assert torch.equal(state, torch.get_rng_state()), "the global RNG must be left as it was"
    b = run_tournament(space, cands, "builtin", size=2, seed=5, device="cpu", **TINY)
    c = run_tournament(space, cands, "builtin", size=2, seed=6, device="cpu", **TINY)
    assert a.alphas == b.alphas and a.loss_curve == b.loss_curve and a.winners == b.winners
    assert a.loss_curve != c.loss_curve


def test_groups_and_survivor_rule() -> None:
    assert split_groups(10, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert split_groups(9, 4) == [[0, 1, 2, 3], [4, 5, 6, 7, 8]]  # no group of one
    shuffled = split_groups(10, 4, seed=1)
    assert sorted(i for g in shuffled for i in g) == list(range(10)) and shuffled != split_groups(10, 4)
    r = TournamentResult(
        groups=[[0, 1], [2, 3, 4]],
        alphas=[0.0] * 5,
        weights=[0.6, 0.4, 0.2, 0.5, 0.3],
        winners=[0, 3],
        loss_curve=[],
    )
    # shares: 1.2, 0.8, 0.6, 1.5, 0.9 -> winners by share (3, 0), then the rest by share (4, 1, 2)
    assert r.survivors(5) == [3, 0, 4, 1, 2]
    assert r.survivors(3) == [3, 0, 4]
    assert r.survivors(1) == [3]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"every": 0}, "every"),
        ({"size": 1}, "size"),
        ({"steps": 0}, "steps"),
        ({"batch_size": 1}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"alpha_lr": float("nan")}, "alpha_lr"),
        ({"device": "tpu9"}, "device"),
        ({"data": None}, "data"),
    ],
)
def test_bad_arguments_name_the_value(kwargs: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        DartsTournament(**kwargs)


def test_tournament_generations() -> None:
    t = DartsTournament(every=3)
    assert [g for g in range(10) if t.is_tournament_generation(g)] == [3, 6, 9]


def _study_with_candidates(storage: str | None, n: int, space: NB201Space) -> optuna.Study:
    study = optuna.create_study(storage=storage, study_name="t", directions=["minimize", "minimize"])
    rng = __import__("numpy").random.default_rng(0)
    seen: set[str] = set()
    while len(seen) < n:
        g = space.random(rng)
        if str(g) in seen:
            continue
        seen.add(str(g))
        study.add_trial(
            optuna.trial.create_trial(
                params=space.to_params(g),
                distributions=space.distributions_of(g),
                values=[float(rng.random()), float(rng.random())],
                user_attrs={"genotype": str(g)},
            )
        )
    return study


def test_select_stores_result_keeps_population_and_is_not_rerun_on_resume(tmp_path, monkeypatch) -> None:
    space = NB201Space()
    storage = f"sqlite:///{tmp_path / 'nas.db'}"
    study = _study_with_candidates(storage, 10, space)
    calls = []
    real = tmod.run_tournament

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tmod, "run_tournament", counting)
    tour = DartsTournament(data="builtin", every=2, size=4, device="cpu", seed=0, **TINY)
    candidates = study.get_trials(deepcopy=False)
    parents = tour.select(study, space, candidates, n_survivors=6, generation=2)
    assert len(calls) == 1
    record = study.user_attrs["nas_sampler:tournament:2"]
    assert len(parents) == 6  # 3 group winners, filled to the population size
    assert len({p.number for p in parents}) == 6
    assert {p.number for p in parents[:3]} == set(record["winners"])  # winners first, then the fill
    assert sorted(int(k) for k in record["weight"]) == [t.number for t in candidates]
    assert len(record["loss_curve"]) == TINY["steps"] + TINY["warmup_steps"]
    assert tmod.tournament_alphas(study).keys() == {t.number for t in candidates}

    # a resumed search: a new process, a new tournament object, the same storage
    resumed = optuna.load_study(study_name="t", storage=storage)
    again = DartsTournament(data="builtin", every=2, size=4, device="cpu", seed=0, **TINY).select(
        resumed, space, resumed.get_trials(deepcopy=False), n_survivors=6, generation=2
    )
    assert len(calls) == 1, "a finished tournament must not run again"
    assert [p.number for p in again] == [p.number for p in parents]


def test_select_keeps_population_when_groups_give_too_few_or_too_many_winners() -> None:
    space = NB201Space()
    study = _study_with_candidates(None, 6, space)
    trials = study.get_trials(deepcopy=False)
    t = DartsTournament(size=2, device="cpu", **TINY)
    assert len(t.select(study, space, trials, n_survivors=5, generation=3)) == 5  # 3 winners + 2
    record = study.user_attrs["nas_sampler:tournament:3"]
    assert len(record["winners"]) == 3
    two = t.select(study, space, trials, n_survivors=2, generation=3)  # reused, fewer than the winners
    assert [p.number for p in two] == record["survivors"][:2] and set(record["survivors"][:2]) <= set(record["winners"])


def test_under_a_budget_only_networks_within_it_compete_and_the_others_follow_by_violation() -> None:
    """A tournament generation keeps the parameter budget as survival does: an over-budget network
    never displaces one within it, however the supernet ranks them."""
    space = NB201Space()
    source = _study_with_candidates(None, 8, space).get_trials(deepcopy=False)
    study = optuna.create_study(directions=["minimize", "minimize"])
    over = {1: 50.0, 4: 10.0, 6: 30.0}  # trial number -> parameters over the budget
    for t in source:
        study.add_trial(
            optuna.trial.create_trial(
                params=t.params, distributions=t.distributions, values=t.values, user_attrs=t.user_attrs,
                constraints={"params": over.get(t.number, -1.0)},
            )
        )  # fmt: skip
    trials = study.get_trials(deepcopy=False)
    tour = DartsTournament(size=2, device="cpu", seed=0, **TINY)
    parents = tour.select(study, space, trials, n_survivors=7, generation=3)
    record = study.user_attrs["nas_sampler:tournament:3"]
    assert sorted(record["candidates"]) == [0, 2, 3, 5, 7]  # the five within the budget
    numbers = [p.number for p in parents]
    assert numbers[:5] == record["survivors"][:5] and set(numbers[:5]) == {0, 2, 3, 5, 7}
    assert numbers[5:] == [4, 6]  # then the least over the budget
    assert record["survivors"][5:] == [4, 6, 1]


def test_genetic_sampler_uses_the_tournament_on_its_generations(tmp_path, monkeypatch) -> None:
    from nas_sampler.sampler import GeneticCellSampler

    space = NB201Space()
    storage = f"sqlite:///{tmp_path / 'nas.db'}"
    calls: list[int] = []
    real = tmod.run_tournament

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tmod, "run_tournament", counting)

    def objective(trial: optuna.trial.Trial) -> tuple[float, float]:
        g = space.suggest(trial)
        ops = [e.op for _, e in g.edges()]
        return float(ops.count("none")), float(len(set(ops)))

    def make_sampler() -> GeneticCellSampler:
        tour = DartsTournament(data="builtin", every=2, size=2, device="cpu", seed=0, **TINY)
        return GeneticCellSampler(population_size=4, space=space, seed=0, tournament=tour)

    study = optuna.create_study(
        storage=storage, study_name="s", directions=["minimize", "minimize"], sampler=make_sampler()
    )
    study.optimize(objective, n_trials=12)  # generations 0, 1, 2: parents of generation 2 by tournament
    records = tmod.tournament_records(study)
    assert list(records) == [2] and len(calls) == 1
    parents = storage_of(study).get_study_system_attrs(study_id_of(study))["GeneticCellSampler:parent:2"]["parents"]
    assert len(parents) == 4  # the population size is kept
    assert parents == records[2]["survivors"][:4]
    assert set(records[2]["winners"]) <= set(parents)

    resumed = optuna.load_study(study_name="s", storage=storage, sampler=make_sampler())
    resumed.optimize(objective, n_trials=4)  # generation 3: Pareto selection again, no new tournament
    assert len(calls) == 1 and list(tmod.tournament_records(resumed)) == [2]
