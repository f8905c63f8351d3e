"""What every command shares: device choice, seeding, output folders, atomic writes."""

from __future__ import annotations

import atexit
import fcntl
import os
import random
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import torch
import typer

from gensci.errors import ConfigError, GensciError, OutputExistsError

T = TypeVar("T")

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


def init_distributed(device: torch.device) -> tuple[int, int, bool]:
    """Return (rank, world size, whether this call started the process group).

    Under torchrun (WORLD_SIZE > 1) the process group is started once (gloo on CPU, nccl on
    CUDA); a plain run is rank 0 of 1.
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    atexit.register(_end_distributed)
    return dist.get_rank(), dist.get_world_size(), True


def _end_distributed() -> None:
    """Wait for every rank, then close the group: a rank that closed its sockets while a peer's
    gloo thread still read from them would make that peer abort (SIGABRT) at exit."""
    import torch.distributed as dist

    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def is_main_process() -> bool:
    """Return True on rank 0 of a torchrun job, and in a plain run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def on_main_process(fn: Callable[..., T], *args: Any) -> T:
    """Return fn(*args) run on rank 0 alone; every rank gets its result or raises its error.

    Under torchrun the other ranks wait for rank 0, so only one process checks and writes an
    output, and a refusal stops every rank instead of leaving them waiting.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return fn(*args)
    box: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            box = [(True, fn(*args))]
        except GensciError as exc:
            box = [(False, exc)]
    dist.broadcast_object_list(box, src=0)
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def barrier() -> None:
    """Wait for every rank of a torchrun job (no-op in a plain run)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def prepare_out_dir(
    path: str | Path,
    overwrite: bool = False,
    resumable: Callable[[Path], bool] | None = None,
) -> Path:
    """Claim the output folder `path` for this run and return it.

    - One run at a time: the folder's `.gensci-run` file is locked (exclusively, until this
      process exits); a second process is refused instead of mixing its files with ours.
    - Temporary files that a killed run left (`.name.*.tmp`) are removed, so they never block a
      rerun.
    - A non-empty folder is refused unless `overwrite`, or `resumable(folder)` says it holds a run
      to continue. With `overwrite`, the old contents are removed as a whole before the run, so no
      stale file stays beside the new ones; a folder that gensci did not write is never cleared.
    - Under torchrun only rank 0 checks and writes; the other ranks wait and get its answer.
    """
    return on_main_process(_claim_out_dir, Path(path), overwrite, resumable)


def _claim_out_dir(out: Path, overwrite: bool, resumable: Callable[[Path], bool] | None) -> Path:
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output path {out} exists and is not a folder")
    was_ours = (out / RUN_FILE).exists()
    out.mkdir(parents=True, exist_ok=True)
    previous = _lock_folder(out)
    try:
        remove_orphan_temporaries(out)
        contents = [p for p in out.iterdir() if p.name != RUN_FILE]
        resume = resumable is not None and resumable(out)
        if contents and was_ours and previous == "running" and not resume:
            # the remains of a run that was killed before it finished: nothing to keep
            overwrite = True
        if contents and not overwrite and not resume:
            raise OutputExistsError(
                f"output folder {out} is not empty; pass --overwrite to replace its contents"
            )
        if contents and overwrite and not was_ours:
            raise OutputExistsError(
                f"output folder {out} holds files that gensci did not write "
                f"({', '.join(sorted(p.name for p in contents)[:3])}...); --overwrite replaces "
                "only gensci output folders: choose another --out"
            )
    except OutputExistsError:
        _release_folder(out)  # leave a folder we refused as we found it
        if not was_ours:
            (out / RUN_FILE).unlink(missing_ok=True)
        raise
    _write_run_file(out, "running")
    if contents and overwrite:
        for p in contents:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    return out


RUN_FILE = ".gensci-run"
_HELD_LOCKS: dict[Path, int] = {}


def _lock_folder(out: Path) -> str | None:
    """Hold an exclusive lock on out/.gensci-run for the life of this process.

    Return the status the previous run left in the file ("running": it never finished), or None.
    """
    key = out.resolve()
    held = _HELD_LOCKS.get(key)
    if held is not None:
        try:
            if os.fstat(held).st_ino == os.stat(out / RUN_FILE).st_ino:
                return None  # this process holds it already
        except FileNotFoundError:
            pass
        os.close(held)  # the folder was removed and made anew since
        del _HELD_LOCKS[key]
    fd = os.open(out / RUN_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        owner = _read_run_file(out).get("command", "another process")
        raise OutputExistsError(
            f"output folder {out} is in use by another gensci run ({owner}); wait for it to "
            "finish or choose another --out"
        ) from None
    _HELD_LOCKS[key] = fd
    return _read_run_file(out).get("status")


def _read_run_file(out: Path) -> dict[str, Any]:
    import json

    try:
        record = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _write_run_file(out: Path, status: str) -> None:
    import json

    fd = _HELD_LOCKS[out.resolve()]
    record = {"status": status, "pid": os.getpid(), "command": " ".join(sys.argv[:4])}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)


def finish_out_dir(path: str | Path) -> None:
    """Mark the output folder `path`, claimed by this process, as holding a finished result."""
    key = Path(path).resolve()
    if key in _HELD_LOCKS and (key / RUN_FILE).exists():
        _write_run_file(key, "finished")


def finish_out_dirs() -> None:
    """Mark every output folder this process claimed as finished (a complete result).

    A folder whose run never got here (killed) is known by its "running" status: its remains
    are removed when the next run claims it, unless they hold a run to resume.
    """
    for key in list(_HELD_LOCKS):
        if (key / RUN_FILE).exists():
            _write_run_file(key, "finished")


def _release_folder(out: Path) -> None:
    fd = _HELD_LOCKS.pop(out.resolve(), None)
    if fd is not None:
        os.close(fd)


def remove_orphan_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files of atomic writes that a killed run left in `folder` (recursive)."""
    removed = []
    for p in folder.rglob(".*.tmp*"):
        if p.is_file() and _TMP_NAME.fullmatch(p.name):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


_TMP_NAME = re.compile(r"\..+\.[A-Za-z0-9_]{6,}\.tmp(\.\w+)?")


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
        _publish(tmp, p, overwrite)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _publish(tmp: str, p: Path, overwrite: bool) -> None:
    """Move the finished temporary file onto `p`: replace it, or create it exclusively.

    Without `overwrite` a hard link creates `p` only if nothing is there at that instant, so two
    runs racing for one output cannot silently replace each other's result.
    """
    if overwrite:
        os.replace(tmp, p)
        return
    try:
        os.link(tmp, p)
    except FileExistsError:
        raise OutputExistsError(f"{p} appeared while it was being written (another run?); "
                                "pass --overwrite to replace it") from None
    except OSError:  # a file system without hard links: fall back to a checked rename
        if p.exists():
            raise OutputExistsError(f"{p} exists; pass --overwrite to replace it") from None
        os.replace(tmp, p)
        return
    os.unlink(tmp)


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
        _publish(tmp, p, overwrite)
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
AccumulateOption = Annotated[
    int,
    typer.Option(
        "--accumulate",
        help="micro-batches per step and process; one process with --accumulate N steps exactly "
        "as torchrun --nproc_per_node=N does",
    ),
]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="allow replacing existing outputs")
]
