"""The surrogate shipped with the package: provenance that matches the file, and its recorded error."""

import hashlib
import re

import numpy as np
import pytest

from gensci import checkpoint
from gensci.errors import ShapeError
from gensci.poisson.data import HELD_OUT, MIXTURE, make_dataset
from gensci.poisson.metrics import relative_l2
from gensci.poisson.study import SHIPPED_DIR, check_and_refine, load_surrogate, shipped_surrogate
from gensci.poisson.surrogate import predict

PROVENANCE = (SHIPPED_DIR / "PROVENANCE.md").read_text()


def _recorded(name: str) -> float:
    """Return a figure PROVENANCE.md records as `name: <value>`."""
    match = re.search(rf"{re.escape(name)}: ([0-9.]+)", PROVENANCE)
    assert match, f"PROVENANCE.md records no {name}"
    return float(match.group(1))


def test_shipped_surrogate_matches_its_provenance() -> None:
    path = shipped_surrogate()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    row = next(line for line in PROVENANCE.splitlines() if line.startswith(f"| {path.name}"))
    assert digest in row, f"{path.name}: sha256 {digest} is not the one PROVENANCE.md records"
    assert path.stat().st_size < 20e6
    meta = checkpoint.load_metadata(path)
    params = meta["train_params"]
    assert params["families"] == list(MIXTURE) and params["seed"] == 0 and params["n"] == 64
    assert not set(params["families"]) & set(HELD_OUT)  # never trained on the held-out families
    assert f"{meta['train_config']['steps']:,}" in row


def test_shipped_surrogate_reproduces_its_recorded_error() -> None:
    """The in-distribution check of PROVENANCE.md, recomputed: 10 fields per mixture family."""
    model = load_surrogate(shipped_surrogate(), device="cpu")
    test = make_dataset(10 * len(MIXTURE), 64, MIXTURE, seed=12)
    pred = predict(model, test.rho, test.boundary, hard=True)[0]
    err = relative_l2(pred, test.phi).mean()
    assert err == pytest.approx(_recorded("check rel L2"), rel=0.02)
    # held out: worse, and the truth-free estimate sees it; refinement then meets the tolerance
    ood = make_dataset(4 * len(HELD_OUT), 64, HELD_OUT, seed=13)
    pred = predict(model, ood.rho, ood.boundary, hard=True)[0]
    true = relative_l2(pred, ood.phi)
    refined, est, after, _ = check_and_refine(ood.rho, ood.boundary, pred, 1e-3)
    assert np.allclose(est, true, rtol=0.2)
    assert relative_l2(refined, ood.phi).max() <= 1e-3 and after.max() <= 1e-3


def test_shipped_surrogate_refuses_another_grid() -> None:
    model = load_surrogate(shipped_surrogate(), device="cpu")
    with pytest.raises(ShapeError, match="trained at 64 x 64"):
        predict(model, np.zeros((1, 32, 32)))
