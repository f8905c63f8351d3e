"""The gensci command: help lists every study, errors are one clear line, the demo writes a report."""

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


def test_demo_writes_report(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--steps", "30", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (out / "index.html").exists() and (out / "diffusion_samples.png").exists()
    assert "diffusion_ode_mode_weight_error" in (out / "results.json").read_text()


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
