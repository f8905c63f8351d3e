"""`train-prior --data` with several sources: NIfTI volumes, DICOM folders and .npy stacks in one
training set."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from gensci.cli import app
from gensci.errors import ConfigError, FormatError
from gensci.tomography.data import data_sources, load_split, source_slices


def _write(root: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    stack = rng.random((8, 12, 12)) * 1000 - 500  # HU-like
    np.save(root / "a.npy", stack)
    vol = rng.random((12, 12, 6)) * 1000 - 500
    nib.save(nib.Nifti1Image(vol.astype(np.float32), np.eye(4)), str(root / "b.nii.gz"))
    return root / "a.npy", root / "b.nii.gz"


def test_several_sources_are_concatenated_in_order(tmp_path: Path) -> None:
    a, b = _write(tmp_path)
    assert data_sources(f"{a},{b}") == [str(a), str(b)]
    assert data_sources("mni152") == ["mni152"]
    split = load_split(f"{a},{b}", 16, n_heldout=2, gap=1, window=(-500.0, 500.0))
    total = split.train.shape[0] + split.heldout.shape[0]
    # 8 stack slices + 6 axial slices; the held-out block and its 1-slice gaps are not trained on
    assert total == 14 - 2
    assert split.train.shape[1:] == (16, 16)
    assert 0.0 <= split.train.min() and split.train.max() <= 1.0
    assert list(split.heldout_z) == [6, 7]  # the middle of the 14 slices
    first = source_slices(str(a), 16, window=(-500.0, 500.0))
    # the first source's slices come first: z = 0..4 are its slices 0..4
    assert list(split.train_z[:5]) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(split.train[:5], first[:5])


def test_an_unreadable_source_is_named_in_one_line(tmp_path: Path) -> None:
    a, _ = _write(tmp_path)
    (tmp_path / "c.nii").write_bytes(b"not a nifti file")
    with pytest.raises(FormatError, match="c.nii") as info:
        load_split(f"{a},{tmp_path / 'c.nii'}", 16, n_heldout=2, gap=1)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="mni152"):
        data_sources(f"mni152,{a}")
    res = CliRunner().invoke(
        app,
        [
            "ct",
            "train-prior",
            "--out",
            str(tmp_path / "p"),
            "--data",
            f"{a},{tmp_path / 'missing.npy'}",
            "--resolution",
            "16",
            "--steps",
            "1",
        ],
    )
    assert res.exception is not None and "missing.npy" in str(res.exception)
    assert "\n" not in str(res.exception)
