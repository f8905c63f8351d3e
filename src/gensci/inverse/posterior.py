"""Posterior sampling p(x | y) ~ p(y | x) p(x) for y = A x + noise, with a diffusion model as p(x).

Both samplers compose a score, prior + likelihood, and hand it to the core samplers
(gensci.models.samplers); nothing here integrates an SDE itself.

(a) `score_posterior`: the prior score plus the score of a Gaussian likelihood at the rescaled
    noisy state x_hat = x_t / alpha(t), whose error has variance (std / alpha)^2 per pixel; pushed
    through A it adds c (std / alpha)^2 to the measurement variance, c the mean squared row sum of
    A (Jalal et al. 2021 anneal the likelihood the same way):

        grad log p(y | x_t) ~ A^T (y - A x_hat) / (alpha (sigma_y^2 + c std^2 / alpha^2))

    The measured directions are far stiffer than the prior (||A||^2 / sigma_y^2 is ~1e4), so an
    explicit step of the reverse SDE along this score diverges. The likelihood part is therefore
    taken semi-implicitly (backward Euler): with h = g^2 dt the step the sampler takes along the
    score, the returned likelihood score is the one at the step's end point,
    d / h with (I + h A^T A / var) d = h A^T (y - A x_hat) / var, solved by a few CG iterations.
    As h -> 0 this is the explicit score; for any h the step is stable.
(b) `dps_posterior`: diffusion posterior sampling (Chung et al. 2023). The likelihood gradient is
    taken through Tweedie's denoiser, -zeta grad_{x_t} ||y - A x0_hat(x_t)||, one step of size zeta
    per reverse step (autograd through the network).
(c) `dds_posterior`: decomposed diffusion sampling (Chung, Lee & Ye 2024). Ancestral DDIM steps
    whose denoised estimate x0_hat is pulled towards the data by a few CG iterations on
    min ||A x - y||^2 + lam ||A||^2 ||x - x0_hat||^2 started at x0_hat: the Krylov iterates move
    x0_hat along the measured directions first, so the null space keeps the prior's content.
    No gradient through the network, so a step costs one network call.

Each sampler takes optional `weights` w, the inverse variance of each measurement (photon-count
data, gensci.inverse.noise): the likelihood becomes 1/2 sum w (A x - y)^2. (a) uses w in place
of 1 / sigma_y^2 per measurement; (b) and (c) weight their residual by w noise_std^2, which is 1
for Gaussian noise, so zeta and lam keep their meaning when noise_std is the effective std.

The model may work in its own intensity scale: u = scale * x + shift (e.g. u = 2x - 1 for images
in [0, 1]); `DiffusionPrior` carries that map, and results come back in image units x.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gensci.errors import ConfigError, check_finite
from gensci.inverse.nullspace import conjugate_gradient
from gensci.inverse.operators import LinearOperator
from gensci.models.diffusion import DiffusionModel
from gensci.models.samplers import SAMPLERS, ddim
from gensci.models.sde import _bcast


@dataclass
class DiffusionPrior:
    """A diffusion model over u = scale * x + shift, with x the image in physical units."""

    model: DiffusionModel
    scale: float = 2.0
    shift: float = -1.0

    def to_image(self, u: torch.Tensor) -> torch.Tensor:
        """Return x = (u - shift) / scale."""
        return (u - self.shift) / self.scale


@dataclass
class PosteriorResult:
    """K posterior samples (K, 1, H, W), their pixel-wise mean and std (1, 1, H, W), image units."""

    samples: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


def _summarise(samples: torch.Tensor) -> PosteriorResult:
    check_finite(samples, "posterior samples")
    k = samples.shape[0]
    std = samples.std(0, keepdim=True) if k > 1 else torch.zeros_like(samples[:1])
    return PosteriorResult(samples=samples, mean=samples.mean(0, keepdim=True), std=std)


def _check(
    op: LinearOperator,
    y: torch.Tensor,
    noise_std: float,
    n_samples: int,
    weights: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Check the inputs; return the weights (if any) on y's device and dtype."""
    op.check_output(y, "sinogram")
    if y.shape[0] != 1:
        raise ConfigError(f"sample the posterior of one sinogram at a time, got batch {y.shape[0]}")
    check_finite(y, "sinogram")
    if not noise_std > 0:
        raise ConfigError(f"noise_std={noise_std} must be > 0 (the likelihood's std)")
    if n_samples < 1:
        raise ConfigError(f"n_samples={n_samples} must be >= 1")
    if weights is None:
        return None
    from gensci.inverse.noise import check_weights

    check_weights(weights, y)
    return weights.to(y.device, y.dtype)


def score_posterior(
    prior: DiffusionPrior,
    op: LinearOperator,
    y: torch.Tensor,
    noise_std: float,
    n_samples: int = 8,
    sampler: str = "pc",
    steps: int = 300,
    cg_iterations: int = 10,
    generator: torch.Generator | None = None,
    progress: bool = False,
    weights: torch.Tensor | None = None,
    **sampler_kwargs: float,
) -> PosteriorResult:
    """Return K = n_samples posterior samples of x given y: (1, *out_shape), score-based sampler.

    `sampler` is one of the core samplers ('em', 'pc', 'langevin'); `steps` its step count (for
    'langevin': the number of noise levels). The likelihood score is taken at the end of the
    step (semi-implicit), solved by `cg_iterations` CG iterations. weights: (1, *out_shape), the
    inverse variance of each measurement (None: 1 / noise_std^2 everywhere).
    """
    wts = _check(op, y, noise_std, n_samples, weights)
    if sampler not in ("em", "pc", "langevin"):
        raise ConfigError(f"unknown sampler {sampler!r}; choose one of ['em', 'langevin', 'pc']")
    if steps < 1:
        raise ConfigError(f"steps={steps} must be >= 1")
    model, sde = prior.model, prior.model.sde
    yk = y.expand(n_samples, *y.shape[1:])
    # mean squared row norm of A = E (A e)_i^2 for white e of unit variance (Hutchinson, 4 probes)
    probes = torch.randn((4, *op.in_shape), generator=torch.Generator().manual_seed(0))
    gain_sq = float(op.forward(probes.to(y.device, y.dtype)).pow(2).mean())
    dt = (sde.T - sde.eps) / steps

    def score_fn(u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha = sde.alpha(t)
        std = sde.std(t)
        k = _bcast(1.0 / (alpha * prior.scale), u)  # d x_hat / d u
        var = noise_std**2 + gain_sq * (std / (alpha * prior.scale)) ** 2
        _, g = sde.sde(u, t)
        h = _bcast(g**2 * dt, u)  # the step the reverse SDE takes along the score
        w = h * k**2 / _bcast(var, u)  # curvature of the likelihood times the step
        residual = yk - op.forward(prior.to_image(u / _bcast(alpha, u)))
        if wts is None:
            rhs = h * k * op.adjoint(residual) / _bcast(var, u)
            # solve (I + w A^T A) d = rhs: the displacement whose end point the score uses
            d = conjugate_gradient(
                lambda v: v + w * op.normal(v), rhs, iterations=cg_iterations, tol=1e-4
            )
        else:
            # per measurement 1 / (1 / w_i + c std^2 / alpha^2): the precision of y_i given x_t
            blur = gain_sq * (std / (alpha * prior.scale)) ** 2
            prec = wts / (1.0 + wts * _bcast(blur, residual))
            hk2 = h * k**2
            rhs = h * k * op.adjoint(prec * residual)
            d = conjugate_gradient(
                lambda v: v + hk2 * op.adjoint(prec * op.forward(v)), rhs,
                iterations=cg_iterations, tol=1e-4,
            )
        return model.score(u, t) + d / h

    kwargs = dict(sampler_kwargs)
    kwargs["n_levels" if sampler == "langevin" else "steps"] = steps
    was_training = model.training
    model.eval()
    try:
        u = SAMPLERS[sampler](
            score_fn, sde, (n_samples, *op.in_shape), generator=generator, device=y.device,
            progress=progress, **kwargs,
        )
    finally:
        model.train(was_training)
    return _summarise(prior.to_image(u))


def dps_posterior(
    prior: DiffusionPrior,
    op: LinearOperator,
    y: torch.Tensor,
    noise_std: float,
    n_samples: int = 8,
    steps: int = 500,
    zeta: float = 1.0,
    op_norm: float | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    weights: torch.Tensor | None = None,
) -> PosteriorResult:
    """Return K = n_samples DPS samples of x given y: (1, *out_shape) (reverse SDE, Euler-Maruyama).

    Each reverse step moves x_t by -(zeta / ||A||) grad_{x_t} ||y - A x0_hat(x_t)||: Chung et al.'s
    step zeta_i = zeta' / ||y - A x0_hat|| on the squared residual, with zeta' = zeta / (2 ||A||)
    so that zeta is free of the operator's scale. noise_std is checked only, or, with weights
    (inverse variances), scales them: the residual is weighted by sqrt(w) noise_std.
    """
    wts = _check(op, y, noise_std, n_samples, weights)
    root_w = None if wts is None else (wts * noise_std**2).sqrt()
    if zeta <= 0:
        raise ConfigError(f"DPS step zeta={zeta} must be > 0")
    model, sde = prior.model, prior.model.sde
    step = zeta / (op_norm if op_norm is not None else op.norm())
    dt = (sde.T - sde.eps) / steps
    yk = y.expand(n_samples, *y.shape[1:])

    def score_fn(u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            u_req = u.detach().requires_grad_(True)
            alpha = _bcast(sde.alpha(t), u)
            std = _bcast(sde.std(t), u)
            eps = model.eps(u_req, t)
            x0_hat = prior.to_image((u_req - std * eps) / alpha)
            r = yk - op.forward(x0_hat)
            residual = (r if root_w is None else root_w * r).flatten(1).norm(dim=1)
            (grad,) = torch.autograd.grad(residual.sum(), u_req)
        _, g = sde.sde(u, t)
        # the EM step adds g^2 dt * score, so this term moves u by exactly -step * grad
        guidance = -step * grad / (_bcast(g, u) ** 2 * dt)
        return (-eps / std).detach() + guidance

    was_training = model.training
    model.eval()
    try:
        u = SAMPLERS["em"](
            score_fn, sde, (n_samples, *op.in_shape), steps=steps, generator=generator,
            device=y.device, progress=progress,
        )
    finally:
        model.train(was_training)
    return _summarise(prior.to_image(u))


def dds_posterior(
    prior: DiffusionPrior,
    op: LinearOperator,
    y: torch.Tensor,
    noise_std: float,
    n_samples: int = 8,
    steps: int = 50,
    eta: float = 1.0,
    cg_iterations: int = 5,
    lam: float = 0.01,
    final_consistency: bool = False,
    op_norm: float | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    weights: torch.Tensor | None = None,
) -> PosteriorResult:
    """Return K = n_samples DDS samples of x given y: (1, *out_shape).

    Each of `steps` DDIM steps (eta = 1: ancestral, 0: deterministic) replaces x0_hat by
    `cg_iterations` CG iterations from x0_hat on (A^T A + lam ||A||^2 I) x = A^T y +
    lam ||A||^2 x0_hat; the few iterations and lam keep the noise out (noise_std is checked only).
    final_consistency: also correct the last estimate (off: the answer is the prior's denoiser
    output, which the previous steps have already brought to the data; a single step is always
    corrected). weights (inverse variances): A^T A and A^T y become A^T V A and A^T V y with
    V = w noise_std^2 (1 for Gaussian noise).
    """
    wts = _check(op, y, noise_std, n_samples, weights)
    rel = None if wts is None else wts * noise_std**2
    if steps < 1 or cg_iterations < 1:
        raise ConfigError(f"steps={steps} and cg_iterations={cg_iterations} must be >= 1")
    if lam < 0 or not 0 <= eta <= 1:
        raise ConfigError(f"lam={lam} must be >= 0 and eta={eta} in [0, 1]")
    model, sde = prior.model, prior.model.sde
    ridge = lam * (op_norm if op_norm is not None else op.norm()) ** 2
    yk = y.expand(n_samples, *y.shape[1:])
    aty = op.adjoint(yk if rel is None else rel * yk)

    def normal(v: torch.Tensor) -> torch.Tensor:
        return op.normal(v) if rel is None else op.adjoint(rel * op.forward(v))

    last_t = float(sde.eps) + 1.5 * (sde.T - sde.eps) / steps  # the last step starts at eps + dt

    def consistent(u0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not final_consistency and steps > 1 and float(t[0]) < last_t:
            return u0
        x0 = prior.to_image(u0)
        x = conjugate_gradient(
            lambda v: normal(v) + ridge * v, aty + ridge * x0, x0=x0,
            iterations=cg_iterations, tol=1e-10,
        )
        return (x * prior.scale + prior.shift).to(u0.dtype)

    was_training = model.training
    model.eval()
    try:
        u = ddim(
            model.score, sde, (n_samples, *op.in_shape), steps=steps, eta=eta,
            generator=generator, device=y.device, progress=progress, denoised_fn=consistent,
        )
    finally:
        model.train(was_training)
    return _summarise(prior.to_image(u))
