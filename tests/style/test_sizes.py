"""Size ceilings of `gensci style train`: refused before any work, with the estimate."""

from __future__ import annotations

from pathlib import Path

from tests.tomography.test_sizes import refused, run


def test_train_refuses_a_million_large_images(tmp_path: Path) -> None:
    out = tmp_path / "run"
    refused(run("style", "train", "--out", str(out), "--n-images", "1000000", "--size", "512"),
            "style train of 1000000 images of 512 x 512 needs about",
            "(the rendered training images and masks)", "lower --n-images, --size or --batch-size")
    assert not out.exists()
