"""The generative core: one file per model family, no domain words inside."""

from gensci.models.autoregressive import MADE, MADEConfig
from gensci.models.diffusion import DiffusionConfig, DiffusionModel
from gensci.models.equivariant import EquivariantVAE, EquivariantVAEConfig
from gensci.models.gan import WGANGP, WGANGPConfig
from gensci.models.samplers import (
    annealed_langevin,
    ddim,
    euler_maruyama,
    predictor_corrector,
    probability_flow_ode,
)
from gensci.models.sde import SDE, VESDE, VPSDE
from gensci.models.style import (
    AdaIN,
    AdaINTransfer,
    AdaINTransferConfig,
    MappingNetwork,
    StyleGenerator,
    StyleGeneratorConfig,
)
from gensci.models.vae import VAE, VAEConfig

__all__ = [
    "MADE",
    "MADEConfig",
    "DiffusionConfig",
    "DiffusionModel",
    "EquivariantVAE",
    "EquivariantVAEConfig",
    "WGANGP",
    "WGANGPConfig",
    "AdaIN",
    "AdaINTransfer",
    "AdaINTransferConfig",
    "MappingNetwork",
    "StyleGenerator",
    "StyleGeneratorConfig",
    "SDE",
    "VESDE",
    "VPSDE",
    "VAE",
    "VAEConfig",
    "annealed_langevin",
    "ddim",
    "euler_maruyama",
    "predictor_corrector",
    "probability_flow_ode",
]
