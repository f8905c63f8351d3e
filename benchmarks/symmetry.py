"""Symmetry study benchmark: equivariance error, compressed-sensing m* (C4 vs plain vs Lasso),
training-data efficiency, m* against the latent dimension d, recovery time per image (CPU).

    OMP_NUM_THREADS=1 python benchmarks/symmetry.py digits      # -> results/symmetry_digits.json
    OMP_NUM_THREADS=1 python benchmarks/symmetry.py galaxies    # -> results/symmetry_galaxies.json
    OMP_NUM_THREADS=1 python benchmarks/symmetry.py efficiency  # -> results/symmetry_efficiency.json
    OMP_NUM_THREADS=1 python benchmarks/symmetry.py dimension   # -> results/symmetry_dimension.json
    python benchmarks/symmetry.py summary                       # -> results/symmetry.json

Targets: C4 equivariance error <= 1e-5 (float32); m*(C4) <= 0.7 m*(plain) on digits and on
galaxies; the plain model's quality reached by C4 with <= 0.5 x the training images.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gensci.models.equivariant import EquivariantVAE, EquivariantVAEConfig, matched_plain_config
from gensci.symmetry.data import rotated_digits, split, upright_digits
from gensci.symmetry.model import frechet_distance, heldout_elbo, train_feature_net
from gensci.symmetry.study import (
    SCALES,
    baseline_wins,
    m_star_summary,
    model_configs,
    run_study,
    scaled,
    train_config,
    write_report,
)
from gensci.symmetry.task import SUCCESS_THRESHOLD, m_star, measure, recover_latent, relative_error

RESULTS = Path(__file__).parent / "results"
SEED = 0


def digits_scale():  # type: ignore[no-untyped-def]
    return scaled(SCALES["small"], ms=(16, 32, 64, 128, 256), n_test=30, map_steps=200)


def galaxies_scale():  # type: ignore[no-untyped-def]
    return scaled(SCALES["small"], channels=(12, 8, 4), steps=1200, batch_size=16,
                  ms=(32, 64, 128, 256, 512), n_test=20, map_steps=200)


def digits_d64_scale():  # type: ignore[no-untyped-def]
    """Larger generators whose representation error on held-out digits can go below 0.1: d = 64
    (a linear model needs 64 components for 90 % of held-out digits below 0.1, `pca` part)."""
    return scaled(SCALES["small"], channels=(32, 16), latent_fields=16, kl_weight=0.05,
                  steps=4000, ms=(32, 64, 96, 128, 192, 256), n_test=30, map_steps=200)


def study(name: str, part: str | None = None) -> dict:
    import gensci.symmetry.study as st

    part = part or name
    if part == "digits-d64":
        scale = digits_d64_scale()
    else:
        scale = digits_scale() if name == "digits" else galaxies_scale()
    st.SCALES["bench"] = scale
    out = RESULTS / f"symmetry_{part}"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report = run_study(name, out, "bench", seed=SEED)
    report["wall_seconds"] = time.perf_counter() - t0
    return report


def efficiency() -> dict:
    """Held-out ELBO and Frechet distance vs the number of training digits, both generators."""
    images, _ = rotated_digits(16, SEED)
    sp = split(len(images), seed=SEED)
    train, val, test = (images.images[i] for i in (sp.train, sp.val, sp.test))
    # the feature network: a classifier of turned digits (train split, 4 random turns each)
    up = upright_digits(16)
    gen = torch.Generator().manual_seed(SEED + 5)
    reps = torch.cat([torch.as_tensor(sp.train)] * 4)
    from gensci.symmetry.data import rotate_images

    angles = torch.rand(len(reps), generator=gen, dtype=torch.float64) * 2 * math.pi
    feat = train_feature_net(rotate_images(up.images[reps], angles), up.labels[reps], steps=1500)
    from gensci.symmetry.model import accuracy

    acc = accuracy(feat, test, images.labels[sp.test])
    scale = scaled(SCALES["small"], steps=800)
    rows = []
    for n in (50, 150, 400, len(train)):
        for name, cfg in model_configs(16, scale).items():
            t0 = time.perf_counter()
            from gensci.symmetry.model import train_generator

            model, rec = train_generator(train[:n], val, cfg, train_config(scale, SEED))
            g = torch.Generator().manual_seed(SEED)
            rows.append({
                "n_train": n, "model": name, "heldout_elbo_nats": heldout_elbo(model, test),
                "frechet_distance": frechet_distance(feat, model.sample(len(test), g), test),
                "train_seconds": time.perf_counter() - t0,
            })
            print(rows[-1], flush=True)
    ref = {r["model"]: r for r in rows if r["n_train"] == len(train)}
    verdict = {}
    for metric, better in (("heldout_elbo_nats", max), ("frechet_distance", min)):
        target = ref["plain"][metric]
        ok = [r["n_train"] for r in rows if r["model"] == "C4"
              and (r[metric] >= target if better is max else r[metric] <= target)]
        n_c4 = min(ok) if ok else None
        verdict[metric] = {
            "plain_at_all": target, "n_train_all": len(train),
            "smallest_n_where_C4_matches": n_c4,
            "ratio": None if n_c4 is None else n_c4 / len(train),
        }
    return {"feature_net_test_accuracy": acc, "rows": rows, "verdict": verdict,
            "scale": {"steps": scale.steps, "channels": scale.channels,
                      "latent_fields": scale.latent_fields}}


def dimension() -> dict:
    """m* against d for images in the range of (untrained) generators, C4 and plain."""
    rows = []
    ms = (4, 8, 16, 24, 32, 48, 64, 96, 128)
    for fields in (2, 4, 8):
        c4 = EquivariantVAEConfig(image_size=16, channels=(16, 8), latent_fields=fields)
        for name, cfg in (("C4", c4), ("plain", matched_plain_config(c4))):
            torch.manual_seed(SEED)
            model = EquivariantVAE(cfg).eval()
            g = torch.Generator().manual_seed(SEED)
            with torch.no_grad():
                x = model.decode(torch.randn(10, cfg.latent_dim, generator=g))
            success = []
            for m in ms:
                op, y = measure(x, m, 1e-3, SEED + m)
                rec = recover_latent(model, op, y, 1e-3, steps=300, restarts=3, lam=1e-3)
                success.append(float((relative_error(rec.x_hat, x) < SUCCESS_THRESHOLD)
                                     .float().mean()))
            rows.append({"model": name, "d": cfg.latent_dim, "ms": list(ms),
                         "success": success, "m_star": m_star(list(ms), success)})
            print(rows[-1], flush=True)
    return {"rows": rows}


def e2cnn_comparison() -> dict:
    """Time one C4 regular -> regular 3 x 3 layer (16 -> 8 fields, 16 x 16, batch 32) of the core
    GroupConv and of e2cnn's R2Conv, forward + backward; and their C4 equivariance errors."""
    from gensci.models.equivariant import GroupConv, rotate_features

    torch.manual_seed(SEED)
    x = torch.randn(32, 16, 4, 16, 16)

    def timed(layer, inp, reps: int = 10) -> float:  # type: ignore[no-untyped-def]
        layer(inp).sum().backward()
        t0 = time.perf_counter()
        for _ in range(reps):
            layer(inp).sum().backward()
        return (time.perf_counter() - t0) / reps

    core = GroupConv(16, 8, 4, 3)
    with torch.no_grad():
        err = float((core(rotate_features(x, 1)) - rotate_features(core(x), 1)).abs().max()
                    / core(x).abs().max())
    out: dict = {"core": {"seconds_fwd_bwd": timed(core, x), "parameters":
                          sum(p.numel() for p in core.parameters()), "c4_error": err}}
    try:
        from e2cnn import gspaces
        from e2cnn import nn as enn
    except ImportError:
        out["e2cnn"] = "not installed"
        return out
    space = gspaces.Rot2dOnR2(N=4)
    f_in = enn.FieldType(space, 16 * [space.regular_repr])
    f_out = enn.FieldType(space, 8 * [space.regular_repr])
    conv = enn.R2Conv(f_in, f_out, kernel_size=3, padding=1)
    # e2cnn orders channels field-major (field, group element), as the core does
    ex = enn.GeometricTensor(x.reshape(32, 64, 16, 16), f_in)
    with torch.no_grad():
        y = conv(ex).tensor.reshape(32, 8, 4, 16, 16)
        yr = conv(ex.transform(1)).tensor.reshape(32, 8, 4, 16, 16)
        err_e2 = float((yr - rotate_features(y, 1)).abs().max() / y.abs().max())
        err_e2_alt = float((conv(ex).transform(1).tensor - conv(ex.transform(1)).tensor)
                           .abs().max() / y.abs().max())

    class Wrap(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = conv

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.conv(enn.GeometricTensor(t, f_in)).tensor

    # alternate the two in blocks and keep medians: the machine is shared, its load drifts
    wrap, flat, t_core, t_e2 = Wrap(), x.reshape(32, 64, 16, 16), [], []
    for _ in range(9):
        t_core.append(timed(core, x))
        t_e2.append(timed(wrap, flat))
    out["core"]["seconds_fwd_bwd"] = float(np.median(t_core))
    out["core_over_e2cnn_per_block"] = [a / b for a, b in zip(t_core, t_e2, strict=True)]
    out["e2cnn"] = {"seconds_fwd_bwd": float(np.median(t_e2)),
                    "parameters": sum(p.numel() for p in conv.parameters()),
                    "c4_error_own_action": err_e2_alt, "c4_error_core_action": err_e2}
    return out


def closure() -> dict:
    """Finer rotations: how far the trained digits generators' ranges are from closed under
    them (best latent fit of R G(z)); trains the two digits models of `digits` again (same seed,
    same settings) and keeps them in results/symmetry_digits/."""
    from gensci.symmetry.model import save_generator, train_generator
    from gensci.symmetry.study import ANGLES, range_closure_error

    scale = digits_scale()
    images, _ = rotated_digits(16, SEED)
    sp = split(len(images), seed=SEED)
    out: dict = {}
    for name, cfg in model_configs(16, scale).items():
        model, rec = train_generator(images.images[sp.train], images.images[sp.val], cfg,
                                     train_config(scale, SEED))
        save_generator(model, RESULTS / "symmetry_digits" / f"{name}.safetensors",
                       {"data": "digits", "seed": SEED, **rec}, overwrite=True)
        out[name] = {"heldout_elbo_nats": heldout_elbo(model, images.images[sp.test])}
        for angle_name, angle in [("0 deg (own range)", 0.0), *ANGLES.items()]:
            out[name][angle_name] = range_closure_error(model, angle, 16, scale, SEED)
        print(name, out[name], flush=True)
    return out


def pca_floor() -> dict:
    """The representation error of the best linear model with k components (PCA of the training
    split) on held-out images: how large a latent dimension the 0.1 error level needs."""
    from gensci.symmetry.data import load_images

    out: dict = {}
    for data in ("digits", "galaxies", "galaxies-isolated"):
        images = load_images(data, SEED)
        sp = split(len(images), seed=SEED)
        x = images.images.reshape(len(images), -1).double().numpy()
        train, test = x[sp.train], x[sp.test]
        mean = train.mean(0)
        _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
        rows = []
        for k in (8, 16, 32, 48, 64, 96, 128):
            if k > vt.shape[0]:
                break
            v = vt[:k]
            rec = (test - mean) @ v.T @ v + mean
            err = np.linalg.norm(rec - test, axis=1) / np.linalg.norm(test, axis=1)
            rows.append({"k": k, "median": float(np.median(err)),
                         "q90": float(np.quantile(err, 0.9)),
                         "share_below_0.1": float((err < 0.1).mean())})
            print(data, rows[-1], flush=True)
        out[data] = {"n_train": len(train), "n_test": len(test), "rows": rows}
    return out


def summary() -> dict:
    out: dict = {"device": "cpu (2 shared cores, OMP_NUM_THREADS=1); no GPU on the measuring machine"}
    for part in ("digits", "digits-d64", "galaxies", "galaxies-raw", "galaxies-isolated",
                 "efficiency", "dimension", "e2cnn", "closure", "pca"):
        p = RESULTS / f"symmetry_{part}.json"
        if p.exists():
            out[part] = json.loads(p.read_text())
    targets = {}
    for part in ("digits", "digits-d64", "galaxies", "galaxies-raw", "galaxies-isolated"):
        if part not in out:
            continue
        r = out[part]
        # m* recomputed from the stored rows (a float32 0.9 once read as below 0.9)
        r["compressed_sensing"]["m_star"] = m_star_summary(r["compressed_sensing"]["rows"])
        r["compressed_sensing"]["lasso_wins"] = baseline_wins(r["compressed_sensing"]["rows"])
        write_report(r, RESULTS / f"symmetry_{part}")
        targets[f"{part}: C4 equivariance error <= 1e-5"] = max(
            v for k, v in r["equivariance_error"]["C4"].items() if k.startswith("C4")) <= 1e-5
        # None: at least one of the two priors never reaches 90 % success at that error level
        for s in ("held-out", "seen, new angle"):
            for t in ("0.1", "0.2", "0.3"):
                c4 = r["compressed_sensing"]["m_star"][f"{s} / C4"][f"m_star@{t}"]
                plain = r["compressed_sensing"]["m_star"][f"{s} / plain"][f"m_star@{t}"]
                targets[f"{part} ({s}, error < {t}): m*(C4) = {c4} <= 0.7 m*(plain) = {plain}"] = (
                    None if c4 is None or plain is None else c4 <= 0.7 * plain)
    if "efficiency" in out:
        for metric, v in out["efficiency"]["verdict"].items():
            targets[f"digits: C4 matches plain's {metric} with <= 0.5 x images"] = (
                v["ratio"] is not None and v["ratio"] <= 0.5)
    out["targets"] = targets
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    what = sys.argv[1] if len(sys.argv) > 1 else "summary"
    fn = {"digits": lambda: study("digits"), "digits-d64": lambda: study("digits", "digits-d64"),
          "pca": pca_floor, "galaxies": lambda: study("galaxies"),
          "galaxies-raw": lambda: study("galaxies-raw"),
          "galaxies-isolated": lambda: study("galaxies-isolated"),
          "efficiency": efficiency, "dimension": dimension, "e2cnn": e2cnn_comparison,
          "closure": closure,
          "summary": summary}[what]
    result = fn()
    name = "symmetry" if what == "summary" else f"symmetry_{what}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=float))
    print(json.dumps(result.get("targets", {}), indent=2))
