"""Which torch device a run uses: ``"auto"`` picks the GPU when one is present, else the CPU."""

from __future__ import annotations

import torch

from nas_sampler.errors import ConfigError


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: the GPU when one is present, else the CPU; anything else as torch reads it."""
    if isinstance(device, torch.device):
        dev = device
    elif not isinstance(device, str):
        raise ConfigError(f"device={device!r} is invalid: give 'auto', 'cpu', 'cuda' or 'cuda:N'")
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError as e:
            raise ConfigError(f"device={device!r} is invalid ({e}): give 'auto', 'cpu', 'cuda' or 'cuda:N'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} asks for a GPU but none is available; pass device='auto' or 'cpu'")
    return dev
