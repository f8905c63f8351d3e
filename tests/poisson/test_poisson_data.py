"""Seeded rho families and dataset round trips."""

import numpy as np
import pytest

from gensci.errors import ConfigError, FormatError
from gensci.poisson.data import (
    FAMILIES,
    gaussian_random_field,
    make_dataset,
    read_dataset,
    sample_rho,
    write_dataset,
)
from gensci.poisson.solver import relative_residual


@pytest.mark.parametrize("family", FAMILIES)
def test_families_are_seeded_finite_and_distinct(family):
    a = sample_rho(family, 4, 24, seed=5)
    b = sample_rho(family, 4, 24, seed=5)
    c = sample_rho(family, 4, 24, seed=6)
    assert a.shape == (4, 24, 24) and np.isfinite(a).all()
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert a.std() > 0


def test_grf_length_scale_controls_correlation_and_std_is_one():
    def lag_corr(f, lag):
        return np.mean(f[:, :-lag] * f[:, lag:]) / np.mean(f**2)

    long = gaussian_random_field(64, 48, 0.2, seed=0)
    short = gaussian_random_field(64, 48, 0.04, seed=0)
    assert abs(long.std() - 1.0) < 0.15 and abs(short.std() - 1.0) < 0.1
    # covariance exp(-r^2 / 2 l^2) at r = 2h: about 0.99 for l = 0.2, 0.57 for l = 0.04
    assert lag_corr(long, 2) > 0.95 and lag_corr(short, 2) < 0.75


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_dataset_round_trip_keeps_pairs_and_parameters(tmp_path, suffix):
    ds = make_dataset(7, 16, seed=3)
    assert relative_residual(ds.phi, ds.rho).max() < 1e-12
    assert (np.abs(ds.boundary).sum(axis=(1, 2)) > 0).any()  # some non-zero boundaries
    path = write_dataset(ds, tmp_path / f"d{suffix}")
    back = read_dataset(path)
    for key in ("rho", "phi", "boundary"):
        assert np.array_equal(getattr(back, key), getattr(ds, key))
    assert list(back.family) == list(ds.family)
    assert back.params["seed"] == 3 and back.params["families"] == ["grf", "blobs", "shapes"]
    with pytest.raises(Exception, match="exists"):
        write_dataset(ds, path)


def test_bad_dataset_requests_and_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown rho family"):
        sample_rho("waves", 2, 16, seed=0)
    with pytest.raises(FormatError, match="suffix"):
        write_dataset(make_dataset(2, 8), tmp_path / "d.csv")
    bad = tmp_path / "bad.npz"
    np.savez(bad, rho=np.zeros((1, 8, 8)))
    with pytest.raises(FormatError, match="lacks"):
        read_dataset(bad)
