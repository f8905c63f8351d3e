"""Filtered back-projection: ramp-filter each projection along the detector, then back-project."""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch

from gensci.errors import ConfigError

FILTERS = ("ramlak", "shepp-logan", "hann")


def ramp_filter(n_det: int, name: str = "ramlak") -> np.ndarray:
    """Return the frequency response (size,) of the band-limited ramp filter, windowed by `name`.

    The ramp is built in the spatial domain (Kak & Slaney, eq. 61) so that its zero frequency is
    right; size is the FFT length, the next power of two >= 2 n_det (at least 64).
    """
    if name not in FILTERS:
        raise ConfigError(f"unknown FBP filter {name!r}; choose one of {FILTERS}")
    size = max(64, int(2 ** math.ceil(math.log2(2 * n_det))))
    k = np.concatenate([np.arange(1, size / 2 + 1, 2), np.arange(size / 2 - 1, 0, -2)]).astype(int)
    h = np.zeros(size)
    h[0] = 0.25
    h[1::2] = -1.0 / (np.pi * k) ** 2
    response = 2.0 * np.real(np.fft.fft(h))  # ~ 2 |omega|, omega in cycles per sample
    omega = np.pi * np.fft.fftfreq(size)[1:]
    if name == "shepp-logan":
        response[1:] *= np.sin(omega) / omega
    elif name == "hann":
        response *= np.fft.fftshift(np.hanning(size))
    return response


def angular_step(angles_deg: np.ndarray) -> float:
    """Return the angular weight d theta (radians) of each view: the median gap of sorted angles."""
    if len(angles_deg) < 2:
        return math.pi
    gaps = np.diff(np.sort(np.deg2rad(angles_deg)))
    return float(np.median(gaps))


class ParallelProjector(Protocol):
    """What `fbp` needs of a parallel-beam projector (`Radon`, `ParallelBeam`,
    `AstraParallelBeam`): its bins, angles (degrees), shape check and back-projection."""

    n_det: int
    angles: np.ndarray

    def check_output(self, y: torch.Tensor, name: str = "y") -> None: ...

    def adjoint(self, y: torch.Tensor) -> torch.Tensor: ...


def fbp(radon: ParallelProjector, sinogram: torch.Tensor, filter_name: str = "ramlak") -> torch.Tensor:
    """Return the FBP image (B, 1, n, n) of sinogram (B, 1, n_det, n_angles).

    f = sum_theta d_theta * A^T (h * p_theta), with h the windowed ramp filter; for views covering
    [0, 180) this is the classical inversion formula; for a wedge it inverts the measured part.
    """
    radon.check_output(sinogram, "sinogram")
    response = ramp_filter(radon.n_det, filter_name)
    size = response.shape[0]
    filt = torch.as_tensor(response, dtype=sinogram.dtype, device=sinogram.device)
    spec = torch.fft.fft(sinogram, n=size, dim=-2)
    filtered = torch.fft.ifft(spec * filt[:, None], dim=-2).real[..., : radon.n_det, :]
    # the response is 2|omega|; the inversion formula wants |omega| d theta
    return radon.adjoint(filtered.contiguous()) * (0.5 * angular_step(radon.angles))
