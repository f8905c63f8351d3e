"""Classical estimators of (A, k, r0, D): weak-form generator regression and the trajectory oracle.

Both use that the drift is linear in (A, k) for fixed r0 (gensci.dynamics.physics), solve a linear
least-squares problem at each r0 and profile r0 by a grid and a golden-section refinement.

Weak form (no score, no tracking): for test functions psi,
    d/dt E[psi] = E[f . grad psi + D lap psi],
integrated over each interval between snapshots by the trapezoid rule:
    E_{k+1}[psi] - E_k[psi] = (t_{k+1} - t_k) (E_k[L psi] + E_{k+1}[L psi]) / 2.
Trajectory oracle (tracked data): the Euler-Maruyama likelihood of the frame-to-frame steps,
    x_{f+1} - x_f ~ N(f(x_f) dt, 2 D dt I),
maximised over (A, k) by least squares and over D in closed form.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from gensci.dynamics.io import Snapshots
from gensci.dynamics.physics import DefectParams, drift_basis, min_image, pair_geometry
from gensci.errors import DataError

PARAMS = ("A", "k", "r0", "D")


@dataclass
class ParamFit:
    """Estimated parameters with bootstrap intervals, the relative residual and the model class."""

    method: str
    model: str
    values: dict[str, float]
    residual: float  # relative: |residual| / |target|
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method, "model": self.model, "values": self.values,
            "residual": self.residual,
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "seconds": self.seconds, "extra": self.extra,
        }


def profile_r0(
    solve: Callable[[float], tuple[np.ndarray, float]],
    lo: float,
    hi: float,
    grid: int = 13,
    refine: int = 14,
) -> tuple[float, np.ndarray, float]:
    """Return (r0, theta, loss) minimising solve(r0) -> (theta, loss) over [lo, hi].

    A log-spaced grid, then golden-section search in the bracket around the best grid point.
    """
    rs = np.geomspace(lo, hi, grid)
    losses = [solve(float(r))[1] for r in rs]
    i = int(np.nanargmin(losses))
    a, b = math.log(rs[max(i - 1, 0)]), math.log(rs[min(i + 1, grid - 1)])
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = solve(math.exp(c))[1], solve(math.exp(d))[1]
    for _ in range(refine):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = solve(math.exp(c))[1]
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = solve(math.exp(d))[1]
    best = [(losses[i], float(rs[i])), (fc, math.exp(c)), (fd, math.exp(d))]
    loss, r0 = min(best)
    theta, loss = solve(r0)
    return r0, theta, loss


def lstsq(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Return (theta, residual sum of squares) of min |X theta - y|^2."""
    theta, *_ = np.linalg.lstsq(X, y, rcond=None)
    return theta, float(np.sum((X @ theta - y) ** 2))


def _values(names: list[str], theta: np.ndarray, r0: float | None, D: float) -> dict[str, float]:
    out = {n: float(v) for n, v in zip(names, theta, strict=True)}
    out.setdefault("A", 0.0)
    out.setdefault("k", 0.0)
    out["r0"] = float("nan") if r0 is None else r0
    out["D"] = D
    return out


def intervals(draws: list[dict[str, float]], level: float = 0.9) -> dict[str, tuple[float, float]]:
    """Return percentile intervals of each parameter over bootstrap draws (none with no spread)."""
    out: dict[str, tuple[float, float]] = {}
    if len(draws) < 2:
        return out
    q = (1 - level) / 2
    for k in draws[0]:
        v = np.array([d[k] for d in draws], dtype=float)
        v = v[np.isfinite(v)]
        if v.size >= 2 and np.ptp(v) > 0:
            out[k] = (float(np.quantile(v, q)), float(np.quantile(v, 1 - q)))
    return out


# -- weak form ------------------------------------------------------------------------------------
def _bump(r: torch.Tensor, c: float, w: float) -> tuple[torch.Tensor, ...]:
    """Return b, b', b'' of b(r) = exp(-(r - c)^2 / (2 w^2))."""
    z = (r - c) / w
    b = torch.exp(-0.5 * z * z)
    return b, -z / w * b, (z * z - 1) / (w * w) * b


@dataclass
class TestFunctions:
    """Per-snapshot moments: E[psi] (T, P), E[grad psi . g_j] per basis, E[lap psi] (T, P)."""

    mean: np.ndarray
    lap: np.ndarray
    grads: list[torch.Tensor]  # per snapshot: grad psi (M, P, n)
    scale: np.ndarray  # (P,) sqrt E |grad psi|^2


def test_functions(s: Snapshots, p: DefectParams, pair_bumps: int = 12) -> TestFunctions:
    """Return the moments of the test-function family on every snapshot.

    Family (permutation-symmetric and periodic): sum_i cos / sin(2 pi m x_ic / L) for
    m = 1 .. 2 L / a, and sum_{i<j} b_c(r_ij) for Gaussian bumps b_c centred on (0, L / 2).
    """
    box = s.box
    modes = max(2, int(round(2 * box / p.a)))
    centres = np.linspace(0.1, box / 2 - 0.6, pair_bumps) if pair_bumps else np.zeros(0)
    width = (centres[1] - centres[0]) if pair_bumps > 1 else 0.3
    means, laps, grads = [], [], []
    for x_np in s.positions:
        x = torch.as_tensor(x_np, dtype=torch.float64)
        m, n, d = x.shape
        ks = 2 * math.pi * torch.arange(1, modes + 1, dtype=torch.float64) / box
        ph = x.unsqueeze(-1) * ks  # (M, N, d, K)
        psi = [torch.cos(ph).sum((1, 2)), torch.sin(ph).sum((1, 2))]  # (M, K) each
        g = [(-ks * torch.sin(ph)).reshape(m, n * d, modes).transpose(1, 2),
             (ks * torch.cos(ph)).reshape(m, n * d, modes).transpose(1, 2)]
        lap = [(-(ks**2) * torch.cos(ph)).sum((1, 2)), (-(ks**2) * torch.sin(ph)).sum((1, 2))]
        delta, r, off = pair_geometry(x, box)
        offf = off.to(x.dtype)
        for c in centres:
            b, b1, b2 = _bump(r, float(c), width)
            psi.append((0.5 * b * offf).sum((1, 2)).unsqueeze(-1))
            gr = ((b1 / r * offf).unsqueeze(-1) * delta).sum(2).reshape(m, 1, n * d)
            g.append(gr)
            lap.append((0.5 * 2 * (b2 + (d - 1) * b1 / r) * offf).sum((1, 2)).unsqueeze(-1))
        means.append(torch.cat(psi, -1).mean(0).numpy())
        laps.append(torch.cat(lap, -1).mean(0).numpy())
        grads.append(torch.cat(g, 1))  # (M, P, n)
    allg = torch.cat(grads, 0)
    scale = allg.pow(2).sum(-1).mean(0).sqrt().numpy() + 1e-12
    return TestFunctions(np.array(means), np.array(laps), grads, scale)


def weak_form_fit(
    s: Snapshots,
    p: DefectParams,
    model: str = "full",
    r0_range: tuple[float, float] = (0.15, 2.0),
    n_bootstrap: int = 0,
    seed: int = 0,
) -> ParamFit:
    """Return (A, k, r0, D) from snapshots by weak-form generator regression.

    p supplies what is known (box, a, gamma); A, k, r0, kT in it are not used.
    """
    import time

    if len(s.times) < 2:
        raise DataError(
            f"the weak form needs snapshots at two or more times to see d/dt E[psi]; got "
            f"{len(s.times)}"
        )
    start = time.perf_counter()
    fit = _weak_form_once(s, p, model, r0_range)
    draws = []
    rng = np.random.default_rng(seed)
    for _ in range(n_bootstrap):
        pos = [x[rng.integers(0, len(x), len(x))] for x in s.positions]
        boot = Snapshots(s.times, pos, s.box, s.meta)
        draws.append(_weak_form_once(boot, p, model, r0_range).values)
    fit.intervals = intervals(draws)
    fit.seconds = time.perf_counter() - start
    return fit


def _weak_form_once(
    s: Snapshots, p: DefectParams, model: str, r0_range: tuple[float, float]
) -> ParamFit:
    tf = test_functions(s, p)
    dt = np.diff(s.times)
    lhs = (tf.mean[1:] - tf.mean[:-1]) / tf.scale  # (T-1, P)
    lap = tf.lap / tf.scale  # (T, P)

    def columns(r0: float) -> tuple[list[str], np.ndarray]:
        names, cols = None, []
        for x_np, gpsi in zip(s.positions, tf.grads, strict=True):
            x = torch.as_tensor(x_np, dtype=torch.float64)
            nm, fields = drift_basis(x, p, r0, model)
            names = nm
            cols.append(
                np.stack([torch.einsum("mpn,mn->p", gpsi, f.reshape(len(x), -1)).numpy()
                          / len(x) for f in fields], -1) / tf.scale[:, None]
            )
        c = np.array(cols)  # (T, P, J)
        trap = 0.5 * (c[1:] + c[:-1]) * dt[:, None, None]
        lap_trap = 0.5 * (lap[1:] + lap[:-1]) * dt[:, None]
        X = np.concatenate([trap, lap_trap[..., None]], -1).reshape(-1, c.shape[-1] + 1)
        return names or [], X

    y = lhs.reshape(-1)

    def solve(r0: float) -> tuple[np.ndarray, float]:
        return lstsq(columns(r0)[1], y)

    if model == "no_pair":
        r0 = None
        theta, rss = solve(1.0)
    else:
        r0, theta, rss = profile_r0(solve, *r0_range)
    names, _ = columns(r0 or 1.0)
    values = _values(names, theta[:-1], r0, float(theta[-1]))
    return ParamFit("weak_form", model, values, math.sqrt(rss / max(np.sum(y**2), 1e-300)))


# -- trajectory oracle ---------------------------------------------------------------------------
def oracle_fit(
    s: Snapshots,
    p: DefectParams,
    model: str = "full",
    r0_range: tuple[float, float] = (0.15, 2.0),
    n_bootstrap: int = 0,
    seed: int = 0,
    n_tracks: int | None = None,
    frame_times: np.ndarray | None = None,
) -> ParamFit:
    """Return (A, k, r0, D) by the Euler-Maruyama likelihood of tracked trajectories.

    n_tracks: use the first n tracks; frame_times: use only these frames (e.g. the snapshot
    times, to give the oracle the same observation times as the snapshots).
    """
    import time

    if s.tracks is None or s.frame_times is None:
        raise DataError("the trajectory oracle needs tracked trajectories (simulate --track)")
    start = time.perf_counter()
    tracks, ft = s.tracks[:n_tracks], s.frame_times
    if frame_times is not None:
        keep = [int(np.argmin(np.abs(ft - t))) for t in frame_times]
        tracks, ft = tracks[:, keep], ft[keep]
    if tracks.shape[1] < 2:
        raise DataError("the trajectory oracle needs two or more frames")
    fit = _oracle_once(tracks, ft, s.box, p, model, r0_range)
    rng = np.random.default_rng(seed)
    draws = [
        _oracle_once(tracks[rng.integers(0, len(tracks), len(tracks))], ft, s.box, p, model,
                     r0_range).values
        for _ in range(n_bootstrap)
    ]
    fit.intervals = intervals(draws)
    fit.seconds = time.perf_counter() - start
    return fit


def _oracle_once(
    tracks: np.ndarray, ft: np.ndarray, box: float, p: DefectParams, model: str,
    r0_range: tuple[float, float],
) -> ParamFit:
    x = torch.as_tensor(tracks, dtype=torch.float64)  # (M, F, N, d)
    m, f, n, d = x.shape
    dt = torch.as_tensor(np.diff(ft), dtype=torch.float64).reshape(1, f - 1, 1, 1)
    step = min_image(x[:, 1:] - x[:, :-1], box) / dt.sqrt()  # (M, F-1, N, d)
    y = step.reshape(-1).numpy()
    start = x[:, :-1].reshape(-1, n, d)
    sq = dt.sqrt().expand(m, f - 1, 1, 1).reshape(-1, 1, 1)

    def design(r0: float) -> tuple[list[str], np.ndarray]:
        names, fields = drift_basis(start, p, r0, model)
        return names, np.stack([(g * sq).reshape(-1).numpy() for g in fields], -1)

    def solve(r0: float) -> tuple[np.ndarray, float]:
        return lstsq(design(r0)[1], y)

    if model == "no_pair":
        r0 = None
        theta, rss = solve(1.0)
    else:
        r0, theta, rss = profile_r0(solve, *r0_range)
    names, _ = design(r0 or 1.0)
    D = rss / (2 * y.size)
    return ParamFit("oracle", model, _values(names, theta, r0, D),
                    math.sqrt(rss / max(float(np.sum(y**2)), 1e-300)))
