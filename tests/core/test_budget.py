"""Size ceilings: units, the limits and their overrides, the messages, and how estimates scale."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from gensci import budget
from gensci.errors import ConfigError, ResourceError


@pytest.fixture(autouse=True)
def _no_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(budget.MEMORY_ENV, raising=False)
    monkeypatch.delenv(budget.TIME_ENV, raising=False)


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [("2000000", 2_000_000), ("2G", 2 * 10**9), ("512 MB", 512 * 10**6), ("1.5GiB", 3 * 2**29),
     ("64k", 64_000), ("1e3", 1000), ("3tb", 3 * 10**12)],
)
def test_parse_size(text: str, nbytes: int) -> None:
    assert budget.parse_size(text) == nbytes


@pytest.mark.parametrize("text", ["", "lots", "2 G B", "-1G", "2X"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ResourceError, match="is not a number of bytes"):
        budget.parse_size(text)


@pytest.mark.parametrize(
    ("nbytes", "text"),
    [(4.3e12, "4.3 TB"), (21e9, "21 GB"), (2.04e9, "2 GB"), (640e3, "640 kB"), (999, "999 bytes"),
     (1.2e15, "1.2 PB"), (3e19, "30 EB"), (4.5e24, "4.5e+24 bytes")],
)
def test_format_size(nbytes: float, text: str) -> None:
    assert budget.format_size(nbytes) == text


def test_durations() -> None:
    assert budget.parse_duration("90") == 90.0
    assert budget.parse_duration("12h") == 12 * 3600.0
    assert budget.parse_duration("7d") == 7 * 86400.0
    assert budget.format_duration(14 * 86400) == "14 days"
    assert budget.format_duration(3.5 * 3600) == "3.5 hours"
    assert budget.format_duration(40) == "40 s"
    with pytest.raises(ResourceError):
        budget.parse_duration("soon")


def test_available_memory_reads_the_machine_or_the_override(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert budget.available_memory() > 10**7
    assert budget.host_memory() > 10**7
    monkeypatch.setenv(budget.MEMORY_ENV, "2G")
    assert budget.available_memory() == 2 * 10**9
    monkeypatch.setenv(budget.MEMORY_ENV, "12345")
    assert budget.available_memory() == 12345
    monkeypatch.setenv(budget.MEMORY_ENV, "plenty")
    with pytest.raises(ResourceError, match="GENSCI_MEMORY_LIMIT='plenty' is not a number"):
        budget.available_memory()
    monkeypatch.setenv(budget.TIME_ENV, "forever")
    with pytest.raises(ResourceError, match="GENSCI_TIME_LIMIT='forever' is not a number"):
        budget.time_limit()


def test_check_memory_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(budget.MEMORY_ENV, "2G")
    budget.check_memory(1.9e9, "anything", "no hint needed")  # fits: no error
    with pytest.raises(ConfigError) as info:
        budget.check_memory(4.3e12, "ct reconstruct at 100000 x 100000 with 60 views",
                            "lower --size", "the Radon system matrix")
    assert isinstance(info.value, ResourceError)
    assert str(info.value) == (
        "ct reconstruct at 100000 x 100000 with 60 views needs about 4.3 TB (the Radon system "
        "matrix) but GENSCI_MEMORY_LIMIT=2G allows 2 GB; lower --size"
    )


def test_check_memory_names_the_machine_without_override() -> None:
    with pytest.raises(ResourceError, match=r"a run needs about 1 EB but this machine has .* "
                                            r"available; lower -n"):
        budget.check_memory(1e18, "a run", "lower -n")


def test_check_need_names_the_largest_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(budget.MEMORY_ENV, "1M")
    need = budget.Need().add("small", 1e5).add("the big one", 5e6).add("medium", 1e6)
    assert need.total == pytest.approx(6.1e6)
    assert need.dominant() == "the big one"
    with pytest.raises(ResourceError, match=r"needs about 6\.1 MB \(the big one\)"):
        budget.check_need(need, "a run", "lower it")
    budget.check_need(budget.Need().add("tiny", 10.0), "a run", "lower it")


def test_check_time_and_its_override(monkeypatch: pytest.MonkeyPatch) -> None:
    budget.check_time(86400.0, "a day", "fine")
    with pytest.raises(ResourceError, match=r"takes at least 1\.2 years on any machine, over the "
                                            r"limit of 30 days \(GENSCI_TIME_LIMIT\); lower --steps"):
        budget.check_time(365.25 * 86400 * 1.2, "training", "lower --steps")
    monkeypatch.setenv(budget.TIME_ENV, "1h")
    with pytest.raises(ResourceError, match="over the limit of 1 hours"):
        budget.check_time(7200.0, "training", "lower --steps")


def test_check_disk(tmp_path) -> None:  # type: ignore[no-untyped-def]
    budget.check_disk(1000.0, tmp_path / "out.npz", "a run", "fine")
    with pytest.raises(ResourceError, match=r"writes about 1\.0e\+30 bytes but .* free on disk; "):
        budget.check_disk(1e30, tmp_path / "sub" / "out.npz", "a run", "lower -n")


def test_least_seconds_is_the_larger_bound() -> None:
    assert budget.least_seconds(1000, 1e-4) == pytest.approx(0.1)
    assert budget.least_seconds(10, 1e-4, flops_each=1e13) == pytest.approx(10.0)


# -- estimates -------------------------------------------------------------------------------


def test_radon_entries_match_the_operator() -> None:
    from gensci.inverse.radon import _system_matrix, padded_size

    n, views = 24, 12
    angles = tuple(float(a) for a in 90 * np.arange(views) / views)
    rows, _, _ = _system_matrix(n, angles, padded_size(n), 1.0)
    assert budget.radon_entries(n, views) == pytest.approx(len(rows), rel=0.1)
    assert budget.radon_entries(n, views) >= len(rows)


def test_radon_estimate_scales_with_resolution_and_views() -> None:
    base = budget.radon_bytes(512, 60)
    assert budget.radon_bytes(1024, 60) / base == pytest.approx(4.0, rel=0.02)
    assert budget.radon_bytes(512, 120) / base == pytest.approx(2.0, rel=0.05)
    # fewer detector bins than the image is wide: only the covered part is sampled
    assert budget.radon_entries(512, 60, n_det=256) == pytest.approx(
        budget.radon_entries(512, 60) / 2)
    assert budget.radon_bytes(100_000, 60) > 1e14  # hundreds of TB


def test_network_sizes() -> None:
    small = budget.unet_size(64, 64, 16, (1, 2, 2, 2))
    big = budget.unet_size(128, 128, 16, (1, 2, 2, 2))
    assert big.params == small.params
    assert big.stored / small.stored == pytest.approx(4.0)
    assert big.macs / small.macs == pytest.approx(4.0)
    import torch

    from gensci.nn import UNet, UNetConfig

    real = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2, 2, 2), time_dim=64))
    counted = budget.unet_size(64, 64, 16, (1, 2, 2, 2), time_dim=64).params
    assert counted == pytest.approx(sum(p.numel() for p in real.parameters()), rel=0.02)
    from gensci.models.vae import VAE, VAEConfig

    cfg = VAEConfig(data_dim=30, latent_dim=7, hidden=(20, 10), likelihood="categorical",
                    n_categories=21)
    vae = VAE(cfg)
    assert budget.vae_of(cfg).params == sum(p.numel() for p in vae.parameters())
    assert torch.is_tensor(next(vae.parameters()))


def test_estimates_grow_as_the_sizes() -> None:
    gen = budget.poisson_generate_need
    assert gen(20_000, 64, ["blobs"]).total / gen(10_000, 64, ["blobs"]).total == pytest.approx(
        2.0, rel=0.05)
    assert gen(10_000, 128, ["blobs"]).total / gen(10_000, 64, ["blobs"]).total == pytest.approx(
        4.0, rel=0.05)
    net = budget.cells_net(2000, 10**6, (800, 800))
    assert budget.cells_net(2000, 2 * 10**6, (800, 800)).params / net.params == pytest.approx(
        2.0, rel=0.01)
    assert budget.protein_design_bytes(2 * 10**7, 100, 8) / budget.protein_design_bytes(
        10**7, 100, 8) == pytest.approx(2.0, rel=0.01)
    unet = budget.unet_size(64, 64, 16, (1, 2, 2, 2))
    k8 = budget.ct_reconstruct_need(64, 60, 91, "dps", 800, unet).total
    k16 = budget.ct_reconstruct_need(64, 60, 91, "dps", 1600, unet).total
    assert k16 / k8 == pytest.approx(2.0, rel=0.05)
    assert budget.protein_study_need(20_000, 100, 10, budget.protein_net(100, 8, (128,)), 64,
                                     8).total > 26 * 20_000**2


def test_peek_shape_reads_headers_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a = np.zeros((3, 5, 7))
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "b.npz", rho=a, phi=a[:1])
    import h5py

    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["rho"] = a
    assert budget.peek_shape(tmp_path / "a.npy") == (3, 5, 7)
    assert budget.peek_shape(tmp_path / "b.npz", "phi") == (1, 5, 7)
    assert budget.peek_shape(tmp_path / "b.npz", "missing") is None
    assert budget.peek_shape(tmp_path / "c.h5", "rho") == (3, 5, 7)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    assert budget.peek_shape(tmp_path / "bad.npy") is None
    assert budget.prod((100_000, 100_000)) == 1e10


def test_h5ad_shape_and_checkpoint_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import anndata as ad
    import scipy.sparse as sp

    ad.AnnData(np.ones((6, 4), dtype=np.float32)).write_h5ad(tmp_path / "d.h5ad")
    ad.AnnData(sp.random(9, 5, density=0.4, format="csr", dtype=np.float32)).write_h5ad(
        tmp_path / "s.h5ad")
    assert budget.h5ad_shape(tmp_path / "d.h5ad") == (6, 4, 96.0)
    cells, genes, stored = budget.h5ad_shape(tmp_path / "s.h5ad")  # type: ignore[misc]
    assert (cells, genes) == (9, 5) and 0 < stored < 9 * 5 * 12 + 100
    assert budget.h5ad_shape(tmp_path / "missing.h5ad") is None

    from gensci import checkpoint
    from gensci.models.vae import VAE, VAEConfig

    checkpoint.save(VAE(VAEConfig(data_dim=5, latent_dim=3)), tmp_path / "m.safetensors")
    config = budget.checkpoint_config(tmp_path / "m.safetensors")
    assert config is not None and config["latent_dim"] == 3
    assert budget.checkpoint_config(tmp_path / "d.h5ad") is None


def test_absurd_angle_count_is_refused_as_a_size() -> None:
    from gensci.inverse.radon import Radon, parse_angles

    with pytest.raises(ResourceError, match=r"10000000000000 views\) needs about"):
        parse_angles("0:90:10000000000000")
    op = Radon(100_000, [0.0, 45.0])
    with pytest.raises(ResourceError, match="Radon operator for 100000 x 100000"):
        op.matrix()


def test_demo_refuses_absurd_steps(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gensci = f"{sys.prefix}/bin/gensci"
    out = tmp_path / "demo"
    proc = subprocess.run([gensci, "demo", "--out", str(out), "--steps", "10" + "0" * 14],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: gensci demo with --steps")
    assert "takes at least" in lines[0] and "lower --steps" in lines[0]
    assert not out.exists()
