"""Devices, seeds, output folders and atomic writes behave the same for every command."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gensci.errors import (
    ConfigError,
    DataError,
    OutputExistsError,
    ShapeError,
    check_finite,
    check_shape,
)
from gensci.runtime import (
    RUN_FILE,
    _release_folder,
    atomic_write_text,
    finish_out_dirs,
    prepare_out_dir,
    resolve_device,
    seed_everything,
)


def test_device_choice():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="tpu"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            resolve_device("cuda")


def test_seed_is_reproducible():
    seed_everything(3)
    a = (torch.rand(3), np.random.rand(3))
    seed_everything(3)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_out_dir_and_atomic_write(tmp_path):
    out = prepare_out_dir(tmp_path / "o")
    atomic_write_text(out / "a.txt", "one")
    with pytest.raises(OutputExistsError, match="overwrite"):
        atomic_write_text(out / "a.txt", "two")
    assert (out / "a.txt").read_text() == "one"
    with pytest.raises(OutputExistsError, match="not empty"):
        prepare_out_dir(out)
    assert sorted(p.name for p in out.iterdir()) == [RUN_FILE, "a.txt"]  # no temporary files


def test_overwrite_replaces_a_gensci_folder_as_a_whole(tmp_path):
    out = prepare_out_dir(tmp_path / "o")
    for name in ("mean.npy", "std.npy", "samples.npy", "metrics.csv"):
        atomic_write_text(out / name, "old run")
    (out / "figures").mkdir()
    atomic_write_text(out / "figures" / "a.png", "old")
    prepare_out_dir(out, overwrite=True)
    assert [p.name for p in out.iterdir()] == [RUN_FILE]  # nothing stale stays beside new files


def test_overwrite_never_clears_a_folder_gensci_did_not_write(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("user data")
    with pytest.raises(OutputExistsError, match="did not write"):
        prepare_out_dir(mine, overwrite=True)
    assert (mine / "thesis.tex").read_text() == "user data"
    assert not (mine / RUN_FILE).exists()


def _killed_run(out: Path) -> None:
    """A process claims `out`, writes part of its result and is killed (SIGKILL) mid-write."""
    code = (
        "import os, signal\n"
        "from pathlib import Path\n"
        "from gensci.runtime import prepare_out_dir\n"
        f"out = prepare_out_dir({str(out)!r})\n"
        "(out / 'train').mkdir()\n"
        "(out / 'train' / 'spec.json').write_text('{}')\n"
        "(out / 'train' / '.last.pt.k2j9x_ab.tmp').write_bytes(b'half a checkpoint')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9


def test_the_remains_of_a_killed_run_do_not_block_the_rerun(tmp_path):
    out = tmp_path / "run"
    _killed_run(out)
    assert (out / "train" / ".last.pt.k2j9x_ab.tmp").exists()
    prepare_out_dir(out)  # no --overwrite needed: the killed run left nothing finished
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [RUN_FILE]
    # a finished result, by contrast, is kept unless --overwrite
    atomic_write_text(out / "mean.npy", "result")
    finish_out_dirs()
    _release_folder(out)  # as when this process ends
    for _ in range(2):  # a refusal leaves the folder's record as it was
        with pytest.raises(OutputExistsError, match="not empty"):
            prepare_out_dir(out)
    assert (out / "mean.npy").read_text() == "result"


def test_orphan_temporaries_are_removed_and_resumable_runs_kept(tmp_path):
    out = tmp_path / "run"
    _killed_run(out)
    (out / "train" / "last.pt").write_bytes(b"state")  # a checkpoint had been written
    prepare_out_dir(out, resumable=lambda d: (d / "train" / "last.pt").exists())
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert names == [RUN_FILE, "train", "train/last.pt", "train/spec.json"]


def test_a_second_process_cannot_write_into_a_folder_in_use(tmp_path):
    out = prepare_out_dir(tmp_path / "busy")  # this process holds the folder
    code = (
        "import sys\n"
        "from gensci.runtime import prepare_out_dir\n"
        "from gensci.errors import OutputExistsError\n"
        "try:\n"
        f"    prepare_out_dir({str(out)!r}, overwrite=True)\n"
        "except OutputExistsError as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "in use by another gensci run" in proc.stdout


def test_two_writers_of_one_file_cannot_replace_each_other(tmp_path, monkeypatch):
    """The existence check and the final rename cannot race: the file is created exclusively."""
    import gensci.runtime as runtime

    target = tmp_path / "result.txt"
    real_check = runtime.check_writable

    def late_check(path, overwrite=False):
        p = real_check(path, overwrite)  # passes: nothing there yet
        target.write_text("the other run's result")  # ... and then the other run finishes
        return p

    monkeypatch.setattr(runtime, "check_writable", late_check)
    with pytest.raises(OutputExistsError, match="appeared while it was being written"):
        runtime.atomic_write_text(target, "our result")
    assert target.read_text() == "the other run's result"
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]


def test_checks_name_the_problem():
    x = np.ones((2, 3))
    x[1, 2] = np.nan
    with pytest.raises(DataError, match=r"1 NaN/inf values \(first at index \(1, 2\)\)"):
        check_finite(x, "rho")
    with pytest.raises(ShapeError, match=r"rho has shape \(2, 3\), expected \(\*, 4\)"):
        check_shape(x, (None, 4), "rho")


def test_atomic_files_get_the_usual_mode(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "m.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
