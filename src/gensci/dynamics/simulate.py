"""Ground truth: Euler-Maruyama simulation of the defects, and the Gibbs density it must reach.

    x_{n+1} = x_n + f(x_n) dt + sqrt(2 D dt) xi_n   (mod L),   xi_n ~ N(0, I)

Starts ('init'):
- 'cluster': all defects released from a tight cluster at the box centre (spacing `spread`);
- 'equilibrium': a burn-in of `burn_in` time units from an even lattice, so the snapshots are
  stationary (only U / kT is identifiable from them);
- 'quench': the same burn-in under other parameters (`init_A`, `init_k`), switched at t = 0.
By default every snapshot comes from its own independent ensemble, particles in random order
(unpaired, untracked); `track=True` also records one ensemble at every frame (for the oracle).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
from tqdm.auto import tqdm

from gensci.dynamics.io import Snapshots
from gensci.dynamics.physics import DefectParams, drift, energy
from gensci.errors import ConfigError, check_numeric

INITS = ("cluster", "equilibrium", "quench")


def initial_positions(
    p: DefectParams, m: int, init: str, spread: float, generator: torch.Generator
) -> torch.Tensor:
    """Return (m, N, d) starting positions: a jittered cluster, or an even lattice."""
    n, d, box = p.n, p.dim, p.box
    if init == "cluster":
        side = math.ceil(n ** (1 / d))
        grid = torch.stack(
            torch.meshgrid(*[torch.arange(side, dtype=torch.float64)] * d, indexing="ij"), -1
        ).reshape(-1, d)[:n]
        base = box / 2 + spread * (grid - grid.mean(0))
        jitter = 0.1 * spread * torch.randn(m, n, d, generator=generator, dtype=torch.float64)
    else:
        side = math.ceil(n ** (1 / d))
        grid = torch.stack(
            torch.meshgrid(*[torch.arange(side, dtype=torch.float64)] * d, indexing="ij"), -1
        ).reshape(-1, d)[:n]
        base = (grid + 0.5) * box / side
        jitter = 0.01 * torch.randn(m, n, d, generator=generator, dtype=torch.float64)
    return torch.remainder(base + jitter, box)


def em_step(
    x: torch.Tensor, p: DefectParams, dt: float, generator: torch.Generator
) -> torch.Tensor:
    """Return one Euler-Maruyama step of x: (B, N, d), wrapped into the box."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return torch.remainder(x + drift(x, p) * dt + math.sqrt(2 * p.D * dt) * noise, p.box)


def run(
    x: torch.Tensor,
    p: DefectParams,
    duration: float,
    dt: float,
    generator: torch.Generator,
    progress: bool = False,
    desc: str = "simulating",
) -> torch.Tensor:
    """Return x advanced by `duration` time units of Euler-Maruyama steps of at most dt."""
    steps = max(int(math.ceil(duration / dt - 1e-9)), 0)
    if steps == 0:
        return x
    h = duration / steps
    for _ in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        x = em_step(x, p, h, generator)
    return x


def simulate(
    p: DefectParams,
    times: np.ndarray | list[float],
    n_configs: int = 2000,
    init: str = "cluster",
    dt: float = 1e-3,
    spread: float = 0.4,
    burn_in: float = 20.0,
    init_A: float | None = None,
    init_k: float | None = None,
    track: bool = False,
    frame_dt: float | None = None,
    seed: int = 0,
    progress: bool = False,
) -> Snapshots:
    """Return snapshots of `n_configs` configurations at each of `times` (and tracks if asked).

    times: (T,) increasing, >= 0. Each snapshot comes from its own ensemble (unpaired); with
    `track` a further ensemble of n_configs trajectories is recorded at every frame_dt (default:
    10 dt) from times[0] to times[-1].
    """
    if init not in INITS:
        raise ConfigError(f"unknown init {init!r}; choose one of {INITS}")
    t = check_numeric(np.asarray(times, dtype=np.float64), "times", ndim=1)
    if t.size and (t[0] < 0 or np.any(np.diff(t) <= 0)):
        raise ConfigError(f"times must be >= 0 and strictly increasing, got {t.tolist()}")
    if n_configs < 1:
        raise ConfigError(f"n_configs must be >= 1, got {n_configs}")
    if not (math.isfinite(dt) and dt > 0):
        raise ConfigError(f"dt must be > 0, got {dt}")
    gen = torch.Generator().manual_seed(seed)
    n_ens = len(t) + (1 if track else 0)
    m = n_configs
    x = initial_positions(p, m * n_ens, init, spread, gen)
    if init in ("equilibrium", "quench"):
        pre = p
        if init == "quench":
            pre = replace(p, A=p.A if init_A is None else init_A, k=p.k if init_k is None else init_k)
        x = run(x, pre, burn_in, dt, gen, progress, "burn-in")
    snaps: list[torch.Tensor] = []
    tracks: list[torch.Tensor] = []
    frame_times: list[float] = []
    now = 0.0
    fdt = frame_dt if frame_dt is not None else 10 * dt
    # frames of the tracked ensemble: times[0], times[0] + fdt, ..., times[-1]
    frames = np.round(np.arange(t[0], t[-1] + 0.5 * fdt, fdt), 9) if track else np.zeros(0)
    # one mark per distinct time (a frame that equals a snapshot time to 1e-9 is that time)
    marks = sorted(set(np.round(np.concatenate([t, frames]), 9).tolist()))
    bar = tqdm(total=len(marks), desc="simulating", disable=not progress)
    for mark in marks:
        x = run(x, p, mark - now, dt, gen)
        now = mark
        hit = np.flatnonzero(np.isclose(t, mark, rtol=0, atol=1e-9))
        if hit.size:
            k = int(hit[0])
            snaps.append(x[k * m : (k + 1) * m].clone())
        if track and np.any(np.isclose(frames, mark, rtol=0, atol=1e-9)):
            tracks.append(x[len(t) * m :].clone())
            frame_times.append(mark)
        bar.update(1)
    bar.close()
    # unpaired: particles in a random order in every configuration
    shuffled = []
    for s in snaps:
        order = torch.argsort(torch.rand(s.shape[:2], generator=gen), dim=1)
        shuffled.append(torch.gather(s, 1, order.unsqueeze(-1).expand_as(s)))
    meta = {
        "params": p.to_dict(),
        "init": init,
        "dt": dt,
        "spread": spread,
        "burn_in": burn_in if init != "cluster" else 0.0,
        "init_A": init_A,
        "init_k": init_k,
        "seed": seed,
        "n_configs": n_configs,
    }
    return Snapshots(
        times=t,
        positions=[s.numpy() for s in shuffled],
        box=p.box,
        meta=meta,
        tracks=torch.stack(tracks, 1).numpy() if track else None,
        frame_times=np.asarray(frame_times) if track else None,
    )


def gibbs_grid(p: DefectParams, bins: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Return (centres (bins,), density (bins, bins)) of exp(-U / kT) for N = 2 on a 1-D line.

    The density is normalised over the grid of cell centres (midpoint rule).
    """
    if p.n != 2 or p.dim != 1:
        raise ConfigError(f"the Gibbs grid is for N = 2 on a line, got N = {p.n}, dim = {p.dim}")
    h = p.box / bins
    c = (np.arange(bins) + 0.5) * h
    x1, x2 = np.meshgrid(c, c, indexing="ij")
    x = torch.as_tensor(np.stack([x1.ravel(), x2.ravel()], -1)[:, :, None])
    same = np.isclose(x1.ravel(), x2.ravel())
    u = energy(x, p).numpy()
    u[same] = np.inf  # coinciding defects: infinite repulsion
    w = np.exp(-(u - np.min(u)) / p.kT)
    w = w.reshape(bins, bins)
    return c, w / w.sum()
