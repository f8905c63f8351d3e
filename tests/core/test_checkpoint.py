"""save/load: a round trip rebuilds the model from the file alone; bad files get clear errors."""

import pytest
import torch

from gensci import checkpoint
from gensci.errors import CheckpointError, ConfigError, OutputExistsError
from gensci.models import (
    MADE,
    VAE,
    WGANGP,
    DiffusionConfig,
    DiffusionModel,
    MADEConfig,
    VAEConfig,
    WGANGPConfig,
)


@pytest.mark.parametrize(
    "model",
    [
        VAE(
            VAEConfig(
                data_dim=5, latent_dim=2, hidden=(8, 4), likelihood="categorical", n_categories=3
            )
        ),
        DiffusionModel(
            DiffusionConfig(data_shape=(1, 8, 8), net="unet", base_channels=8, channel_mults=(1, 2))
        ),
        MADE(MADEConfig(n_dims=4, n_categories=3, hidden=(8,))),
        WGANGP(WGANGPConfig(data_dim=2, hidden=(8,))),
    ],
    ids=["vae", "diffusion", "made", "wgan"],
)
def test_round_trip(tmp_path, model):
    path = checkpoint.save(model, tmp_path / "m.safetensors", metadata={"note": "x", "n": 3})
    loaded = checkpoint.load(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    assert checkpoint.load_metadata(path) == {"note": "x", "n": 3}


def test_refuses_to_overwrite(tmp_path):
    model = MADE(MADEConfig(n_dims=2, n_categories=2, hidden=(4,)))
    path = checkpoint.save(model, tmp_path / "m.safetensors")
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="exists"):
        checkpoint.save(MADE(MADEConfig(n_dims=3, n_categories=2, hidden=(4,))), path)
    assert path.read_bytes() == before
    checkpoint.save(model, path, overwrite=True)


def test_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        checkpoint.load(tmp_path / "nope.safetensors")
    path = checkpoint.save(
        MADE(MADEConfig(n_dims=2, n_categories=2, hidden=(4,))), tmp_path / "m.st"
    )
    raw = path.read_bytes()
    (tmp_path / "cut.st").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="corrupt|truncated"):
        checkpoint.load(tmp_path / "cut.st")
    (tmp_path / "junk.st").write_bytes(b"hello world, not a checkpoint")
    with pytest.raises(CheckpointError):
        checkpoint.load(tmp_path / "junk.st")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.st"))
    with pytest.raises(CheckpointError, match="not a gensci checkpoint"):
        checkpoint.load(tmp_path / "plain.st")


def test_unknown_config_key_is_named():
    from gensci.config import config_from_dict

    with pytest.raises(ConfigError, match="latent_size"):
        config_from_dict(VAEConfig, {"data_dim": 3, "latent_size": 4})
    cfg = config_from_dict(VAEConfig, {"data_dim": 3, "hidden": [4, 4]})
    assert cfg.hidden == (4, 4)
