"""Data with known factors: rendered shapes under known styles, and one real tissue image under
known stainings.

Shapes: content = (shape class, position, scale, rotation), drawn as a binary mask; style =
(texture, hue, contrast), the texture a patch cut from scikit-image's bundled brick, grass or gravel
photograph or a procedural one. `render(factors)` draws exactly the image `sample_factors` +
`render` gave, so every image carries its factors.

Tissue: scikit-image's immunohistochemistry image (haematoxylin, eosin, DAB). Beer-Lambert colour
deconvolution gives stain concentrations C (H, W, 3) with OD = -log10(rgb) = C M, M (3, 3) one stain
OD vector per row (Ruifrok & Johnston 2001); `render_stains(C, M')` is the same tissue under
another staining M', the truth known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gensci.errors import ConfigError, ShapeError

SHAPES = ("square", "disk", "triangle", "cross")
TEXTURES = ("brick", "grass", "gravel", "stripes", "blobs")
CONTENT_FACTORS = ("shape", "x", "y", "scale", "rotation")
STYLE_FACTORS = ("texture", "hue", "contrast")
FACTORS = CONTENT_FACTORS + STYLE_FACTORS
BACKGROUND = 0.15


@dataclass
class ShapeSet:
    """images (N, 3, S, S) in [0, 1], masks (N, 1, S, S) in {0, 1}, factors (N, 8) in FACTORS
    order, and the texture patch offsets (N, 2) (a nuisance, kept so renders reproduce)."""

    images: np.ndarray
    masks: np.ndarray
    factors: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


_TEXTURE_CACHE: dict[str, np.ndarray] = {}


def _photo(name: str) -> np.ndarray:
    """Return a bundled grayscale texture photograph in [0, 1]: (512, 512)."""
    if name not in _TEXTURE_CACHE:
        import skimage.data

        _TEXTURE_CACHE[name] = getattr(skimage.data, name)().astype(np.float64) / 255.0
    return _TEXTURE_CACHE[name]


def texture_patch(kind: int, size: int, offset: np.ndarray) -> np.ndarray:
    """Return a texture patch standardised to [0, 1]: (size, size). offset (2,) in [0, 1)."""
    name = TEXTURES[kind]
    if name in ("brick", "grass", "gravel"):
        photo = _photo(name)
        # a 2x-downsampled cut, so a small image still shows several texture periods
        span = 2 * size
        i, j = (offset * (photo.shape[0] - span)).astype(int)
        patch = photo[i : i + span, j : j + span].reshape(size, 2, size, 2).mean(axis=(1, 3))
    else:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
        phase = 2 * np.pi * offset
        if name == "stripes":
            patch = np.sin(2 * np.pi * (xx + yy) / 6.0 + phase[0])
        else:
            patch = np.sin(2 * np.pi * xx / 9.0 + phase[0]) * np.sin(
                2 * np.pi * yy / 7.0 + phase[1]
            )
    lo, hi = patch.min(), patch.max()
    return (patch - lo) / max(hi - lo, 1e-8)


def hue_colour(hue: float) -> np.ndarray:
    """Return the RGB colour of `hue` in [0, 1) at saturation 0.8, value 1: (3,)."""
    from skimage.color import hsv2rgb

    return hsv2rgb(np.array([[[hue, 0.8, 1.0]]]))[0, 0]


def shape_mask(
    shape: int, x: float, y: float, scale: float, rotation: float, size: int
) -> np.ndarray:
    """Return the binary mask (size, size) of a shape centred at (x, y) (fractions of the side),
    half-width `scale` (fraction of the side), turned by `rotation` radians; pixel centres tested."""
    coords = (np.arange(size) + 0.5) / size
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    dx, dy = xx - x, yy - y
    c, s = np.cos(rotation), np.sin(rotation)
    u, v = (c * dx + s * dy) / scale, (-s * dx + c * dy) / scale
    name = SHAPES[shape]
    if name == "square":
        m = (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    elif name == "disk":
        m = u**2 + v**2 <= 1.0
    elif name == "triangle":  # equilateral, circumradius 1
        m = (v >= -0.5) & (v <= 1.0 - np.sqrt(3) * np.abs(u))
    else:
        m = ((np.abs(u) <= 1.0) & (np.abs(v) <= 0.35)) | ((np.abs(v) <= 1.0) & (np.abs(u) <= 0.35))
    return m.astype(np.float32)


def sample_factors(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return factors (n, 8) in FACTORS order and texture offsets (n, 2), drawn from `seed`."""
    rng = np.random.default_rng(seed)
    f = np.empty((n, len(FACTORS)))
    f[:, 0] = rng.integers(0, len(SHAPES), n)
    f[:, 1:3] = rng.uniform(0.35, 0.65, (n, 2))
    f[:, 3] = rng.uniform(0.2, 0.3, n)
    f[:, 4] = rng.uniform(0.0, np.pi / 2, n)
    f[:, 5] = rng.integers(0, len(TEXTURES), n)
    f[:, 6] = rng.uniform(0.0, 1.0, n)
    f[:, 7] = rng.uniform(0.2, 0.7, n)  # the foreground stays brighter than the background
    return f, rng.uniform(0.0, 1.0, (n, 2))


def render(factors: np.ndarray, offsets: np.ndarray, size: int = 32) -> ShapeSet:
    """Return the images and masks of the given factors (n, 8) and texture offsets (n, 2).

    foreground = colour(hue) (1 - contrast + contrast texture); background = BACKGROUND + 0.1 texture.
    """
    if factors.ndim != 2 or factors.shape[1] != len(FACTORS) or offsets.shape != (len(factors), 2):
        raise ShapeError(
            f"factors {factors.shape} and offsets {offsets.shape} must be (n, "
            f"{len(FACTORS)}) and (n, 2)"
        )
    if size < 8:
        raise ConfigError(f"image size must be >= 8, got {size}")
    n = len(factors)
    images = np.empty((n, 3, size, size), np.float32)
    masks = np.empty((n, 1, size, size), np.float32)
    for k, (f, off) in enumerate(zip(factors, offsets, strict=True)):
        m = shape_mask(int(f[0]), f[1], f[2], f[3], f[4], size)
        t = texture_patch(int(f[5]), size, off)
        fg = hue_colour(f[6])[:, None, None] * (1 - f[7] + f[7] * t)[None]
        bg = np.broadcast_to(BACKGROUND + 0.1 * t, (3, size, size))
        images[k] = m * fg + (1 - m) * bg
        masks[k, 0] = m
    return ShapeSet(images, masks, factors, offsets)


def make_shapes(n: int, size: int = 32, seed: int = 0) -> ShapeSet:
    """Return n seeded renders with their factors."""
    if n < 1:
        raise ConfigError(f"number of images must be >= 1, got {n}")
    f, off = sample_factors(n, seed)
    return render(f, off, size)


# -- tissue ---------------------------------------------------------------------------------------
def tissue_image() -> np.ndarray:
    """Return scikit-image's immunohistochemistry image as floats in [0, 1]: (512, 512, 3)."""
    import skimage.data

    return skimage.data.immunohistochemistry().astype(np.float64) / 255.0


def reference_stains() -> np.ndarray:
    """Return scikit-image's H, E, DAB optical-density vectors, one per row: (3, 3)."""
    from skimage.color import rgb_from_hed

    return np.asarray(rgb_from_hed, dtype=np.float64)


def deconvolve(rgb: np.ndarray, stains: np.ndarray) -> np.ndarray:
    """Return stain concentrations C with -log10(rgb) = C stains: rgb (..., 3) -> (..., 3)."""
    od = -np.log10(np.clip(rgb, 1e-6, 1.0))
    return od @ np.linalg.inv(stains)


def render_stains(conc: np.ndarray, stains: np.ndarray) -> np.ndarray:
    """Return rgb = 10^(-C stains), clipped to [0, 1]: conc (..., 3) -> (..., 3)."""
    return np.clip(10.0 ** (-(conc @ stains)), 0.0, 1.0)


def random_stains(rng: np.random.Generator, spread: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Return (stains (3, 3), intensities (3,)): the reference H, E and DAB vectors with each
    component scaled by exp(N(0, spread^2)) (norms kept), and per-stain intensity factors drawn
    log-uniformly in [exp(-spread), exp(spread)]."""
    m = reference_stains().copy()
    for i in range(3):
        v = m[i] * np.exp(rng.normal(0.0, spread, 3))
        m[i] = v / np.linalg.norm(v) * np.linalg.norm(m[i])
    gains = np.exp(rng.uniform(-spread, spread, 3))
    return m, gains


def restain(conc: np.ndarray, stains: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Return the tissue with concentrations `conc` (..., 3) under stains scaled by `gains`."""
    return render_stains(conc * gains, stains)


def tissue_concentrations() -> np.ndarray:
    """Return the stain concentrations of the tissue image under the reference stains: (512, 512, 3)."""
    return np.clip(deconvolve(tissue_image(), reference_stains()), 0.0, None)


def tile_boxes(shape: tuple[int, ...], n: int, size: int, region: str, seed: int) -> np.ndarray:
    """Return the top-left corners (n, 2) of n random tiles of a (H, W, ...) slide: region "train"
    is the left half of the slide, "test" the right half (no pixel shared)."""
    h, w = shape[0], shape[1]
    half = w // 2
    lo, hi = (0, half) if region == "train" else (half, w)
    if size > hi - lo or size > h:
        raise ConfigError(f"tile size {size} exceeds the {region} region ({h} x {hi - lo})")
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, h - size + 1, n)
    xs = rng.integers(lo, hi - size + 1, n)
    return np.stack([ys, xs], axis=1)


def tissue_tiles(conc: np.ndarray, n: int, size: int, region: str, seed: int) -> np.ndarray:
    """Return n random tiles of the concentration maps: (n, size, size, 3). region "train" is the
    left half of the slide, "test" the right half (no pixel shared)."""
    boxes = tile_boxes(conc.shape, n, size, region, seed)
    return np.stack([conc[y : y + size, x : x + size] for y, x in boxes])
