"""`gensci report`: one static site from study output folders, checked in a real browser."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib
import pytest
from typer.testing import CliRunner

from gensci.cli import app
from gensci.errors import FormatError, OutputExistsError
from gensci.report.site import record

matplotlib.use("Agg")
runner = CliRunner()


def _study_folder(root: Path, name: str, study: str) -> Path:
    import matplotlib.pyplot as plt

    folder = root / name
    (folder / "figures").mkdir(parents=True)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    fig.savefig(folder / "figures" / "curve.png")
    plt.close(fig)
    (folder / "metrics.csv").write_text("step,loss,val_loss,lr,seconds\n10,2.0,,0.1,1\n20,1.0,1.5,0.1,2\n")
    record(folder, study, f"{study} title", f"gensci {study} study --out {name}",
           f"{study} did well", [{"method": "a", "score": 0.5}, {"method": "b", "score": 0.7}],
           [("figures/curve.png", "a falling curve")])
    return folder


def test_site_has_an_index_a_page_per_study_and_every_figure(tmp_path):
    a = _study_folder(tmp_path, "ct_run", "ct")
    b = _study_folder(tmp_path, "cells_run", "cells")
    res = runner.invoke(app, ["report", str(a), str(b), "--out", str(tmp_path / "site")])
    assert res.exit_code == 0, res.output
    site = tmp_path / "site"
    index = (site / "index.html").read_text()
    assert "ct did well" in index and "cells/index.html" in index
    for study in ("ct", "cells"):
        page = (site / study / "index.html").read_text()
        assert "<table>" in page and "0.7" in page
        assert f"gensci {study} study" in page  # each figure names the command that made it
        images = re.findall(r"<img src='([^']+)'", page)
        assert "curve.png" in images and "training_curve_0.png" in images
        assert all((site / study / src).is_file() for src in images)
        assert "http://" not in page and "https://" not in page  # opens from disk, no CDN
    # an existing site is not replaced without --overwrite
    res = runner.invoke(app, ["report", str(a), "--out", str(site)])
    assert isinstance(res.exception, OutputExistsError)
    res = runner.invoke(app, ["report", str(a), "--out", str(site), "--overwrite"])
    assert res.exit_code == 0 and not (site / "cells").exists()


def test_bad_report_inputs_are_named(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(app, ["report", str(empty), "--out", str(tmp_path / "s")])
    assert isinstance(res.exception, FormatError) and "no results.json" in str(res.exception)
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.json").write_text(json.dumps({"study": "astrology", "report": {}}))
    res = runner.invoke(app, ["report", str(other), "--out", str(tmp_path / "s")])
    assert isinstance(res.exception, FormatError) and "unknown study" in str(res.exception)
    (other / "results.json").write_text("[1, 2]")
    res = runner.invoke(app, ["report", str(other), "--out", str(tmp_path / "s")])
    assert isinstance(res.exception, FormatError)
    good = _study_folder(tmp_path, "good", "protein")
    res = runner.invoke(app, ["report", str(good), "--out", str(good / "site")])
    assert isinstance(res.exception, OutputExistsError)  # never write into an input
    assert not (tmp_path / "s").exists()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None and not os.environ.get("CI"),
                    reason="headless Chromium is not installed (.ci/run installs it)")
def test_site_renders_in_a_real_browser_with_no_broken_image(tmp_path):
    """Headless Chromium loads each page: every image decodes, the table shows; a screenshot
    of the index is kept (GENSCI_ARTIFACTS, when set, receives it)."""
    browser = _chromium()
    assert browser, "CI must have Chromium: .ci/run installs Debian's chromium package"
    a = _study_folder(tmp_path, "ct_run", "ct")
    res = runner.invoke(app, ["report", str(a), "--out", str(tmp_path / "site")])
    assert res.exit_code == 0, res.output
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
             "--virtual-time-budget=5000"]
    for page in (tmp_path / "site" / "index.html", tmp_path / "site" / "ct" / "index.html"):
        dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=120).stdout
        loaded = re.search(r'data-images-loaded="(\d+)"', dom)
        broken = re.search(r'data-images-broken="(\d+)"', dom)
        assert loaded and broken, dom[-2000:]
        assert broken.group(1) == "0"
        if page.parent.name == "ct":
            assert int(loaded.group(1)) == 2 and "<table>" in dom and "0.7" in dom
    shot = tmp_path / "index.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1100,800",
                    (tmp_path / "site" / "index.html").as_uri()],
                   capture_output=True, timeout=120, cwd=tmp_path)
    assert shot.is_file() and shot.stat().st_size > 5000
    target = os.environ.get("GENSCI_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(target) / "report-index.png")
