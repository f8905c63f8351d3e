"""`ct simulate` + `ct reconstruct` against the study on one slice; slicing, keys, sweeps, truth."""

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
from gensci.errors import ConfigError, DataError, FormatError, ShapeError
from gensci.inverse.posterior import DiffusionPrior
from gensci.models.diffusion import DiffusionConfig, DiffusionModel
from gensci.tomography.data import load_split
from gensci.tomography.study import MethodSettings, StudyConfig, run_study

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["ct", *args], catch_exceptions=True)


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """A NIfTI volume (X, Y, Z) = (16, 16, 12) in [0, 1] whose slice z = 6 peaks at 0.7 < 1."""
    root = tmp_path_factory.mktemp("vol")
    base = resize(shepp_logan_phantom(), (16, 16), anti_aliasing=True)
    vol = np.stack([base * (0.4 + 0.05 * z) for z in range(12)], axis=-1)
    vol = vol / vol.max()
    nib.save(nib.Nifti1Image(vol.astype(np.float32), np.eye(4)), str(root / "vol.nii.gz"))
    torch.manual_seed(0)
    model = DiffusionModel(
        DiffusionConfig(data_shape=(1, 16, 16), net="unet", base_channels=8, channel_mults=(1, 2))
    )
    checkpoint.save(model, root / "prior.safetensors", metadata={"kind": "diffusion"})
    return root


def test_one_slice_gives_the_same_psnr_both_ways(volume, tmp_path) -> None:
    z = 6
    split = load_split(str(volume / "vol.nii.gz"), 16, heldout_centre=z, n_heldout=1, gap=1)
    assert list(split.heldout_z) == [z] and split.heldout.max() < 0.95  # not stretched
    model = checkpoint.load(volume / "prior.safetensors")
    cfg = StudyConfig(
        resolution=16, n_slices=1, n_views=12, wedges=(90.0,), methods=("fbp", "tv", "dds"),
        tv_grid=(2.0,), settings=MethodSettings(samples=2, dds_steps=3, tv_iterations=60),
    )
    study = run_study(cfg, split.heldout, split.heldout_z, DiffusionPrior(model), None, None,
                      progress=False)["wedges"]["90"]["methods"]
    sino = tmp_path / "y.npz"
    res = invoke("simulate", str(volume / "vol.nii.gz"), "--slice", str(z), "--resolution", "16",
                 "--angles", "0:90:12", "--noise", "0.01", "--out", str(sino))
    assert res.exit_code == 0, res.output
    for method, extra in (("fbp", []), ("tv", ["--tv-weight", "2", "--steps", "60"]),
                          ("dds", ["--samples", "2", "--steps", "3", "--no-check",
                                   "--prior", str(volume / "prior.safetensors")])):
        out = tmp_path / method
        res = invoke("reconstruct", str(sino), "--out", str(out), "--method", method,
                     "--truth", str(sino), "--device", "cpu", *extra)
        assert res.exit_code == 0, res.output
        got = json.loads((out / "report.json").read_text())["final"]["psnr"]
        assert got == pytest.approx(study[method]["psnr"]["values"][0], abs=1e-3), method
    # the former CLI stretched the slice to [0, 1]: a different image, a different score
    res = invoke("simulate", str(volume / "vol.nii.gz"), "--slice", str(z), "--resolution", "16",
                 "--angles", "0:90:12", "--normalise", "--out", str(tmp_path / "n.npz"))
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "n.npz") as f, np.load(sino) as g:
        assert f["truth"].max() == pytest.approx(1.0, abs=1e-3) and g["truth"].max() < 0.95
        assert str(g["intensity"]) == "own" and str(f["intensity"]) == "normalise"
        assert str(g["truth_path"]).endswith("vol.nii.gz")


def test_one_slicing_convention_and_keys(tmp_path) -> None:
    stack = np.stack([np.full((8, 8), i + 1.0) for i in range(10)])
    stack[:, 2:5, 3] += 1  # not square-symmetric, so a transposed cut would differ
    np.save(tmp_path / "stack.npy", stack)
    res = invoke("simulate", str(tmp_path / "stack.npy"), "--slice", "4", "--angles", "0:90:6",
                 "--out", str(tmp_path / "a.npz"))
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "a.npz") as f:
        np.testing.assert_allclose(f["truth"], stack[4])  # stack[s], never a strip
    res = invoke("simulate", str(tmp_path / "stack.npy"), "--slice", "60", "--resolution", "8",
                 "--out", str(tmp_path / "b.npz"))
    assert isinstance(res.exception, ShapeError) and "(S, H, W)" in str(res.exception)
    assert "10 slices" in str(res.exception)
    np.savez(tmp_path / "two.npz", a=np.ones((8, 8)), b=stack)
    res = invoke("simulate", str(tmp_path / "two.npz"), "--out", str(tmp_path / "c.npz"))
    assert isinstance(res.exception, FormatError) and "--key" in str(res.exception)
    res = invoke("simulate", str(tmp_path / "two.npz"), "--key", "b", "--slice", "2",
                 "--angles", "0:90:6", "--out", str(tmp_path / "c.npz"))
    assert res.exit_code == 0, res.output
    res = invoke("simulate", str(tmp_path / "two.npz"), "--key", "zz", "--out",
                 str(tmp_path / "d.npz"))
    assert isinstance(res.exception, FormatError) and "'zz'" in str(res.exception)
    # a HU window is applied and recorded
    np.save(tmp_path / "hu.npy", np.linspace(-1000, 1000, 64).reshape(8, 8))
    res = invoke("simulate", str(tmp_path / "hu.npy"), "--window", "-500,500", "--angles",
                 "0:90:6", "--out", str(tmp_path / "hu.npz"))
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "hu.npz") as f:
        assert f["truth"].min() == 0.0 and f["truth"].max() == 1.0
        assert list(f["window"]) == [-500.0, 500.0] and str(f["intensity"]) == "window"
    res = invoke("simulate", str(tmp_path / "hu.npy"), "--window", "5,1", "--out",
                 str(tmp_path / "e.npz"))
    assert isinstance(res.exception, DataError) and "--window" in str(res.exception)


def test_tv_sweep_and_truth_report(tmp_path) -> None:
    img = resize(shepp_logan_phantom(), (24, 24), anti_aliasing=True) * 0.9
    np.save(tmp_path / "img.npy", img)
    sino = tmp_path / "y.npz"
    assert invoke("simulate", str(tmp_path / "img.npy"), "--angles", "0:90:20", "--noise", "0.02",
                  "--out", str(sino)).exit_code == 0
    out = tmp_path / "sweep"
    res = invoke("reconstruct", str(sino), "--out", str(out), "--method", "tv", "--tv-weight",
                 "0.1,2,50", "--truth", str(tmp_path / "img.npy"), "--steps", "150",
                 "--tv-choice", "discrepancy")
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    rows = report["tv_sweep"]
    assert [r["weight"] for r in rows] == [0.1, 2.0, 50.0]
    # more smoothing, larger residual; the discrepancy choice is the middle weight here
    assert rows[0]["discrepancy"] < rows[1]["discrepancy"] < rows[2]["discrepancy"]
    assert report["tv_weight"] == 2.0 and report["tv_choice"] == "discrepancy"
    for w in ("0.1", "2", "50"):
        assert (out / f"tv_w{w}" / "mean.npy").exists()
    assert report["final"]["psnr"] == pytest.approx(rows[1]["psnr"])
    # the default, cross-validation over rays: unseen rays are predicted worse by the weights
    # that fit the noise (0.1) or smooth the image away (50, far worse)
    cv_out = tmp_path / "cv"
    res = invoke("reconstruct", str(sino), "--out", str(cv_out), "--method", "tv", "--tv-weight",
                 "0.1,2,50", "--truth", str(tmp_path / "img.npy"), "--steps", "150")
    assert res.exit_code == 0, res.output
    cv = json.loads((cv_out / "report.json").read_text())
    scores = [r["cv"] for r in cv["tv_sweep"]]
    assert cv["tv_choice"] == "cv" and scores[1] < scores[0] < scores[2] / 3
    assert cv["tv_weight"] == 2.0 and "cross-validation" in res.output
    assert cv["final"]["psnr"] == pytest.approx(cv["tv_sweep"][1]["psnr"])
    res = invoke("reconstruct", str(sino), "--out", str(tmp_path / "r2"), "--method", "tv",
                 "--tv-weight", "2,x")
    assert isinstance(res.exception, ConfigError) and "--tv-weight" in str(res.exception)
    np.save(tmp_path / "small.npy", np.ones((8, 8)))
    res = invoke("reconstruct", str(sino), "--out", str(tmp_path / "r3"), "--truth",
                 str(tmp_path / "small.npy"))
    assert isinstance(res.exception, DataError) and "small.npy" in str(res.exception)


def test_discrepancy_check_falls_back_to_tv_and_says_so(volume, tmp_path) -> None:
    sino = tmp_path / "y.npz"
    assert invoke("simulate", str(volume / "vol.nii.gz"), "--slice", "6", "--resolution", "16",
                  "--angles", "0:90:12", "--out", str(sino)).exit_code == 0
    common = ["--method", "dds", "--prior", str(volume / "prior.safetensors"), "--samples", "2",
              "--steps", "3", "--truth", str(sino), "--device", "cpu", "--tv-weight", "1,4"]
    out = tmp_path / "strict"
    res = invoke("reconstruct", str(sino), "--out", str(out), "--discrepancy-threshold", "1e-6",
                 *common)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["check"]["flag"] == "fallback-tv" and not report["check"]["passed"]
    assert "failed the discrepancy check" in res.output
    w = report["tv_weight"]
    np.testing.assert_allclose(np.load(out / "mean.npy"), np.load(out / f"tv_w{w:g}" / "mean.npy"))
    assert (out / "posterior_mean.npy").exists() and (out / "std.npy").exists()
    # past a lenient discrepancy check, the untrained prior predicts the left-out end views
    # worse than TV: the extrapolation check catches it
    out = tmp_path / "lenient"
    res = invoke("reconstruct", str(sino), "--out", str(out), "--discrepancy-threshold", "1e9",
                 *common)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    extrap = report["check"]["extrapolation"]
    assert report["check"]["failed"] == ["extrapolation"] and extrap["ratio"] > 1
    assert "failed the extrapolation check" in res.output and "left-out end views" in res.output
    out = tmp_path / "unguarded"
    res = invoke("reconstruct", str(sino), "--out", str(out), "--discrepancy-threshold", "1e9",
                 "--no-extrapolation-check", *common)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["check"]["flag"] == "passed" and report["final"]["source"] == "dds"
    assert "extrapolation" not in report["check"] and "std_error_spearman" in report["final"]
    res = invoke("reconstruct", str(sino), "--out", str(tmp_path / "bad"),
                 "--discrepancy-threshold", "0", *common)
    assert isinstance(res.exception, ConfigError) and "discrepancy" in str(res.exception)
