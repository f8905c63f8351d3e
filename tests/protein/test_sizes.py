"""Size ceilings of the `gensci protein` commands: refused before any work, with the estimate."""

from __future__ import annotations

from pathlib import Path

from tests.tomography.test_sizes import refused, run


def test_train_refuses_a_huge_latent(tmp_path: Path) -> None:
    out = tmp_path / "model"
    refused(run("protein", "train", "fn3", "--out", str(out), "--latent-dim", "1000000000"),
            "protein train on", "with --latent-dim 1000000000", "(training the VAE)",
            "lower --latent-dim")
    assert not out.exists()


def test_study_refuses_a_trillion_designs(tmp_path: Path) -> None:
    out = tmp_path / "study"
    refused(run("protein", "study", "fn3", "--out", str(out), "-n", "1000000000000"),
            "protein study of", "with -n 1000000000000 needs about",
            "(the designs of both samplers)", "lower -n")
    assert not out.exists()
