import json

import numpy as np
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from gensci.inverse.posterior import DiffusionPrior
from gensci.models.diffusion import DiffusionConfig, DiffusionModel
from gensci.tomography.study import MethodSettings, StudyConfig, run_study


def test_run_study_writes_table_and_panels(tmp_path) -> None:
    base = resize(shepp_logan_phantom(), (16, 16), anti_aliasing=True)
    heldout = np.stack([base * s for s in (0.8, 0.9, 1.0)]).astype(np.float32)
    torch.manual_seed(0)
    model = DiffusionModel(
        DiffusionConfig(data_shape=(1, 16, 16), net="unet", base_channels=8, channel_mults=(1, 2))
    )
    cfg = StudyConfig(
        resolution=16, n_slices=2, n_views=10, wedges=(90.0,),
        methods=("fbp", "tv", "langevin", "dds"), tv_grid=(1.0, 4.0),
        settings=MethodSettings(samples=2, sampler_steps=3, tv_iterations=40, cg_iterations=20,
                                dds_steps=3),
    )
    res = run_study(cfg, heldout, np.array([7, 8, 9]), DiffusionPrior(model), None, tmp_path,
                    progress=False)
    wedge = res["wedges"]["90"]
    assert set(wedge["methods"]) == {"fbp", "tv", "langevin", "dds"}
    assert res["slices_z"] == [7, 9]
    assert wedge["tv_weight"] in (1.0, 4.0)
    # the tuned TV beats FBP on a missing wedge, and the sampler reports its uncertainty split
    assert wedge["methods"]["tv"]["psnr"]["mean"] > wedge["methods"]["fbp"]["psnr"]["mean"]
    for m in ("langevin", "dds"):
        nf = wedge["methods"][m]["null_fraction"]["mean"]
        assert 0.0 <= nf <= 1.0
        # the discrepancy check, per image: an untrained prior's mean does not fit the data, so
        # it is flagged and the checked answer (TV) scores above it
        entry = wedge["methods"][m]
        assert len(entry["flagged"]["values"]) == 2 and all(entry["flagged"]["values"])
        assert min(entry["discrepancy"]["values"]) > cfg.discrepancy_threshold
        assert entry["checked_psnr"]["mean"] > entry["psnr"]["mean"]
    assert (tmp_path / "panel_90.png").stat().st_size > 0
    assert "| [0, 90) | fbp |" in (tmp_path / "table.md").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["slices_z"] == [7, 9]


def test_dds_weight_follows_the_image_size() -> None:
    from gensci.tomography.study import DDS_LAM, dds_lam_for

    assert dds_lam_for(64) == DDS_LAM[64] and dds_lam_for(128) == DDS_LAM[128]
    assert dds_lam_for(32) == DDS_LAM[64] and dds_lam_for(512) == DDS_LAM[128]
