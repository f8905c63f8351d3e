"""One Trainer step of a float64 MADE; run plainly or under torchrun. Writes the parameters."""

import sys

import torch

from gensci.models import MADE, MADEConfig
from gensci.train import TrainConfig, Trainer

if __name__ == "__main__":
    torch.manual_seed(0)
    data = torch.randint(0, 3, (64, 5), generator=torch.Generator().manual_seed(1))
    model = MADE(MADEConfig(n_dims=5, n_categories=3, hidden=(16,))).double()
    Trainer(
        model, data, TrainConfig(steps=1, batch_size=16, lr=1e-2, progress=False, device="cpu")
    ).fit()
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        sys.exit(0)
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, sys.argv[1])
