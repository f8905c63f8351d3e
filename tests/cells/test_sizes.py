"""Size ceilings of the `gensci cells` commands: refused before any work, with the estimate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.tomography.test_sizes import refused, run


def _h5ad(path: Path) -> Path:
    import anndata as ad
    import pandas as pd

    obs = pd.DataFrame({"condition": ["control", "stimulated"] * 10,
                        "cell_type": ["A"] * 10 + ["B"] * 10},
                       index=[f"c{i}" for i in range(20)])
    ad.AnnData(np.random.default_rng(0).random((20, 30)).astype(np.float32), obs=obs).write_h5ad(
        path)
    return path


def test_train_refuses_a_huge_latent(tmp_path: Path) -> None:
    data = _h5ad(tmp_path / "cells.h5ad")
    out = tmp_path / "model"
    refused(run("cells", "train", str(data), "--out", str(out), "--latent-dim", "100000000"),
            "cells train on 20 cells x 30 genes with --latent-dim 100000000", "(training the VAE)",
            "lower --latent-dim, --hidden or --batch-size")
    assert not out.exists()


def test_study_refuses_under_a_small_limit(tmp_path: Path) -> None:
    data = _h5ad(tmp_path / "cells.h5ad")
    out = tmp_path / "study"
    refused(run("cells", "study", str(data), "--out", str(out), "--scale", "tiny", limit="1M"),
            "cells study on 20 cells x 30 genes at --scale tiny needs about",
            "GENSCI_MEMORY_LIMIT=1M allows 1 MB")
    assert not out.exists()
