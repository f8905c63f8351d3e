"""Samplers of the reverse diffusion. They see only `score_fn(x, t) -> grad_x log p_t(x)` and the SDE.

Because the score is a plain callable, an inverse problem samples the posterior by passing
`lambda x, t: prior_score(x, t) + likelihood_score(x, t)`; nothing here knows of networks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from gensci.models.sde import SDE, _bcast

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
DenoisedFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _start(
    sde: SDE,
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device | str | None,
    x_init: torch.Tensor | None,
    t_start: float | None,
) -> tuple[torch.Tensor, float]:
    """Return the starting state and time: x_T from the prior, or x_init at t_start (SDEdit)."""
    t0 = sde.T if t_start is None else float(t_start)
    if x_init is not None:
        return x_init.clone(), t0
    return sde.prior_sampling(shape, generator, device), t0


def _noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator).to(x.device, x.dtype)


def _times(t0: float, t1: float, steps: int, x: torch.Tensor) -> torch.Tensor:
    return torch.linspace(t0, t1, steps + 1, dtype=x.dtype, device=x.device)


@torch.no_grad()
def euler_maruyama(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...],
    steps: int = 500,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    x_init: torch.Tensor | None = None,
    t_start: float | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Return samples of the reverse SDE dx = [f - g^2 score] dt + g dw_bar, integrated by Euler-Maruyama."""
    x, t0 = _start(sde, shape, generator, device, x_init, t_start)
    ts = _times(t0, sde.eps, steps, x)
    for i in tqdm(range(steps), desc="reverse SDE", disable=not progress, leave=False):
        t = ts[i].expand(x.shape[0])
        dt = ts[i + 1] - ts[i]  # negative
        f, g = sde.sde(x, t)
        mean = x + (f - _bcast(g**2, x) * score_fn(x, t)) * dt
        # the last step returns the mean: adding noise of scale g sqrt(eps) only blurs the result
        x = mean if i == steps - 1 else mean + _bcast(g, x) * torch.sqrt(-dt) * _noise(x, generator)
    return x


@torch.no_grad()
def probability_flow_ode(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...],
    steps: int = 100,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    x_init: torch.Tensor | None = None,
    t_start: float | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Return samples of the probability-flow ODE dx/dt = f - g^2 score / 2, integrated by Heun's method."""
    x, t0 = _start(sde, shape, generator, device, x_init, t_start)
    ts = _times(t0, sde.eps, steps, x)

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        f, g = sde.sde(x, t)
        return f - 0.5 * _bcast(g**2, x) * score_fn(x, t)

    for i in tqdm(range(steps), desc="probability-flow ODE", disable=not progress, leave=False):
        t, t_next = ts[i].expand(x.shape[0]), ts[i + 1].expand(x.shape[0])
        dt = ts[i + 1] - ts[i]
        v = velocity(x, t)
        x_euler = x + v * dt
        x = x + 0.5 * (v + velocity(x_euler, t_next)) * dt
    return x


def _corrector_step(
    score_fn: ScoreFn,
    x: torch.Tensor,
    t: torch.Tensor,
    snr: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Return x after one Langevin step x + h score + sqrt(2h) z, with h set by a signal-to-noise ratio.

    h = 2 (snr ||z|| / ||score||)^2 with norms averaged over the batch (Song et al. 2021): as
    ||score||^2 ~ d / variance of p_t, the step follows the scale of p_t at every noise level.
    """
    s = score_fn(x, t)
    z = _noise(x, generator)
    dims = tuple(range(1, x.dim()))
    noise_norm = z.pow(2).sum(dims).sqrt().mean()
    score_norm = s.pow(2).sum(dims).sqrt().mean().clamp_min(1e-12)
    h = 2.0 * (snr * noise_norm / score_norm) ** 2
    return x + h * s + torch.sqrt(2.0 * h) * z


@torch.no_grad()
def predictor_corrector(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...],
    steps: int = 500,
    snr: float = 0.16,
    n_corrector: int = 1,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    x_init: torch.Tensor | None = None,
    t_start: float | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Return samples from Euler-Maruyama predictor steps, each preceded by Langevin corrector steps."""
    x, t0 = _start(sde, shape, generator, device, x_init, t_start)
    ts = _times(t0, sde.eps, steps, x)
    for i in tqdm(range(steps), desc="predictor-corrector", disable=not progress, leave=False):
        t = ts[i].expand(x.shape[0])
        for _ in range(n_corrector):
            x = _corrector_step(score_fn, x, t, snr, generator)
        dt = ts[i + 1] - ts[i]
        f, g = sde.sde(x, t)
        mean = x + (f - _bcast(g**2, x) * score_fn(x, t)) * dt
        x = mean if i == steps - 1 else mean + _bcast(g, x) * torch.sqrt(-dt) * _noise(x, generator)
    return x


@torch.no_grad()
def annealed_langevin(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...],
    n_levels: int = 100,
    steps_per_level: int = 10,
    snr: float = 0.16,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    x_init: torch.Tensor | None = None,
    t_start: float | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Return samples of annealed Langevin dynamics (Song & Ermon 2019) down the SDE's noise levels.

    Each level t runs `steps_per_level` Langevin steps targeting p_t, the step set by `snr`;
    the chain ends at p_eps, the data distribution up to the smallest noise level. Unadjusted
    Langevin is biased by O(step): for a Gaussian the variance comes out about snr^2 too large in
    relative terms along the narrowest direction (2.6% at snr=0.16); lower snr (with more steps) to
    trade time for accuracy.
    """
    x, t0 = _start(sde, shape, generator, device, x_init, t_start)
    ts = _times(t0, sde.eps, n_levels - 1, x)
    for i in tqdm(range(n_levels), desc="annealed Langevin", disable=not progress, leave=False):
        t = ts[i].expand(x.shape[0])
        for _ in range(steps_per_level):
            x = _corrector_step(score_fn, x, t, snr, generator)
    return x


@torch.no_grad()
def ddim(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...],
    steps: int = 50,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    x_init: torch.Tensor | None = None,
    t_start: float | None = None,
    progress: bool = False,
    denoised_fn: DenoisedFn | None = None,
) -> torch.Tensor:
    """Return samples of DDIM (Song, Meng & Ermon 2021) along the SDE's Gaussian path.

    x_t' = alpha' x0_hat + sqrt(std'^2 - c^2) eps_hat + c z, with eps_hat = -std score(x_t, t),
    x0_hat = (x_t - std eps_hat) / alpha and c^2 = eta^2 std'^2 (std^2 - (alpha/alpha')^2 std'^2)
    / std^2 (eta = 0: deterministic; eta = 1: ancestral). The last step returns x0_hat. For a
    point-mass posterior (a solution operator) it is exact at any step count, where few uniform
    Euler/Heun steps of the probability-flow ODE are not.

    denoised_fn(x0_hat, t) -> x0', if given, replaces each denoised estimate before the step
    (e.g. a data-consistency or physics projection; Chung et al.'s decomposed diffusion sampling),
    while eps_hat stays the network's. The last step returns denoised_fn's output.
    """
    x, t0 = _start(sde, shape, generator, device, x_init, t_start)
    ts = _times(t0, sde.eps, steps, x)
    for i in tqdm(range(steps), desc="DDIM", disable=not progress, leave=False):
        t, t2 = ts[i].expand(x.shape[0]), ts[i + 1].expand(x.shape[0])
        a, s = _bcast(sde.alpha(t), x), _bcast(sde.std(t), x)
        a2, s2 = _bcast(sde.alpha(t2), x), _bcast(sde.std(t2), x)
        eps_hat = -s * score_fn(x, t)
        x0 = (x - s * eps_hat) / a
        if denoised_fn is not None:
            x0 = denoised_fn(x0, t)
        if i == steps - 1:
            return x0
        c = eta * s2 * torch.sqrt((s**2 - (a / a2) ** 2 * s2**2).clamp_min(0.0)) / s
        x = a2 * x0 + torch.sqrt((s2**2 - c**2).clamp_min(0.0)) * eps_hat
        if eta > 0:
            x = x + c * _noise(x, generator)
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "em": euler_maruyama,
    "ode": probability_flow_ode,
    "pc": predictor_corrector,
    "langevin": annealed_langevin,
    "ddim": ddim,
}
