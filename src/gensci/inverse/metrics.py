"""Image-quality metrics (PSNR, SSIM) from scikit-image, on images clipped to the data range."""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gensci.errors import ShapeError


def _as_images(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Return x as a float64 array (N, H, W) (accepts (H, W), (N, H, W) or (N, 1, H, W))."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    arr = arr.astype(np.float64)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ShapeError(f"expected images (H, W), (N, H, W) or (N, 1, H, W), got {arr.shape}")
    return arr


def psnr(
    estimate: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray, data_range: float = 1.0
) -> np.ndarray:
    """Return the PSNR in dB (N,) of each estimate, clipped to [0, data_range], vs the truth."""
    est, ref = _as_images(estimate), _as_images(truth)
    if est.shape != ref.shape:
        raise ShapeError(f"estimate shape {est.shape} differs from truth shape {ref.shape}")
    est = np.clip(est, 0.0, data_range)
    return np.array(
        [
            peak_signal_noise_ratio(r, e, data_range=data_range)
            for e, r in zip(est, ref, strict=True)
        ]
    )


def ssim(
    estimate: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray, data_range: float = 1.0
) -> np.ndarray:
    """Return the SSIM (N,) of each estimate, clipped to [0, data_range], against the truth."""
    est, ref = _as_images(estimate), _as_images(truth)
    if est.shape != ref.shape:
        raise ShapeError(f"estimate shape {est.shape} differs from truth shape {ref.shape}")
    est = np.clip(est, 0.0, data_range)
    return np.array(
        [structural_similarity(r, e, data_range=data_range) for e, r in zip(est, ref, strict=True)]
    )
