import numpy as np
import pytest

from gensci.errors import ConfigError, DataError, FormatError, ShapeError
from gensci.tomography.data import axial_slices, split_slices, square_resize
from gensci.tomography.io import (
    Sinogram,
    read_array,
    read_image,
    read_sinogram,
    write_sinogram,
)


def test_square_resize_pads_and_keeps_range() -> None:
    img = np.ones((10, 6))
    out = square_resize(img, 16)
    assert out.shape == (16, 16)
    assert out.max() <= 1.0 + 1e-6 and out[:, 0].max() < 0.5  # padding left and right stays dark


def test_split_is_contiguous_with_gap() -> None:
    vol = np.random.default_rng(0).random((12, 10, 40))
    slices = axial_slices(vol, 16)
    assert slices.shape == (40, 16, 16) and 0 <= slices.min() and slices.max() <= 1
    split = split_slices(slices, heldout_centre=20, n_heldout=6, gap=3, min_brain_fraction=0.0)
    assert split.heldout_z.tolist() == list(range(17, 23))
    assert np.all((split.train_z < 14) | (split.train_z >= 26))
    with pytest.raises(ConfigError, match="does not fit"):
        split_slices(slices, heldout_centre=1, n_heldout=6)


def test_readers_npy_npz_nifti_dicom(tmp_path) -> None:
    img = np.arange(20.0).reshape(4, 5)
    np.save(tmp_path / "a.npy", img)
    np.savez(tmp_path / "b.npz", image=img, other=np.zeros(3))
    assert np.array_equal(read_image(tmp_path / "a.npy"), img)
    assert np.array_equal(read_image(tmp_path / "b.npz"), img)
    import nibabel as nib

    vol = np.random.default_rng(0).random((6, 7, 3))
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "v.nii.gz"))
    assert read_array(tmp_path / "v.nii.gz").shape == (6, 7, 3)
    assert read_image(tmp_path / "v.nii.gz", slice_index=1).shape == (7, 6)
    with pytest.raises(ShapeError, match="--slice"):
        read_image(tmp_path / "v.nii.gz")
    from pydicom.data import get_testdata_file

    ct = read_image(get_testdata_file("CT_small.dcm"))
    assert ct.shape == (128, 128) and np.isfinite(ct).all()


def test_readers_reject_bad_files(tmp_path) -> None:
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(FormatError, match="cannot read"):
        read_image(tmp_path / "junk.npy")
    with pytest.raises(FormatError, match="unknown image format"):
        (tmp_path / "x.png").write_bytes(b"")
        read_image(tmp_path / "x.png")
    with pytest.raises(FormatError, match="does not exist"):
        read_image(tmp_path / "missing.npy")
    bad = np.ones((4, 4))
    bad[1, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DataError, match="NaN"):
        read_image(tmp_path / "nan.npy")


def test_sinogram_round_trip_and_checks(tmp_path) -> None:
    sino = Sinogram(np.ones((9, 4)), np.array([0.0, 10.0, 20.0, 30.0]), noise_std=0.1, image_size=6)
    path = write_sinogram(tmp_path / "s.npz", sino)
    back = read_sinogram(path)
    assert np.array_equal(back.data, sino.data) and back.noise_std == 0.1 and back.image_size == 6
    from gensci.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        write_sinogram(tmp_path / "s.npz", sino)
    with pytest.raises(ShapeError, match="4 views"):
        read_sinogram(path, angles=np.arange(5.0))
    np.save(tmp_path / "raw.npy", np.ones((9, 4)))
    with pytest.raises(FormatError, match="--angles"):
        read_sinogram(tmp_path / "raw.npy")


def test_affine_augmentation_is_seeded_and_keeps_anatomy_in_range() -> None:
    from gensci.tomography.prior import augment_slices

    rng = np.random.default_rng(0)
    images = np.zeros((3, 32, 32), dtype=np.float32)
    images[:, 8:24, 10:22] = rng.uniform(0.2, 1.0, size=(3, 16, 12))
    out = augment_slices(images, copies=2, seed=1)
    assert out.shape == (9, 32, 32) and out.dtype == np.float32
    assert np.array_equal(out[:3], images)  # the originals come first, unchanged
    assert np.array_equal(out, augment_slices(images, copies=2, seed=1))
    assert not np.array_equal(out, augment_slices(images, copies=2, seed=2))
    assert out.min() >= 0.0 and out.max() <= 1.0
    copies = out[3:].reshape(2, 3, 32, 32)
    assert all(not np.allclose(c, images) for c in copies)
    # a rotation / 10 % scaling keeps the object's total intensity within about 25 %
    ratio = copies.sum(axis=(2, 3)) / images.sum(axis=(1, 2))
    assert np.all((ratio > 0.75) & (ratio < 1.3))
