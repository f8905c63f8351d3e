"""`gensci ct` with photon-count noise, and priors that know the intensity window they were
trained on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage.data import shepp_logan_phantom
from skimage.transform import resize
from typer.testing import CliRunner

from gensci import checkpoint
from gensci.cli import app
from gensci.errors import DataError, FormatError
from gensci.tomography.io import read_sinogram

runner = CliRunner()
GENSCI = f"{sys.prefix}/bin/gensci"


def invoke(*args: str):
    return runner.invoke(app, ["ct", *args], catch_exceptions=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("photons")
    phantom = resize(shepp_logan_phantom(), (16, 16), anti_aliasing=True)
    np.save(root / "phantom.npy", phantom)
    hu = phantom * 2000.0 - 1000.0  # the phantom as HU: air -1000, up to about 400
    np.save(root / "hu.npy", hu)
    stack = np.stack([hu * (0.9 + 0.02 * i) for i in range(14)])
    np.save(root / "hu_stack.npy", stack)
    return root


def test_simulate_photons_then_reconstruct_uses_the_weighted_likelihood(files) -> None:
    sino = files / "low.npz"
    res = invoke(
        "simulate",
        str(files / "phantom.npy"),
        "--out",
        str(sino),
        "--angles",
        "0:90:20",
        "--photons",
        "1e4",
        "--seed",
        "3",
    )
    assert res.exit_code == 0, res.output
    assert "I0 = 10000" in res.output and "line integrals up to" in res.output
    stored = read_sinogram(sino)
    assert stored.noise_model == "poisson" and stored.photons == 1e4
    assert stored.counts is not None and stored.counts.shape == stored.data.shape
    assert stored.mu_scale == pytest.approx(0.0193 * 250 / 16)
    # the stored sinogram is the post-log data of the stored counts
    np.testing.assert_allclose(
        stored.data, -np.log(np.maximum(stored.counts, 0.5) / 1e4) / stored.mu_scale, rtol=1e-6
    )
    weights = stored.weights()
    assert weights is not None
    assert stored.noise_std == pytest.approx(float(np.sqrt(np.mean(1 / weights))))
    out = files / "rec_tv"
    res = invoke(
        "reconstruct",
        str(sino),
        "--out",
        str(out),
        "--method",
        "tv",
        "--steps",
        "100",
        "--tv-weight",
        "1,2,4",
        "--truth",
        str(sino),
    )
    assert res.exit_code == 0, res.output
    assert "noise model: poisson (I0 = 10000" in res.output
    report = json.loads((out / "report.json").read_text())
    assert report["noise_model"].startswith("poisson")
    mean = np.load(out / "mean.npy")
    assert mean.shape == (16, 16) and np.isfinite(mean).all()
    # weighted residuals: the answer explains the data to about the noise level
    assert 0.5 < report["final"]["discrepancy"] < 2.0
    assert report["final"]["psnr"] > 15.0
    # --noise-std overrides the stored model: Gaussian, said so
    out2 = files / "rec_tv_gauss"
    res = invoke(
        "reconstruct",
        str(sino),
        "--out",
        str(out2),
        "--method",
        "tv",
        "--steps",
        "20",
        "--noise-std",
        str(stored.noise_std),
    )
    assert res.exit_code == 0, res.output
    assert "noise model: gaussian" in res.output and "--noise-std given" in res.output
    # the same seed writes the same counts
    res = invoke(
        "simulate",
        str(files / "phantom.npy"),
        "--out",
        str(files / "low2.npz"),
        "--angles",
        "0:90:20",
        "--photons",
        "1e4",
        "--seed",
        "3",
    )
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(read_sinogram(files / "low2.npz").counts, stored.counts)


@pytest.mark.parametrize("photons", ["0", "-100", "nan"])
def test_bad_photon_count_is_one_line_and_exit_2(files, tmp_path: Path, photons: str) -> None:
    proc = subprocess.run(
        [
            GENSCI,
            "ct",
            "simulate",
            str(files / "phantom.npy"),
            "--out",
            str(tmp_path / "s.npz"),
            "--photons",
            photons,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --photons"), proc.stderr
    assert not (tmp_path / "s.npz").exists()


def test_photons_and_noise_together_are_refused(files, tmp_path: Path) -> None:
    res = invoke(
        "simulate",
        str(files / "phantom.npy"),
        "--out",
        str(tmp_path / "s.npz"),
        "--photons",
        "1e4",
        "--noise",
        "0.02",
    )
    assert "not both" in str(res.exception)
    # HU values on their own scale are no attenuation image
    res = invoke(
        "simulate", str(files / "hu.npy"), "--out", str(tmp_path / "h.npz"), "--photons", "1e4"
    )
    assert isinstance(res.exception, DataError) and "--window" in str(res.exception)
    assert not (tmp_path / "h.npz").exists()


def test_a_sinogram_with_a_broken_poisson_record_is_refused(files, tmp_path: Path) -> None:
    with np.load(files / "low.npz") as f:
        arrays = dict(f)
    del arrays["counts"]
    np.savez(tmp_path / "no_counts.npz", **arrays)
    with pytest.raises(FormatError, match="counts"):
        read_sinogram(tmp_path / "no_counts.npz")
    with np.load(files / "low.npz") as f:
        arrays = dict(f)
    arrays["counts"] = -arrays["counts"]
    np.savez(tmp_path / "negative.npz", **arrays)
    with pytest.raises(DataError, match=">= 0"):
        read_sinogram(tmp_path / "negative.npz")


def test_prior_records_its_window_and_refuses_data_of_another(files) -> None:
    prior_dir = files / "prior_hu"
    res = invoke(
        "train-prior",
        "--out",
        str(prior_dir),
        "--data",
        str(files / "hu_stack.npy"),
        "--window",
        "-1000,1000",
        "--resolution",
        "16",
        "--base-channels",
        "8",
        "--channel-mults",
        "1,2",
        "--batch-size",
        "4",
        "--n-heldout",
        "2",
        "--steps",
        "1",
        "--device",
        "cpu",
    )
    assert res.exit_code == 0, res.output
    prior = prior_dir / "prior.safetensors"
    meta = checkpoint.load_metadata(prior)
    assert meta["window"] == [-1000.0, 1000.0] and meta["resolution"] == 16
    rec = ["--method", "dds", "--prior", str(prior), "--samples", "1", "--steps", "2"]
    # data under the prior's window: accepted, no note
    res = invoke(
        "simulate",
        str(files / "hu.npy"),
        "--out",
        str(files / "w_same.npz"),
        "--window",
        "-1000,1000",
        "--angles",
        "0:90:10",
    )
    assert res.exit_code == 0, res.output
    res = invoke("reconstruct", str(files / "w_same.npz"), "--out", str(files / "r_same"), *rec)
    assert res.exit_code == 0, res.output
    assert "window" not in res.output.replace("--window", "")
    # another window: refused, naming both
    res = invoke(
        "simulate",
        str(files / "hu.npy"),
        "--out",
        str(files / "w_other.npz"),
        "--window",
        "-200,200",
        "--angles",
        "0:90:10",
    )
    assert res.exit_code == 0, res.output
    res = invoke("reconstruct", str(files / "w_other.npz"), "--out", str(files / "r_other"), *rec)
    assert isinstance(res.exception, DataError)
    message = str(res.exception)
    assert "window [-1000, 1000]" in message and "window [-200, 200]" in message
    assert "\n" not in message and not (files / "r_other").exists()
    # data on their own scale (no window): refused too
    res = invoke(
        "simulate",
        str(files / "phantom.npy"),
        "--out",
        str(files / "w_none.npz"),
        "--angles",
        "0:90:10",
    )
    assert res.exit_code == 0, res.output
    res = invoke("reconstruct", str(files / "w_none.npz"), "--out", str(files / "r_none"), *rec)
    assert isinstance(res.exception, DataError) and "no window (own scale)" in str(res.exception)
    # --force-window: runs, with a warning
    res = invoke(
        "reconstruct",
        str(files / "w_other.npz"),
        "--out",
        str(files / "r_forced"),
        *rec,
        "--force-window",
    )
    assert res.exit_code == 0, res.output
    assert "warning (--force-window)" in res.output
    # resuming the run with another window is refused
    res = invoke(
        "train-prior",
        "--out",
        str(prior_dir),
        "--data",
        str(files / "hu_stack.npy"),
        "--window",
        "-500,500",
        "--resolution",
        "16",
        "--base-channels",
        "8",
        "--channel-mults",
        "1,2",
        "--batch-size",
        "4",
        "--n-heldout",
        "2",
        "--steps",
        "2",
        "--device",
        "cpu",
    )
    assert res.exception is not None and "window" in str(res.exception)


def test_old_prior_without_a_window_still_works(files) -> None:
    prior = files / "prior_hu" / "prior.safetensors"
    if not prior.exists():
        pytest.skip("needs the prior of the test above")
    meta = checkpoint.load_metadata(prior)
    meta.pop("window")
    old = files / "old_prior.safetensors"
    checkpoint.save(checkpoint.load(prior), old, metadata=meta)
    res = invoke(
        "reconstruct",
        str(files / "w_other.npz"),
        "--out",
        str(files / "r_old"),
        "--method",
        "dds",
        "--prior",
        str(old),
        "--samples",
        "1",
        "--steps",
        "2",
    )
    assert res.exit_code == 0, res.output
    assert res.output.count("window unknown") == 1
    assert np.isfinite(np.load(files / "r_old" / "mean.npy")).all()
    # a sampler on photon-count data: the weighted likelihood, checked with weighted residuals
    res = invoke(
        "reconstruct",
        str(files / "low.npz"),
        "--out",
        str(files / "r_old_low"),
        "--method",
        "dds",
        "--prior",
        str(old),
        "--samples",
        "2",
        "--steps",
        "3",
    )
    assert res.exit_code == 0, res.output
    assert "noise model: poisson" in res.output and "window unknown" in res.output
    report = json.loads((files / "r_old_low" / "report.json").read_text())
    assert report["check"]["flag"] in ("passed", "fallback-tv")
    assert np.isfinite(report["check"]["ratio"]) and report["check"]["ratio"] > 0


def test_a_prior_of_another_size_is_refused_naming_both(files) -> None:
    prior = files / "prior_hu" / "prior.safetensors"
    if not prior.exists():
        pytest.skip("needs the prior of the test above")
    res = invoke(
        "simulate",
        str(files / "hu.npy"),
        "--out",
        str(files / "w32.npz"),
        "--window",
        "-1000,1000",
        "--angles",
        "0:90:10",
        "--resolution",
        "32",
    )
    assert res.exit_code == 0, res.output
    res = invoke(
        "reconstruct",
        str(files / "w32.npz"),
        "--out",
        str(files / "r32"),
        "--method",
        "dds",
        "--prior",
        str(prior),
        "--samples",
        "1",
        "--steps",
        "2",
    )
    assert "16x16" in str(res.exception) and "32x32" in str(res.exception)


def test_mni152_refuses_a_hu_window() -> None:
    from gensci.errors import ConfigError
    from gensci.tomography.data import load_split

    with pytest.raises(ConfigError, match="not CT"):
        load_split("mni152", 16, window=(-1000.0, 1000.0))
