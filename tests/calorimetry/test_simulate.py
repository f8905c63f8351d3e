"""The truth simulator: its mean longitudinal profile is its gamma parametrisation, and its
correlations (layer energies, the profile parameters) are real."""

from __future__ import annotations

import numpy as np

from gensci.calorimetry.geometry import Geometry, Layer, get_geometry
from gensci.calorimetry.simulate import (
    SimulatorConfig,
    layer_fractions,
    profile_moments,
    simulate,
)


def _wide() -> Geometry:
    """Ten 2-X0 layers whose radial bins reach far enough to hold the whole shower."""
    edges = (0.0, 10.0, 100.0, 1e7)
    return Geometry("wide", tuple(Layer(i, edges, 2, (2.0 * i, 2.0 * (i + 1))) for i in range(10)),
                    moliere_radius=30.0, critical_energy=8.0, z=82.0)


def test_mean_longitudinal_profile_is_the_gamma_parametrisation() -> None:
    geo, energy = _wide(), 20_000.0
    sim = SimulatorConfig(noise=0.0, threshold=0.0, spot_energy=1.0)
    s = simulate(4000, geo, sim, seed=0, energies=np.full(4000, energy))
    per_layer = np.stack([s.showers[:, sl].sum(1) for sl in geo.layer_slices()], 1) / energy
    # the expectation of the gamma shares over the correlated log-normal (ln T, ln alpha), by
    # Gauss-Hermite quadrature: independent of the simulator's sampling
    mu_t, mu_a, s_t, s_a, rho = (float(v[0]) for v in profile_moments(np.array([energy]), 82.0,
                                                                     8.0))
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    z1, z2 = np.meshgrid(nodes, nodes, indexing="ij")
    w = np.outer(weights, weights).ravel() / (2 * np.pi)
    t = np.exp(mu_t + s_t * z1.ravel())
    a = np.exp(mu_a + s_a * (rho * z1.ravel() + np.sqrt(1 - rho**2) * z2.ravel()))
    expected = (w[:, None] * layer_fractions(t, a, geo)).sum(0)
    err = per_layer.std(0) / np.sqrt(len(per_layer))
    assert np.all(np.abs(per_layer.mean(0) - expected) < 4 * err + 1e-4), (
        per_layer.mean(0), expected)
    # and not the profile of the mean parameters alone (the fluctuations matter)
    at_mean = layer_fractions(np.array([np.exp(mu_t)]), np.array([np.exp(mu_a)]), geo)[0]
    assert (np.abs(per_layer.mean(0) - at_mean) / err).max() > 8


def test_layer_energies_and_profile_parameters_are_correlated() -> None:
    geo = get_geometry("ds1-photon")
    s = simulate(3000, geo, seed=1, energies=np.full(3000, 10_000.0))
    e = np.stack([s.showers[:, sl].sum(1) for sl in geo.layer_slices()], 1)
    c = np.corrcoef(e, rowvar=False)
    # an early shower fills layer 1 and leaves layer 2: a strong negative correlation at one energy
    assert c[1, 2] < -0.5
    rho = profile_moments(np.array([10_000.0]), geo.z, geo.critical_energy)[4][0]
    assert abs(np.corrcoef(s.log_t, s.log_alpha)[0, 1] - rho) < 0.05
    # without the per-shower fluctuations the layer correlation all but vanishes
    flat = simulate(3000, geo, SimulatorConfig(fluctuations=False), seed=1,
                    energies=np.full(3000, 10_000.0))
    e0 = np.stack([flat.showers[:, sl].sum(1) for sl in geo.layer_slices()], 1)
    assert abs(np.corrcoef(e0, rowvar=False)[1, 2]) < 0.5 * abs(c[1, 2])


def test_simulation_is_seeded_and_thresholded() -> None:
    geo = get_geometry("ds1-photon")
    a, b = simulate(50, geo, seed=3), simulate(50, geo, seed=3)
    assert np.array_equal(a.showers, b.showers) and a.showers.shape == (50, 368)
    nz = a.showers[a.showers > 0]
    assert nz.min() >= SimulatorConfig().threshold and (a.showers >= 0).all()
    assert not np.array_equal(a.showers, simulate(50, geo, seed=4).showers)
    assert get_geometry("ds2").n_voxels == 6480
