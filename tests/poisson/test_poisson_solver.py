"""Identities of the reference solvers: exactness, second-order convergence, boundary values."""

import numpy as np
import pytest

from gensci.errors import DataError, ShapeError
from gensci.poisson.data import node_grid
from gensci.poisson.solver import (
    apply_laplacian,
    apply_variable_coefficient,
    boundary_from_edges,
    harmonic_lift,
    poisson_cg,
    relative_residual,
    solve_poisson,
    solve_variable_coefficient,
    variable_coefficient_matrix,
)


def test_discrete_residual_at_machine_precision_with_nonzero_boundary():
    rng = np.random.default_rng(0)
    rho = rng.normal(size=(3, 32, 32))
    g = rng.normal(size=(3, 32, 32))
    phi = solve_poisson(rho, g)
    assert relative_residual(phi, rho).max() < 1e-12
    ring = np.concatenate([phi[:, 0] - g[:, 0], phi[:, -1] - g[:, -1],
                           phi[:, :, 0] - g[:, :, 0], phi[:, :, -1] - g[:, :, -1]], axis=1)
    assert np.abs(ring).max() == 0.0


def test_manufactured_solution_converges_at_second_order():
    errors = []
    for n in (17, 33, 65, 129):
        x, y = node_grid(n)
        u = np.sin(np.pi * x) * np.sinh(np.pi * y) / np.sinh(np.pi) + np.exp(x * y)
        f = (x**2 + y**2) * np.exp(x * y)  # the sinh term is harmonic
        errors.append(np.abs(solve_poisson(f, u) - u).max())
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(orders - 2.0) < 0.1), orders


def test_zero_boundary_sine_mode_is_exact_eigenfunction():
    n = 33
    x, y = node_grid(n)
    u = np.sin(2 * np.pi * x) * np.sin(3 * np.pi * y)
    lam = apply_laplacian(u)[1:-1, 1:-1] / u[1:-1, 1:-1].clip(1e-3)
    assert np.isfinite(lam).all()
    phi = solve_poisson(apply_laplacian(u))
    assert np.abs(phi - u).max() < 1e-12


def test_harmonic_lift_is_harmonic_and_linear_superposition_holds():
    rng = np.random.default_rng(1)
    rho, g = rng.normal(size=(2, 16, 16))
    lift = harmonic_lift(g)
    assert np.abs(apply_laplacian(lift)).max() < 1e-9
    assert np.allclose(solve_poisson(rho, g), solve_poisson(rho) + lift, atol=1e-12)


def test_variable_coefficient_reduces_to_laplacian_and_has_small_residual():
    rng = np.random.default_rng(2)
    rho, g = rng.normal(size=(2, 20, 20))
    assert np.allclose(solve_variable_coefficient(np.ones((20, 20)), rho, g), solve_poisson(rho, g))
    a = np.exp(0.5 * rng.normal(size=(20, 20)))
    mat = variable_coefficient_matrix(a)
    assert abs(mat - mat.T).max() < 1e-9  # symmetric, so CG applies to -A
    phi = solve_variable_coefficient(a, rho, g)
    res = apply_variable_coefficient(phi, a)[1:-1, 1:-1] - rho[1:-1, 1:-1]
    assert np.linalg.norm(res) / np.linalg.norm(rho[1:-1, 1:-1]) < 1e-12
    assert np.allclose(solve_variable_coefficient(a, rho, g, method="cg"), phi, atol=1e-8)


def test_cg_warm_start_from_a_close_guess_needs_fewer_iterations():
    rng = np.random.default_rng(3)
    rho = rng.normal(size=(32, 32))
    exact = solve_poisson(rho)
    cold = poisson_cg(rho, tol=1e-8)
    guess = exact + 1e-4 * np.abs(exact).max() * solve_poisson(rng.normal(size=(32, 32))) * 50
    warm = poisson_cg(rho, phi0=guess, tol=1e-8)
    assert cold.converged and warm.converged
    assert warm.history[-1] <= 1e-8 and cold.history[-1] <= 1e-8
    assert warm.iterations < cold.iterations
    assert np.abs(warm.x - exact).max() < 1e-6 * np.abs(exact).max()


def test_bad_inputs_get_clear_errors():
    with pytest.raises(ShapeError, match="square"):
        solve_poisson(np.zeros((8, 9)))
    with pytest.raises(DataError, match="NaN"):
        solve_poisson(np.full((8, 8), np.nan))
    with pytest.raises(ShapeError, match="grid"):
        solve_poisson(np.zeros((8, 8)), np.zeros((9, 9)))
    e = np.zeros(8)
    with pytest.raises(ShapeError, match="lengths"):
        boundary_from_edges(e, e, e, np.zeros(7))
    top = np.zeros(8)
    top[0] = 1.0
    with pytest.raises(DataError, match="corner"):
        boundary_from_edges(e, e, e, top)
    with pytest.raises(DataError, match="positive"):
        variable_coefficient_matrix(-np.ones((8, 8)))
