"""Save and load models: weights in safetensors, the config as JSON in the same file's header.

`load(path)` rebuilds the model with no other input. Writes are atomic and never replace an
existing file unless asked.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from gensci import __version__
from gensci.config import config_from_dict, config_to_dict
from gensci.errors import CheckpointError, ConfigError
from gensci.files import check_input_file, parse_json_object
from gensci.runtime import atomic_write_bytes

_REGISTRY: dict[str, tuple[type[nn.Module], type]] = {}


def register_model(model_cls: type[nn.Module], config_cls: type) -> None:
    """Make `model_cls(config_cls(...))` loadable by `load`; models must keep their config as `.config`."""
    _REGISTRY[f"{model_cls.__module__}.{model_cls.__qualname__}"] = (model_cls, config_cls)


def _register_core() -> None:
    from gensci.models import (
        MADE,
        VAE,
        WGANGP,
        DiffusionConfig,
        DiffusionModel,
        MADEConfig,
        VAEConfig,
        WGANGPConfig,
    )

    for m, c in [
        (VAE, VAEConfig),
        (DiffusionModel, DiffusionConfig),
        (MADE, MADEConfig),
        (WGANGP, WGANGPConfig),
    ]:
        register_model(m, c)


def save(
    model: nn.Module,
    path: str | Path,
    overwrite: bool = False,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write `model` (weights + config + JSON-ready `metadata`) to `path`; return the path."""
    _register_core()
    name = f"{type(model).__module__}.{type(model).__qualname__}"
    if name not in _REGISTRY:
        raise CheckpointError(
            f"{name} is not a registered model; call gensci.checkpoint.register_model"
        )
    config = getattr(model, "config", None)
    if config is None:
        raise CheckpointError(f"{name} has no .config to save")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    header = {
        "format": "pt",
        "gensci_version": __version__,
        "gensci_class": name,
        "gensci_config": json.dumps(config_to_dict(config)),
        "gensci_metadata": json.dumps(metadata or {}),
    }
    try:
        blob = st_save(tensors, metadata=header)
    except TypeError as exc:
        raise CheckpointError(f"metadata is not JSON-ready: {exc}") from exc
    return atomic_write_bytes(path, blob, overwrite=overwrite)


def _read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return (tensors, header) of a gensci checkpoint; raise CheckpointError naming the file if
    it is missing, empty, corrupt, not ours, or holds complex / NaN / inf weights.

    The header's gensci_config and gensci_metadata must each be the JSON object `save` wrote.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"no checkpoint at {p}")
    check_input_file(p, "checkpoint", CheckpointError, CheckpointError)
    try:
        raw = p.read_bytes()
        tensors = st_load(raw)
        n = int.from_bytes(raw[:8], "little")
        top = parse_json_object(raw[8 : 8 + n], f"the header of {p}", CheckpointError)
    except (SafetensorError, ValueError, OSError) as exc:
        raise CheckpointError(
            f"{p} is not a readable gensci checkpoint (corrupt or truncated): {exc}"
        ) from None
    header = top.get("__metadata__") or {}
    if not isinstance(header, dict) or "gensci_class" not in header or (
        "gensci_config" not in header
    ):
        raise CheckpointError(
            f"{p} is a safetensors file but not a gensci checkpoint (no model config)"
        )
    for key in ("gensci_config", "gensci_metadata"):
        if key in header:
            parse_json_object(header[key], f"{key} in {p}", CheckpointError)
    for name, t in tensors.items():
        if t.is_complex():
            raise CheckpointError(f"{p}: tensor {name!r} is complex ({t.dtype}); weights are real")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise CheckpointError(f"{p}: tensor {name!r} holds {bad} NaN/inf values")
    return tensors, header


def load(path: str | Path, device: str | torch.device | None = None) -> nn.Module:
    """Return the model stored at `path`, rebuilt from its config, in eval mode, on `device`."""
    tensors, header = _read(path)
    _register_core()
    name = header["gensci_class"]
    if name not in _REGISTRY and name.startswith("gensci."):
        # a study's model registers itself when its module is imported
        try:
            importlib.import_module(name.rsplit(".", 1)[0])
        except ImportError:
            pass
    if name not in _REGISTRY:
        raise CheckpointError(f"{path} holds a {name}, which this version of gensci does not know")
    model_cls, config_cls = _REGISTRY[name]
    try:
        config: Any = config_from_dict(config_cls, json.loads(header["gensci_config"]))
    except (ConfigError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: stored config is invalid: {exc}") from exc
    model = model_cls(config)  # type: ignore[call-arg]
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit a {name} of this config: {exc}") from exc
    if device is not None:
        model.to(device)
    return model.eval()


def load_metadata(path: str | Path) -> dict[str, Any]:
    """Return the user metadata stored beside the model at `path`."""
    _, header = _read(path)
    return parse_json_object(
        header.get("gensci_metadata", "{}"), f"gensci_metadata in {path}", CheckpointError
    )
