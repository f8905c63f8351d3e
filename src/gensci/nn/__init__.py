"""Backbones the generative models share: MLP, time embeddings, a small 2-D UNet, a periodic set
network."""

from gensci.nn.embeddings import SinusoidalEmbedding
from gensci.nn.mlp import MLP
from gensci.nn.sets import PeriodicSetNet, PeriodicSetNetConfig
from gensci.nn.unet import UNet, UNetConfig

__all__ = [
    "MLP", "PeriodicSetNet", "PeriodicSetNetConfig", "SinusoidalEmbedding", "UNet", "UNetConfig"
]
