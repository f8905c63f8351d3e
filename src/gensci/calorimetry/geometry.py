"""Segmented cylindrical calorimeters in the CaloChallenge binning: layers of radial x angular bins.

Voxel order follows the CaloChallenge files: layer by layer, and inside a layer angular-bin major,
index = alpha * n_r + r. Radial edges are in mm, as in the CaloChallenge binning XML files.
`depth` gives each layer's extent along the shower axis in radiation lengths X0; the truth
simulator needs it (the CaloChallenge files do not carry it; our values are approximate).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from gensci.errors import ConfigError, ShapeError


@dataclass(frozen=True)
class Layer:
    id: int
    r_edges: tuple[float, ...]  # mm, increasing, starting at 0
    n_alpha: int  # angular bins
    depth: tuple[float, float]  # start and end along the shower axis, in X0

    @property
    def n_r(self) -> int:
        return len(self.r_edges) - 1

    @property
    def n_voxels(self) -> int:
        return self.n_r * self.n_alpha


@dataclass(frozen=True)
class Geometry:
    name: str
    layers: tuple[Layer, ...]
    moliere_radius: float  # mm
    critical_energy: float  # MeV
    z: float  # effective atomic number (GFlash parametrisation)

    @property
    def n_voxels(self) -> int:
        return sum(layer.n_voxels for layer in self.layers)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return tuple(layer.n_voxels for layer in self.layers)

    def layer_slices(self) -> list[slice]:
        """Return the voxel slice of each layer in a flat shower (D,)."""
        out, start = [], 0
        for n in self.layer_sizes:
            out.append(slice(start, start + n))
            start += n
        return out

    def voxel_centres(self, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (x, y) in mm of the voxel centres of one layer, each (n_alpha * n_r,).

        The centre of a bin is at its mid radius and mid angle; a layer with one angular bin has
        its centres on the axis direction alpha = 0 (its x, y centres carry no information)."""
        lay = self.layers[layer]
        edges = np.asarray(lay.r_edges)
        r_mid = 0.5 * (edges[1:] + edges[:-1])
        alpha = (np.arange(lay.n_alpha) + 0.5) * 2 * np.pi / lay.n_alpha
        if lay.n_alpha == 1:
            alpha = np.zeros(1)
        x = (np.cos(alpha)[:, None] * r_mid[None, :]).ravel()
        y = (np.sin(alpha)[:, None] * r_mid[None, :]).ravel()
        return x, y

    def voxel_radii(self, layer: int) -> np.ndarray:
        """Return the mid radius in mm of each voxel of one layer, (n_alpha * n_r,)."""
        lay = self.layers[layer]
        edges = np.asarray(lay.r_edges)
        return np.tile(0.5 * (edges[1:] + edges[:-1]), lay.n_alpha)

    def binning(self) -> dict[str, Any]:
        """Return the binning as a JSON-ready dict (written beside the showers in our files)."""
        return {
            "name": self.name, "moliere_radius_mm": self.moliere_radius,
            "critical_energy_mev": self.critical_energy, "z": self.z,
            "layers": [{"id": la.id, "r_edges": list(la.r_edges), "n_bin_alpha": la.n_alpha,
                        "depth_x0": list(la.depth)} for la in self.layers],
        }

    def to_json(self) -> str:
        return json.dumps(self.binning())


# CaloChallenge dataset 1, photons (binning_dataset_1_photons.xml): the non-empty ATLAS layers
# 0 (presampler), 1, 2, 3 (EM barrel) and 12 (first tile layer). Depths: approximate, in X0.
_DS1_PHOTON = Geometry(
    name="ds1-photon",
    layers=(
        Layer(0, (0, 5, 10, 30, 50, 100, 200, 400, 600), 1, (0.0, 2.0)),
        Layer(1, (0, 2, 4, 6, 8, 10, 12, 15, 20, 30, 40, 50, 70, 90, 120, 150, 200), 10,
              (2.0, 6.3)),
        Layer(2, (0, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 130, 160, 200, 250, 300,
                  350, 400), 10, (6.3, 22.3)),
        Layer(3, (0, 50, 100, 200, 400, 600), 1, (22.3, 24.3)),
        Layer(12, (0, 100, 200, 400, 1000, 2000), 1, (24.3, 40.0)),
    ),
    moliere_radius=30.0, critical_energy=8.0, z=82.0,
)

# CaloChallenge dataset 2: 45 layers x 16 angular x 9 radial bins of 4.65 mm (a W-Si sampling
# calorimeter); 0.55 X0 per layer (approximate).
_DS2_EDGES = tuple(round(4.65 * i, 2) for i in range(10))
_DS2 = Geometry(
    name="ds2",
    layers=tuple(Layer(i, _DS2_EDGES, 16, (0.55 * i, 0.55 * (i + 1))) for i in range(45)),
    moliere_radius=9.3, critical_energy=8.0, z=74.0,
)

GEOMETRIES: dict[str, Geometry] = {g.name: g for g in (_DS1_PHOTON, _DS2)}


def get_geometry(name: str) -> Geometry:
    """Return the named geometry; raise ConfigError naming the choices otherwise."""
    if name not in GEOMETRIES:
        raise ConfigError(f"unknown geometry {name!r}; choose one of {sorted(GEOMETRIES)}")
    return GEOMETRIES[name]


def infer_geometry(n_voxels: int, where: str) -> Geometry:
    """Return the geometry with n_voxels voxels (a CaloChallenge file names none); raise
    ShapeError naming the file otherwise."""
    for g in GEOMETRIES.values():
        if g.n_voxels == n_voxels:
            return g
    known = ", ".join(f"{g.name}: {g.n_voxels}" for g in GEOMETRIES.values())
    raise ShapeError(f"{where} has {n_voxels} voxels per shower, which matches no known "
                     f"geometry ({known})")
