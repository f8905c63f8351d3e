"""The tour behind `gensci demo`: every study runs at a tiny scale and lands in one site."""

import json
import re

from gensci.tour import STEPS, TourSettings, run_tour


def test_every_study_of_the_tour_writes_its_page(tmp_path):
    settings = TourSettings(seed=0, device="cpu", progress=False, core_steps=20, scale=0.05)
    index, lines = run_tour(tmp_path, settings, echo=lambda _: None)
    assert index == tmp_path / "index.html" and set(lines) == set(STEPS)
    home = index.read_text()
    for study in STEPS:
        record = json.loads((tmp_path / "runs" / study / "results.json").read_text())
        assert record["study"] == study and record["report"]["figures"], study
        page = (tmp_path / study / "index.html").read_text()
        images = re.findall(r"<img src='([^']+)'", page)
        assert images and all((tmp_path / study / src).is_file() for src in images), study
        assert f"{study}/index.html" in home
        assert "\n" not in lines[study]  # a one-line summary per study
    # CT: the posterior and both baselines are scored on the held-out slices
    ct = json.loads((tmp_path / "runs" / "ct" / "results.json").read_text())
    assert {row["method"] for row in ct["report"]["table"]} == {"fbp", "tv", "dds"}
    assert all(row["PSNR (dB)"] > 5 for row in ct["report"]["table"])
