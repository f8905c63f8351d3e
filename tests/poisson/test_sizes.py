"""Size ceilings of the `gensci poisson` commands: refused before any work, with the estimate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.tomography.test_sizes import refused, run


def test_generate_refuses_a_billion_examples(tmp_path: Path) -> None:
    out = tmp_path / "data.npz"
    refused(run("poisson", "generate", "--out", str(out), "--n-examples", "1000000000"),
            "poisson generate of 1000000000 examples on 64 x 64 needs about",
            "TB (the rho, phi and boundary arrays)", "lower --n-examples or --n")
    assert not out.exists()


def test_solve_refuses_under_a_small_limit(tmp_path: Path) -> None:
    np.save(tmp_path / "rho.npy", np.zeros((4, 33, 33)))
    out = tmp_path / "phi.npy"
    refused(run("poisson", "solve", "--rho", str(tmp_path / "rho.npy"), "--out", str(out),
                limit="10k"),
            "poisson solve (exact) of 4 fields on 33 x 33 needs about",
            "GENSCI_MEMORY_LIMIT=10k allows 10 kB")
    assert not out.exists()
