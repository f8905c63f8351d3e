"""The gensci command: help lists every study, errors are one clear line, the demo writes a report."""

import json
import subprocess
import sys

from typer.testing import CliRunner

from gensci.cli import app

runner = CliRunner()


def test_help_lists_subcommands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("demo", "ct", "poisson", "cells", "protein"):
        assert name in result.output


def test_demo_tours_and_writes_one_site(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--steps", "30", "--device", "cpu",
                                 "--only", "core", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (out / "index.html").exists() and (out / "core" / "index.html").exists()
    assert (out / "core" / "diffusion_samples.png").exists()  # copied beside its page
    record = json.loads((out / "runs" / "core" / "results.json").read_text())
    assert record["study"] == "core"
    assert "diffusion_ode_mode_weight_error" in record  # the study's own results stay
    assert "core" in result.output.splitlines()[-2]  # the one-line summary per study
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "x"), "--only", "cooking"])
    assert "unknown studies" in str(result.exception)


def test_gensci_errors_are_one_line_with_exit_2(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("user data")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gensci.cli",
            "demo",
            "--out",
            str(tmp_path / "full"),
            "--steps",
            "2",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "--overwrite" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "full" / "keep.txt").read_text() == "user data"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gensci.cli",
            "demo",
            "--device",
            "tpu",
            "--out",
            str(tmp_path / "x"),
            "--steps",
            "2",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "tpu" in proc.stderr


# -- the installed console script: usage errors and option bounds ----------------------------

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from gensci.bounds import BOUNDS, bound_for, numeric_options, walk_commands  # noqa: E402


def gensci_script() -> str:
    """Return the path of the installed `gensci` console script."""
    beside = Path(sys.executable).parent / "gensci"
    found = str(beside) if beside.exists() else shutil.which("gensci")
    assert found, "the gensci console script is not installed"
    return found


def run_gensci(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([gensci_script(), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args,expected",
    [
        (["ct", "simulate", "x.npy", "--out", "y.npz", "--bogus"], "No such option"),
        (["demo", "--seed", "three"], "--seed"),
        (["ct", "reconstruct"], "Missing argument"),
        (["poisson", "train", "--data", "d.npz"], "Missing option"),
    ],
    ids=["unknown-option", "non-integer", "missing-argument", "missing-option"],
)
def test_usage_errors_through_the_console_script(args, expected):
    proc = run_gensci(*args)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args,flag",
    [
        (["ct", "simulate", "IN.npy", "--out", "OUT/s.npz", "--noise", "nan"], "--noise"),
        (["ct", "reconstruct", "IN.npz", "--out", "OUT", "--samples", "0"], "--samples"),
        (["poisson", "solve", "--rho", "IN.npy", "--out", "OUT/p.npz", "--eta", "nan"], "--eta"),
        (["cells", "train", "IN.h5ad", "--out", "OUT", "--latent-dim", "-3"], "--latent-dim"),
    ],
)
def test_bad_numbers_are_refused_before_work_through_the_console_script(tmp_path, args, flag):
    args = [a.replace("OUT", str(tmp_path / "out")).replace("IN", str(tmp_path / "in"))
            for a in args]
    proc = run_gensci(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: " + flag), proc.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_every_numeric_option_has_a_bound():
    """A new int or float option without an entry in gensci.bounds.BOUNDS fails here."""
    missing = []
    for command, callback in walk_commands(app):
        for name in numeric_options(callback):
            if bound_for(command, name) is None:
                missing.append(f"{command} --{name.replace('_', '-')}")
    assert not missing, f"options without a bound in gensci.bounds.BOUNDS: {missing}"
    assert len(BOUNDS) > 40


@pytest.mark.parametrize(
    "args,flag",
    [
        (["ct", "reconstruct", "s.npz", "--out", "o", "--noise-std", "nan"], "--noise-std"),
        (["ct", "study", "--out", "o", "--noise", "inf"], "--noise"),
        (["ct", "study", "--out", "o", "--dds-lam", "nan"], "--dds-lam"),
        (["ct", "train-prior", "--out", "o", "--lr", "nan"], "--lr"),
        (["ct", "train-prior", "--out", "o", "--batch-size", "0"], "--batch-size"),
        (["ct", "train-prior", "--out", "o", "--base-channels", "-1"], "--base-channels"),
        (["poisson", "solve", "--rho", "r.npy", "--out", "o.npz", "--guided", "nan"], "--guided"),
        (["poisson", "solve", "--rho", "r.npy", "--out", "o.npz", "--steps", "0"], "--steps"),
        (["ct", "reconstruct", "s.npz", "--out", "o", "--tv-weight", "inf"], "--tv-weight"),
        (["protein", "train", "fn3", "--out", "o", "--dropout", "1"], "--dropout"),
        (["poisson", "generate", "--out", "o.npz", "--n-examples", "0"], "--n-examples"),
        (["poisson", "generate", "--out", "o.npz", "--n", "2"], "--n"),
        (["poisson", "train", "--data", "d", "--out", "o", "--accumulate", "0"], "--accumulate"),
        (["cells", "train", "a.h5ad", "--out", "o", "--kl-weight", "nan"], "--kl-weight"),
        (["cells", "predict", "m", "a.h5ad", "--cell-type", "B", "--out", "o.h5ad",
          "--n-bootstrap", "-1"], "--n-bootstrap"),
        (["protein", "train", "fn3", "--out", "o", "--weight-decay", "-0.1"], "--weight-decay"),
        (["protein", "design", "m", "--out", "o.fasta", "--temperature", "nan"], "--temperature"),
        (["protein", "design", "m", "--out", "o.fasta", "--n", "0"], "--n"),
        (["protein", "design", "m", "--out", "o.fasta", "--scale", "inf"], "--scale"),
        (["demo", "--steps", "0"], "--steps"),
        (["demo", "--seed", "-1"], "--seed"),
    ],
)
def test_bad_numbers_are_refused_in_every_study(tmp_path, monkeypatch, args, flag):
    from gensci.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert isinstance(result.exception, ConfigError), result.output
    assert str(result.exception).startswith(flag + " must be")
    assert list(tmp_path.iterdir()) == []


def test_bound_descriptions():
    from gensci.bounds import COUNT, FRACTION_BELOW_ONE, POSITIVE

    assert COUNT.describe() == ">= 1" and not COUNT.holds(0) and COUNT.holds(1)
    assert FRACTION_BELOW_ONE.describe() == "in [0, 1)" and not FRACTION_BELOW_ONE.holds(1.0)
    assert POSITIVE.describe() == "> 0" and not POSITIVE.holds(0.0)
