"""Batched ELBO scoring: every row is scored, whatever the batch size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gensci.protein.io import ALPHABET
from gensci.protein.model import FamilyConfig, build_vae
from gensci.protein.scoring import elbo_batched

N_ROWS, LENGTH = 10, 12


@pytest.fixture
def model_and_codes():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = build_vae(LENGTH, FamilyConfig(latent_dim=2, hidden=(16,), dropout=0.0)).eval()
    codes = np.random.default_rng(0).integers(0, len(ALPHABET), (N_ROWS, LENGTH))
    return model, codes


@pytest.mark.parametrize("batch_size", [3, 4, 7])
def test_elbo_batched_scores_every_row_as_one_batch_does(model_and_codes, batch_size: int) -> None:  # type: ignore[no-untyped-def]
    """With the decoder blind to z the ELBO has no sampling noise, so a row's score must not
    depend on the batch size; the last, partial batch (N % batch_size rows) included."""
    model, codes = model_and_codes
    with torch.no_grad():
        model.decoder.net[0].weight.zero_()  # the first decoder layer ignores z
    scores = elbo_batched(model, codes, n_samples=2, batch_size=batch_size)
    whole = elbo_batched(model, codes, n_samples=2, batch_size=N_ROWS)
    assert N_ROWS % batch_size != 0 and scores.shape == whole.shape == (N_ROWS,)
    np.testing.assert_allclose(scores, whole, rtol=1e-6, atol=1e-6)
    # the rows differ, so a row given another row's score would not pass
    assert np.unique(np.round(whole, 3)).size == N_ROWS


@pytest.mark.parametrize("batch_size", [3, 4])
def test_elbo_batched_draws_each_batch_from_the_seeded_generator(model_and_codes, batch_size: int) -> None:  # type: ignore[no-untyped-def]
    """Each batch, the last partial one too, is the model's ELBO with a generator seeded `seed`."""
    model, codes = model_and_codes
    scores = elbo_batched(model, codes, n_samples=3, batch_size=batch_size, seed=5)
    for start in range(0, N_ROWS, batch_size):
        x = torch.as_tensor(codes[start : start + batch_size])
        with torch.no_grad():
            expected = model.elbo(x, n_samples=3, generator=torch.Generator().manual_seed(5))
        np.testing.assert_allclose(
            scores[start : start + batch_size], expected.numpy(), rtol=1e-6, atol=1e-6
        )
