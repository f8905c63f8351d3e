"""Stain normalisation through the CLI a user runs, on a staining draw and tiles not used in
tuning: 16 source tiles and 32 reference tiles of 64 x 64 from the slide's right half (seed 777),
written as 8-bit PNGs, normalised by `gensci style normalize --method M` (slide statistics), and
measured against the truth as the benchmark does (SSIM of the H map, distance to the truth).

    OMP_NUM_THREADS=1 python benchmarks/style_cli_check.py   # -> results/style_cli_check.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from gensci.style.data import random_stains, restain, tile_boxes, tissue_concentrations
from gensci.style.io import read_rgb, write_png
from gensci.style.metrics import stain_distance, structure_ssim

RESULTS = Path(__file__).parent / "results"
SEED, SIZE, SPREAD = 777, 64, 0.5


def main() -> dict:
    rng = np.random.default_rng(SEED)
    conc = tissue_concentrations()
    boxes = tile_boxes(conc.shape, 48, SIZE, "test", SEED)
    m_a, g_a = random_stains(rng, SPREAD)
    m_b, g_b = random_stains(rng, SPREAD)
    src_boxes, ref_boxes = boxes[:16], boxes[16:]

    def cut(b: np.ndarray) -> np.ndarray:
        return conc[b[0] : b[0] + SIZE, b[1] : b[1] + SIZE]

    out: dict = {"seed": SEED, "spread": SPREAD, "n_source": 16, "n_reference": 32}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for d in ("src", "ref"):
            (root / d).mkdir()
        for i, b in enumerate(src_boxes):
            write_png(root / "src" / f"t{i:02d}.png", restain(cut(b), m_a, g_a))
        for i, b in enumerate(ref_boxes):
            write_png(root / "ref" / f"r{i:02d}.png", restain(cut(b), m_b, g_b))
        for method in ("none", "adain", "macenko", "reinhard"):
            folder = root / "src"
            if method != "none":
                folder = root / f"out_{method}"
                cmd = [sys.executable, "-m", "gensci.cli", "style", "normalize", str(root / "src"),
                       "--reference", str(root / "ref"), "--method", method, "--out", str(folder)]
                subprocess.run(cmd, check=True, capture_output=True)
            ssim, dist = [], []
            for i, b in enumerate(src_boxes):
                o = read_rgb(folder / f"t{i:02d}.png")
                ssim.append(structure_ssim(o, cut(b)[..., 0], m_b, g_b[0]))
                dist.append(stain_distance(o, restain(cut(b), m_b, g_b)))
            out[method] = {"ssim_h": [float(np.mean(ssim)), float(np.std(ssim))],
                           "stain_dist_truth": [float(np.mean(dist)), float(np.std(dist))]}
            print(method, out[method], flush=True)
    return out


if __name__ == "__main__":
    result = main()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "style_cli_check.json").write_text(json.dumps(result, indent=2))
