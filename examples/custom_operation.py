"""Register your own operation and search with it: any module with a convolution's interface."""

import optuna
import torch
from torch import nn

from nas_sampler import CellSpace, GeneticCellSampler, TrainingFreeObjective, register_op


@register_op("dilated_conv_3x3")
class DilatedConv(nn.Module):
    """ReLU, 3x3 convolution with dilation 2, BatchNorm: (C_in, C_out, stride) like every op."""

    def __init__(self, C_in: int, C_out: int, stride: int):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(), nn.Conv2d(C_in, C_out, 3, stride, padding=2, dilation=2, bias=False), nn.BatchNorm2d(C_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


optuna.logging.set_verbosity(optuna.logging.WARNING)
space = CellSpace(ops=["dilated_conv_3x3", "sep_conv_3x3", "skip_connect"], max_nodes=3, channel_choices=(0, 8, 16))
objective = TrainingFreeObjective(space, data="builtin", batch_size=16)
study = optuna.create_study(directions=objective.directions, sampler=GeneticCellSampler(population_size=6, seed=0))
study.optimize(objective, n_trials=18)
used = sum("dilated_conv_3x3" in t.user_attrs["genotype"] for t in study.trials)
print(f"{used} of {len(study.trials)} cells use dilated_conv_3x3")
for t in study.best_trials:
    print(t.number, t.user_attrs["genotype"], [round(v, 3) for v in t.values])
