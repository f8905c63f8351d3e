"""Reference solvers for 2-D Poisson problems on the unit square with Dirichlet boundary values.

Grid convention (used everywhere in gensci.poisson): an N x N array holds the values at the nodes
x_i = i h, y_j = j h, i, j = 0 .. N-1, h = 1 / (N - 1); entry [i, j] is the node (x_i, y_j). The
outer ring of nodes is the boundary, the (N-2) x (N-2) inner nodes are the unknowns. A boundary
condition is an N x N array whose outer ring carries the prescribed values (its inner entries are
ignored). The discrete operator is the 5-point Laplacian

    (L phi)_ij = (phi_{i+1,j} + phi_{i-1,j} + phi_{i,j+1} + phi_{i,j-1} - 4 phi_ij) / h^2,

and `solve_poisson` returns the phi with L phi = rho at every inner node and phi = g on the ring,
exact to rounding (fast sine transform, the eigenbasis of L with zero Dirichlet values).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.sparse
import scipy.sparse.linalg
import torch

from gensci.errors import ConfigError, DataError, ShapeError, check_finite


def grid_spacing(n: int) -> float:
    """Return h = 1 / (N - 1), the node spacing of an N x N grid on the unit square."""
    return 1.0 / (n - 1)


def check_grid(arr: np.ndarray | torch.Tensor, name: str, n: int | None = None) -> int:
    """Return N after checking that `arr` is (..., N, N), square, N >= 3, finite."""
    shape = tuple(arr.shape)
    if len(shape) < 2:
        raise ShapeError(f"{name} must be (..., N, N); got shape {shape}")
    if shape[-1] != shape[-2]:
        raise ShapeError(f"{name} must be on a square N x N grid; got {shape[-2]} x {shape[-1]}")
    if shape[-1] < 3:
        raise ShapeError(f"{name} needs N >= 3 nodes per side; got N = {shape[-1]}")
    if n is not None and shape[-1] != n:
        raise ShapeError(f"{name} is on a {shape[-1]} x {shape[-1]} grid, expected {n} x {n}")
    check_finite(arr, name)
    return int(shape[-1])


def interior_mask(n: int) -> np.ndarray:
    """Return the (N, N) float mask that is 1 at inner nodes and 0 on the boundary ring."""
    m = np.zeros((n, n))
    m[1:-1, 1:-1] = 1.0
    return m


def boundary_from_edges(
    left: np.ndarray, right: np.ndarray, bottom: np.ndarray, top: np.ndarray
) -> np.ndarray:
    """Return the (N, N) boundary array carrying four edge profiles; refuse mismatched edges.

    left = g(0, y_j), right = g(1, y_j), bottom = g(x_i, 0), top = g(x_i, 1), each of length N.
    Edges that meet at a corner must agree there.
    """
    edges = {"left": left, "right": right, "bottom": bottom, "top": top}
    arrs = {k: np.asarray(v, dtype=np.float64) for k, v in edges.items()}
    for k, v in arrs.items():
        if v.ndim != 1:
            raise ShapeError(f"boundary edge {k!r} must be 1-D; got shape {v.shape}")
        check_finite(v, f"boundary edge {k!r}")
    lengths = {k: v.shape[0] for k, v in arrs.items()}
    if len(set(lengths.values())) != 1:
        raise ShapeError(f"boundary edges have different lengths {lengths}; all must be N")
    n = lengths["left"]
    corners = [
        ("left", 0, "bottom", 0),
        ("left", n - 1, "top", 0),
        ("right", 0, "bottom", n - 1),
        ("right", n - 1, "top", n - 1),
    ]
    for a, ia, b, ib in corners:
        if not np.isclose(arrs[a][ia], arrs[b][ib], rtol=1e-9, atol=1e-12):
            raise DataError(
                f"boundary edges {a!r} and {b!r} disagree at their shared corner: "
                f"{arrs[a][ia]!r} vs {arrs[b][ib]!r}"
            )
    g = np.zeros((n, n))
    g[0, :], g[-1, :] = arrs["left"], arrs["right"]
    g[:, 0], g[:, -1] = arrs["bottom"], arrs["top"]
    return g


def apply_laplacian(phi: np.ndarray) -> np.ndarray:
    """Return L phi: (..., N, N) with the 5-point Laplacian at inner nodes and 0 on the ring."""
    n = phi.shape[-1]
    h2 = grid_spacing(n) ** 2
    out = np.zeros_like(phi, dtype=np.result_type(phi.dtype, np.float64))
    c = phi[..., 1:-1, 1:-1]
    out[..., 1:-1, 1:-1] = (
        phi[..., 2:, 1:-1] + phi[..., :-2, 1:-1] + phi[..., 1:-1, 2:] + phi[..., 1:-1, :-2] - 4 * c
    ) / h2
    return out


def laplacian_torch(phi: torch.Tensor) -> torch.Tensor:
    """Return the 5-point Laplacian of phi: (..., N, N) -> (..., N-2, N-2) at inner nodes."""
    n = phi.shape[-1]
    h2 = grid_spacing(n) ** 2
    c = phi[..., 1:-1, 1:-1]
    return (
        phi[..., 2:, 1:-1] + phi[..., :-2, 1:-1] + phi[..., 1:-1, 2:] + phi[..., 1:-1, :-2] - 4 * c
    ) / h2


def _sine_eigenvalues(n: int) -> np.ndarray:
    """Return the (N-2, N-2) eigenvalues of the zero-Dirichlet 5-point Laplacian (all < 0)."""
    m = n - 2
    h = grid_spacing(n)
    k = np.arange(1, m + 1)
    lam1 = -4.0 / h**2 * np.sin(np.pi * k / (2 * (m + 1))) ** 2
    return lam1[:, None] + lam1[None, :]


def boundary_rhs(boundary: np.ndarray) -> np.ndarray:
    """Return the (..., N-2, N-2) sum of ring neighbours / h^2 that L sees at inner nodes."""
    n = boundary.shape[-1]
    h2 = grid_spacing(n) ** 2
    g = np.zeros_like(boundary, dtype=np.float64)
    g[..., 0, :], g[..., -1, :] = boundary[..., 0, :], boundary[..., -1, :]
    g[..., :, 0], g[..., :, -1] = boundary[..., :, 0], boundary[..., :, -1]
    out = np.zeros(boundary.shape[:-2] + (n - 2, n - 2))
    out[..., 0, :] += g[..., 0, 1:-1]
    out[..., -1, :] += g[..., -1, 1:-1]
    out[..., :, 0] += g[..., 1:-1, 0]
    out[..., :, -1] += g[..., 1:-1, -1]
    return out / h2


def solve_poisson(
    rho: np.ndarray, boundary: np.ndarray | None = None, workers: int | None = None
) -> np.ndarray:
    """Return phi: (..., N, N) with L phi = rho at inner nodes and phi = boundary on the ring.

    rho: (..., N, N) (its ring entries are not used); boundary: (..., N, N) or None (zero values).
    Exact for the 5-point Laplacian up to rounding: a type-I discrete sine transform diagonalises
    L with zero Dirichlet values, and non-zero values move to the right-hand side.
    """
    rho = np.asarray(rho, dtype=np.float64)
    n = check_grid(rho, "rho")
    f = rho[..., 1:-1, 1:-1].copy()
    if boundary is not None:
        boundary = np.asarray(boundary, dtype=np.float64)
        check_grid(boundary, "boundary", n)
        if boundary.shape != rho.shape and boundary.shape != rho.shape[-2:]:
            raise ShapeError(
                f"boundary has shape {boundary.shape}; expected {rho.shape} or {rho.shape[-2:]}"
            )
        f = f - boundary_rhs(boundary)
    fh = scipy.fft.dstn(f, type=1, axes=(-2, -1), workers=workers)
    uh = fh / _sine_eigenvalues(n)
    u = scipy.fft.idstn(uh, type=1, axes=(-2, -1), workers=workers)
    phi = np.zeros(np.broadcast_shapes(rho.shape, (n, n)))
    if boundary is not None:
        phi = phi + boundary
        phi[..., 1:-1, 1:-1] = 0.0
    phi[..., 1:-1, 1:-1] = u
    return phi


def harmonic_lift(boundary: np.ndarray) -> np.ndarray:
    """Return the discrete harmonic field (L phi = 0 inside) with the given ring values."""
    boundary = np.asarray(boundary, dtype=np.float64)
    check_grid(boundary, "boundary")
    return solve_poisson(np.zeros_like(boundary), boundary)


def relative_residual(phi: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Return ||L phi - rho|| / ||rho|| over inner nodes, one value per field: (...,)."""
    res = apply_laplacian(phi)[..., 1:-1, 1:-1] - rho[..., 1:-1, 1:-1]
    num = np.sqrt((res**2).sum(axis=(-2, -1)))
    den = np.sqrt((rho[..., 1:-1, 1:-1] ** 2).sum(axis=(-2, -1)))
    return num / np.maximum(den, 1e-300)


def residual_map(phi: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Return (..., N, N): L phi - rho at inner nodes, 0 on the ring."""
    res = apply_laplacian(phi) - rho
    res[..., 0, :] = res[..., -1, :] = 0.0
    res[..., :, 0] = res[..., :, -1] = 0.0
    return res


# ----------------------------------------------------------------------------------------------
# Variable coefficients: div(a grad phi) = rho


def variable_coefficient_matrix(a: np.ndarray) -> scipy.sparse.csr_matrix:
    """Return the sparse ((N-2)^2, (N-2)^2) matrix of div(a grad .) on inner nodes, zero ring.

    a: (N, N) positive coefficient at nodes; face values are arithmetic means of the two nodes,
    so a = 1 gives the 5-point Laplacian. Rows are inner nodes in C order of [i, j].
    """
    n = check_grid(a, "a")
    if a.ndim != 2:
        raise ShapeError(f"a must be one (N, N) field; got shape {a.shape}")
    if np.any(a <= 0):
        raise DataError(f"coefficient a must be positive; its minimum is {float(a.min())!r}")
    h2 = grid_spacing(n) ** 2
    m = n - 2
    ax = 0.5 * (a[1:, :] + a[:-1, :])  # face (i+1/2, j): (N-1, N)
    ay = 0.5 * (a[:, 1:] + a[:, :-1])  # face (i, j+1/2): (N, N-1)
    idx = np.arange(m * m).reshape(m, m)
    e = ax[1:, 1:-1]  # east face of inner node (i, j): between i and i+1
    w = ax[:-1, 1:-1]
    nn = ay[1:-1, 1:]
    s = ay[1:-1, :-1]
    diag = -(e + w + nn + s) / h2
    rows = [idx.ravel()]
    cols = [idx.ravel()]
    vals = [diag.ravel()]
    for shift, coef in (((1, 0), e), ((-1, 0), w), ((0, 1), nn), ((0, -1), s)):
        di, dj = shift
        ii, jj = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
        ti, tj = ii + di, jj + dj
        ok = (ti >= 0) & (ti < m) & (tj >= 0) & (tj < m)
        rows.append(idx[ii[ok], jj[ok]])
        cols.append(idx[ti[ok], tj[ok]])
        vals.append((coef / h2)[ok])
    return scipy.sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m * m, m * m)
    )


def variable_coefficient_rhs(
    a: np.ndarray, rho: np.ndarray, boundary: np.ndarray | None
) -> np.ndarray:
    """Return the ((N-2)^2,) right-hand side rho - (ring terms of div(a grad g)) at inner nodes."""
    n = a.shape[-1]
    f = rho[1:-1, 1:-1].astype(np.float64).copy()
    if boundary is not None:
        h2 = grid_spacing(n) ** 2
        ax = 0.5 * (a[1:, :] + a[:-1, :])
        ay = 0.5 * (a[:, 1:] + a[:, :-1])
        f[0, :] -= ax[0, 1:-1] * boundary[0, 1:-1] / h2
        f[-1, :] -= ax[-1, 1:-1] * boundary[-1, 1:-1] / h2
        f[:, 0] -= ay[1:-1, 0] * boundary[1:-1, 0] / h2
        f[:, -1] -= ay[1:-1, -1] * boundary[1:-1, -1] / h2
    return f.ravel()


def apply_variable_coefficient(phi: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Return div(a grad phi): (N, N) at inner nodes, 0 on the ring (same stencil as the matrix)."""
    n = phi.shape[-1]
    h2 = grid_spacing(n) ** 2
    ax = 0.5 * (a[1:, :] + a[:-1, :])
    ay = 0.5 * (a[:, 1:] + a[:, :-1])
    fx = ax * (phi[1:, :] - phi[:-1, :])  # (N-1, N)
    fy = ay * (phi[:, 1:] - phi[:, :-1])  # (N, N-1)
    out = np.zeros_like(phi, dtype=np.float64)
    out[1:-1, 1:-1] = (fx[1:, 1:-1] - fx[:-1, 1:-1] + fy[1:-1, 1:] - fy[1:-1, :-1]) / h2
    return out


def solve_variable_coefficient(
    a: np.ndarray, rho: np.ndarray, boundary: np.ndarray | None = None, method: str = "direct"
) -> np.ndarray:
    """Return phi: (N, N) with div(a grad phi) = rho inside and phi = boundary on the ring.

    method: "direct" (sparse LU, scipy spsolve) or "cg" (conjugate gradients to 1e-10).
    """
    n = check_grid(a, "a")
    check_grid(rho, "rho", n)
    if rho.ndim != 2:
        raise ShapeError(f"rho must be one (N, N) field here; got shape {rho.shape}")
    if boundary is not None:
        check_grid(boundary, "boundary", n)
    mat = variable_coefficient_matrix(a)
    b = variable_coefficient_rhs(a, rho, boundary)
    if method == "direct":
        u = scipy.sparse.linalg.spsolve(mat.tocsc(), b)
    elif method == "cg":
        result = conjugate_gradient(lambda v: -(mat @ v), -b, tol=1e-10, maxiter=20 * n * n)
        u = result.x
    else:
        raise ConfigError(f"unknown method {method!r}; choose 'direct' or 'cg'")
    phi = np.zeros((n, n))
    if boundary is not None:
        phi[:] = boundary
    phi[1:-1, 1:-1] = u.reshape(n - 2, n - 2)
    return phi


# ----------------------------------------------------------------------------------------------
# Conjugate gradients with a warm start


@dataclass
class CGResult:
    """Solution, iterations used, and the relative residual ||b - A x|| / ||b|| after each one."""

    x: np.ndarray
    iterations: int
    converged: bool
    history: list[float]


def conjugate_gradient(
    apply_a: Callable[[np.ndarray], np.ndarray],
    b: np.ndarray,
    x0: np.ndarray | None = None,
    tol: float = 1e-8,
    maxiter: int = 10_000,
) -> CGResult:
    """Return the CG solution of A x = b (A symmetric positive definite), from x0 (zero if None).

    Stops when ||b - A x|| / ||b|| <= tol; the residual is recomputed exactly every 50 steps so
    that the reported count is honest in floating point.
    """
    b = np.asarray(b, dtype=np.float64)
    bnorm = float(np.linalg.norm(b))
    if bnorm == 0.0:
        return CGResult(np.zeros_like(b), 0, True, [0.0])
    x = np.zeros_like(b) if x0 is None else np.asarray(x0, dtype=np.float64).copy()
    if x.shape != b.shape:
        raise ShapeError(f"x0 has shape {x.shape}, expected {b.shape}")
    r = b - apply_a(x)
    p = r.copy()
    rr = float(r.ravel() @ r.ravel())
    history = [np.sqrt(rr) / bnorm]
    it = 0
    while history[-1] > tol and it < maxiter:
        ap = apply_a(p)
        alpha = rr / float(p.ravel() @ ap.ravel())
        x += alpha * p
        it += 1
        if it % 50 == 0:
            r = b - apply_a(x)
        else:
            r -= alpha * ap
        rr_new = float(r.ravel() @ r.ravel())
        p = r + (rr_new / rr) * p
        rr = rr_new
        history.append(np.sqrt(rr) / bnorm)
    # Confirm with the true residual.
    true = float(np.linalg.norm(b - apply_a(x))) / bnorm
    history[-1] = true
    return CGResult(x, it, true <= tol, history)


def poisson_cg(
    rho: np.ndarray,
    boundary: np.ndarray | None = None,
    phi0: np.ndarray | None = None,
    tol: float = 1e-8,
    maxiter: int = 10_000,
) -> CGResult:
    """Return CG on -L u = -(rho - ring terms) for one (N, N) problem, warm-started from phi0.

    The returned `x` is the full (N, N) phi (ring = boundary values); `history` is the relative
    residual ||L phi - rho|| / ||rho - ring terms|| over inner nodes.
    """
    rho = np.asarray(rho, dtype=np.float64)
    n = check_grid(rho, "rho")
    if rho.ndim != 2:
        raise ShapeError(f"rho must be one (N, N) field here; got shape {rho.shape}")
    f = rho[1:-1, 1:-1].copy()
    if boundary is not None:
        check_grid(boundary, "boundary", n)
        f -= boundary_rhs(boundary)
    h2 = grid_spacing(n) ** 2

    def neg_lap(u: np.ndarray) -> np.ndarray:
        p = np.pad(u, 1)
        return -(p[2:, 1:-1] + p[:-2, 1:-1] + p[1:-1, 2:] + p[1:-1, :-2] - 4 * u) / h2

    x0 = None
    if phi0 is not None:
        check_grid(phi0, "phi0", n)
        x0 = np.asarray(phi0, dtype=np.float64)[1:-1, 1:-1]
    result = conjugate_gradient(neg_lap, -f, x0=x0, tol=tol, maxiter=maxiter)
    phi = np.zeros((n, n)) if boundary is None else np.array(boundary, dtype=np.float64)
    phi[1:-1, 1:-1] = result.x
    result.x = phi
    return result
