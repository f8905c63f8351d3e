"""Errors raised by gensci. Each names the offending value, so a user sees the problem, not a torch trace."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


class GensciError(Exception):
    """Base class of every error gensci raises on purpose."""


class ShapeError(GensciError, ValueError):
    """An array or tensor has the wrong number of dimensions or the wrong sizes."""


class DataError(GensciError, ValueError):
    """Data holds NaN/inf, is empty, or holds values outside what the method accepts."""


class ConfigError(GensciError, ValueError):
    """A configuration holds an unknown key or a value out of range."""


class ResourceError(ConfigError):
    """A run would need more memory, disk or time than there is (the estimate and the limit are
    named)."""


class CheckpointError(GensciError):
    """A checkpoint is missing, corrupt, or was written for another model."""


class FormatError(GensciError, ValueError):
    """A file is in an unknown or malformed format."""


class OutputExistsError(GensciError, FileExistsError):
    """An output would overwrite an existing file and overwriting was not asked for."""


def check_finite(x: torch.Tensor | np.ndarray, name: str) -> None:
    """Raise DataError if `x` holds NaN or inf (naming how many and where the first one is)."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.size == 0:
        raise DataError(f"{name} is empty (shape {tuple(arr.shape)})")
    if np.issubdtype(arr.dtype, np.number) and not np.issubdtype(arr.dtype, np.integer):
        bad = ~np.isfinite(arr)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise DataError(
                f"{name} holds {int(bad.sum())} NaN/inf values (first at index {first})"
            )


_NON_NUMBERS = {
    "b": "booleans",
    "c": "complex numbers",
    "U": "text",
    "S": "bytes",
    "O": "Python objects",
    "V": "structured records",
    "M": "dates",
    "m": "time spans",
}


def check_real_dtype(dtype: np.dtype, name: str) -> None:
    """Raise DataError unless `dtype` is an integer or floating dtype (see `check_numeric`)."""
    kind = np.dtype(dtype).kind
    if kind not in "iuf":
        what = _NON_NUMBERS.get(kind, "non-numeric values")
        hint = {
            "c": "; give the real part or the magnitude explicitly (np.real, np.abs)",
            "b": "; convert it to numbers first (e.g. arr.astype(float)) if 0/1 values are meant",
        }.get(kind, "")
        raise DataError(f"{name} holds {what} (dtype {dtype}), not real numbers{hint}")


def check_numeric(
    x: torch.Tensor | np.ndarray, name: str, ndim: int | Sequence[int] | None = None
) -> np.ndarray:
    """Return `x` as a float64 ndarray after checking that it holds real numbers (an integer or
    floating dtype), `ndim` dimensions (one of them, when a sequence) and no NaN/inf.

    Refused with DataError: complex values (the imaginary part is never dropped), booleans (a
    mask is not a field of numbers; convert it explicitly if one is meant), text, objects,
    records; NaN/inf; an empty array. ShapeError: another number of dimensions.
    """
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    check_real_dtype(arr.dtype, name)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ShapeError(
                f"{name} has {arr.ndim} dimension(s) (shape {arr.shape}); expected {want}"
            )
    check_finite(arr, name)
    return np.asarray(arr, dtype=np.float64)


def check_shape(x: torch.Tensor | np.ndarray, expected: Sequence[int | None], name: str) -> None:
    """Raise ShapeError unless `x.shape` matches `expected` (None matches any size)."""
    shape = tuple(x.shape)
    ok = len(shape) == len(expected) and all(
        e is None or e == s for e, s in zip(expected, shape, strict=True)
    )
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ShapeError(f"{name} has shape {shape}, expected {want}")
