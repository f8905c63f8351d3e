"""Size ceilings: estimate what a command needs from its options before it allocates anything,
and refuse what cannot fit with one line that gives the estimate and the limit.

    check_memory(radon_bytes(n, views), "ct simulate at 4096 x 4096 with 60 views",
                 "lower --resolution or the view count in --angles",
                 dominant="the Radon system matrix")

Memory: the estimate is compared with the memory available now (MemAvailable, bounded by the
cgroup limit of a container), or with the free memory of a CUDA device, or with the ceiling set by
the environment variable GENSCI_MEMORY_LIMIT (bytes, or a size such as 2G, 512MB, 1.5GiB).
Disk: the size of what a command writes is compared with the free space of the folder it goes to.
Time: where memory is not the limit (training steps, sampler steps, ELBO samples), a lower bound
of the run time (count x the least time one unit can take on any machine) is compared with
GENSCI_TIME_LIMIT (seconds, or 12h, 7d; default 30 days), so only absurd counts are refused.

The estimators below count the arrays each command's code allocates; docs/reliability.md
("Size ceilings") compares them with measured peaks.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gensci.errors import ResourceError

MEMORY_ENV = "GENSCI_MEMORY_LIMIT"
TIME_ENV = "GENSCI_TIME_LIMIT"
DEFAULT_TIME_LIMIT = 30 * 86400.0

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "t": 10**12, "tb": 10**12, "p": 10**15, "pb": 10**15,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50,
}
_TIME_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


# ----------------------------------------------------------------------------------------------
# Units


def parse_size(text: str) -> int:
    """Return the bytes of a size such as '2000000', '2G', '512 MB', '1.5GiB' (K/M/G/T: 1000^k)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(text).lower())
    if m is None or m.group(2) not in _SIZE_UNITS:
        raise ResourceError(
            f"size {text!r} is not a number of bytes or a size like 2G, 512MB, 1.5GiB"
        )
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def format_size(nbytes: float) -> str:
    """Return a size in decimal units with two significant digits: '4.3 TB', '21 GB', '640 kB'."""
    value = float(nbytes)
    if value >= 1e21:
        return f"{value:.1e} bytes"
    for unit, scale in (("EB", 1e18), ("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6),
                        ("kB", 1e3)):
        if value >= scale:
            v = value / scale
            return f"{v:.2g} {unit}" if v < 10 else f"{v:.0f} {unit}"
    return f"{value:.0f} bytes"


def parse_duration(text: str) -> float:
    """Return the seconds of a duration such as '3600', '90s', '45min', '12h', '7d'."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(text).lower())
    if m is None or m.group(2) not in _TIME_UNITS:
        raise ResourceError(f"duration {text!r} is not a number of seconds or like 12h, 7d")
    return float(m.group(1)) * _TIME_UNITS[m.group(2)]


def format_duration(seconds: float) -> str:
    """Return a duration in its largest sensible unit: '14 days', '3.5 hours', '40 s'."""
    s = float(seconds)
    for unit, scale in (("years", 365.25 * 86400), ("days", 86400.0), ("hours", 3600.0),
                        ("minutes", 60.0)):
        if s >= scale:
            v = s / scale
            return f"{v:.2g} {unit}" if v < 10 else f"{v:,.0f} {unit}"
    return f"{s:.2g} s"


# ----------------------------------------------------------------------------------------------
# What is available


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom() -> int | None:
    """Return the cgroup memory limit minus current use (v2 or v1), or None without a limit."""
    pairs = (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
         "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    )
    for limit_path, usage_path in pairs:
        try:
            limit_text = Path(limit_path).read_text().strip()
            if limit_text == "max":
                return None
            limit, usage = int(limit_text), int(Path(usage_path).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit >= 2**60:  # v1 reports "no limit" as a huge number
            return None
        return max(limit - usage, 0)
    return None


def host_memory() -> int:
    """Return the host memory available now in bytes (psutil, /proc/meminfo or sysconf),
    bounded by the cgroup limit of the container when there is one."""
    avail: int | None = None
    try:
        import psutil

        avail = int(psutil.virtual_memory().available)
    except Exception:  # psutil is optional
        avail = _meminfo_available()
    if avail is None:
        try:
            avail = int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            avail = 2**62  # nothing to read: do not refuse on a guess
    headroom = _cgroup_headroom()
    return min(avail, headroom) if headroom is not None else avail


def _is_cuda(device: Any) -> bool:
    return device is not None and str(device).startswith("cuda")


def available_memory(device: Any = None) -> int:
    """Return the bytes available: GENSCI_MEMORY_LIMIT if set, else the free memory of a CUDA
    `device`, else the host's (`host_memory`)."""
    env = os.environ.get(MEMORY_ENV, "").strip()
    if env:
        try:
            return parse_size(env)
        except ResourceError:
            raise ResourceError(
                f"{MEMORY_ENV}={env!r} is not a number of bytes or a size like 2G, 512MB, 1.5GiB"
            ) from None
    if _is_cuda(device):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    return host_memory()


def _limit_phrase(avail: float, device: Any) -> str:
    size = format_size(avail)
    if os.environ.get(MEMORY_ENV, "").strip():
        return f"{MEMORY_ENV}={os.environ[MEMORY_ENV].strip()} allows {size}"
    if _is_cuda(device):
        return f"{device} has {size} free"
    return f"this machine has {size} available"


def check_memory(
    nbytes: float, what: str, hint: str, dominant: str | None = None, device: Any = None
) -> None:
    """Raise ResourceError if `nbytes` exceed the memory available (of `device` if CUDA).

    The message reads '{what} needs about 4.3 TB ({dominant}) but this machine has 21 GB
    available; {hint}'.
    """
    avail = available_memory(device)
    if nbytes > avail:
        part = f" ({dominant})" if dominant else ""
        raise ResourceError(
            f"{what} needs about {format_size(nbytes)}{part} but "
            f"{_limit_phrase(avail, device)}; {hint}"
        )


def available_disk(path: str | Path) -> int:
    """Return the free bytes of the file system that holds `path` (or its nearest parent)."""
    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return int(shutil.disk_usage(p).free)
    except OSError:
        return 2**62


def check_disk(nbytes: float, path: str | Path, what: str, hint: str) -> None:
    """Raise ResourceError if writing `nbytes` under `path` would not fit on its disk."""
    free = available_disk(path)
    if nbytes > free:
        raise ResourceError(
            f"{what} writes about {format_size(nbytes)} but {Path(path).parent} has "
            f"{format_size(free)} free on disk; {hint}"
        )


def time_limit() -> float:
    """Return the run-time ceiling in seconds (GENSCI_TIME_LIMIT, default 30 days)."""
    env = os.environ.get(TIME_ENV, "").strip()
    if not env:
        return DEFAULT_TIME_LIMIT
    try:
        return parse_duration(env)
    except ResourceError:
        raise ResourceError(
            f"{TIME_ENV}={env!r} is not a number of seconds or a duration like 12h, 7d"
        ) from None


def check_time(seconds: float, what: str, hint: str) -> None:
    """Raise ResourceError if a lower bound of the run time exceeds the ceiling (`time_limit`)."""
    limit = time_limit()
    if seconds > limit:
        raise ResourceError(
            f"{what} takes at least {format_duration(seconds)} on any machine, over the limit "
            f"of {format_duration(limit)} ({TIME_ENV}); {hint}"
        )


# Least time one unit of work takes on any machine (interpreter and operator dispatch alone), and
# a generous peak arithmetic rate; `least_seconds` uses whichever bound is larger.
STEP_FLOOR = 1e-4  # one optimiser step: forward, backward and AdamW over a few dozen operators
CALL_FLOOR = 2e-5  # one network call (a sampler step, an ELBO sample)
PEAK_FLOPS = {"cpu": 1e13, "cuda": 2e15}


def least_seconds(units: float, floor: float, flops_each: float = 0.0, device: Any = None) -> float:
    """Return a lower bound of the time of `units` pieces of work of `flops_each` each."""
    rate = PEAK_FLOPS["cuda" if _is_cuda(device) else "cpu"]
    return float(units) * max(floor, flops_each / rate)


# ----------------------------------------------------------------------------------------------
# Networks: parameters, activations, arithmetic


@dataclass(frozen=True)
class NetSize:
    """A network's parameter count and, per example, activation elements and multiply-adds.

    stored: elements kept for the backward pass (training, DPS); live: elements alive at once in
    a forward pass without gradients; macs: multiply-adds of one forward pass.
    """

    params: float
    stored: float
    live: float
    macs: float


def unet_size(
    height: int,
    width: int,
    base_channels: int,
    channel_mults: Sequence[int],
    num_res_blocks: int = 1,
    in_channels: int = 1,
    out_channels: int = 1,
    cond_channels: int = 0,
    time_dim: int = 128,
) -> NetSize:
    """Return the NetSize of gensci.nn.UNet with this config on (height, width) inputs."""
    params = 2.0 * time_dim * time_dim
    stored = live_peak = macs = 0.0
    skips: list[float] = []

    def conv(cin: float, cout: float, k: int, area: float) -> None:
        nonlocal params, macs
        params += k * k * cin * cout + cout
        macs += k * k * cin * cout * area

    def block(cin: float, cout: float, area: float) -> float:
        nonlocal params, stored, live_peak
        conv(cin, cout, 3, area)
        conv(cout, cout, 3, area)
        if cin != cout:
            conv(cin, cout, 1, area)
        params += time_dim * cout + cout + 2 * (cin + cout)
        # norm1, silu (cin each); conv1, + emb, norm2, silu, conv2, skip, sum (cout each)
        stored += (2 * cin + 7 * cout) * area
        live_peak = max(live_peak, (2 * cin + 3 * cout) * area)
        return cout * area

    area = float(height * width)
    conv(in_channels + cond_channels, base_channels, 3, area)
    stored += (in_channels + cond_channels + base_channels) * area
    skips.append(base_channels * area)
    chans = [base_channels * m for m in channel_mults]
    widths = [float(base_channels)]
    w = float(base_channels)
    for level, ch in enumerate(chans):
        for _ in range(num_res_blocks):
            skips.append(block(w, ch, area))
            w = ch
            widths.append(w)
        if level < len(chans) - 1:
            area /= 4
            conv(w, w, 3, area)
            stored += w * area
            skips.append(w * area)
            widths.append(w)
    block(w, w, area)
    block(w, w, area)
    for level, ch in reversed(list(enumerate(chans))):
        for _ in range(num_res_blocks + 1):
            cin = w + widths.pop()
            stored += cin * area  # the concatenation
            block(cin, ch, area)
            w = ch
        if level > 0:
            area *= 4
            conv(w, w, 3, area)
            stored += 2 * w * area  # interpolation and convolution
    conv(w, out_channels, 3, area)
    stored += (2 * w + out_channels) * area
    workspace = 9.0 * base_channels * height * width  # measured: CPU convolution buffers
    return NetSize(params, stored, sum(skips) + live_peak + workspace, macs)


def mlp_size(in_dim: int, out_dim: int, hidden: Sequence[int], dropout: bool = False) -> NetSize:
    """Return the NetSize of gensci.nn.MLP (Linear layers with an activation between them)."""
    dims = [in_dim, *hidden, out_dim]
    params = float(sum(a * b + b for a, b in zip(dims[:-1], dims[1:], strict=True)))
    per_hidden = 3 if dropout else 2  # linear output, activation, dropout mask
    stored = float(in_dim + out_dim + per_hidden * sum(hidden))
    live = float(max(a + b for a, b in zip(dims[:-1], dims[1:], strict=True)))
    return NetSize(params, stored, live, params)


def vae_size(
    x_width: int, latent_dim: int, hidden: Sequence[int], c_dim: int = 0, dropout: bool = False
) -> NetSize:
    """Return the NetSize of gensci.models.vae.VAE (encoder and decoder) over x_width inputs."""
    enc = mlp_size(x_width + c_dim, 2 * latent_dim, hidden, dropout)
    dec = mlp_size(latent_dim + c_dim, x_width, tuple(reversed(hidden)), dropout)
    # the likelihood terms (x, params, z-scores, log-probabilities) per input feature
    extra = 4.0 * x_width + 4.0 * latent_dim
    return NetSize(enc.params + dec.params, enc.stored + dec.stored + extra,
                   max(enc.live, dec.live) + 2.0 * x_width, enc.macs + dec.macs)


def training_bytes(
    net: NetSize, batch_size: int, ema: bool = False, best: bool = False, checkpoints: bool = False
) -> float:
    """Return the bytes of training `net` with the core Trainer (float32, AdamW).

    Per parameter: weight, gradient and two AdamW moments (16 bytes), an EMA copy and a best-state
    copy when kept (4 each), and when checkpoints are written the serialised state (the torch.save
    buffer); per batch: the activations stored for the backward pass (measured: the peak is about
    them); and what training loads on first use.
    """
    copies = 4 + int(ema) + int(best)
    per_param = 4.0 * copies
    if checkpoints:
        per_param += 4.0 * (copies - 1)
    return TRAINING_MODULES + net.params * per_param + 4.0 * net.stored * batch_size


TRAINING_MODULES = 100e6  # measured: the optimiser, writers and progress bars loaded on first use


# ----------------------------------------------------------------------------------------------
# Radon operator (gensci.inverse.radon)

# Measured: the peak while the system matrix is built (the triplet lists, their concatenation,
# the COO index stack, coalescing and CSR conversion, for A and A^T) is ~93 bytes per
# interpolation entry; afterwards the cached triplets (24 bytes), A and A^T in float64 (~18) and,
# for the samplers, in float32 (~13) stay.
RADON_BUILD_BYTES = 96.0
RADON_KEPT_BYTES = 56.0
RADON_CACHED_BYTES = 24.0


def padded_size(n: int) -> int:
    """Return P = n + ceil(sqrt(2) n - n), the detector count the Radon operator defaults to."""
    return n + int(math.ceil(math.sqrt(2.0) * n - n))


def radon_entries(
    n: int, n_angles: int, n_det: int | None = None, det_spacing: float = 1.0
) -> float:
    """Return the interpolation entries (before duplicates are summed) of the Radon matrix:
    four per ray sample inside the n x n image, one sample per pixel along each ray."""
    bins = padded_size(n) if n_det is None else n_det
    covered = min(1.0, bins * det_spacing / n)
    return 4.0 * n * n * covered / det_spacing * n_angles


def radon_bytes(
    n: int, n_angles: int, n_det: int | None = None, det_spacing: float = 1.0
) -> float:
    """Return the peak bytes of building the Radon system matrix (A and A^T) of this geometry."""
    p = padded_size(n)
    bins = p if n_det is None else n_det
    per_angle = 14 * 8.0 * bins * p  # coordinate, weight and index arrays of one angle
    return RADON_BUILD_BYTES * radon_entries(n, n_angles, n_det, det_spacing) + per_angle


def radon_kept_bytes(
    n: int, n_angles: int, n_det: int | None = None, det_spacing: float = 1.0
) -> float:
    """Return the bytes a built Radon operator keeps (cached triplets, A and A^T, two dtypes)."""
    return RADON_KEPT_BYTES * radon_entries(n, n_angles, n_det, det_spacing)


# ----------------------------------------------------------------------------------------------
# What a command needs: labelled parts, checked together


@dataclass
class Need:
    """The memory a run needs, as labelled parts on the host or on the compute device."""

    parts: list[tuple[str, float, bool]] = field(default_factory=list)

    def add(self, label: str, nbytes: float, on_device: bool = False) -> Need:
        """Add a part (bytes >= 0) and return self."""
        self.parts.append((label, max(float(nbytes), 0.0), on_device))
        return self

    @property
    def host(self) -> float:
        return sum(b for _, b, d in self.parts if not d)

    @property
    def device(self) -> float:
        return sum(b for _, b, d in self.parts if d)

    @property
    def total(self) -> float:
        return self.host + self.device

    def dominant(self, on_device: bool | None = None) -> str | None:
        """Return the label of the largest part (of the device's or the host's parts if given)."""
        parts = [p for p in self.parts if on_device is None or p[2] == on_device]
        return max(parts, key=lambda p: p[1])[0] if parts else None


def check_need(need: Need, what: str, hint: str, device: Any = None) -> None:
    """Raise ResourceError if `need` does not fit: all of it in host memory on a CPU run; its
    device parts on the CUDA device and the rest on the host otherwise."""
    if _is_cuda(device):
        check_memory(need.device, what, hint, need.dominant(True), device)
        check_memory(need.host, what, hint, need.dominant(False))
    else:
        check_memory(need.total, what, hint, need.dominant())


def peek_shape(path: str | Path, key: str | None = None) -> tuple[int, ...] | None:
    """Return the shape of the array stored in a file without reading its data, or None.

    .npy (header), .npz (the member `key`, or the only / first one), .h5/.hdf5 (dataset `key`),
    .nii/.nii.gz (header). None when the file cannot be read this way (its reader will say why).
    """
    import numpy as np

    p = Path(path)
    name = p.name.lower()
    try:
        if name.endswith(".npy"):
            with open(p, "rb") as fh:
                return _npy_header_shape(np, fh)
        if name.endswith(".npz"):
            import zipfile

            with zipfile.ZipFile(p) as zf:
                members = [m for m in zf.namelist() if m.endswith(".npy")]
                wanted = f"{key}.npy" if key is not None else None
                member = wanted if wanted in members else (members[0] if members else None)
                if member is None or (key is not None and wanted not in members):
                    return None
                with zf.open(member) as fh:
                    return _npy_header_shape(np, fh)
        if name.endswith((".h5", ".hdf5")):
            import h5py

            with h5py.File(p, "r") as f:
                obj = f.get(key) if key is not None else None
                return tuple(int(s) for s in obj.shape) if obj is not None else None
        if name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            return tuple(int(s) for s in nib.load(str(p)).shape)  # type: ignore[attr-defined]
    except Exception:  # a malformed file: the reader reports it
        return None
    return None


def _npy_header_shape(np: Any, fh: Any) -> tuple[int, ...]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, _ = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, _, _ = np.lib.format.read_array_header_2_0(fh)
    return tuple(int(s) for s in shape)


def h5ad_shape(path: str | Path, layer: str | None = None) -> tuple[int, int, float] | None:
    """Return (cells, genes, bytes of X or the layer as stored) of an .h5ad without reading it."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            node = f["layers"][layer] if layer else f["X"]
            if isinstance(node, h5py.Dataset):
                rows, cols = (int(s) for s in node.shape)
                return rows, cols, float(rows * cols * node.dtype.itemsize)
            rows, cols = (int(s) for s in node.attrs["shape"])
            stored = sum(float(node[k].size * node[k].dtype.itemsize) for k in node)
            return rows, cols, stored
    except Exception:  # not an h5ad the reader accepts: it reports the problem
        return None


def prod(shape: Sequence[int]) -> float:
    """Return the product of a shape as a float (no overflow, 1.0 for ())."""
    out = 1.0
    for s in shape:
        out *= float(s)
    return out


# ----------------------------------------------------------------------------------------------
# Tomography (gensci ct)

F32, F64 = 4.0, 8.0


# samples one chunk of views of the matrix-free torch projectors holds (grid_sample's grid of
# two coordinates and the samples, float64): ParallelBeam's and FanBeam's default chunk sizes
TORCH_CHUNK_SAMPLES = {"parallel": 16 * 2**20, "fan": 3 * 2**20}


def projector_bytes(
    projector: str, n: int, n_angles: int, n_det: int | None = None, geometry: str = "parallel"
) -> tuple[str, float]:
    """Return (label, peak bytes) of applying a CT projector once (`make_projector`): the sparse
    matrix's build for "sparse"; for the matrix-free ones, what they really hold: torch a chunk
    of views' sample grid (bounded, `TORCH_CHUNK_SAMPLES`) plus an image and a sinogram, astra
    float32 copies of the image and the sinogram."""
    bins = padded_size(n) if n_det is None else n_det
    if projector == "sparse":
        return "the Radon system matrix", radon_bytes(n, n_angles, n_det)
    image, sino = float(n * n), float(bins * n_angles)
    if projector == "astra":
        return "the ASTRA projector's float32 image and sinogram", F32 * 2 * (image + sino)
    per_view = float(bins * padded_size(n))  # a chunk holds at least one view
    chunk = max(float(TORCH_CHUNK_SAMPLES.get(geometry, 3 * 2**20)), per_view)
    samples = min(chunk, sino * padded_size(n))
    return "the projector's sample grid", F64 * (3 * samples + 2 * (image + sino))


def ct_simulate_need(
    n: int,
    n_angles: int,
    n_det: int | None = None,
    resize_from: int | None = None,
    projector: str = "sparse",
    geometry: str = "parallel",
) -> Need:
    """Return what `ct simulate` needs: the projector of the geometry (`projector_bytes`), the
    resize of the image from `resize_from` pixels a side (if resized), the image and the
    sinogram."""
    bins = padded_size(n) if n_det is None else n_det
    need = Need().add(*projector_bytes(projector, n, n_angles, n_det, geometry))
    if resize_from is not None:
        need.add("the image resize", F64 * (3.0 * resize_from**2 + 2.0 * n * n))
    return need.add("the image and sinogram", F64 * (4.0 * n * n + 4.0 * bins * n_angles))


def ct_method_bytes(
    method: str,
    n: int,
    n_angles: int,
    n_det: int,
    samples: int,
    unet: NetSize | None = None,
    vae: NetSize | None = None,
    restarts: int = 4,
) -> float:
    """Return the working memory of one reconstruction by `method` (beyond the Radon matrix)."""
    image, sino = float(n * n), float(n_det * n_angles)
    if method == "fbp":
        return F64 * (4 * image + 6 * sino)
    if method == "tv":
        return F64 * (12 * image + 4 * sino)
    if method == "latent":
        net = vae.stored if vae is not None else 4.0 * image
        return restarts * F32 * (net + 4 * (image + sino))
    if method in ("langevin", "dds", "dps"):
        per = (unet.stored if method == "dps" else unet.live) if unet is not None else 0.0
        # the network on all samples at once, the CG vectors of the data step
        return samples * F32 * (per + 6 * (image + sino))
    raise ResourceError(f"unknown method {method!r}")


def ct_reconstruct_need(
    n: int,
    n_angles: int,
    n_det: int,
    method: str,
    samples: int,
    unet: NetSize | None = None,
    vae: NetSize | None = None,
    cuda: bool = False,
    projector: str = "sparse",
    geometry: str = "parallel",
) -> Need:
    """Return what `ct reconstruct` needs: the Radon matrix (built on the host) or, for a
    matrix-free projector, what one application holds (`projector_bytes`), the method's working
    memory and, for the samplers, the samples written out."""
    k = samples if method in ("langevin", "dps", "dds") else 1
    out = 5 * F32 * k * n * n
    if projector != "sparse":
        work = ct_method_bytes(method, n, n_angles, n_det, samples, unet, vae)
        label, nbytes = projector_bytes(projector, n, n_angles, n_det, geometry)
        # ASTRA works on host copies even for CUDA tensors; torch runs where the tensors are
        need = Need().add(label, nbytes, on_device=cuda and projector == "torch")
        need.add(_method_label(method, samples), work, on_device=cuda)
        return need.add("the reconstruction written", out)
    entries = radon_entries(n, n_angles, n_det)
    build = radon_bytes(n, n_angles, n_det)
    kept = radon_kept_bytes(n, n_angles, n_det)
    work = ct_method_bytes(method, n, n_angles, n_det, samples, unet, vae)
    need = Need()
    if cuda:
        need.add("the Radon system matrix", build)
        need.add("the Radon matrices", 31.0 * entries, on_device=True)
        need.add(_method_label(method, samples), work, on_device=True)
    elif build >= kept + work:
        need.add("the Radon system matrix", build)
    else:
        need.add("the Radon system matrix", kept).add(_method_label(method, samples), work)
    return need.add("the reconstruction written", out)


def _method_label(method: str, samples: int) -> str:
    if method in ("langevin", "dds"):
        return f"the prior network on {samples} samples at once"
    if method == "dps":
        return f"the prior network and its gradient on {samples} samples at once"
    if method == "latent":
        return "the VAE decoder and its gradient"
    return f"the {method} iterates"


def ct_study_need(
    n: int,
    n_views: int,
    wedges: Sequence[float],
    n_slices: int,
    methods: Sequence[str],
    samples: int,
    unet: NetSize | None = None,
    vae: NetSize | None = None,
) -> Need:
    """Return what `ct study` needs: the MNI152 slices, each wedge's Radon matrix (the cache keeps
    the earlier wedges' triplets), the largest method's working memory and the sample spread
    split of the samplers."""
    volume = 197 * 233 * 189
    data = F32 * (3.0 * volume + 2.0 * 189 * n * n) + F64 * min(n_slices, 189) * n * n
    fractions = sorted(min(w, 180.0) / 180.0 for w in wedges)
    entries = [radon_entries(n, n_views) * (0.85 + 0.15 * f) for f in fractions]
    cached = RADON_CACHED_BYTES * sum(entries[:-1])
    last = entries[-1] if entries else 0.0
    bins = padded_size(n)
    work = max((ct_method_bytes(m, n, n_views, bins, samples, unet, vae) for m in methods),
               default=0.0)
    if any(m in ("langevin", "dps", "dds") for m in methods):
        work += F64 * 8 * samples * n * n  # range / null-space split of the samples
    radon = max(RADON_BUILD_BYTES * last, RADON_KEPT_BYTES * last + work)
    need = Need().add("the MNI152 slices", data)
    need.add("the Radon matrices of the wedges", cached + radon)
    return need


def ct_train_need(
    kind: str,
    n: int,
    batch_size: int,
    base_channels: int,
    channel_mults: Sequence[int],
    latent_dim: int,
    n_slices: int,
    source_elements: float,
    augment: int = 0,
    cuda: bool = False,
) -> Need:
    """Return what `ct train-prior` needs: the source volume (read as float64), its slices at n x n,
    the training tensor (mirrored and augmented) and the training of the model."""
    images = 2.0 * n_slices * (1 + augment)
    data = F64 * 2 * source_elements + F32 * (2.0 * n_slices * n * n + 4.0 * images * n * n)
    net = ct_prior_net(kind, n, base_channels, channel_mults, latent_dim)
    train = training_bytes(net, batch_size, ema=kind == "diffusion", checkpoints=True)
    return Need().add("the training slices", data).add(
        f"training the {kind} prior", train, on_device=cuda)


def ct_prior_net(
    kind: str, n: int, base_channels: int, channel_mults: Sequence[int], latent_dim: int
) -> NetSize:
    """Return the NetSize of the CT prior `kind` (see gensci.tomography.prior.build_model)."""
    if kind == "diffusion":
        return unet_size(n, n, base_channels, channel_mults, 1, time_dim=64)
    return vae_size(n * n, latent_dim, (512, 256))


def unet_of(config: Any, height: int, width: int) -> NetSize:
    """Return the NetSize of the UNet of a DiffusionConfig (net='unet') on (height, width)."""
    channels = int(config.data_shape[0]) if getattr(config, "data_shape", None) else 1
    return unet_size(
        height, width, int(config.base_channels), tuple(config.channel_mults),
        int(config.num_res_blocks), channels, channels, int(getattr(config, "cond_channels", 0)),
        max(int(config.time_dim), 32),
    )


def vae_of(config: Any) -> NetSize:
    """Return the NetSize of the VAE of a VAEConfig."""
    width = int(config.data_dim) * (
        int(config.n_categories) if config.likelihood == "categorical" else 1
    )
    c_dim = int(config.n_labels or config.cond_dim)
    return vae_size(width, int(config.latent_dim), tuple(config.hidden), c_dim,
                    dropout=float(config.dropout) > 0)


def ct_reconstruct_seconds(
    method: str,
    steps: int,
    samples: int,
    n: int,
    n_angles: int,
    unet: NetSize | None = None,
    vae: NetSize | None = None,
    device: Any = None,
) -> float:
    """Return a lower bound of the time of one reconstruction (`steps` of the method)."""
    matvec = 2.0 * 2.2 * n * n * n_angles  # one product with A (about 2.2 n^2 entries per view)
    if method in ("langevin", "dds", "dps") and unet is not None:
        calls = {"langevin": 2, "dds": 1, "dps": 3}[method]  # pc corrector; DPS backward
        return least_seconds(steps * calls, CALL_FLOOR, 2.0 * samples * unet.macs, device)
    if method == "latent" and vae is not None:
        return least_seconds(steps, STEP_FLOOR, 6.0 * 4 * vae.macs, device)
    return least_seconds(steps, CALL_FLOOR, 2 * matvec, device)


def training_seconds(net: NetSize, steps: int, batch_size: int, device: Any = None) -> float:
    """Return a lower bound of the time of `steps` optimiser steps on batches of `batch_size`."""
    return least_seconds(steps, STEP_FLOOR, 6.0 * net.macs * batch_size, device)


def ct_study_seconds(
    n: int,
    n_views: int,
    n_wedges: int,
    n_slices: int,
    method_steps: dict[str, int],
    samples: int,
    unet: NetSize | None = None,
    vae: NetSize | None = None,
    device: Any = None,
) -> float:
    """Return a lower bound of the time of `ct study`: every method on every slice and wedge
    (TV once per weight of its grid of five)."""
    per_slice = sum(
        ct_reconstruct_seconds(m, s, samples, n, n_views, unet, vae, device)
        * (5 if m == "tv" else 1)
        for m, s in method_steps.items()
    )
    return n_wedges * min(n_slices, 189) * per_slice  # the template has 189 axial slices


# ----------------------------------------------------------------------------------------------
# Poisson (gensci poisson)


def poisson_generate_need(n_examples: int, n: int, families: Sequence[str]) -> Need:
    """Return what `poisson generate` needs: rho (drawn, joined, permuted), boundary and phi for
    every example at once, and the largest per-field or per-chunk temporaries."""
    field_bytes = F64 * float(n_examples) * n * n
    grf = any(f.startswith("grf") for f in families)
    temps = max(80.0 * 4 * n * n if grf else 0.0, 8 * F64 * n * n,
                8 * F64 * min(n_examples, 256) * n * n)
    return Need().add("the rho, phi and boundary arrays", 4 * field_bytes).add(
        "the field generators and the exact solver", temps)


def poisson_dataset_bytes(n_examples: int, n: int) -> float:
    """Return the size of a written dataset: rho and phi (random doubles hardly compress)."""
    return 2 * F64 * float(n_examples) * n * n


def poisson_net(
    kind: str, n: int, base_channels: int, channel_mults: Sequence[int], cond_channels: int = 1
) -> NetSize:
    """Return the NetSize of a Poisson surrogate's UNet (gensci.poisson.surrogate)."""
    if kind == "diffusion":
        return unet_size(n, n, base_channels, channel_mults, 1, 1, 1, cond_channels, 64)
    return unet_size(n, n, base_channels, channel_mults, 1, cond_channels, 1, 0, 64)


def poisson_train_need(
    n_examples: int,
    n: int,
    batch_size: int,
    net: NetSize,
    cuda: bool = False,
) -> Need:
    """Return what `poisson train` needs: the dataset read (float64, converted), its training
    tensors (harmonic lift of every boundary, conditions, targets) and the training."""
    data = 7 * F64 * float(n_examples) * n * n
    return Need().add("the dataset and its training tensors", data).add(
        "training the surrogate", training_bytes(net, batch_size, ema=True, checkpoints=True),
        on_device=cuda)


def poisson_solve_need(
    n_fields: int, n: int, samples: int = 1, net: NetSize | None = None, boundary: bool = False,
    batch_size: int = 64, cuda: bool = False,
) -> Need:
    """Return what `poisson solve` needs: rho (and boundary) read as float64, the exact solver's
    transforms or the surrogate's draws (samples x fields) with its network on one batch, and the
    residual checks."""
    fields = F64 * float(n_fields) * n * n
    need = Need().add("the input fields", fields * (4 if boundary else 2))
    if net is None:
        return need.add("the exact solver", 4 * fields)
    need.add(f"{samples} surrogate draws of every field", (2 * samples + 6) * fields)
    return need.add("the surrogate network", F32 * min(batch_size, n_fields) * net.live,
                    on_device=cuda)


def poisson_study_need(
    n_file: int, n_used: int, n: int, nets: Sequence[NetSize], variants: int
) -> Need:
    """Return what `poisson study` needs: the dataset read whole, the exact solve and the kept
    predictions of every variant (each a copy of the fields), and the networks on one batch."""
    read = 6 * F64 * float(n_file) * n * n
    used = F64 * float(n_used) * n * n
    live = max((F32 * min(64, n_used) * net.live for net in nets), default=0.0)
    return Need().add("the dataset", read).add(
        "the exact solve and the predictions", (10 + 2 * variants) * used).add(
        "the surrogate networks", live)


def poisson_solve_seconds(
    n_fields: int, samples: int, steps: int, net: NetSize, batch_size: int = 64,
    device: Any = None,
) -> float:
    """Return a lower bound of the surrogate solve time: steps x samples x batches calls."""
    batch = min(batch_size, n_fields)
    calls = steps * samples * math.ceil(n_fields / max(batch, 1))
    return least_seconds(calls, CALL_FLOOR, 2.0 * batch * net.macs, device)


def checkpoint_config(path: str | Path) -> dict[str, Any] | None:
    """Return the model config stored in a gensci checkpoint's header without reading its
    weights, or None when the file is not one (its loader will say why)."""
    import json

    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 0 < size < 2**27:
                return None
            header = json.loads(fh.read(size))
        config = json.loads(header["__metadata__"]["gensci_config"])
    except Exception:  # not a gensci checkpoint: the loader reports it
        return None
    return config if isinstance(config, dict) else None


# ----------------------------------------------------------------------------------------------
# Cells (gensci cells)


def cells_net(
    n_genes: int, latent_dim: int, hidden: Sequence[int], conditional: bool = False
) -> NetSize:
    """Return the NetSize of the perturbation VAE (gensci.cells.model, dropout on)."""
    return vae_size(n_genes, latent_dim, hidden, 2 if conditional else 0, dropout=True)


def cells_data_bytes(n_cells: int, n_genes: int, stored: float, copies: int = 1) -> float:
    """Return the expression data in memory: the AnnData (`copies` of X as stored: the read and
    each held-out copy) and the dense float32 training rows (all cells, then the split)."""
    return copies * stored + 2.2 * F32 * float(n_cells) * n_genes


def cells_train_need(
    n_cells: int,
    n_genes: int,
    stored: float,
    net: NetSize,
    batch_size: int,
    held_out: int = 0,
    cuda: bool = False,
) -> Need:
    """Return what `cells train` needs: the data (with a copy per held-out type) and the
    training (early stopping keeps a best-state copy; the state is written at the end)."""
    return Need().add(
        "the expression data", cells_data_bytes(n_cells, n_genes, stored, 1 + held_out)
    ).add("training the VAE", training_bytes(net, batch_size, best=True, checkpoints=True),
          on_device=cuda)


def cells_predict_need(
    n_cells: int,
    n_genes: int,
    stored: float,
    params_bytes: float,
    latent_dim: int,
    n_bootstrap: int,
    held_out: int = 0,
) -> Need:
    """Return what `cells predict` needs: the data (with a copy per held-out type), the model,
    the encoded training cells, the predicted cells (pred, base, output) and the bootstrap draws
    of the delta (n_bootstrap x latent)."""
    cells = F32 * float(n_cells) * n_genes
    return Need().add(
        "the expression data", cells_data_bytes(n_cells, n_genes, stored, 1 + held_out)
        + 4 * cells).add("the model", params_bytes + F32 * float(n_cells) * latent_dim).add(
        f"{n_bootstrap} bootstrap draws of the delta", F64 * float(n_bootstrap) * latent_dim)


def cells_study_need(
    n_cells: int, n_genes: int, stored: float, net: NetSize, batch_size: int, n_bootstrap: int,
    latent_dim: int,
) -> Need:
    """Return what `cells study` needs: the data and one held-out copy, dense training rows, the
    baselines' dense matrices (PCA of every cell), one model's training and the bootstraps."""
    cells = F32 * float(n_cells) * n_genes
    return Need().add(
        "the expression data", cells_data_bytes(n_cells, n_genes, stored, 2) + 4 * cells).add(
        "training the VAE", training_bytes(net, batch_size, best=True, checkpoints=True)).add(
        "the bootstrap draws", F64 * float(n_bootstrap) * latent_dim * 2)


def epochs_seconds(
    net: NetSize, n_cells: int, epochs: int, batch_size: int, device: Any = None
) -> float:
    """Return a lower bound of the time of `epochs` passes over 90% of `n_cells` in batches."""
    steps = epochs * max(1, math.ceil(0.9 * n_cells / max(batch_size, 1)))
    return training_seconds(net, steps, batch_size, device)


# ----------------------------------------------------------------------------------------------
# Protein (gensci protein)

LETTERS = 21  # the alignment alphabet: gap and 20 amino acids
# Measured per design (gensci protein design, fn3, 78 positions): ~4 kB, mostly the Python
# strings, the metrics row (a dict) and the FASTA / CSV text built in memory.
DESIGN_BYTES, DESIGN_BYTES_PER_POSITION = 2000.0, 25.0


def protein_net(length: int, latent_dim: int, hidden: Sequence[int], dropout: float = 0.2) -> NetSize:
    """Return the NetSize of the family VAE over `length` positions (gensci.protein.model)."""
    return vae_size(length * LETTERS, latent_dim, hidden, dropout=dropout > 0)


def protein_train_need(
    n_sequences: int, length: int, net: NetSize, batch_size: int, cuda: bool = False
) -> Need:
    """Return what `protein train` needs: the codes, the identity reweighting (one-hot reference
    and a chunk of pairwise identities), the metadata stored with the model, and the training
    (plus the saved weights)."""
    rows = float(n_sequences)
    data = rows * length * (20 + 8 + 8) + 1024 * rows * 12 + 6 * rows * (length + 50)
    train = training_bytes(net, batch_size) + 2 * F32 * net.params
    return Need().add("the alignment and its weights", data).add(
        "training the VAE", train, on_device=cuda)


def protein_design_bytes(n: int, length: int, latent_dim: int) -> float:
    """Return the memory of `n` designs: latent points, decoded rows, strings, metrics rows."""
    per = DESIGN_BYTES + DESIGN_BYTES_PER_POSITION * length + 2 * F32 * latent_dim
    return float(n) * per + 3 * F32 * 4096 * length * LETTERS


def protein_design_disk(n: int, length: int) -> float:
    """Return the size of designs.fasta and metrics.csv for `n` designs."""
    return float(n) * (2 * length + 200)


def protein_study_need(
    n_sequences: int, length: int, n_designs: int, net: NetSize, batch_size: int,
    latent_dim: int,
) -> Need:
    """Return what `protein study` needs: the training, the VAE's and the site-independent
    sampler's designs, and the sub-family clustering (pairwise identities of every natural)."""
    rows = float(n_sequences)
    need = protein_train_need(n_sequences, length, net, batch_size)
    need.add("the designs of both samplers", 2 * protein_design_bytes(n_designs, length,
                                                                      latent_dim))
    return need.add("the pairwise identities of the alignment",
                    26.0 * rows * rows + 160.0 * rows * length)


def count_lines(path: str | Path) -> int:
    """Return the number of lines of a text file, read in blocks (nothing kept)."""
    count = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            count += block.count(b"\n")
    return count


def protein_score_need(
    n_rows: int, file_bytes: float, length: int, net: NetSize, batch_size: int
) -> Need:
    """Return what `protein score` needs: the CSV rows (dicts), each mutant's aligned row and
    the merged output rows, and one batch through the VAE."""
    rows = float(n_rows) * (1000 + 16 * length) + 4 * file_bytes
    batch = F32 * min(batch_size, max(n_rows, 10)) * (net.live + 3 * length * LETTERS)
    return Need().add("the mutants and their scores", rows).add("one batch of the VAE", batch)


def protein_score_seconds(
    n_rows: int, samples: int, batch_size: int, net: NetSize, device: Any = None
) -> float:
    """Return a lower bound of the scoring time: samples x batches decoder calls."""
    batch = min(batch_size, max(n_rows, 1))
    calls = samples * (math.ceil(n_rows / max(batch, 1)) + 1)
    return least_seconds(calls, CALL_FLOOR, 2.0 * batch * net.macs, device)


# ----------------------------------------------------------------------------------------------
# Calorimetry (gensci calo)


def calo_showers_need(n_showers: int, n_voxels: int, chunk: int = 2000) -> Need:
    """Return what `calo simulate` / `calo generate` need: the showers (float32) kept for the
    file, and the float64 temporaries of one chunk (Poisson means, counts, noise)."""
    kept = F32 * float(n_showers) * n_voxels
    temps = 6 * F64 * min(n_showers, chunk) * n_voxels
    return Need().add("the showers", kept).add("one chunk of simulation or sampling", temps)


def calo_file_bytes(n_showers: int, n_voxels: int) -> float:
    """Return the size of a written shower file before compression (float32 voxels)."""
    return F32 * float(n_showers) * (n_voxels + 2)


# ----------------------------------------------------------------------------------------------
# Style (gensci style)


def style_train_need(n_images: int, size: int, batch_size: int, channels: int = 64) -> Need:
    """Return what `style train` needs: the rendered images with their masks and factors (float32,
    plus the renderer's float64 temporaries for one image set), and the activations of one batch
    through a generator and its encoder (about 12 maps of `channels` at full size, kept for the
    backward pass)."""
    pixels = float(size) * size
    data = F32 * n_images * pixels * (3 + 1) + F64 * n_images * pixels * 3
    activations = 12 * F32 * batch_size * channels * pixels
    return (Need().add("the rendered training images and masks", data)
            .add("one batch of activations", activations, on_device=True))
