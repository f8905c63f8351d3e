"""gensci: deep generative models as instruments for science and engineering problems."""

from gensci.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    FormatError,
    GensciError,
    OutputExistsError,
    ShapeError,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "FormatError",
    "GensciError",
    "OutputExistsError",
    "ShapeError",
    "__version__",
]
