"""Core throughput at a fixed small size: training steps/s and samples/s of the diffusion model and VAE.

    python benchmarks/core.py [--device auto|cpu|cuda] [--out benchmarks/results/core.json]

Writes JSON so later changes can be compared; absolute numbers depend on the machine, so compare
runs made on the same one.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from gensci.models import VAE, DiffusionConfig, DiffusionModel, VAEConfig
from gensci.runtime import atomic_write_text, device_name, resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_rate(
    model: torch.nn.Module, batch: tuple[torch.Tensor, ...], steps: int, device: torch.device
) -> float:
    """Return optimizer steps per second of model.loss on a fixed batch (after 5 warm-up steps)."""
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = tuple(b.to(device) for b in batch)
    for i in range(steps + 5):
        if i == 5:
            _sync(device)
            t0 = time.perf_counter()
        loss = model.loss(batch, i)  # type: ignore[operator]
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(device)
    return steps / (time.perf_counter() - t0)


def timed(fn, device: torch.device) -> float:  # type: ignore[no-untyped-def]
    """Return the seconds `fn()` takes."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="benchmarks/results/core.json")
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    results: dict = {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
    }

    mlp = DiffusionModel(DiffusionConfig(data_shape=(2,), hidden=(128, 128, 128)))
    results["diffusion_mlp_2d_train_steps_per_s(batch 256)"] = train_rate(
        mlp, (torch.randn(256, 2),), args.steps, device
    )
    mlp.eval()
    s = timed(lambda: mlp.sample(4096, sampler="ode", steps=100), device)
    results["diffusion_mlp_2d_samples_per_s(ode 100 steps)"] = 4096 / s

    unet = DiffusionModel(
        DiffusionConfig(
            data_shape=(1, 64, 64), net="unet", base_channels=32, channel_mults=(1, 2, 2)
        )
    )
    results["diffusion_unet_64_params"] = sum(p.numel() for p in unet.parameters())
    results["diffusion_unet_64_train_steps_per_s(batch 16)"] = train_rate(
        unet, (torch.randn(16, 1, 64, 64),), max(args.steps // 5, 3), device
    )
    unet.eval()
    s = timed(lambda: unet.sample(16, sampler="ode", steps=20), device)
    results["diffusion_unet_64_samples_per_s(ode 20 steps)"] = 16 / s

    vae = VAE(VAEConfig(data_dim=2000, latent_dim=32, hidden=(512, 256)))
    results["vae_2000d_train_steps_per_s(batch 256)"] = train_rate(
        vae, (torch.randn(256, 2000),), args.steps, device
    )
    vae.eval()
    s = timed(lambda: vae.sample(10000), device)
    results["vae_2000d_samples_per_s"] = 10000 / s

    out = Path(args.out)
    atomic_write_text(out, json.dumps(results, indent=2), overwrite=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
