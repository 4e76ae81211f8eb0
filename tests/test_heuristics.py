"""The three training-free scores against deliberately naive references (per-sample backward loops,
numpy eigenvalues) on tiny networks, plus degenerate networks, determinism, chunking and devices."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from nas_sampler import CellSpace, NASError, NB201Space, heuristics
from nas_sampler.errors import ConfigError
from nas_sampler.heuristics import (
    JACOBIAN_K,
    WORST_SCORE,
    HeuristicError,
    activation_score,
    jacobian_score,
    ntk_condition_number,
    score_all,
    swap_score,
)

ARCHS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|nor_conv_1x1~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|nor_conv_1x1~2|",
]
CELL = "|clc_avg_3x3:4~0|sep_conv_3x3:4~0|+|max_pool_3x3:4~0|skip_connect:8~1|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def nb201_net(arch: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    s = NB201Space(width=4, cells_per_stage=1)
    return s.scoring_network(s.parse(arch))


def cell_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    s = CellSpace(width=4, cells_per_stage=1)
    return s.scoring_network(s.parse(CELL))


def batch(n: int = 8, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=g)


# ----------------------------------------------------------------------------- naive references


def frozen_copy(net: nn.Module, x: torch.Tensor) -> nn.Module:
    """A copy whose BatchNorms use ``x``'s batch statistics as fixed running statistics (eval mode):
    sample i alone through it gives exactly its output in the batch with the statistics frozen."""
    ref = copy.deepcopy(net).train()
    bns = [m for m in ref.modules() if isinstance(m, nn.BatchNorm2d)]
    stats = {}

    def pre(m: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        stats[m] = (inp[0].mean((0, 2, 3)).detach(), inp[0].var((0, 2, 3), unbiased=False).detach())

    hs = [m.register_forward_pre_hook(pre) for m in bns]
    with torch.no_grad():
        ref(x)
    for h in hs:
        h.remove()
    for m in bns:
        m.running_mean.copy_(stats[m][0])
        m.running_var.copy_(stats[m][1])
    return ref.eval()


def ref_ntk(net: nn.Module, x: torch.Tensor, mode: str) -> float:
    """TE-NAS's loop: one backward per sample, gradients flattened, Theta = J J^T, numpy eigenvalues."""
    if mode == "exact":
        ref = copy.deepcopy(net).train()
        out = ref(x)
        rows_out = [out[i].sum() for i in range(len(x))]
        params = [p for p in ref.parameters()]
    else:
        ref = frozen_copy(net, x)
        params = [p for p in ref.parameters()]
        rows_out = None
    J = []
    for i in range(len(x)):
        y = rows_out[i] if rows_out is not None else ref(x[i : i + 1]).sum()
        g = torch.autograd.grad(y, params, retain_graph=True, allow_unused=True)
        J.append(
            np.concatenate(
                [(np.zeros(p.numel()) if a is None else a.reshape(-1).numpy()) for p, a in zip(params, g, strict=True)]
            )
        )
    J = np.array(J, dtype=np.float64)
    ev = np.linalg.eigvalsh(J @ J.T)
    return float(ev[-1] / ev[0])


def ref_activation(net: nn.Module, x: torch.Tensor) -> float:
    """NASWOT's hook: K += c c^T + (1 - c)(1 - c)^T for every ReLU, numpy slogdet."""
    ref = copy.deepcopy(net).train()
    K = np.zeros((len(x), len(x)))

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal K
        c = (inp[0].reshape(len(x), -1) > 0).double().numpy()
        K = K + c @ c.T + (1 - c) @ (1 - c).T

    for m in ref.modules():
        if isinstance(m, nn.ReLU):
            m.register_forward_hook(hook)
    with torch.no_grad():
        ref(x)
    return -float(np.linalg.slogdet(K)[1])


def ref_jacobian(net: nn.Module, x: torch.Tensor) -> tuple[float, np.ndarray]:
    """Per-sample input gradients one by one, np.corrcoef, numpy eigenvalues (and those eigenvalues)."""
    ref = frozen_copy(net, x)
    J = []
    for i in range(len(x)):
        xi = x[i : i + 1].clone().requires_grad_(True)
        ref(xi).sum().backward()
        J.append(xi.grad.reshape(-1).double().numpy())
    v = np.linalg.eigvalsh(np.corrcoef(np.array(J)))
    return float(np.sum(np.log(v + JACOBIAN_K) + 1 / (v + JACOBIAN_K))), v


def relu_outputs(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every ReLU call's output, the network in train mode (BatchNorm on the batch's statistics)."""
    outs: list[torch.Tensor] = []
    ref = copy.deepcopy(net).train()
    for m in ref.modules():
        if isinstance(m, nn.ReLU):
            m.register_forward_hook(lambda m, i, o: outs.append(o))
    with torch.no_grad():
        ref(x)
    return outs


def ref_swap(net: nn.Module, x: torch.Tensor) -> int:
    """SWAP's count: every ReLU output unit's tuple of signs over the samples, in a Python set."""
    patterns: set[tuple[bool, ...]] = set()
    for out in relu_outputs(net, x):
        patterns.update(map(tuple, (out.reshape(len(x), -1) > 0).numpy().T))
    return len(patterns)


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# ----------------------------------------------------------------------------- equality with the references


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_ntk_matches_per_sample_loop(arch: str, mode: str) -> None:
    net, x = nb201_net(arch), batch()
    assert rel(ntk_condition_number(net, x, mode=mode), ref_ntk(net, x, mode)) < 1e-4


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_ntk_cell_space_grouped_convs_and_linear_gates(mode: str) -> None:
    net, x = cell_net(), batch()  # depthwise (grouped) convolutions and a Linear gate
    assert rel(ntk_condition_number(net, x, mode=mode), ref_ntk(net, x, mode)) < 1e-4


def test_exact_and_fast_ntk_differ() -> None:
    """The modes compute different kernels (the exact one carries the batch-statistics coupling)."""
    net, x = nb201_net(ARCHS[0]), batch()
    assert rel(ntk_condition_number(net, x, mode="fast"), ntk_condition_number(net, x, mode="exact")) > 1e-3


class Scaled(nn.Module):
    """A parameter used by a plain multiplication (not conv2d/linear/batch_norm): the generic loop path."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.scale


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_ntk_parameters_of_other_operations(mode: str) -> None:
    net, x = Scaled(nb201_net(ARCHS[0])), batch()
    assert rel(ntk_condition_number(net, x, mode=mode), ref_ntk(net, x, mode)) < 1e-4


class UnusedHead(nn.Module):
    """A network with a head its forward never calls (an auxiliary classifier switched off)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.head = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_ntk_ignores_parameters_the_forward_never_uses(mode: str) -> None:
    net, x = nb201_net(ARCHS[0]), batch()
    # J is float32 and its products with itself round differently when other columns sit beside it or BLAS
    # blocks them differently on another machine: a few float32 ulps (1e-7 each) is the same NTK.
    assert rel(ntk_condition_number(UnusedHead(net), x, mode=mode), ntk_condition_number(net, x, mode=mode)) < 1e-6


@pytest.mark.parametrize("make", [lambda: nb201_net(ARCHS[0]), lambda: nb201_net(ARCHS[1]), cell_net])
def test_activation_matches_naswot_hook(make) -> None:
    net, x = make(), batch()
    assert rel(activation_score(net, x), ref_activation(net, x)) < 1e-4


@pytest.mark.parametrize("n", [8, 64, 70])  # one packed word, a full one (bit 63 is the sign), two words
@pytest.mark.parametrize("make", [lambda: nb201_net(ARCHS[0]), lambda: nb201_net(ARCHS[1]), cell_net])
def test_swap_counts_the_distinct_sample_wise_patterns(make, n: int) -> None:
    net, x = make(), batch(n)
    x[n // 2] = x[0]  # a repeated image: patterns are still told apart by the other samples
    count = ref_swap(net, x)
    assert swap_score(net, x) == -count
    # a skip edge feeds the same tensor to several ReLUs: their patterns repeat and count once
    units = sum(o.numel() // n for o in relu_outputs(net, x))
    assert 0 < count < units


def test_swap_is_asked_for_by_name_and_shares_the_pass() -> None:
    net, x = nb201_net(ARCHS[0]), batch()
    assert "swap" not in score_all(net, x)  # the three stay the default
    s = score_all(net, x, metrics=["activation", "swap"], memory_budget=200_000)  # chunked, too
    assert s == {"activation": activation_score(net, x), "swap": swap_score(net, x)}
    more = x.clone()
    more[1] = x[0]  # two identical images: no unit tells them apart, fewer distinct patterns
    assert swap_score(net, x) < swap_score(net, more)
    no_relu = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 14 * 14, 3))
    with pytest.raises(HeuristicError, match="no nn.ReLU"):
        swap_score(no_relu, x)


@pytest.mark.parametrize("make", [lambda: nb201_net(ARCHS[0]), lambda: nb201_net(ARCHS[1]), cell_net])
def test_jacobian_matches_per_sample_loop(make) -> None:
    """Tolerance: the two computations agree on J to float32 rounding, so corrcoef(J) differs by at
    most about ``d = 1e-5`` in spectral norm (entries ~1e-6, B = 8); by Weyl each eigenvalue moves by
    at most ``d``, and the score by at most ``d * sum |f'(v)|``, ``f'(v) = 1/(v+k) - 1/(v+k)^2``."""
    net, x = make(), batch()
    ref, v = ref_jacobian(net, x)
    tol = 1e-5 * float(np.sum(np.abs(1 / (v + JACOBIAN_K) - 1 / (v + JACOBIAN_K) ** 2))) + 1e-9 * abs(ref)
    assert abs(jacobian_score(net, x) - ref) <= tol


# ----------------------------------------------------------------------------- orientation and degenerate networks


def test_scores_are_lower_is_better_oriented() -> None:
    """NASWOT's log|det K| of a non-singular integer K is >= 0, so ours is <= 0; cond >= 1."""
    s = score_all(nb201_net(ARCHS[0]), batch())
    assert s["ntk_cond"] >= 1 and s["activation"] <= 0


def test_identical_images_give_a_worse_activation_score_than_distinct_ones() -> None:
    net = nb201_net(ARCHS[0])
    x = batch()
    near = x[:1].repeat(8, 1, 1, 1) + 0.05 * batch(seed=3)  # nearly the same image: similar codes
    assert activation_score(net, x) < activation_score(net, near)


def test_degenerate_network_raises_with_reasons() -> None:
    net, x = nb201_net(ALL_NONE), batch()  # every cell outputs zeros: the output ignores the input
    with pytest.raises(HeuristicError) as err:
        score_all(net, x)
    assert isinstance(err.value, NASError)
    assert set(err.value.reasons) == {"ntk_cond", "activation", "jacobian"}
    assert "do not depend on its input" in err.value.reasons["jacobian"]
    assert err.value.scores == dict.fromkeys(("ntk_cond", "activation", "jacobian"), WORST_SCORE)
    with pytest.raises(HeuristicError):
        ntk_condition_number(net, x, mode="exact")


def test_degenerate_network_worst_value_is_finite_and_above_normal_scores() -> None:
    bad = score_all(nb201_net(ALL_NONE), batch(), on_degenerate="worst")
    good = score_all(nb201_net(ARCHS[0]), batch(), on_degenerate="worst")
    assert all(v == WORST_SCORE and np.isfinite(v) for v in bad.values())
    assert all(good[k] < WORST_SCORE for k in good)


def test_nan_weights_are_degenerate() -> None:
    net = nb201_net(ARCHS[0])
    with torch.no_grad():
        net.classifier.weight[0, 0] = float("nan")
    with pytest.raises(HeuristicError, match="NaN or infinite"):
        score_all(net, batch())
    assert score_all(net, batch(), ntk_mode="exact", on_degenerate="worst")["ntk_cond"] == WORST_SCORE


# ----------------------------------------------------------------------------- sharing, state, determinism, chunks


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_score_all_equals_the_individual_functions(mode: str) -> None:
    net, x = nb201_net(ARCHS[1]), batch()
    s = score_all(net, x, ntk_mode=mode)
    assert s["ntk_cond"] == pytest.approx(ntk_condition_number(net, x, mode=mode), rel=1e-9)
    assert s["activation"] == pytest.approx(activation_score(net, x), rel=1e-12)
    assert s["jacobian"] == pytest.approx(jacobian_score(net, x), rel=1e-9)


def test_ntk_batch_scores_the_ntk_on_the_first_images_only() -> None:
    net, x = nb201_net(ARCHS[1]), batch()
    s = score_all(net, x, ntk_mode="exact", ntk_batch=3)
    assert s["ntk_cond"] == pytest.approx(ntk_condition_number(net, x[:3], mode="exact"), rel=1e-9)
    assert s["ntk_cond"] != pytest.approx(ntk_condition_number(net, x, mode="exact"), rel=1e-3)
    assert s["activation"] == pytest.approx(activation_score(net, x), rel=1e-12)
    assert s["jacobian"] == pytest.approx(jacobian_score(net, x), rel=1e-9)
    assert score_all(net, x, ntk_batch=len(x) + 5) == score_all(net, x)  # more than the batch: all of it
    with pytest.raises(ConfigError, match="ntk_batch=1 is invalid"):
        score_all(net, x, ntk_batch=1)
    with pytest.raises(ConfigError, match="on_degenerate='bogus'"):
        score_all(net, x, ntk_batch=3, on_degenerate="bogus")
    with torch.no_grad():
        net.classifier.weight[0, 0] = float("nan")
    with pytest.raises(HeuristicError, match="NaN or infinite"):
        score_all(net, x, ntk_batch=3)


@pytest.mark.parametrize("metrics", [["activation", "jacobian"], ["jacobian"], ["ntk_cond"]])
def test_score_all_computes_only_the_metrics_asked_for(metrics: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    net, x = nb201_net(ARCHS[1]), batch()
    full = score_all(net, x, ntk_mode="exact", ntk_batch=3)
    asked: list[tuple[str, ...]] = []
    run_raw = heuristics._run_raw
    monkeypatch.setattr(
        heuristics, "_run_raw", lambda net, images, want, *a: asked.append(want) or run_raw(net, images, want, *a)
    )
    s = score_all(net, x, ntk_mode="exact", ntk_batch=3, metrics=metrics)
    assert s == {m: pytest.approx(full[m], rel=1e-9) for m in metrics}
    assert sorted(m for want in asked for m in want) == sorted(metrics)  # nothing else was scored
    with pytest.raises(ConfigError, match="metrics=.*invalid"):
        score_all(net, x, metrics=["accuracy"])


@pytest.mark.parametrize("training", [True, False])
def test_network_left_unchanged(training: bool) -> None:
    net = nb201_net(ARCHS[0]).train(training)
    net.cells[0].train(not training)  # a mixed state is restored module by module
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes = [m.training for m in net.modules()]
    score_all(net, batch(), ntk_mode="exact")
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights, running stats, batch counters
    assert [m.training for m in net.modules()] == modes
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    assert all(p.grad is None for p in net.parameters())


def test_scores_ignore_running_statistics_and_are_deterministic() -> None:
    net, x = nb201_net(ARCHS[0]), batch()
    first = score_all(net, x, seed=3)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    assert score_all(net, x, seed=3) == first


def test_seed_does_not_disturb_the_global_generator() -> None:
    net, x = nb201_net(ARCHS[0]), batch()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    score_all(net, x, seed=11)
    assert torch.equal(torch.rand(3), expected)


def test_chunking_gives_the_same_scores() -> None:
    net, x = nb201_net(ARCHS[0]), batch()
    whole = score_all(net, x)
    sizes: list[int] = []
    h = net.register_forward_pre_hook(lambda m, inp: sizes.append(inp[0].shape[0]))
    chunked = score_all(net, x, memory_budget=200_000)  # a few samples' worth
    h.remove()
    assert sizes[:2] == [1, len(x)]  # the one-sample memory probe, the batch statistics
    assert max(sizes[2:]) < len(x)  # then the batch really was split
    assert chunked["activation"] == whole["activation"]
    assert chunked["ntk_cond"] == pytest.approx(whole["ntk_cond"], rel=1e-5)
    assert chunked["jacobian"] == pytest.approx(whole["jacobian"], rel=1e-5)


# ----------------------------------------------------------------------------- inputs and devices


@pytest.mark.parametrize(
    "kwargs",
    [
        {"images": torch.randn(8, 16, 16)},
        {"images": torch.randn(1, 3, 16, 16)},
        {"images": torch.zeros(8, 3, 16, 16, dtype=torch.long)},
        {"ntk_mode": "slow"},
        {"memory_budget": 0},
        {"on_degenerate": "ignore"},
        {"device": "tpu9"},
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict) -> None:
    args = {"images": batch(), **kwargs}
    with pytest.raises(ConfigError):
        score_all(nb201_net(ARCHS[0]), **args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    net, x = nb201_net(ARCHS[0]), batch()
    cpu = score_all(net, x, device="cpu")
    gpu = score_all(net, x, device="cuda")
    assert next(net.parameters()).device.type == "cpu"  # the given network was not moved
    assert gpu["activation"] == cpu["activation"]
    assert gpu["ntk_cond"] == pytest.approx(cpu["ntk_cond"], rel=1e-3)
    assert gpu["jacobian"] == pytest.approx(cpu["jacobian"], rel=1e-3)
    assert score_all(net, x, device="cuda") == gpu  # deterministic on the device too


def test_a_registered_score_is_one_entry_and_gets_only_what_it_needs() -> None:
    """A score added from outside: one decorated function; score_all and the metric checks know it,
    and the fused pass hands it what it declared (ReLU codes here) and computes nothing else."""
    from nas_sampler import scores

    seen: list[scores.Pass] = []

    @scores.register_score("test_active_units", ("relu_codes",))
    def active_units(p: scores.Pass) -> float:
        seen.append(p)
        return -float(sum(torch.cat(parts).any(0).sum() for parts in p.relu_codes.values()))

    try:
        net, x = nb201_net(ARCHS[0]), batch()
        assert heuristics.check_metrics(["test_active_units"]) == ["test_active_units"]
        out = score_all(net, x, metrics=["test_active_units"])
        assert list(out) == ["test_active_units"] and out["test_active_units"] < 0
        assert seen[0].relu_codes and not seen[0].input_jacobian  # no backward pass for it
        both = score_all(net, x, metrics=["activation", "test_active_units"])
        assert both["test_active_units"] == out["test_active_units"]
        assert both["activation"] == activation_score(net, x)
        with pytest.raises(ValueError, match="unknown"):
            scores.register_score("test_bad", ("hessian",))
    finally:
        scores.SCORES.pop("test_active_units", None)


def test_published_definitions_under_a_small_memory_budget_give_the_same_scores() -> None:
    """NASWOT's codes chunk like ours; the coupled scores need the whole batch and still get it."""
    net, x = nb201_net(ARCHS[0]), batch()
    names = ["activation_naswot", "jacobian_naswot", "ntk_cond_tenas"]
    whole = score_all(net, x, metrics=names, ntk_batch=8)
    chunked = score_all(net, x, metrics=names, ntk_batch=8, memory_budget=200_000)
    assert chunked["activation_naswot"] == whole["activation_naswot"]
    assert chunked["jacobian_naswot"] == pytest.approx(whole["jacobian_naswot"], rel=1e-9)
    assert chunked["ntk_cond_tenas"] == pytest.approx(whole["ntk_cond_tenas"], rel=1e-9)
    # NASWOT's hooks also catch the ReLUConvBN blocks: more codes, a larger log-determinant
    assert whole["activation_naswot"] < score_all(net, x, metrics=["activation"])["activation"]
