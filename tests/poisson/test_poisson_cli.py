"""The `gensci poisson` commands end to end on a tiny grid, and their errors on bad input."""

import csv

import numpy as np
import pytest
from typer.testing import CliRunner

from gensci.errors import ConfigError, DataError, FormatError, ShapeError
from gensci.poisson.cli import app
from gensci.poisson.solver import relative_residual, solve_poisson

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = root / "d.h5"
    r = invoke("generate", "--out", data, "--n-examples", 24, "--n", 16, "--seed", 1)
    assert r.exit_code == 0, r.output
    model = root / "reg"
    args = ("train", "--data", data, "--out", model, "--kind", "regression", "--steps", 6,
            "--batch-size", 8, "--base-channels", 8, "--channel-mults", "1,2",
            "--checkpoint-every", 3, "--device", "cpu")
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    return root, data, model, args


def test_generate_train_resume_solve_study(run):
    root, data, model, args = run
    assert (model / "model.safetensors").exists()
    # resumable: asking for more steps continues the same run
    more = list(args)
    more[more.index("--steps") + 1] = 9
    r = invoke(*more)
    assert r.exit_code == 0, r.output
    assert (model / "metrics.csv").read_text().count("\n") >= 2

    rho = np.random.default_rng(0).normal(size=(2, 16, 16))
    np.save(root / "rho.npy", rho)
    r = invoke("solve", "--rho", root / "rho.npy", "--out", root / "phi.npy")
    assert r.exit_code == 0, r.output
    assert np.allclose(np.load(root / "phi.npy"), solve_poisson(rho))
    r = invoke("solve", "--rho", root / "rho.npy", "--out", root / "w.npz", "--method",
               "regression", "--model", model, "--warm-start", "--device", "cpu")
    assert r.exit_code == 0, r.output
    with np.load(root / "w.npz") as z:
        assert relative_residual(z["phi"], rho).max() < 1e-7
    # the projection acts on the diffusion sampler: asked of a regression model it is refused
    r = invoke("solve", "--rho", root / "rho.npy", "--out", root / "p.npy", "--method",
               "regression", "--model", model, "--project", 4, "--device", "cpu")
    assert r.exit_code != 0 and "diffusion" in str(r.exception)
    assert not (root / "p.npy").exists()
    r = invoke("study", "--data", data, "--out", root / "report", "--model", model,
               "--warm-start", "--limit", 6, "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert (root / "report" / "examples.png").stat().st_size > 1000
    assert "regression/hard" in (root / "report" / "table.md").read_text()


def test_bad_input_gets_gensci_errors(run):
    root, data, model, _ = run
    np.save(root / "rect.npy", np.zeros((16, 12)))
    np.save(root / "nan.npy", np.full((16, 16), np.nan))
    np.save(root / "big.npy", np.ones((32, 32)))
    np.save(root / "g.npy", np.zeros((17, 17)))
    r = invoke("solve", "--rho", root / "rect.npy", "--out", root / "o1.npy")
    assert isinstance(r.exception, ShapeError) and "square" in str(r.exception)
    r = invoke("solve", "--rho", root / "nan.npy", "--out", root / "o2.npy")
    assert isinstance(r.exception, DataError)
    r = invoke("solve", "--rho", root / "big.npy", "--boundary", root / "g.npy", "--out",
               root / "o3.npy")
    assert isinstance(r.exception, ShapeError) and "boundary" in str(r.exception)
    r = invoke("solve", "--rho", root / "big.npy", "--out", root / "o4.npy", "--method",
               "regression", "--model", model, "--device", "cpu")
    assert isinstance(r.exception, ShapeError) and "trained at 16 x 16" in str(r.exception)
    r = invoke("solve", "--rho", root / "big.npy", "--out", root / "o5.npy", "--method", "fem")
    assert isinstance(r.exception, ConfigError)
    r = invoke("solve", "--rho", root / "missing.npy", "--out", root / "o6.npy")
    assert isinstance(r.exception, FormatError)


def test_train_prediction_option(run):
    root, data, _, _ = run
    out = root / "diff_v"
    r = invoke("train", "--data", data, "--out", out, "--kind", "diffusion", "--steps", 4,
               "--batch-size", 8, "--base-channels", 8, "--channel-mults", "1,2",
               "--prediction", "v", "--lr-schedule", "cosine", "--warmup", 1, "--device", "cpu")
    assert r.exit_code == 0, r.output
    with (out / "metrics.csv").open() as fh:
        lrs = [float(row["lr"]) for row in csv.DictReader(fh) if row["lr"]]
    assert lrs and lrs[-1] < 2e-3  # the cosine schedule was applied
    from gensci.poisson.study import load_surrogate

    model = load_surrogate(out, device="cpu")
    assert model.config.prediction == "v"
    assert model.diffusion.config.prediction == "v"
    r = invoke("train", "--data", data, "--out", root / "diff_bad", "--kind", "diffusion",
               "--steps", 2, "--prediction", "score", "--device", "cpu")
    assert isinstance(r.exception, ConfigError) and "prediction" in str(r.exception)
    r = invoke("train", "--data", data, "--out", root / "diff_bad2", "--kind", "diffusion",
               "--steps", 2, "--lr-schedule", "linear", "--device", "cpu")
    assert isinstance(r.exception, ConfigError) and "lr_schedule" in str(r.exception)


def test_resume_with_other_settings_is_refused(run):
    """A run folder continues only with the settings it was started with."""
    root, data, model, args = run
    before = (model / "model.safetensors").read_bytes()
    for option, value in (("--kind", "diffusion"), ("--base-channels", 4),
                          ("--channel-mults", "1,2,2"), ("--batch-size", 4)):
        changed = list(args)
        changed[changed.index(option) + 1] = value
        changed[changed.index("--steps") + 1] = 12
        r = invoke(*changed)
        assert r.exception is not None and "other settings" in str(r.exception), (option, r.output)
    assert (model / "model.safetensors").read_bytes() == before  # the old model is untouched


def test_solve_flags_untrusted_answers_and_tol_refines_them(run):
    root, data, model, _ = run
    from gensci.poisson.data import make_dataset

    ds = make_dataset(3, 16, ("points", "dipoles", "offset"), seed=7,
                      nonzero_boundary_fraction=0.0)  # never trained on
    np.save(root / "ood.npy", ds.rho)
    r = invoke("solve", "--rho", root / "ood.npy", "--out", root / "f.npz", "--method",
               "regression", "--model", model, "--device", "cpu")
    assert r.exit_code == 0, r.output
    with np.load(root / "f.npz") as z:
        err = np.sqrt(((z["phi"] - ds.phi) ** 2).sum((1, 2)) / (ds.phi**2).sum((1, 2)))
        # the estimate needs no truth, yet follows the true error of each answer
        assert np.allclose(z["estimated_error"], err, rtol=0.25)
        assert np.array_equal(z["flagged"], z["estimated_error"] > 0.05)
    assert "not to be trusted" in r.output
    r = invoke("solve", "--rho", root / "ood.npy", "--out", root / "t.npz", "--method",
               "regression", "--model", model, "--tol", 1e-3, "--device", "cpu")
    assert r.exit_code == 0, r.output
    with np.load(root / "t.npz") as z:
        err = np.sqrt(((z["phi"] - ds.phi) ** 2).sum((1, 2)) / (ds.phi**2).sum((1, 2)))
        assert err.max() <= 1e-3 and z["estimated_error_after"].max() <= 1e-3
    r = invoke("solve", "--rho", root / "ood.npy", "--out", root / "x.npy", "--tol", 1e-3)
    assert r.exit_code != 0 and "surrogate methods only" in str(r.exception)
