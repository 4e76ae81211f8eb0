"""AZ-NAS's scores (expressivity, progressivity, trainability, complexity) on networks whose answer is
known, through the objective on every space's network, and the log-rank rule beside the rank sum."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
import torch
from conftest import run_benchmark
from torch import nn

from nas_sampler import CellSpace, NB201Space, SSSSpace, TrainingFreeObjective
from nas_sampler.blocks import feature_blocks
from nas_sampler.errors import ConfigError
from nas_sampler.evolution import (
    AGGREGATIONS,
    REDUCTIONS,
    domination_matrix,
    log_rank_order,
    log_rank_sums,
    rank_sum_order,
    rank_sums,
    select_survivors,
)
from nas_sampler.final import RULES, choose_trials
from nas_sampler.heuristics import WORST_SCORE, HeuristicError, score_all
from nas_sampler.phenotype import count_flops
from nas_sampler.selection import ParetoSelector
from nas_sampler.space import record_space

AZ = ["expressivity", "progressivity", "trainability", "complexity"]
C = 8


class Chain(nn.Module):
    """Declared blocks applied in turn, then a pooled linear head (so the pass has logits)."""

    def __init__(self, *blocks: nn.Module, channels: int = C):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(channels, 3)

    def feature_blocks(self) -> list[nn.Module]:
        return list(self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return self.head(x.mean((2, 3)))


def conv1x1(weight: torch.Tensor) -> nn.Conv2d:
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(weight[:, :, None, None])
    return conv


def orthogonal(n: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed)))
    return q


def isotropic(n: int = 16, channels: int = C, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- expressivity, progressivity


def test_expressivity_of_isotropic_features_approaches_log_c() -> None:
    # two features, the input and an orthogonal map of it: both isotropic, each entropy ~log C
    out = score_all(Chain(conv1x1(orthogonal(C))), isotropic(), metrics=["expressivity", "progressivity"])
    assert out["expressivity"] == pytest.approx(-2 * math.log(C), abs=0.01)
    assert out["progressivity"] == pytest.approx(0.0, abs=0.01)  # the block kept it


def test_expressivity_counts_only_the_directions_used() -> None:
    x = isotropic()
    x[:, 2:] = 0  # two channels of eight carry everything: entropy log 2
    assert score_all(Chain(nn.Identity()), x, metrics=["expressivity"])["expressivity"] == pytest.approx(
        -2 * math.log(2), abs=0.01
    )


def test_rank_one_features_have_no_expressivity() -> None:
    w = torch.linspace(1, 2, C)
    x = isotropic(channels=1) * w[None, :, None, None]  # every channel vector is a multiple of w
    assert abs(score_all(Chain(nn.Identity()), x, metrics=["expressivity"])["expressivity"]) < 1e-6


def test_a_block_that_collapses_its_features_has_bad_progressivity() -> None:
    collapse = conv1x1(torch.outer(torch.ones(C), torch.linspace(-1, 1, C)))  # rank 1
    keep = conv1x1(orthogonal(C))
    bad = score_all(Chain(keep, collapse), isotropic(), metrics=["progressivity"])["progressivity"]
    good = score_all(Chain(keep, keep), isotropic(), metrics=["progressivity"])["progressivity"]
    assert bad == pytest.approx(math.log(C), abs=0.02)  # minus the drop from log C to 0
    assert abs(good) < 0.02


# ----------------------------------------------------------------------------- trainability


def test_trainability_is_zero_for_an_orthogonal_block_and_grows_with_its_gain() -> None:
    x = isotropic(n=64)  # the estimate's noise falls as 1 / sqrt(positions): a few percent of sigma here
    q = orthogonal(C)
    assert score_all(Chain(conv1x1(q)), x, metrics=["trainability"])["trainability"] == pytest.approx(0, abs=0.01)
    # sigma = 3: 3 + 1/3 - 2; and a damping block (sigma 1/3) is as bad as an amplifying one
    for gain in (3, 1 / 3):
        t = score_all(Chain(conv1x1(gain * q)), x, metrics=["trainability"])["trainability"]
        assert t == pytest.approx(4 / 3, rel=0.12)


def test_a_strided_block_pairs_each_output_position_with_the_inputs_it_reads() -> None:
    # few channels, many positions: the estimate's bias, about (1 + sqrt(C_out / positions))^2, stays small
    x = isotropic(n=64, channels=2, size=32)
    # a pure rearrangement passes the gradient unchanged: sigma 1
    shuffle = score_all(Chain(nn.PixelUnshuffle(2), channels=8), x, metrics=["trainability"])
    assert shuffle["trainability"] == pytest.approx(0, abs=0.01)
    # 2x2 average pooling gives each of the 4 inputs a quarter: the folded Jacobian is 4 stacked I/4, sigma 1/2
    pool = score_all(Chain(nn.AvgPool2d(2), channels=2), x, metrics=["trainability"])
    assert pool["trainability"] == pytest.approx(0.5, abs=0.05)


def test_an_identity_block_is_degenerate_as_in_az_nas() -> None:
    x = isotropic()
    with pytest.raises(HeuristicError, match="identity map"):
        score_all(Chain(nn.Identity()), x, metrics=["trainability"])
    got = score_all(Chain(nn.Identity()), x, metrics=["trainability", "expressivity"], on_degenerate="worst")
    assert got["trainability"] == WORST_SCORE and got["expressivity"] < 0


def test_a_cell_whose_output_ignores_its_input_is_degenerate() -> None:
    s = NB201Space(width=4, cells_per_stage=1)
    torch.manual_seed(0)
    net = s.scoring_network(s.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"))
    with pytest.raises(HeuristicError) as e:
        score_all(net, torch.randn(8, 3, 16, 16), metrics=AZ)
    assert set(e.value.reasons) == {"expressivity", "progressivity", "trainability"}  # complexity is defined


# ----------------------------------------------------------------------------- the spaces' networks


def test_every_space_declares_its_cells_and_reductions_as_blocks() -> None:
    nb = NB201Space(width=4, cells_per_stage=2)
    net = nb.scoring_network(nb.random(np.random.default_rng(0)))
    assert feature_blocks(net) == list(net.cells) and len(net.cells) == 3 * 2 + 2
    sss = SSSSpace()
    assert len(feature_blocks(sss.scoring_network(sss.parse("8:8:8:8:8")))) == 5
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    assert feature_blocks(plain) == list(plain.children())  # undeclared: the direct children


@pytest.mark.parametrize("space", [NB201Space(width=4, cells_per_stage=1), CellSpace(width=4, cells_per_stage=1)])
def test_the_scores_through_the_objective(space) -> None:
    objective = TrainingFreeObjective(space, data="builtin", batch_size=8, metrics=AZ)
    assert objective.directions == ["minimize"] * 4
    study = optuna.create_study(directions=objective.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=3)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done, [t.user_attrs for t in study.trials]
    for t in done:
        values = dict(zip(AZ, t.values, strict=True))
        assert values["expressivity"] < 0 and values["trainability"] >= 0
        net = objective.build(space.genotype_of(t))
        assert values["complexity"] == -count_flops(net, (1, *objective.images.shape[1:]))
    g = space.genotype_of(done[0])
    assert objective.score(g).values == objective.score(g).values  # deterministic


def test_chunking_keeps_the_scores() -> None:
    s = CellSpace(width=4, cells_per_stage=1)
    torch.manual_seed(0)
    net = s.scoring_network(s.parse("|clc_avg_3x3:4~0|sep_conv_3x3:4~0|+|max_pool_3x3:4~0|skip_connect:8~1|"))
    x = torch.randn(8, 3, 16, 16)
    whole = score_all(net, x, metrics=AZ)
    chunked = score_all(net, x, metrics=AZ, memory_budget=200_000)
    assert chunked == pytest.approx(whole, rel=1e-6)
    assert score_all(net, x, metrics=AZ, seed=1)["trainability"] != whole["trainability"]  # its draws follow the seed


# ----------------------------------------------------------------------------- the log-rank rule


def test_log_rank_punishes_one_very_bad_rank_more_than_the_rank_sum() -> None:
    # A is best in objective 0 and worst in 1; B third and fourth: the rank sum prefers A, the log rank B
    values = np.array([[0, 9], [1, 5], [2, 8], [3, 6], [4, 7]], dtype=float)
    d = ["minimize", "minimize"]
    a, b = 0, 2
    assert rank_sums(values, d)[a] < rank_sums(values, d)[b]
    assert log_rank_sums(values, d)[b] < log_rank_sums(values, d)[a]
    assert log_rank_sums([[0.0, 0.0], [1.0, 1.0]], d)[0] == 0.0  # best in every objective


def test_log_rank_and_rank_sum_both_put_a_dominating_individual_first() -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(0, 6, size=(40, 3)).astype(float)  # many ties
    d = ["minimize", "maximize", "minimize"]
    dom = domination_matrix(values, d)
    for name, aggregate in AGGREGATIONS.items():
        score = aggregate(values, d)
        i, j = np.nonzero(dom)
        assert len(i) and (score[i] < score[j]).all(), name


def test_log_rank_is_a_rule_of_survival_and_of_the_final_choice() -> None:
    assert "log_rank" in REDUCTIONS and "log_rank" in RULES and ParetoSelector("log_rank").reduction == "log_rank"
    # one front whose rank sums all tie: the log rank puts the balanced trials first, the extremes last
    front = [(0.0, 4.0), (1.0, 3.0), (2.0, 2.0), (3.0, 1.0), (4.0, 0.0)]
    d = ["minimize", "minimize"]
    assert rank_sum_order(front, d)[2:] == [1, 2, 3]
    assert log_rank_order(front, d)[2:] == [2, 1, 3]  # after each objective's best
    assert select_survivors(front, d, 3, "log_rank") == [0, 4, 2]
    space = NB201Space()
    rng = np.random.default_rng(0)
    gens = list(dict.fromkeys(str(space.random(rng)) for _ in range(20)))[:5]
    study = optuna.create_study(directions=d)
    record_space(study, space)
    for v, g in zip(front, gens, strict=True):
        g = space.parse(g)
        study.add_trial(
            optuna.trial.create_trial(
                params=space.to_params(g), distributions=space.distributions_of(g), values=list(v)
            )
        )
    assert [t.number for t in choose_trials(study, 5, rule="rank_sum")] == [0, 1, 2, 3, 4]
    assert [t.number for t in choose_trials(study, 5, rule="log_rank")] == [2, 1, 3, 0, 4]
    with pytest.raises(ConfigError, match="log_rank"):
        choose_trials(study, 1, rule="log-rank")


# ----------------------------------------------------------------------------- the benchmark, tiny


def test_the_correlation_benchmark_reports_every_combination_by_name(nb201_csv, cifar10_root, tmp_path) -> None:
    last = run_benchmark(
        "nb201_correlation.py", "--n", "6", "--exact-n", "6", "--batch-size", "8", "--exact-batch", "4",
        "--cost-n", "1", "--threads", "1", "--csv", str(nb201_csv), "--data", str(cifar10_root / "train"),
        "--out", str(tmp_path), timeout=600,
    )  # fmt: skip
    assert last["n"] == 6 and set(last["combinations"]) <= set(last["kendall_tau"])
    assert {"az_nas", "rank_sum_exact_swap_params", *AZ, "jacobian_naswot"} <= set(last["kendall_tau"])
    assert set(last["best_of_subset"]) == set(last["kendall_tau"])
    assert {"az_nas", *AZ} <= set(last["cost_ratio"]) and all(v >= 0 for v in last["cost_ratio"].values())
    assert "jacobian" in last["jacobian_forms"]
