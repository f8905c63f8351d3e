"""The image sets: turned digits, the split, and a user's image folder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gensci.errors import DataError, FormatError, ShapeError
from gensci.symmetry.data import read_image_folder, rotated_digits, split, upright_digits


def test_digits_are_turned_copies_of_the_upright_ones() -> None:
    up = upright_digits(16)
    turned, angles = rotated_digits(16, seed=3)
    assert turned.images.shape == (1797, 1, 16, 16) and turned.labels is not None
    assert float(turned.images.min()) >= 0.0 and float(turned.images.max()) <= 1.0
    # a turn keeps the ink (bilinear resampling loses a little at most)
    ink_up, ink = up.images.sum((1, 2, 3)), turned.images.sum((1, 2, 3))
    assert float(((ink - ink_up).abs() / ink_up).median()) < 0.05
    assert float(angles.min()) >= 0.0 and float(angles.max()) < 2 * math.pi
    again, _ = rotated_digits(16, seed=3)
    assert torch.equal(again.images, turned.images)  # seeded


def test_split_is_disjoint_and_covers_everything() -> None:
    sp = split(100, seed=1)
    every = np.concatenate([sp.train, sp.val, sp.test])
    assert sorted(every.tolist()) == list(range(100)) and len(sp.test) == 20
    with pytest.raises(DataError, match="too few"):
        split(3)


def test_image_folder_reader_refuses_bad_folders(tmp_path) -> None:
    with pytest.raises(DataError, match="holds no"):
        read_image_folder(tmp_path)
    np.save(tmp_path / "a.npy", np.zeros((8, 6)))
    with pytest.raises(ShapeError, match="square"):
        read_image_folder(tmp_path)
    np.save(tmp_path / "a.npy", np.zeros((8, 8)))
    (tmp_path / "b.npy").write_bytes(b"not numpy")
    with pytest.raises(FormatError, match="b.npy"):
        read_image_folder(tmp_path)
    np.save(tmp_path / "b.npy", np.ones((8, 8)))
    assert read_image_folder(tmp_path).images.shape == (2, 1, 8, 8)
