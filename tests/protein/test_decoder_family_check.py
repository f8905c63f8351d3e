"""The DeepSequence decoder options of the core VAE (group-sparse output layer, learned
temperature, Bayesian weights) through the family model, and the Potts family check as a
`design` option: its file, its filter and its bad inputs."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gensci import checkpoint
from gensci.errors import CheckpointError, ConfigError
from gensci.models.vae import VAE, DeepSequenceDecoder, VAEConfig
from gensci.nn import MLP
from gensci.protein.baseline import PottsConfig
from gensci.protein.cli import app
from gensci.protein.family import (
    check_quantile,
    fit_family_check,
    load_family_check,
    save_family_check,
)
from gensci.protein.io import ALPHABET, MSA, write_fasta
from gensci.protein.metrics import column_shuffled
from gensci.protein.model import FamilyConfig, build_vae, train_family
from gensci.protein.scoring import elbo_batched, importance_log_likelihood
from gensci.train import TrainConfig, Trainer
from tests.core.test_bad_files import run_main

runner = CliRunner()
K = len(ALPHABET)


def coupled_codes(n: int, length: int = 8, seed: int = 0) -> np.ndarray:
    """Return (n, length) codes in 1..5 where column 2k+1 copies column 2k."""
    rng = np.random.default_rng(seed)
    return np.repeat(rng.integers(1, 6, size=(n, length // 2)), 2, axis=1)


def tiny_msa(n: int = 200, length: int = 8, seed: int = 0) -> MSA:
    codes = coupled_codes(n, length, seed)
    seqs = ["".join(ALPHABET[c] for c in row) for row in codes]
    return MSA([f"s{i}" for i in range(n)], seqs, np.arange(length))


def sparse_config(**kw: object) -> VAEConfig:
    base: dict[str, object] = dict(
        data_dim=8,
        latent_dim=2,
        hidden=(16,),
        likelihood="categorical",
        n_categories=K,
        decoder_prior_n=200.0,
    )
    return VAEConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_options_off_keep_the_plain_decoder() -> None:
    plain = VAE(
        VAEConfig(data_dim=8, latent_dim=2, hidden=(16,), likelihood="categorical", n_categories=K)
    )
    assert isinstance(plain.decoder, MLP) and not plain.config.deep_sequence_decoder
    assert all(k.startswith(("encoder.net.", "decoder.net.")) for k in plain.state_dict())
    assert float(plain.decoder_prior()) == 0.0
    # the temperature-only decoder starts at softplus(t) = 1: with the plain decoder's weights
    # copied in, it gives the plain decoder's logits
    torch.manual_seed(0)
    temp = VAE(sparse_config(decoder_temperature=True, decoder_prior_n=0.0))
    assert isinstance(temp.decoder, DeepSequenceDecoder)
    lin = [m for m in plain.decoder.net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for name, layer in zip(("w0", "w_out"), lin, strict=True):
            temp.decoder.mean[name].copy_(layer.weight)
            temp.decoder.mean["b" + name[1:]].copy_(layer.bias)
    temp.encoder.load_state_dict(plain.encoder.state_dict())
    plain.eval()
    temp.eval()
    z = torch.randn(5, 2)
    assert torch.allclose(temp.decode(z), plain.decode(z), atol=1e-6)
    assert abs(float(temp.decoder.temperature().detach()) - 1.0) < 1e-6


def test_sparsity_scale_is_tiled_and_in_unit_interval() -> None:
    model = VAE(sparse_config(decoder_groups=4, hidden=(16,)))
    with torch.no_grad():
        model.decoder.mean["s_out"].normal_(0, 3.0)
    scale = model.decoder.sparsity_scale()
    assert scale.shape == (16, 8)
    assert ((scale > 0) & (scale < 1)).all()
    # groups of 4 hidden units share a scale: unit h and unit h + H/4 are one group
    assert torch.equal(scale[:4], scale[4:8]) and torch.equal(scale[:4], scale[12:])
    # a position whose scale is ~0 for every group gets logits equal to the bias alone
    with torch.no_grad():
        model.decoder.mean["s_out"][:, 3] = -60.0
    model.eval()
    logits = model.decode(torch.randn(7, 2))
    bias = model.decoder.mean["b_out"].reshape(8, K)[3]
    assert torch.allclose(logits[:, 3], bias.expand(7, K), atol=1e-6)


@pytest.mark.parametrize(
    "options",
    [
        {"decoder_groups": 4},
        {"decoder_groups": 4, "decoder_temperature": True},
        {"decoder_groups": 4, "decoder_temperature": True, "bayesian_decoder": True},
    ],
)
def test_loss_falls_under_the_trainer(options: dict[str, object]) -> None:
    torch.manual_seed(0)
    model = VAE(sparse_config(**options))
    data = torch.as_tensor(coupled_codes(256))
    history = Trainer(
        model, data, TrainConfig(steps=150, batch_size=64, lr=5e-3, progress=False)
    ).fit()
    first = np.mean([h["loss"] for h in history[:2]])
    assert history[-1]["loss"] < first - 0.1, (first, history[-1]["loss"])
    prior = float(model.decoder_prior().detach())
    assert math.isfinite(prior) and prior > 0


def test_bayesian_decoder_samples_in_training_and_uses_means_in_eval() -> None:
    torch.manual_seed(0)
    model = VAE(sparse_config(bayesian_decoder=True))
    z = torch.randn(4, 2)
    model.train()
    assert not torch.equal(model.decode(z), model.decode(z))  # fresh weights per call
    model.eval()
    assert torch.equal(model.decode(z), model.decode(z))
    # the prior term is the weights' KL divided by decoder_prior_n, and it is > 0
    kl = model.decoder.prior_kl().detach()
    assert float(kl) > 0 and torch.allclose(model.decoder_prior().detach(), kl / 200.0)
    # log p by importance sampling (mean weights) is on average not below the ELBO
    x = coupled_codes(64)
    iw = importance_log_likelihood(model, x, n_samples=50)
    elbo = elbo_batched(model, x, n_samples=50)
    assert iw.mean() >= elbo.mean() - 1e-3


def test_decoder_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="must divide"):
        sparse_config(decoder_groups=3)
    with pytest.raises(ConfigError, match="decoder_prior_n"):
        sparse_config(bayesian_decoder=True, decoder_prior_n=0.0)
    with pytest.raises(ConfigError, match="decoder_groups"):
        FamilyConfig(hidden=(30,), decoder_groups=4)


def test_family_model_switches_them_on_and_saves_them(tmp_path: Path) -> None:
    msa = tiny_msa()
    cfg = FamilyConfig(
        latent_dim=2,
        hidden=(16,),
        steps=80,
        batch_size=32,
        kl_warmup_steps=0,
        decoder_groups=4,
        decoder_temperature=True,
        bayesian_decoder=True,
    )
    model, meta, history = train_family(msa, cfg, progress=False)
    assert isinstance(model.decoder, DeepSequenceDecoder)
    assert model.config.decoder_prior_n == pytest.approx(meta.neff)
    assert history[-1]["loss"] < history[0]["loss"]
    path = checkpoint.save(model, tmp_path / "m.safetensors")
    again = checkpoint.load(path)
    z = torch.randn(3, 2)
    assert torch.equal(again.decode(z), model.decode(z))
    assert build_vae(8, FamilyConfig(latent_dim=2, hidden=(16,))).config.decoder_prior_n == 0.0


def test_family_check_file_and_filter(tmp_path: Path) -> None:
    codes = coupled_codes(400)
    check = fit_family_check(
        codes,
        quantile=0.1,
        calibration_fraction=0.2,
        max_identity=1.0,
        config=PottsConfig(reg=1e-3, steps=150, batch_size=128, lr=0.05),
    )
    naturals = coupled_codes(200, seed=3)
    decoys = column_shuffled(naturals, 400, np.random.default_rng(0))
    fail_nat, fail_dec = 1 - check.passes(naturals).mean(), 1 - check.passes(decoys).mean()
    assert fail_dec > fail_nat + 0.5
    # a threshold chosen on the calibration rows' own column-shuffled copies
    q = check.quantile_failing(0.9)
    assert 0 < q < 1 and check.decoy_scores is not None
    check.quantile = q
    assert check.decoy_fail_share() >= 0.85
    assert 1 - check.passes(decoys).mean() >= 0.8
    path = save_family_check(check, tmp_path / "fc.safetensors")
    loaded = load_family_check(path, quantile=0.3, length=8)
    assert np.array_equal(loaded.scores(decoys), check.scores(decoys))
    assert np.array_equal(loaded.decoy_scores, check.decoy_scores)
    assert loaded.threshold > check.threshold  # a higher quantile is a stricter threshold
    with pytest.raises(CheckpointError, match="covers 8 positions"):
        load_family_check(path, length=9)
    with pytest.raises(ConfigError, match=r"\(0, 1\)"):
        check_quantile(1.0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny coupled family on disk, and a family VAE trained on it."""
    root = tmp_path_factory.mktemp("fam")
    msa = tiny_msa(300, 12)
    fasta = root / "tiny.fasta"
    write_fasta(fasta, msa.ids, msa.seqs)
    out = root / "model"
    res = runner.invoke(
        app,
        [
            "train",
            str(fasta),
            "--out",
            str(out),
            "--steps",
            "150",
            "--latent-dim",
            "2",
            "--hidden",
            "32",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    return out


def test_design_family_check_end_to_end(tiny_run: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "novelty: [0.0, 1.0]\nmin_window_entropy: 0\nmax_residue_fraction: 1\n"
        "max_homopolymer: 100\n"
    )
    out = tmp_path / "d"
    res = runner.invoke(
        app,
        [
            "design",
            str(tiny_run),
            "--out",
            str(out),
            "-n",
            "60",
            "--temperature",
            "1.0",
            "--rules",
            str(rules),
            "--fixed-rules",
            "--family-check",
            "potts",
            "--family-quantile",
            "0.2",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "family check: Potts model fitted" in res.output and "family check passes" in res.output
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert rows and all(r["family_check"] in ("True", "False") for r in rows)
    for r in rows:
        assert ("family" in r["failed"].split(";")) == (r["family_check"] == "False")
        assert 0.0 <= float(r["potts_percentile"]) <= 1.0
    assert (out / "family_check.safetensors").is_file()
    # the written check is reused as is
    again = runner.invoke(
        app,
        [
            "design",
            str(tiny_run),
            "--out",
            str(tmp_path / "e"),
            "-n",
            "10",
            "--family-check",
            str(out / "family_check.safetensors"),
            "--device",
            "cpu",
        ],
    )
    assert again.exit_code == 0, again.output
    assert "family check from" in again.output and "0.2 quantile" in again.output
    chosen = runner.invoke(
        app,
        [
            "design",
            str(tiny_run),
            "--out",
            str(tmp_path / "f"),
            "-n",
            "10",
            "--family-check",
            str(out / "family_check.safetensors"),
            "--family-decoys-fail",
            "0.9",
            "--device",
            "cpu",
        ],
    )
    assert chosen.exit_code == 0, chosen.output
    share = float(chosen.output.split("it fails ")[1].split(" ")[0])
    assert share >= 0.85


def test_design_family_check_bad_inputs(
    tiny_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = ["protein", "design", tiny_run, "--out", tmp_path / "x", "-n", "5", "--device", "cpu"]
    line = run_main([*base, "--family-check", "hmm"], capsys, monkeypatch)
    assert "unknown --family-check 'hmm'" in line and "potts" in line
    for q in ("1.5", "0", "1"):
        line = run_main(
            [*base, "--family-check", "potts", "--family-quantile", q], capsys, monkeypatch
        )
        assert "--family-quantile must" in line and "(0, 1)" in line and q in line
    line = run_main([*base, "--family-quantile", "0.1"], capsys, monkeypatch)
    assert "--family-quantile needs --family-check" in line
    line = run_main([*base, "--family-decoys-fail", "0.9"], capsys, monkeypatch)
    assert "--family-decoys-fail needs --family-check" in line
    line = run_main(
        [
            *base,
            "--family-check",
            "potts",
            "--family-decoys-fail",
            "0.9",
            "--family-quantile",
            "0.1",
        ],
        capsys,
        monkeypatch,
    )
    assert "not both" in line
    line = run_main(
        [*base, "--family-check", "potts", "--family-decoys-fail", "2"], capsys, monkeypatch
    )
    assert "--family-decoys-fail must be in (0, 1), got 2" in line
    other = tmp_path / "other.safetensors"
    checkpoint.save(build_vae(12, FamilyConfig(latent_dim=2, hidden=(4,))), other)
    line = run_main([*base, "--family-check", other], capsys, monkeypatch)
    assert "not a family check file" in line
    assert not (tmp_path / "x").exists()
    line = run_main(
        [
            "protein",
            "train",
            tiny_run.parent / "tiny.fasta",
            "--out",
            tmp_path / "t",
            "--hidden",
            "30",
            "--decoder-groups",
            "4",
        ],
        capsys,
        monkeypatch,
    )
    assert "decoder_groups 4 must divide" in line and "30" in line
    assert not (tmp_path / "t").exists()
