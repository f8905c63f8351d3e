"""Three Trainer steps of a float64 VAE (noisy loss); run plainly or under torchrun.

Usage: ddp_step.py OUT [ACCUMULATE]. Each rank writes OUT.rank<r> with its weights, the world size
the Trainer saw and the number of examples in each of its loss calls.
"""

import sys

import torch

from gensci.models import VAE, VAEConfig
from gensci.train import TrainConfig, Trainer


class CountingVAE(VAE):
    def loss(self, batch, step):
        self.seen.append(int(batch[0].shape[0]))
        return super().loss(batch, step)


if __name__ == "__main__":
    torch.manual_seed(0)
    data = torch.randn(64, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = CountingVAE(VAEConfig(data_dim=5, latent_dim=2, hidden=(16,), dropout=0.1)).double()
    model.seen = []
    accumulate = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    trainer = Trainer(
        model, data, TrainConfig(steps=3, batch_size=16, lr=1e-2, accumulate=accumulate,
                                 progress=False, device="cpu")
    )
    trainer.fit()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save({"state": state, "world": trainer.world, "seen": model.seen},
               f"{sys.argv[1]}.rank{trainer.rank}")
