"""Snapshot files: configurations of N defects at a few times, unpaired, in one .npz.

Layout (NumPy .npz, read with allow_pickle=False):
    times         (T,)            strictly increasing observation times
    x_000 ... x_{T-1:03d}  (M_t, N, d)  the configurations observed at each time (M_t may differ)
    box           ()              the box length L (positions lie in [0, L))
    meta          ()              JSON text: the simulator's parameters and seed (when simulated)
    tracks        (M, F, N, d)    optional: tracked trajectories at frame_times (the oracle's data)
    frame_times   (F,)
A single array `positions` (T, M, N, d) is accepted in place of the x_### keys.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gensci.errors import DataError, FormatError, ShapeError, check_numeric
from gensci.files import check_input_file, check_suffix, parse_json_object
from gensci.runtime import atomic_save

SUFFIXES = (".npz",)


@dataclass
class Snapshots:
    """Configurations x_t: list of (M_t, N, d) arrays at `times` (T,), in a box of length `box`."""

    times: np.ndarray
    positions: list[np.ndarray]
    box: float
    meta: dict[str, Any] = field(default_factory=dict)
    tracks: np.ndarray | None = None  # (M, F, N, d)
    frame_times: np.ndarray | None = None  # (F,)

    @property
    def n(self) -> int:
        return int(self.positions[0].shape[1])

    @property
    def dim(self) -> int:
        return int(self.positions[0].shape[2])

    @property
    def sizes(self) -> list[int]:
        return [int(p.shape[0]) for p in self.positions]

    def subset(self, times: list[int] | None = None, per_time: int | None = None) -> Snapshots:
        """Return the snapshots at the time indices `times`, each cut to its first `per_time`."""
        idx = list(range(len(self.times))) if times is None else list(times)
        pos = [self.positions[i][:per_time] for i in idx]
        return Snapshots(self.times[idx], pos, self.box, dict(self.meta), self.tracks,
                         self.frame_times)

    def validate(self, where: str = "snapshots") -> Snapshots:
        """Return self after checking shapes, times and positions; raise naming `where`."""
        validate(self, where)
        return self


def validate(s: Snapshots, where: str = "snapshots") -> None:
    """Raise a gensci error naming `where` unless `s` is a well-formed set of snapshots."""
    t = check_numeric(s.times, f"{where}: times", ndim=1)
    if not np.isfinite(s.box) or s.box <= 0:
        raise DataError(f"{where}: box length must be a finite number > 0, got {s.box}")
    if len(s.positions) != t.size:
        raise ShapeError(f"{where}: {t.size} times but {len(s.positions)} snapshots")
    if t.size == 0:
        raise DataError(f"{where} holds no snapshot")
    d = np.diff(t)
    if np.any(d == 0):
        i = int(np.argmax(d == 0))
        raise DataError(f"{where}: time {t[i]:g} appears twice (snapshots {i} and {i + 1})")
    if np.any(d < 0):
        i = int(np.argmax(d < 0))
        raise DataError(
            f"{where}: times must increase, but snapshot {i + 1} (t = {t[i + 1]:g}) comes after "
            f"t = {t[i]:g}"
        )
    first = None
    for i, x in enumerate(s.positions):
        name = f"{where}: snapshot {i} (t = {t[i]:g})"
        arr = check_numeric(x, name, ndim=3)
        if arr.shape[0] == 0:
            raise DataError(f"{name} holds no configuration")
        if first is None:
            first = arr.shape[1:]
            if first[0] < 2 or first[1] not in (1, 2):
                raise ShapeError(
                    f"{name} has shape {arr.shape}: expected (M, N, d) with N >= 2, d = 1 or 2"
                )
        elif arr.shape[1:] != first:
            raise ShapeError(
                f"{where}: ragged snapshots: snapshot {i} holds (N, d) = {arr.shape[1:]} but "
                f"snapshot 0 holds {first}"
            )
        out = (arr < 0) | (arr >= s.box)
        if out.any():
            j = tuple(int(v) for v in np.argwhere(out)[0])
            raise DataError(
                f"{name}: position {arr[j]:g} at index {j} lies outside the box [0, {s.box:g})"
            )
    if s.tracks is not None:
        tr = check_numeric(s.tracks, f"{where}: tracks", ndim=4)
        ft = check_numeric(s.frame_times if s.frame_times is not None else np.zeros(0),
                           f"{where}: frame_times", ndim=1)
        if tr.shape[1] != ft.size or tr.shape[2:] != first:
            raise ShapeError(
                f"{where}: tracks have shape {tr.shape}, expected (M, {ft.size}, *{first})"
            )
        if np.any(np.diff(ft) <= 0):
            raise DataError(f"{where}: frame_times must increase strictly")


def write_snapshots(s: Snapshots, path: str | Path, overwrite: bool = False) -> Path:
    """Write `s` to the .npz `path` atomically; return the path."""
    check_suffix(path, SUFFIXES, "a snapshot file")
    validate(s, str(path))
    arrays: dict[str, np.ndarray] = {
        "times": np.asarray(s.times, dtype=np.float64),
        "box": np.asarray(float(s.box)),
        "meta": np.asarray(json.dumps(s.meta)),
    }
    for i, x in enumerate(s.positions):
        arrays[f"x_{i:03d}"] = np.asarray(x, dtype=np.float64)
    if s.tracks is not None:
        arrays["tracks"] = np.asarray(s.tracks, dtype=np.float64)
        arrays["frame_times"] = np.asarray(s.frame_times, dtype=np.float64)

    def writer(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    return atomic_save(path, writer, overwrite=overwrite)


def read_snapshots(path: str | Path) -> Snapshots:
    """Return the validated snapshots stored at `path` (.npz); raise naming the file if bad."""
    p = check_input_file(path, "snapshot file")
    if p.suffix.lower() != ".npz":
        raise FormatError(f"{p}: snapshot files are .npz, got {p.suffix or 'no suffix'}")
    try:
        with np.load(io.BytesIO(p.read_bytes()), allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise FormatError(f"cannot read {p} as .npz: {str(exc)[:200]}") from None
    if "times" not in data:
        raise FormatError(f"{p} holds no 'times' array (it holds {sorted(data)})")
    times = check_numeric(data["times"], f"{p}: times", ndim=1)
    if "positions" in data:
        pos = check_numeric(data["positions"], f"{p}: positions", ndim=4)
        positions = [pos[i] for i in range(pos.shape[0])]
    else:
        keys = sorted(k for k in data if k.startswith("x_"))
        want = [f"x_{i:03d}" for i in range(times.size)]
        if keys != want:
            raise FormatError(
                f"{p}: expected snapshot arrays {want[:3]}{'...' if len(want) > 3 else ''} for "
                f"{times.size} times, found {keys[:5]}"
            )
        positions = [np.asarray(data[k]) for k in keys]
    if "box" not in data:
        raise FormatError(f"{p} holds no 'box' (the box length)")
    box = check_numeric(np.asarray(data["box"]).reshape(-1), f"{p}: box", ndim=1)
    if box.size != 1:
        raise ShapeError(f"{p}: box must be one number, got {box.size}")
    meta: dict[str, Any] = {}
    if "meta" in data:
        raw = data["meta"]
        if raw.dtype.kind != "U" or raw.ndim != 0:
            raise FormatError(f"{p}: meta must be one JSON text, got {raw.dtype} {raw.shape}")
        meta = parse_json_object(str(raw), f"{p}: meta")
    tracks = data.get("tracks")
    frame_times = data.get("frame_times")
    s = Snapshots(times, positions, float(box[0]), meta, tracks, frame_times)
    validate(s, str(p))
    return s
