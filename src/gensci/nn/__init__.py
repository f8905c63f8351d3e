"""Backbones the generative models share: MLP, time embeddings, a small 2-D UNet."""

from gensci.nn.embeddings import SinusoidalEmbedding
from gensci.nn.mlp import MLP
from gensci.nn.unet import UNet, UNetConfig

__all__ = ["MLP", "SinusoidalEmbedding", "UNet", "UNetConfig"]
