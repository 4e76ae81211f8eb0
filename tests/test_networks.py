from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from nas_sampler import CellSpace, Genotype, NB201Space, count_flops, count_parameters, register_op
from nas_sampler.ops import build_op, known_ops, unregister_op

NB201_PARAMS = {
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|": 1_531_546,
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|": 1_073_466,
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|": 73_306,
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|": 129_306,
}


@pytest.mark.parametrize("arch, params", NB201_PARAMS.items())
def test_nb201_parameter_counts_match_the_benchmark(arch: str, params: int) -> None:
    space = NB201Space()
    assert count_parameters(space.scoring_network(space.parse(arch), num_classes=10)) == params


@pytest.mark.parametrize("name", known_ops())
@pytest.mark.parametrize("c_in, c_out, stride", [(4, 4, 1), (4, 8, 1), (6, 3, 2)])
def test_every_builtin_op_has_the_convolution_interface(name, c_in, c_out, stride) -> None:
    op = build_op(name, c_in, c_out, stride)
    y = op(torch.randn(2, c_in, 9, 9))
    assert y.shape == (2, c_out, (9 + stride - 1) // stride, (9 + stride - 1) // stride)


def _forward_backward(net: nn.Module, shape: tuple[int, ...], reaches_output: bool = True) -> None:
    x = torch.randn(*shape, requires_grad=True)
    out = net(x)
    assert out.shape == (shape[0], 10)
    out.sum().backward()
    if reaches_output:
        assert x.grad is not None and torch.isfinite(x.grad).all()
    else:  # a cell of "none" edges cuts the input off: its network's output is a constant
        assert x.grad is None or not x.grad.any()


def _nb201_reaches_output(g: Genotype) -> bool:
    """Whether some path of non-"none" edges leads from the cell's input (node 0) to its output."""
    reached = {0}
    for i, node in enumerate(g.nodes, start=1):
        if any(e.op != "none" and e.src in reached for e in node):
            reached.add(i)
    return len(g.nodes) in reached


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([(2, 3, 32, 32), (2, 1, 28, 28), (2, 3, 8, 8)]))
def test_random_cell_networks_run_forward_and_backward(seed: int, shape) -> None:
    space = CellSpace(channel_choices=(0, 4, 8))
    g = space.random(np.random.default_rng(seed))
    _forward_backward(space.scoring_network(g, in_channels=shape[1]), shape)
    _forward_backward(space.final_network([g, g], in_channels=shape[1]), shape)


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([(2, 3, 32, 32), (2, 1, 28, 28)]))
@example(3689, (2, 3, 32, 32))  # |none~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|none~1|none~2|: input cut off
def test_random_nb201_networks_run_forward_and_backward(seed: int, shape) -> None:
    space = NB201Space(width=8, cells_per_stage=1)
    g = space.random(np.random.default_rng(seed))
    _forward_backward(space.scoring_network(g, in_channels=shape[1]), shape, _nb201_reaches_output(g))


def test_repaired_genotypes_build() -> None:
    space = CellSpace(channel_choices=(0, 4, 8))
    g = space.repair(Genotype.parse("||+||+|skip_connect:5~2|max_pool_3x3:0~0|"))
    assert space.is_valid(g)
    _forward_backward(space.scoring_network(g), (2, 3, 32, 32))


def test_cell_output_depends_on_its_input() -> None:
    space = CellSpace(channel_choices=(0, 4))
    g = space.repair(Genotype.parse("||+||"))
    cell = space.cell(g, C_in=4).eval()
    x = torch.randn(1, 4, 8, 8)
    assert not torch.allclose(cell(x), cell(x + 1.0))
    assert cell.out_channels == 4


def test_cell_space_channels_follow_the_genotype() -> None:
    space = CellSpace()
    g = space.parse("|sep_conv_3x3:16~0|+|skip_connect:8~1|max_pool_3x3:32~0|")
    cell = space.cell(g, C_in=12)
    assert cell.out_channels == 40
    assert cell(torch.randn(2, 12, 8, 8)).shape == (2, 40, 8, 8)
    assert space.cell(g, C_in=12, stride=2)(torch.randn(2, 12, 8, 8)).shape == (2, 40, 4, 4)


def test_flops_are_counted() -> None:
    space = NB201Space()
    small = space.scoring_network(space.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"))
    big = space.scoring_network(space.parse(next(iter(NB201_PARAMS))))
    assert 0 < count_flops(small) < count_flops(big)
    assert count_flops(big) == pytest.approx(2 * count_flops(big, (1, 3, 16, 16)) * 2, rel=0.02)


def test_final_network_for_nb201_is_the_benchmark_skeleton() -> None:
    space = NB201Space()
    arch, params = next(iter(NB201_PARAMS.items()))
    assert count_parameters(space.final_network([space.parse(arch)])) == params


class TinyGate(nn.Module):
    """A user operation: 1x1 conv gated by its own sigmoid."""

    def __init__(self, C_in: int, C_out: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(C_in, C_out, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y * torch.sigmoid(y)


@pytest.fixture
def tiny_gate_op():
    register_op("tiny_gate")(TinyGate)
    yield "tiny_gate"
    unregister_op("tiny_gate")


def test_user_registered_op_works_in_spaces_and_networks(tiny_gate_op) -> None:
    space = CellSpace(ops=["tiny_gate", "skip_connect"], max_nodes=2, channel_choices=(0, 4, 8))
    g = space.parse("|tiny_gate:8~0|+|tiny_gate:4~1|skip_connect:4~0|")
    _forward_backward(space.scoring_network(g), (2, 3, 16, 16))
    _forward_backward(space.final_network([g]), (2, 3, 16, 16))
    nb = NB201Space(ops=["none", "tiny_gate"], width=4, cells_per_stage=1)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: float(str(nb.suggest(t)).count("tiny_gate")), n_trials=5)
    assert all("tiny_gate" in t.user_attrs["genotype"] or "none" in t.user_attrs["genotype"] for t in study.trials)


def test_register_op_rejects_bad_names_and_silent_overwrites() -> None:
    with pytest.raises(ValueError, match="invalid operation name"):
        register_op("3x3", TinyGate)
    with pytest.raises(ValueError, match="already registered"):
        register_op("skip_connect", TinyGate)
