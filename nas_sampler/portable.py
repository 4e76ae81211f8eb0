"""A final network as a file plain PyTorch loads: a ``torch.export`` program (``.pt2``).

``torch.export.load(path).module()`` returns a module that computes exactly what the network did, on
any batch size, with no nas-sampler installed; the input shape and class count travel in the file
(``extra_files={"nas_sampler.json": ""}`` on load fills them in).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

META = "nas_sampler.json"


def save_program(net: nn.Module, path: str | os.PathLike, input_shape: tuple[int, int, int], **meta: Any) -> Path:
    """Write ``net`` (in eval mode, its weights as they are) as a program taking ``B x input_shape``
    images for any ``B``; ``meta`` (JSON-able) is stored beside ``input_shape`` and ``num_outputs``."""
    was_training = net.training
    net.eval()
    try:
        example = torch.zeros(2, *input_shape, device=next(net.parameters()).device)
        with torch.no_grad():
            outputs = int(net(example).shape[-1])
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
    finally:
        net.train(was_training)
    info = {"input_shape": list(input_shape), "num_outputs": outputs, **meta}
    out = Path(path)
    torch.export.save(program, out, extra_files={META: json.dumps(info)})
    return out
