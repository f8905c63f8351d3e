"""Matrix-free fan-beam projector (flat or arc detector) and its filtered back-projection.

Geometry, in pixel units, image centred on pixel (n // 2, n // 2) as `ParallelBeam` centres it:
world X = col - n // 2, Y = n // 2 - row. At view angle beta (degrees) the central ray points
along e = (sin beta, -cos beta) and the detector runs along u = (cos beta, sin beta), the
parallel-beam convention; the source sits at S = -R e (R: source-to-isocentre distance) and the
detector's centre at (D - R) e (D: source-to-detector distance). Bin c lies at
s_c = (c - n_det // 2) * det_spacing along the detector: on the flat line through the detector's
centre, or (arc detector) at fan angle gamma_c = s_c / D on the circle of radius D about the
source. Each ray is sampled every pixel along its length with bilinear interpolation (torch's
grid_sample, zeros outside the image) and summed, so a ray sum is a line integral in pixel units.
The adjoint scatters the same weights (grid_sample's backward), so it is the exact transpose;
memory is O(image + sinogram + one chunk of views' sample grid).

`fan_fbp` reconstructs from a full scan (2 pi) or a short scan (pi + the fan angle, Parker
weights): cosine pre-weighting, ramp filter (flat: on a virtual detector through the isocentre;
arc: in fan angle, the kernel times (gamma / sin gamma)^2), distance-weighted pixel-driven
back-projection (Kak & Slaney, ch. 3.4; Parker 1982).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gensci.errors import ConfigError
from gensci.inverse.fbp import ramp_filter
from gensci.inverse.operators import Projector, check_sinogram
from gensci.inverse.radon import padded_size

DETECTORS = ("flat", "arc")


def default_fan_detector(
    n: int, source_distance: float, detector_distance: float, detector: str
) -> tuple[int, float]:
    """Return (n_det, det_spacing): bins one pixel apart at the isocentre, covering the image's
    bounding circle (radius P / 2, P = padded_size(n))."""
    r = padded_size(n) / 2.0
    half_fan = math.asin(min(r / source_distance, 1.0))
    spacing = detector_distance / source_distance
    half = source_distance * (math.tan(half_fan) if detector == "flat" else half_fan)
    return 2 * math.ceil(half) + 1, spacing


class FanBeam(Projector):
    """Fan-beam projector: image (B, 1, n, n) -> sinogram (B, 1, n_det, n_angles).

    angles in degrees; source_distance R (source to isocentre) and detector_distance D (source to
    detector) in pixels, R beyond the image's bounding circle and D > R; det_spacing in pixels at
    the detector (arc: arc length at radius D). Defaults: bins one pixel apart at the isocentre,
    enough of them to cover the image. `chunk` views share one sample grid (default: about 3 M
    samples). Batched, float32 or float64, any device, autograd through forward and adjoint.
    """

    def __init__(
        self,
        n: int,
        angles: np.ndarray | list[float],
        source_distance: float,
        detector_distance: float,
        n_det: int | None = None,
        det_spacing: float | None = None,
        detector: str = "flat",
        device: torch.device | str = "cpu",
        chunk: int | None = None,
    ) -> None:
        angles_np = np.asarray(angles, dtype=np.float64).reshape(-1)
        if n < 2:
            raise ConfigError(f"image size n={n} must be at least 2")
        if angles_np.size == 0 or not np.all(np.isfinite(angles_np)):
            raise ConfigError(f"angles must be a non-empty list of finite degrees, got {angles_np}")
        if detector not in DETECTORS:
            raise ConfigError(f"unknown detector {detector!r}; choose one of {DETECTORS}")
        radius = padded_size(n) / 2.0
        if not source_distance > radius:
            raise ConfigError(
                f"source_distance={source_distance} must exceed the image's bounding radius "
                f"{radius:g} pixels (n={n})"
            )
        if not detector_distance > source_distance:
            raise ConfigError(
                f"detector_distance={detector_distance} must exceed "
                f"source_distance={source_distance}"
            )
        self.n = int(n)
        self.angles = angles_np
        self.source_distance = float(source_distance)
        self.detector_distance = float(detector_distance)
        self.detector = detector
        default_n, default_spacing = default_fan_detector(
            n, self.source_distance, self.detector_distance, detector
        )
        self.n_det = default_n if n_det is None else int(n_det)
        self.det_spacing = default_spacing if det_spacing is None else float(det_spacing)
        if self.n_det < 1 or self.det_spacing <= 0:
            raise ConfigError(
                f"n_det={self.n_det} and det_spacing={self.det_spacing} must be positive"
            )
        if detector == "arc" and self.n_det * self.det_spacing / self.detector_distance >= math.pi:
            raise ConfigError(
                f"an arc of {self.n_det} bins of {self.det_spacing:g} at radius "
                f"{self.detector_distance:g} spans pi or more; lower n_det or det_spacing"
            )
        self.p = padded_size(self.n)
        self.device = torch.device(device)
        per_view = self.n_det * self.p
        # about 3 M samples a chunk: the fastest measured on one CPU thread at 256 and 512
        self.chunk = int(chunk) if chunk else max(1, (3 * 2**20) // per_view)
        self.in_shape = (1, self.n, self.n)
        self.out_shape = (1, self.n_det, len(self.angles))

    @property
    def n_angles(self) -> int:
        return len(self.angles)

    def bin_positions(self) -> np.ndarray:
        """Return s_c = (c - n_det // 2) * det_spacing (n_det,): bins along the detector."""
        return (np.arange(self.n_det) - self.n_det // 2) * self.det_spacing

    def fan_angles(self) -> np.ndarray:
        """Return the angle gamma (radians) of each bin's ray to the central ray (n_det,)."""
        s = self.bin_positions()
        if self.detector == "flat":
            return np.arctan2(s, self.detector_distance)
        return s / self.detector_distance

    def source_and_bins(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the source (views, 2) and every bin's centre (views, n_det, 2), world X, Y."""
        beta = np.deg2rad(self.angles)
        e = np.stack([np.sin(beta), -np.cos(beta)], axis=-1)
        u = np.stack([np.cos(beta), np.sin(beta)], axis=-1)
        source = -self.source_distance * e
        gamma = self.fan_angles()
        reach = self.detector_distance
        if self.detector == "flat":
            reach = self.detector_distance / np.cos(gamma)
        direction = (
            np.cos(gamma)[None, :, None] * e[:, None] + np.sin(gamma)[None, :, None] * u[:, None]
        )
        return source, source[:, None] + np.asarray(reach)[..., None] * direction

    def _grid(
        self, start: int, stop: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """Return the sample points of views start..stop-1 as grid_sample's grid
        (1, views * n_det, P, 2): P points a pixel apart on each ray, centred on the ray's point
        nearest the isocentre."""
        beta = torch.deg2rad(torch.as_tensor(self.angles[start:stop], dtype=torch.float64))
        gamma = torch.as_tensor(self.fan_angles(), dtype=torch.float64)
        # the ray at fan angle gamma points along phi = beta + gamma: (sin phi, -cos phi)
        phi = beta[:, None] + gamma[None, :]
        dx, dy = phi.sin(), -phi.cos()
        # its nearest point to the isocentre is the source plus R cos(gamma) along the ray
        reach = self.source_distance * gamma.cos()[None, :]
        fx = -self.source_distance * beta.sin()[:, None] + reach * dx
        fy = self.source_distance * beta.cos()[:, None] + reach * dy
        # normalised so that -1 and 1 are the centres of the edge pixels; the large (views, n_det,
        # P) part is two fused multiply-adds in the working dtype, written in place
        centre, scale = self.n // 2, 2.0 / (self.n - 1)
        starts = torch.stack(((centre + fx) * scale - 1.0, (centre - fy) * scale - 1.0), dim=-1)
        slopes = torch.stack((dx * scale, -dy * scale), dim=-1)
        starts = starts.to(dtype=dtype, device=device)[:, :, None, :]
        slopes = slopes.to(dtype=dtype, device=device)[:, :, None, :]
        t = (torch.arange(self.p, dtype=dtype, device=device) - self.p // 2)[None, None, :, None]
        grid = torch.addcmul(starts, slopes, t)  # (views, n_det, P, 2)
        return grid.reshape(1, -1, self.p, 2)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        """Return the ray sums of x: (B, 1, n, n) -> (B, 1, n_det, n_angles), no autograd."""
        b = x.shape[0]
        image = x.reshape(1, b, self.n, self.n)  # the batch rides in the channels: one grid
        # written in place: small results kept between the chunks' large transient buffers
        # fragment the CPU heap (measured: 1.9 GB instead of 0.3 GB at 512/720)
        out = torch.empty((b, self.n_angles, self.n_det), dtype=x.dtype, device=x.device)
        for start in range(0, self.n_angles, self.chunk):
            stop = min(start + self.chunk, self.n_angles)
            grid = self._grid(start, stop, x.dtype, x.device)
            samples = F.grid_sample(
                image, grid, mode="bilinear", padding_mode="zeros", align_corners=True
            )  # (1, B, views * n_det, P)
            out[:, start:stop].copy_(samples.sum(-1).reshape(b, stop - start, self.n_det))
            del samples, grid
        return out.transpose(1, 2)[:, None].contiguous()

    def _back_project(self, y: torch.Tensor) -> torch.Tensor:
        """Return A^T y: (B, 1, n, n) of y: (B, 1, n_det, n_angles), no autograd: grid_sample's
        backward scatters each ray's value to the pixels of its samples with the same weights."""
        b = y.shape[0]
        image = torch.zeros((1, b, self.n, self.n), dtype=y.dtype, device=y.device)
        out = torch.zeros_like(image)
        for start in range(0, self.n_angles, self.chunk):
            stop = min(start + self.chunk, self.n_angles)
            grid = self._grid(start, stop, y.dtype, y.device)
            rays = y[:, 0, :, start:stop].transpose(1, 2).reshape(1, b, -1, 1)
            grad_samples = rays.expand(-1, -1, -1, self.p)
            back, _ = torch.ops.aten.grid_sampler_2d_backward(
                grad_samples, image, grid, 0, 0, True, [True, False]
            )
            out += back
        return out.reshape(b, *self.in_shape)

    def _apply(self, t: torch.Tensor, transpose: bool) -> torch.Tensor:
        return self._back_project(t) if transpose else self._project(t)


def parker_weights(
    angles_deg: np.ndarray, gamma: np.ndarray, half_fan: float | None = None
) -> np.ndarray:
    """Return the short-scan weights w(beta, gamma) (n_det, n_angles) of Parker (1982).

    beta runs from the first angle over the scan's span pi + 2 delta; the ray (beta, gamma) and
    its conjugate (beta + pi + 2 gamma, -gamma) get weights that sum to 1. delta is read from
    the span; it must be at least the detector's half fan angle max|gamma| (less one view's
    step), else part of the image is seen from one side only.
    """
    beta = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    beta = beta - beta.min()
    step = float(np.median(np.diff(np.sort(beta)))) if beta.size > 1 else 0.0
    delta = (float(beta.max()) - math.pi) / 2.0
    needed = float(np.abs(gamma).max()) if half_fan is None else half_fan
    if delta < needed - step:
        raise ConfigError(
            f"a short scan spans {math.degrees(float(beta.max())):.1f} degrees but needs at least "
            f"180 + the fan angle = {180 + 2 * math.degrees(needed):.1f}"
        )
    delta = max(delta, needed)
    g = np.asarray(gamma, dtype=np.float64)[:, None]
    b = beta[None, :]
    w = np.ones((g.shape[0], b.shape[1]))
    tiny = 1e-12
    rise = b < 2 * delta - 2 * g
    w = np.where(rise, np.sin(np.pi / 4 * b / np.maximum(delta - g, tiny)) ** 2, w)
    fall = b > np.pi - 2 * g
    w = np.where(
        fall, np.sin(np.pi / 4 * (np.pi + 2 * delta - b) / np.maximum(delta + g, tiny)) ** 2, w
    )
    return np.clip(w, 0.0, 1.0)


def fan_fbp(
    op: Any, sinogram: torch.Tensor, filter_name: str = "ramlak", short_scan: bool | None = None
) -> torch.Tensor:
    """Return the fan-beam FBP image (B, 1, n, n) of sinogram (B, 1, n_det, n_angles).

    op: a `FanBeam` or `AstraFanBeam` (any object with n, angles, n_det, det_spacing,
    source_distance, detector_distance and detector). The views must cover 360 degrees (full
    scan, each ray weighted 1/2) or at least 180 + the fan angle (short scan, Parker weights);
    short_scan=None decides from the span. Kak & Slaney (ch. 3.4): flat detector, the
    projections are moved to a virtual detector through the isocentre, weighted by
    R / sqrt(R^2 + s^2), ramp filtered, back-projected pixel by pixel with weight 1 / U^2,
    U = (R + <x, e>) / R; arc detector, weighted by R cos(gamma), filtered with the ramp kernel
    times (gamma / sin gamma)^2, back-projected with weight 1 / L^2 (L: source to pixel).
    """
    check_sinogram(op, sinogram)
    r = float(op.source_distance)
    y = sinogram if sinogram.dtype in (torch.float32, torch.float64) else sinogram.double()
    arc = op.detector == "arc"
    coord, gamma = fan_coordinates(op)
    weights, step = fan_scan_weights(op, short_scan)
    cosine = r * np.cos(gamma) if arc else r / np.sqrt(r**2 + coord**2)
    pre = torch.as_tensor(weights * cosine[:, None], dtype=y.dtype, device=y.device)
    spacing = float(coord[1] - coord[0]) if op.n_det > 1 else 1.0
    response = _fan_response(op.n_det, filter_name, spacing if arc else None)
    filt = torch.as_tensor(response, dtype=y.dtype, device=y.device)
    spec = torch.fft.fft(y * pre, n=response.shape[0], dim=-2)
    # the response is 2|omega| per sample; |omega| per unit of coord is it / (2 spacing)
    q = torch.fft.ifft(spec * filt[:, None], dim=-2).real[..., : op.n_det, :] * (0.5 / spacing)
    image = _weighted_back_projection(op, q, float(coord[0]), spacing, step, r, arc)
    return image.to(sinogram.dtype)


def fan_coordinates(op: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (coord, gamma) (n_det,) of a fan-beam op's bins: coord, what `fan_fbp`
    back-projects along (s' on the virtual flat detector through the isocentre, or the fan
    angle for an arc detector), and gamma, each bin's fan angle (radians)."""
    r, d = float(op.source_distance), float(op.detector_distance)
    s = (np.arange(op.n_det) - op.n_det // 2) * float(op.det_spacing)  # along the detector
    arc = op.detector == "arc"
    coord = s / d if arc else s * r / d
    return coord, (coord if arc else np.arctan2(coord, r))


def fan_scan_weights(op: Any, short_scan: bool | None = None) -> tuple[np.ndarray, float]:
    """Return (weights (n_det, n_angles), angular step in radians) of `fan_fbp`'s redundancy
    weighting: 1/2 on a full scan, Parker's on a short one (short_scan None: from the span).
    ConfigError when the views cover neither (the check `fan_fbp` makes, without the data)."""
    _, gamma = fan_coordinates(op)
    beta = np.deg2rad(np.asarray(op.angles, dtype=np.float64))
    span = float(beta.max() - beta.min())
    step = float(np.median(np.diff(np.sort(beta)))) if beta.size > 1 else 2 * math.pi
    full = span + step >= 2 * math.pi - 1e-6
    if short_scan is None:
        short_scan = not full
    if short_scan:
        return parker_weights(op.angles, gamma), step
    if not full:
        raise ConfigError(
            f"a full-scan FBP needs views over 360 degrees; these span "
            f"{math.degrees(span + step):.1f} (short_scan=True takes 180 + the fan angle)"
        )
    return np.full((op.n_det, len(beta)), 0.5), step


def _fan_response(n_det: int, filter_name: str, dgamma: float | None) -> np.ndarray:
    """Return the filter's frequency response (size,): the windowed ramp; for an arc detector
    (angular spacing dgamma) the ramp's kernel times (gamma / sin gamma)^2, windowed alike."""
    response = ramp_filter(n_det, filter_name)
    if dgamma is None:
        return response
    plain = ramp_filter(n_det, "ramlak")
    size = plain.shape[0]
    kernel = np.real(np.fft.ifft(plain))  # the spatial ramp kernel (times 2), offsets fftfreq
    g = np.fft.fftfreq(size) * size * dgamma
    # only offsets |k| < n_det meet data (the zero padding); there |g| < pi (checked by FanBeam)
    near = (g != 0) & (np.abs(g) < np.pi)
    kernel[near] *= (g[near] / np.sin(g[near])) ** 2
    window = np.ones(size)
    nonzero = np.abs(plain) > 1e-12
    window[nonzero] = response[nonzero] / plain[nonzero]
    return np.real(np.fft.fft(kernel)) * window


def _weighted_back_projection(
    op: Any,
    q: torch.Tensor,
    coord0: float,
    spacing: float,
    step: float,
    r: float,
    arc: bool,
    chunk: int = 16,
) -> torch.Tensor:
    """Return sum_beta step w(x) q_beta(c(x)) (B, 1, n, n): q (B, 1, n_det, V) sampled linearly
    at each pixel's own detector coordinate c(x): gamma = atan2(<x, u>, R + <x, e>) with
    w = 1 / L^2 (arc), or s' = R <x, u> / (R + <x, e>) with w = 1 / U^2 (flat)."""
    b, n, n_det = q.shape[0], int(op.n), q.shape[-2]
    dtype, device = q.dtype, q.device
    coords = torch.arange(n, dtype=torch.float64, device=device) - n // 2
    xs, ys = coords[None, :], -coords[:, None]  # world X (columns), Y (rows)
    out = torch.zeros((b, 1, n, n), dtype=dtype, device=device)
    beta_all = torch.deg2rad(torch.as_tensor(np.asarray(op.angles), dtype=torch.float64))
    for start in range(0, len(beta_all), chunk):
        beta = beta_all[start : start + chunk].to(device)[:, None, None]
        along = r + xs * beta.sin() - ys * beta.cos()  # R + <x, e>
        across = xs * beta.cos() + ys * beta.sin()  # <x, u>
        if arc:
            c = torch.atan2(across, along)
            weight = 1.0 / (along * along + across * across)
        else:
            u = along / r
            c, weight = across / u, 1.0 / (u * u)
        # grid_sample over (views, B, 1, n_det): x runs along the detector, -1 and 1 the end bins
        gx = 2.0 * (c - coord0) / (spacing * max(n_det - 1, 1)) - 1.0
        grid = torch.stack((gx, torch.zeros_like(gx)), dim=-1).reshape(-1, n * n, 1, 2)
        views = beta.shape[0]
        rows = q[:, 0, :, start : start + views].permute(2, 0, 1)[:, :, None, :]
        sampled = F.grid_sample(
            rows, grid.to(dtype), mode="bilinear", padding_mode="zeros", align_corners=True
        ).reshape(views, b, n, n)
        out += (sampled * weight.to(dtype)[:, None]).sum(0)[:, None] * step
    return out
