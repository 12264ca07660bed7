"""Load a checkpoint of the liver_tumor UNet in the forms people have it, or say exactly why it does not fit;
save one atomically (readers never see half a file)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..data.atomic import save_json, write_atomic
from .int8 import dequantize, quantize
from .network import CHANNELS, NUM_CLASSES, build_unet


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what does not match."""


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())


def _state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The weights inside what torch.load returned: a state dict, or one nested under 'model'/'state_dict'."""
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "net", "network"):
            if isinstance(obj.get(key), dict):
                return _state_dict(obj[key], path)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            # DataParallel / DistributedDataParallel save their weights under "module."
            if all(k.startswith("module.") for k in obj):
                obj = {k[len("module."):]: v for k, v in obj.items()}
            return obj
    raise CheckpointError(f"{path}: holds no state dict (found {type(obj).__name__}"
                          f"{' with keys ' + ', '.join(list(map(str, obj))[:5]) if isinstance(obj, dict) else ''})")


def _check_fits(state: dict[str, torch.Tensor], network: torch.nn.Module, path: Path,
                channels: tuple[int, ...] = CHANNELS) -> None:
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs network {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} with other shapes (e.g. {'; '.join(shapes[:2])})")
        raise CheckpointError(f"{path} does not fit the UNet (channels {'-'.join(map(str, channels))}, 3 classes): "
                              + "; ".join(parts))


def load_network(path: Path, dropout: float = 0.2, device: str | torch.device = "cpu",
                 channels: tuple[int, ...] = CHANNELS) -> torch.nn.Module:
    """The network with the checkpoint's weights, in evaluation mode, on `device`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if _is_torchscript(path):
        try:
            net = torch.jit.load(str(path), map_location=device)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: not a loadable TorchScript model: {str(e).splitlines()[0]}") from e
        net.eval()
        with torch.no_grad():
            out = net(torch.zeros(1, 1, 32, 32, 32, device=device))
        if out.ndim != 5 or out.shape[1] != NUM_CLASSES:
            raise CheckpointError(f"{path}: TorchScript model gives output {tuple(out.shape)} for a 1x1x32^3 "
                                  f"input, expected {NUM_CLASSES} channels")
        return net
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for files that are not checkpoints
        raise CheckpointError(f"{path}: not a PyTorch checkpoint: {str(e).splitlines()[0]}") from e
    state = dequantize(_state_dict(obj, path))
    net = build_unet(dropout, channels)
    _check_fits(state, net, path, channels)
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net.to(device).eval()


def save_state_dict(network: torch.nn.Module, path: Path, half: bool = False, meta: dict | None = None,
                    int8: bool = False) -> Path:
    """Write the weights atomically, with a JSON card beside them: optionally as float16 (half the size), or with the
    convolutions as int8 (a quarter of float32's: lib/model/int8.py)."""
    net = network.module if hasattr(network, "module") else network
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu() for k, v in net.state_dict().items()}
    if int8:
        state = quantize(state)
    if meta is not None:
        save_json(meta, card_path(path))
    return write_atomic(path, lambda p: torch.save(state, p))


def card_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def read_card(path: Path | None) -> dict:
    """The JSON card written beside a checkpoint (what it was trained on, how well it does), if any."""
    if path is None or not card_path(path).exists():
        return {}
    try:
        return json.loads(card_path(path).read_text())
    except ValueError:
        return {}
