"""The study at its tiny scale: every measure is reported, finite, and the report section renders."""

from __future__ import annotations

import json
import math
from pathlib import Path


def test_tiny_study_reports_every_measure(tmp_path: Path) -> None:
    from gensci.report.records import record_style
    from gensci.style.study import run_study

    report = run_study(tmp_path, "tiny", seed=0, device="cpu", progress=False)
    for mode in ("adain", "entangled"):
        s = report["summary"][mode]
        for key in ("iou_mean", "dci_disentanglement", "mig", "ppl", "recon_mse"):
            assert math.isfinite(s[key]["mean"]), (mode, key)
        assert len(report["runs"][mode][0]["iou_per_step"]) == 9
    sizes = [report["runs"][m][0]["parameters"] for m in ("adain", "entangled")]
    assert abs(sizes[0] - sizes[1]) / sizes[0] < 0.02
    st = report["stain"]["methods"]
    assert st["truth"]["ssim_h"]["mean"] > max(st[m]["ssim_h"]["mean"]
                                               for m in ("adain", "reinhard", "macenko"))
    assert (tmp_path / "interpolation_strips.png").stat().st_size > 1000
    assert (tmp_path / "stain_transfer_grid.png").exists()
    assert json.loads((tmp_path / "report.json").read_text())["scale"] == "tiny"
    summary = record_style(tmp_path, report)
    assert "content IoU" in summary and (tmp_path / "results.json").exists()
