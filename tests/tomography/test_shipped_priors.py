"""The priors shipped with the package: provenance that matches the file, and they work."""

import hashlib
import re

import numpy as np
import pytest
import torch

from gensci import checkpoint
from gensci.errors import CheckpointError
from gensci.inverse.fbp import fbp
from gensci.inverse.metrics import psnr
from gensci.inverse.posterior import dds_posterior
from gensci.inverse.radon import Radon
from gensci.tomography.prior import SHIPPED_DIR, load_diffusion_prior, shipped_prior
from gensci.tomography.study import simulate

PROVENANCE = (SHIPPED_DIR / "PROVENANCE.md").read_text()


@pytest.mark.parametrize("n", [64, 128])
def test_shipped_prior_matches_its_provenance(n: int) -> None:
    path = shipped_prior(n)
    assert path is not None and path.name == f"prior-{n}.safetensors"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    row = next(line for line in PROVENANCE.splitlines() if line.startswith(f"| {path.name}"))
    assert digest in row, f"{path.name}: sha256 {digest} is not the one PROVENANCE.md records"
    meta = checkpoint.load_metadata(path)
    assert meta["resolution"] == n and meta["augment"] == 15 and meta["seed"] == 0
    assert not set(meta["train_z"]) & set(meta["heldout_z"])  # never trained on held-out slices
    assert f"{meta['steps']:,}" in row
    assert re.search(rf"--resolution {n} .*--seed 0", meta["command"])
    with pytest.raises(CheckpointError, match="trained at"):
        load_diffusion_prior(path, 32, torch.device("cpu"))


def test_shipped_prior_fills_the_missing_wedge() -> None:
    """DDS with the 64 x 64 prior on a held-out-like image beats FBP by a wide margin."""
    prior = load_diffusion_prior(shipped_prior(64), 64, torch.device("cpu"))  # type: ignore[arg-type]
    # a smooth head-like phantom: an ellipse of tissue with two darker ventricles
    yy, xx = np.mgrid[-1:1:64j, -1:1:64j]
    img = 0.8 * ((xx / 0.7) ** 2 + (yy / 0.85) ** 2 < 1)
    img = img - 0.5 * (((xx - 0.12) / 0.08) ** 2 + (yy / 0.3) ** 2 < 1)
    img = img - 0.5 * (((xx + 0.12) / 0.08) ** 2 + (yy / 0.3) ** 2 < 1)
    truth = torch.from_numpy(np.clip(img, 0, 1))[None, None]
    op = Radon(64, 90 * np.arange(60) / 60)
    y, std = simulate(op, truth, 0.01, torch.Generator().manual_seed(0))
    res = dds_posterior(prior, op, y.float(), std, n_samples=2, steps=10,
                        generator=torch.Generator().manual_seed(0))
    gain = float(psnr(res.mean.double(), truth)[0] - psnr(fbp(op, y), truth)[0])
    assert gain > 5.0, gain
