"""General elliptic problems -div(a grad phi) = -rho, their classical solvers, and trust in an answer.

An `EllipticSystem` holds the sparse symmetric positive definite matrix A = -div(a grad .) on the
unknown nodes: the inner nodes of the N x N grid, optionally restricted to a mask (a
non-rectangular domain). Every other node is known: the ring carries the Dirichlet values g, nodes
outside the mask are held at 0. The same stencil as `solver.variable_coefficient_matrix` (face
coefficients are arithmetic means of the two nodes), so a = 1 and no mask is the 5-point Laplacian
of `solver.solve_poisson`.

Solvers: sparse direct (scipy, SuperLU), plain conjugate gradients, and algebraic multigrid
(pyamg smoothed aggregation) as a preconditioner of CG. The same multigrid hierarchy gives a
truth-free estimate of the error of any answer: e ~ A^-1 r by a few preconditioned CG steps on the
residual r = b - A x, so ||e|| / ||phi|| estimates the relative L2 error without the exact solution.
`refine_to_tolerance` runs multigrid-preconditioned CG from an answer (a surrogate's, for instance)
until that estimate meets a tolerance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from gensci.errors import ConfigError, DataError, ShapeError
from gensci.poisson.solver import check_grid, grid_spacing


def _stencil_matrix(a: np.ndarray) -> scipy.sparse.csr_matrix:
    """Return K = -div(a grad .) on all N^2 nodes (C order), face values by arithmetic mean."""
    n = a.shape[-1]
    h2 = grid_spacing(n) ** 2
    idx = np.arange(n * n).reshape(n, n)
    rows, cols, vals = [], [], []
    diag = np.zeros((n, n))
    ax = 0.5 * (a[1:, :] + a[:-1, :]) / h2  # face between (i, j) and (i+1, j): (N-1, N)
    ay = 0.5 * (a[:, 1:] + a[:, :-1]) / h2  # face between (i, j) and (i, j+1): (N, N-1)
    for (p, q), c in (((idx[:-1, :], idx[1:, :]), ax), ((idx[:, :-1], idx[:, 1:]), ay)):
        rows += [p.ravel(), q.ravel()]
        cols += [q.ravel(), p.ravel()]
        vals += [-c.ravel(), -c.ravel()]
    diag[:-1, :] += ax
    diag[1:, :] += ax
    diag[:, :-1] += ay
    diag[:, 1:] += ay
    rows.append(idx.ravel())
    cols.append(idx.ravel())
    vals.append(diag.ravel())
    return scipy.sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n * n, n * n)
    )


@dataclass
class EllipticSystem:
    """-div(a grad phi) = -rho on the unknown nodes; phi known (g on the ring, 0 off the mask).

    a: (N, N) positive coefficient (None: a = 1, the Laplacian); mask: (N, N) bool domain (None:
    the whole square). `unknown` lists the flat indices of the unknowns; `A` is their SPD matrix.
    """

    n: int
    a: np.ndarray | None = None
    mask: np.ndarray | None = None
    A: scipy.sparse.csr_matrix = field(init=False, repr=False)
    unknown: np.ndarray = field(init=False, repr=False)
    _coupling: scipy.sparse.csr_matrix = field(init=False, repr=False)
    _known: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = self.n
        if n < 3:
            raise ConfigError(f"a grid needs N >= 3 nodes per side; got {n}")
        a = np.ones((n, n)) if self.a is None else np.asarray(self.a, dtype=np.float64)
        check_grid(a, "a", n)
        if a.ndim != 2:
            raise ShapeError(f"the coefficient a must be one (N, N) field; got shape {a.shape}")
        if not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise DataError("the coefficient a must be finite and positive everywhere")
        inner = np.zeros((n, n), dtype=bool)
        inner[1:-1, 1:-1] = True
        if self.mask is not None:
            mask = np.asarray(self.mask)
            if mask.shape != (n, n):
                raise ShapeError(f"mask has shape {mask.shape}; expected ({n}, {n})")
            inner &= mask.astype(bool)
        if not inner.any():
            raise DataError("the mask leaves no unknown node inside the square")
        k = _stencil_matrix(a)
        self.unknown = np.flatnonzero(inner.ravel())
        self._known = np.flatnonzero(~inner.ravel())
        self.A = k[self.unknown][:, self.unknown].tocsr()
        self._coupling = k[self.unknown][:, self._known].tocsr()

    def rhs(self, rho: np.ndarray, boundary: np.ndarray | None = None) -> np.ndarray:
        """Return b: (n_unknown,) for rho: (N, N) and ring values boundary: (N, N) or None."""
        b = -np.asarray(rho, dtype=np.float64).ravel()[self.unknown]
        if boundary is not None:
            g = self.known_values(boundary)
            b = b - self._coupling @ g
        return b

    def known_values(self, boundary: np.ndarray | None) -> np.ndarray:
        """Return the values of the known nodes: the ring of `boundary`, 0 off the mask."""
        n = self.n
        g = np.zeros((n, n))
        if boundary is not None:
            ring = np.ones((n, n), dtype=bool)
            ring[1:-1, 1:-1] = False
            g[ring] = np.asarray(boundary, dtype=np.float64)[ring]
        return g.ravel()[self._known]

    def scatter(self, u: np.ndarray, boundary: np.ndarray | None = None) -> np.ndarray:
        """Return phi: (N, N) with the unknowns u and the known values around them."""
        phi = np.zeros(self.n * self.n)
        phi[self._known] = self.known_values(boundary)
        phi[self.unknown] = u
        return phi.reshape(self.n, self.n)

    def gather(self, phi: np.ndarray) -> np.ndarray:
        """Return the unknowns u: (n_unknown,) of a full answer phi: (N, N)."""
        phi = np.asarray(phi, dtype=np.float64)
        if phi.shape != (self.n, self.n):
            raise ShapeError(f"an answer must be ({self.n}, {self.n}); got {phi.shape}")
        return phi.ravel()[self.unknown]


def lognormal_coefficient(n: int, seed: int, sigma: float = 1.0, length_scale: float = 0.1
                          ) -> np.ndarray:
    """Return a: (N, N) = exp(sigma * GRF), a log-normal coefficient field (contrast ~ e^(4 sigma))."""
    from gensci.poisson.data import gaussian_random_field

    return np.exp(sigma * gaussian_random_field(1, n, length_scale, seed)[0])


def disk_with_hole(n: int) -> np.ndarray:
    """Return a (N, N) bool mask: an annulus-like domain (disk of radius 0.45 minus a square)."""
    x = np.linspace(0.0, 1.0, n)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    disk = (xx - 0.5) ** 2 + (yy - 0.5) ** 2 <= 0.45**2
    hole = (np.abs(xx - 0.6) <= 0.12) & (np.abs(yy - 0.45) <= 0.12)
    return disk & ~hole


# ----------------------------------------------------------------------------------------------
# Solvers


def amg_hierarchy(system: EllipticSystem) -> Any:
    """Return a pyamg smoothed-aggregation hierarchy for system.A (the set-up of every AMG call)."""
    try:
        import pyamg
    except ImportError as exc:  # pragma: no cover - pyamg is a core dependency
        raise ConfigError("algebraic multigrid needs pyamg: pip install pyamg") from exc
    return pyamg.smoothed_aggregation_solver(system.A, symmetry="hermitian", max_coarse=50)


def amg_pcg(ml: Any, b: np.ndarray, x0: np.ndarray | None = None, tol: float = 1e-10,
            maxiter: int = 200, callback: Any = None) -> np.ndarray:
    """Return x after CG preconditioned by one multigrid V-cycle (||b - A x|| <= tol ||b||)."""
    x, _ = scipy.sparse.linalg.cg(ml.levels[0].A, b, x0=x0, rtol=tol, atol=0.0, maxiter=maxiter,
                                  M=ml.aspreconditioner(cycle="V"), callback=callback)
    return np.asarray(x, dtype=np.float64)


def plain_cg(A: scipy.sparse.csr_matrix, b: np.ndarray, x0: np.ndarray | None = None,
             tol: float = 1e-10, maxiter: int | None = None, callback: Any = None) -> np.ndarray:
    """Return x after unpreconditioned conjugate gradients on A x = b."""
    x, _ = scipy.sparse.linalg.cg(A, b, x0=x0, rtol=tol, atol=0.0, maxiter=maxiter,
                                  callback=callback)
    return np.asarray(x, dtype=np.float64)


def direct_solve(A: scipy.sparse.csr_matrix, b: np.ndarray) -> np.ndarray:
    """Return A^-1 b by sparse LU (scipy SuperLU)."""
    return np.asarray(scipy.sparse.linalg.spsolve(A.tocsc(), b), dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# Trust: a truth-free error estimate, and refinement to a tolerance

ESTIMATE_ITERATIONS = 3  # preconditioned CG steps on A e = r: the estimate is within a few %


def estimate_error(system: EllipticSystem, ml: Any, b: np.ndarray, u: np.ndarray,
                   boundary: np.ndarray | None = None) -> float:
    """Return an estimate of ||phi - phi_exact|| / ||phi_exact|| for the answer with unknowns u.

    The error e = A^-1 (b - A u) is approximated by ESTIMATE_ITERATIONS multigrid-preconditioned
    CG steps from zero; no exact solution is needed. Norms are over all N^2 nodes (as
    `metrics.relative_l2`; the known nodes carry no error).
    """
    r = b - system.A @ u
    if not np.any(r):
        return 0.0
    e = amg_pcg(ml, r, tol=1e-30, maxiter=ESTIMATE_ITERATIONS)
    phi_est = system.scatter(u + e, boundary)
    return float(np.linalg.norm(e) / max(np.linalg.norm(phi_est), 1e-300))


@dataclass
class Refinement:
    """An answer refined until its estimated relative error met the tolerance."""

    u: np.ndarray  # the refined unknowns
    estimate_before: float
    estimate_after: float
    iterations: int  # preconditioned CG iterations spent
    seconds: float
    met: bool


def refine_to_tolerance(system: EllipticSystem, ml: Any, b: np.ndarray, u0: np.ndarray,
                        tol: float, boundary: np.ndarray | None = None, safety: float = 0.5,
                        max_rounds: int = 10) -> Refinement:
    """Run multigrid-preconditioned CG from u0 until the estimated relative error is <= tol.

    Each round asks CG for a residual reduction proportional to the estimated error reduction
    still needed (times `safety` < 1), then re-estimates: the answer is accurate to `tol`
    whatever it started from (u0 = 0 works too, it just takes longer).
    """
    if not 0 < tol < 1:
        raise ConfigError(f"the tolerance must be in (0, 1); got {tol}")
    t0 = time.perf_counter()
    u = np.asarray(u0, dtype=np.float64).copy()
    before = est = estimate_error(system, ml, b, u, boundary)
    bnorm = max(float(np.linalg.norm(b)), 1e-300)
    counter = [0]

    def count(_x: np.ndarray) -> None:
        counter[0] += 1

    for _ in range(max_rounds):
        if est <= tol:
            break
        rel = float(np.linalg.norm(b - system.A @ u)) / bnorm
        u = amg_pcg(ml, b, x0=u, tol=max(rel * safety * tol / est, 1e-14), maxiter=500,
                    callback=count)
        est = estimate_error(system, ml, b, u, boundary)
    iterations = counter[0]
    return Refinement(u, before, est, iterations, time.perf_counter() - t0, est <= tol)
