"""MADE's likelihood is exact: it normalises, and after training it nears the entropy bound."""

import itertools

import pytest
import torch

from gensci.errors import DataError, ShapeError
from gensci.models import MADE, MADEConfig
from gensci.train import TrainConfig, Trainer

D, K = 4, 3


def target_table() -> torch.Tensor:
    """A correlated distribution over {0,1,2}^4: x_{d+1} tends to copy x_d."""
    states = torch.tensor(list(itertools.product(range(K), repeat=D)))
    logits = 1.5 * (states[:, 1:] == states[:, :-1]).sum(1).float() + 0.5 * (states[:, 0] == 2)
    return states, torch.softmax(logits, 0)


def test_made_normalises_and_is_autoregressive():
    model = MADE(MADEConfig(n_dims=D, n_categories=K, hidden=(32,)))
    states, _ = target_table()
    total = model.log_prob(states).exp().sum()
    assert torch.allclose(total, torch.tensor(1.0), atol=1e-5)
    # logits of dimension d must not change when x_>=d changes
    x = torch.zeros(1, D, dtype=torch.long)
    x2 = x.clone()
    x2[0, 2:] = 2
    assert torch.allclose(model.logits(x)[0, :3], model.logits(x2)[0, :3])


def test_made_reaches_entropy_bound():
    torch.manual_seed(0)
    states, p = target_table()
    entropy = -(p * p.log()).sum()
    g = torch.Generator().manual_seed(0)
    data = states[torch.multinomial(p, 20000, replacement=True, generator=g)]
    model = MADE(MADEConfig(n_dims=D, n_categories=K, hidden=(64, 64)))
    Trainer(model, data, TrainConfig(steps=800, batch_size=500, lr=1e-2, progress=False)).fit()
    with torch.no_grad():
        cross_entropy = -(p * model.log_prob(states)).sum()
    assert cross_entropy - entropy < 0.05, (float(cross_entropy), float(entropy))
    samples = model.sample(4000, generator=torch.Generator().manual_seed(1))
    freq = torch.bincount(
        (samples * K ** torch.arange(D - 1, -1, -1)).sum(1), minlength=K**D
    ).float()
    # ancestral samples follow the model: total variation to the truth is small
    order = (states * K ** torch.arange(D - 1, -1, -1)).sum(1)
    assert 0.5 * (freq[order] / 4000 - p).abs().sum() < 0.08


def test_made_bad_input():
    model = MADE(MADEConfig(n_dims=D, n_categories=K))
    with pytest.raises(ShapeError):
        model.log_prob(torch.zeros(2, D + 1, dtype=torch.long))
    with pytest.raises(DataError, match="categories"):
        model.log_prob(torch.full((2, D), K))
