"""Bad images and sinograms stop with one gensci error that names the file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from gensci.errors import DataError, FormatError, ShapeError
from gensci.tomography.io import Sinogram, read_array, read_image, read_sinogram, write_sinogram
from tests.core.test_bad_files import bad_array_files, check_cases, run_main


def test_image_readers_refuse_bad_numpy_files(tmp_path: Path) -> None:
    good = np.arange(16.0).reshape(4, 4)
    cases = bad_array_files(tmp_path, good, "image")
    check_cases(read_image, cases)
    # read_array (the train-prior reader) refuses the same, before any shape is asked for
    check_cases(read_array, {k: v for k, v in cases.items() if not k.startswith("1-d")})


def test_nifti_and_dicom_refusals(tmp_path: Path) -> None:
    import nibabel as nib
    from pydicom.data import get_testdata_file

    vol = np.arange(24.0).reshape(2, 3, 4)
    nib.save(nib.Nifti1Image(vol.astype(np.complex64), np.eye(4)), tmp_path / "c.nii.gz")
    nib.save(nib.Nifti1Image(vol.astype(np.float32), np.eye(4)), tmp_path / "v.nii.gz")
    raw = (tmp_path / "v.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "zero.nii").write_bytes(b"")
    dcm = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(dcm[: len(dcm) // 2])
    (tmp_path / "zero.dcm").write_bytes(b"")
    cases = {
        "complex nifti": (tmp_path / "c.nii.gz", DataError, "complex"),
        "truncated nifti": (tmp_path / "cut.nii.gz", FormatError, "cannot read"),
        "empty nifti": (tmp_path / "zero.nii", DataError, "empty"),
        "truncated dicom": (tmp_path / "cut.dcm", FormatError, "cannot read"),
        "empty dicom": (tmp_path / "zero.dcm", DataError, "empty"),
    }
    check_cases(read_array, cases)
    assert read_array(tmp_path / "v.nii.gz").shape == (2, 3, 4)


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return path


def test_sinogram_reader_refuses_bad_files(tmp_path: Path) -> None:
    angles = np.arange(4.0)
    good = np.arange(32.0).reshape(8, 4)

    def read(p: Path) -> Sinogram:
        return read_sinogram(p, angles if p.suffix == ".npy" else None)

    cases = bad_array_files(tmp_path, good, "sinogram")
    # a .npz sinogram also needs its angles; the array cases store them beside it
    for name, (path, _, _) in list(cases.items()):
        if path.suffix == ".npz" and name.split(".")[0] not in ("empty", "truncated", "wrong key"):
            with np.load(path) as z:
                _npz(path, sinogram=z["sinogram"], angles=angles)
    cases["wrong key.npz"] = (cases["wrong key.npz"][0], FormatError, "expected 'sinogram'")
    d = tmp_path / "more"
    d.mkdir()
    more = {
        "angles as text": (
            _npz(d / "a.npz", sinogram=good, angles=np.array(["0", "1", "2", "3"])), DataError,
            "text",
        ),
        "complex angles": (_npz(d / "b.npz", sinogram=good, angles=angles + 1j), DataError,
                           "complex"),
        "nan noise": (_npz(d / "c.npz", sinogram=good, angles=angles, noise_std=np.nan),
                      DataError, "noise_std"),
        "negative noise": (_npz(d / "d.npz", sinogram=good, angles=angles, noise_std=-1.0),
                           DataError, "noise_std"),
        "fractional size": (_npz(d / "e.npz", sinogram=good, angles=angles, image_size=2.5),
                            DataError, "image_size"),
        "two sizes": (_npz(d / "f.npz", sinogram=good, angles=angles, image_size=[4, 4]),
                      ShapeError, "image_size"),
        "views and angles": (_npz(d / "g.npz", sinogram=good, angles=np.arange(3.0)),
                             ShapeError, "angles"),
        "no angles": (_npz(d / "h.npz", sinogram=good), FormatError, "--angles"),
        "boolean sinogram": (_npz(d / "i.npz", sinogram=good > 3, angles=angles), DataError,
                             "booleans"),
    }
    check_cases(read, {**cases, **more})
    with pytest.raises(FormatError, match=r"x.txt: a sinogram must be \.npz or \.npy"):
        read_sinogram(tmp_path / "x.txt")


def test_sinogram_is_written_only_as_npz(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    sino = Sinogram(np.ones((8, 4)), np.arange(4.0), 0.01, 4)
    with pytest.raises(FormatError, match=r"s.npy has the wrong suffix.*\.npz"):
        write_sinogram(tmp_path / "s.npy", sino)
    assert not (tmp_path / "s.npy").exists()
    back = read_sinogram(write_sinogram(tmp_path / "s.npz", sino))
    assert back.noise_std == 0.01 and back.image_size == 4
    # through the command, in this process: the refusal comes before the image is read
    np.save(tmp_path / "img.npy", np.eye(8))
    line = run_main(["ct", "simulate", tmp_path / "img.npy", "--out", tmp_path / "s2.npy"],
                    capsys, monkeypatch)
    assert "s2.npy" in line and ".npz" in line
    np.save(tmp_path / "cplx.npy", np.eye(8) * (1 + 1j))
    line = run_main(["ct", "simulate", tmp_path / "cplx.npy", "--out", tmp_path / "s3.npz"],
                    capsys, monkeypatch)
    assert "cplx.npy" in line and "complex" in line
    line = run_main(["ct", "reconstruct", tmp_path / "s.npz", "--out", tmp_path / "r",
                     "--method", "dps", "--prior", tmp_path, "--device", "cpu"],
                    capsys, monkeypatch)
    assert "is a folder" in line and not (tmp_path / "r").exists()
