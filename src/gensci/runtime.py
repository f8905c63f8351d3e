"""What every command shares: device choice, seeding, output folders, atomic writes."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from gensci.errors import ConfigError, OutputExistsError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str = "auto") -> torch.device:
    """Return the torch device for 'auto' | 'cpu' | 'cuda' (auto picks CUDA when present)."""
    if device not in DEVICES and not device.startswith("cuda:"):
        raise ConfigError(f"unknown device {device!r}; choose one of {DEVICES}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA GPU")
    return torch.device(device)


def device_name(device: torch.device) -> str:
    """Return the GPU's name for a CUDA device, else "cpu" (for benchmark records)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch.Generator seeded with `seed`."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def prepare_out_dir(path: str | Path, overwrite: bool = False) -> Path:
    """Create and return the output folder; refuse a non-empty one unless `overwrite`."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output path {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"output folder {out} is not empty; pass --overwrite to write into it"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def check_writable(path: str | Path, overwrite: bool = False) -> Path:
    """Return `path` as a Path; raise OutputExistsError if it exists and `overwrite` is False."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{p} exists; pass --overwrite to replace it")
    return p


def _usual_mode(path: str) -> None:
    """Give a temporary file the mode a plain open() would (mkstemp makes it 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_write_bytes(path: str | Path, data: bytes, overwrite: bool = False) -> Path:
    """Write `data` to `path` through a temporary file and an atomic rename."""
    p = check_writable(path, overwrite)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _usual_mode(tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def atomic_write_text(path: str | Path, text: str, overwrite: bool = False) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite)


def atomic_save(path: str | Path, writer, overwrite: bool = False, suffix: str = "") -> Path:  # type: ignore[no-untyped-def]
    """Call `writer(tmp_path)` to write a file, then rename it onto `path` atomically.

    For libraries that insist on writing to a path themselves (np.savez, h5py, anndata).
    `suffix` is given to the temporary name for writers that look at the extension.
    """
    p = check_writable(path, overwrite)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp" + suffix)
    os.close(fd)
    try:
        writer(Path(tmp))
        _usual_mode(tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


# Options every command spells the same way.
DeviceOption = Annotated[
    str, typer.Option("--device", help="auto | cpu | cuda (auto picks CUDA when present)")
]
SeedOption = Annotated[int, typer.Option("--seed", help="seed of every random choice")]
OutOption = Annotated[Path, typer.Option("--out", help="output folder")]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="allow replacing existing outputs")
]
