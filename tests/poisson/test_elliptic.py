"""General elliptic systems, their solvers, the truth-free error estimate and refinement."""

import numpy as np
import pytest

from gensci.errors import ConfigError, DataError, ShapeError
from gensci.poisson.data import make_dataset
from gensci.poisson.elliptic import (
    EllipticSystem,
    amg_hierarchy,
    amg_pcg,
    direct_solve,
    disk_with_hole,
    estimate_error,
    lognormal_coefficient,
    plain_cg,
    refine_to_tolerance,
)
from gensci.poisson.metrics import relative_l2
from gensci.poisson.solver import solve_variable_coefficient


@pytest.fixture(scope="module")
def data():
    return make_dataset(4, 33, ("grf", "points", "dipoles", "offset"), seed=2)


def test_unit_coefficient_is_the_sine_solver(data):
    s = EllipticSystem(33)
    assert abs(s.A - s.A.T).max() < 1e-9  # symmetric
    for rho, g, phi in zip(data.rho, data.boundary, data.phi, strict=True):
        u = direct_solve(s.A, s.rhs(rho, g))
        assert np.abs(s.scatter(u, g) - phi).max() < 1e-10


def test_variable_coefficient_matches_the_reference_matrix(data):
    a = lognormal_coefficient(33, seed=4)
    s = EllipticSystem(33, a=a)
    u = direct_solve(s.A, s.rhs(data.rho[0], data.boundary[0]))
    ref = solve_variable_coefficient(a, data.rho[0], data.boundary[0])
    assert np.abs(s.scatter(u, data.boundary[0]) - ref).max() < 1e-10


def test_masked_domain_keeps_the_outside_at_zero_and_solvers_agree(data):
    mask = disk_with_hole(33)
    s = EllipticSystem(33, a=lognormal_coefficient(33, seed=1), mask=mask)
    b = s.rhs(data.rho[0])
    exact = direct_solve(s.A, b)
    phi = s.scatter(exact)
    assert np.all(phi[~mask] == 0) and np.abs(phi[mask]).max() > 0
    for x in (amg_pcg(amg_hierarchy(s), b, tol=1e-10), plain_cg(s.A, b, tol=1e-10)):
        assert np.linalg.norm(x - exact) / np.linalg.norm(exact) < 1e-7


def test_error_estimate_needs_no_truth_and_refinement_meets_the_tolerance(data):
    s = EllipticSystem(33)
    ml = amg_hierarchy(s)
    rng = np.random.default_rng(0)
    for rho, g, phi in zip(data.rho, data.boundary, data.phi, strict=True):
        b = s.rhs(rho, g)
        exact = s.gather(phi)
        # a smooth wrong answer (what a surrogate gets wrong) and a rough one
        smooth = s.gather(phi * (1 + 0.2 * np.sin(np.pi * np.linspace(0, 1, 33)))[None, :])
        for u in (smooth, exact + 0.05 * np.abs(exact).max() * rng.standard_normal(exact.size)):
            true = relative_l2(s.scatter(u, g), phi)
            est = estimate_error(s, ml, b, u, g)
            assert 0.8 < est / true < 1.25, (est, true)
            r = refine_to_tolerance(s, ml, b, u, 1e-4, g)
            assert r.met and r.estimate_before == pytest.approx(est)
            assert relative_l2(s.scatter(r.u, g), phi) <= 1e-4


def test_bad_systems_are_refused():
    with pytest.raises(DataError, match="positive"):
        EllipticSystem(9, a=-np.ones((9, 9)))
    with pytest.raises(ShapeError, match="mask"):
        EllipticSystem(9, mask=np.ones((8, 8), dtype=bool))
    with pytest.raises(DataError, match="no unknown"):
        EllipticSystem(9, mask=np.zeros((9, 9), dtype=bool))
    s = EllipticSystem(9)
    with pytest.raises(ConfigError, match="tolerance"):
        refine_to_tolerance(s, amg_hierarchy(s), s.rhs(np.ones((9, 9))), np.zeros(49), 2.0)
