"""Devices, seeds, output folders and atomic writes behave the same for every command."""

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
from gensci.runtime import atomic_write_text, prepare_out_dir, resolve_device, seed_everything


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
    prepare_out_dir(out, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["a.txt"]  # no temporary files left behind


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
