"""Round trips through `gensci ct ...` on tiny images."""

import numpy as np
import pytest
from skimage.data import shepp_logan_phantom
from skimage.transform import resize
from typer.testing import CliRunner

from gensci.cli import app
from gensci.errors import CheckpointError, ConfigError, DataError, OutputExistsError, ShapeError

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["ct", *args], catch_exceptions=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct")
    np.save(root / "phantom.npy", resize(shepp_logan_phantom(), (16, 16), anti_aliasing=True))
    base = resize(shepp_logan_phantom(), (16, 16))
    stack = np.stack([base * (0.5 + 0.05 * i) for i in range(12)])
    np.save(root / "stack.npy", stack)
    res = invoke("simulate", str(root / "phantom.npy"), "--out", str(root / "sino.npz"),
                 "--angles", "0:90:12", "--noise", "0.01")
    assert res.exit_code == 0, res.output
    return root


def test_simulate_and_reconstruct_classical(files) -> None:
    with np.load(files / "sino.npz") as f:
        assert f["sinogram"].shape == (23, 12) and f["angles"].shape == (12,)
    for method in ("fbp", "tv"):
        out = files / f"rec_{method}"
        res = invoke("reconstruct", str(files / "sino.npz"), "--out", str(out), "--method", method,
                     "--steps", "50")
        assert res.exit_code == 0, res.output
        mean = np.load(out / "mean.npy")
        assert mean.shape == (16, 16) and np.isfinite(mean).all()
        assert (out / "panel.png").stat().st_size > 0


def test_no_clobbering(files) -> None:
    res = invoke("simulate", str(files / "phantom.npy"), "--out", str(files / "sino.npz"))
    assert isinstance(res.exception, OutputExistsError)
    out = files / "again"
    assert invoke("reconstruct", str(files / "sino.npz"), "--out", str(out)).exit_code == 0
    res = invoke("reconstruct", str(files / "sino.npz"), "--out", str(out))
    assert isinstance(res.exception, OutputExistsError)
    res = invoke("reconstruct", str(files / "sino.npz"), "--out", str(out), "--overwrite")
    assert res.exit_code == 0


def test_bad_inputs_get_clear_errors(files, tmp_path) -> None:
    res = invoke("simulate", str(files / "phantom.npy"), "--out", str(tmp_path / "s.npz"),
                 "--angles", "0:90")
    assert isinstance(res.exception, ConfigError) and "angle spec" in str(res.exception)
    np.save(tmp_path / "sino.npy", np.load(files / "sino.npz")["sinogram"])
    res = invoke("reconstruct", str(tmp_path / "sino.npy"), "--out", str(tmp_path / "r"),
                 "--angles", "0:90:10")
    assert isinstance(res.exception, ShapeError) and "12 views" in str(res.exception)
    bad = np.load(files / "sino.npz")["sinogram"].copy()
    bad[3, 4] = np.nan
    np.savez(tmp_path / "nan.npz", sinogram=bad, angles=np.arange(12) * 7.5)
    res = invoke("reconstruct", str(tmp_path / "nan.npz"), "--out", str(tmp_path / "r2"))
    assert isinstance(res.exception, DataError) and "NaN" in str(res.exception)
    (tmp_path / "broken.npz").write_bytes(b"garbage")
    res = invoke("reconstruct", str(tmp_path / "broken.npz"), "--out", str(tmp_path / "r3"))
    assert "cannot read" in str(res.exception)
    res = invoke("reconstruct", str(files / "sino.npz"), "--out", str(tmp_path / "r4"),
                 "--method", "dps")
    assert isinstance(res.exception, ConfigError) and "--prior" in str(res.exception)


def test_train_prior_resume_and_posterior(files) -> None:
    out = files / "prior"
    common = ["--data", str(files / "stack.npy"), "--resolution", "16", "--base-channels", "8",
              "--channel-mults", "1,2", "--batch-size", "4", "--n-heldout", "2",
              "--checkpoint-every", "1", "--device", "cpu"]
    res = invoke("train-prior", "--out", str(out), "--steps", "2", *common)
    assert res.exit_code == 0, res.output
    res = invoke("train-prior", "--out", str(out), "--steps", "4", *common)  # resumes
    assert res.exit_code == 0, res.output
    from gensci import checkpoint

    res = invoke("train-prior", "--out", str(out), "--steps", "5", "--kind", "vae", *common)
    assert isinstance(res.exception, ConfigError) and "kind" in str(res.exception)
    meta = checkpoint.load_metadata(out / "prior.safetensors")
    assert meta["steps"] == 4 and meta["resolution"] == 16 and meta["heldout_z"] == [5, 6]
    for method in ("langevin", "dps", "dds"):
        rec = files / f"rec_{method}"
        res = invoke("reconstruct", str(files / "sino.npz"), "--out", str(rec), "--method", method,
                     "--prior", str(out / "prior.safetensors"), "--samples", "2", "--steps", "3")
        assert res.exit_code == 0, res.output
        assert np.load(rec / "samples.npy").shape == (2, 16, 16)
        assert np.isfinite(np.load(rec / "std.npy")).all()
    # a prior trained at another resolution is refused by name
    res = invoke("simulate", str(files / "phantom.npy"), "--out", str(files / "s32.npz"),
                 "--resolution", "32", "--angles", "0:90:8")
    assert res.exit_code == 0, res.output
    res = invoke("reconstruct", str(files / "s32.npz"), "--out", str(files / "r32"),
                 "--method", "langevin", "--prior", str(out / "prior.safetensors"))
    assert isinstance(res.exception, CheckpointError) and "16x16" in str(res.exception)


def test_train_prior_refuses_foreign_folder(files) -> None:
    out = files / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = invoke("train-prior", "--out", str(out), "--data", str(files / "stack.npy"),
                 "--resolution", "16", "--steps", "1", "--n-heldout", "2")
    assert isinstance(res.exception, OutputExistsError)
