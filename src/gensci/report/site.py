"""One static site from study output folders: an index with a summary table, a page per study.

Every study output folder that can be reported holds `results.json` with a `report` section:

    {"study": "ct", "report": {"title": ..., "command": ..., "summary": ...,
                               "table": [{column: value, ...}, ...],
                               "figures": [{"file": "panel.png", "caption": ...}, ...]}, ...}

written by `record`. `build_site` copies each folder's figures into the site, draws the training
curves of any metrics.csv it finds, and writes index.html plus one page per folder. The site needs
no network: no CDN, no external fonts; it opens from disk. Each page counts, in the browser, the
images that loaded and those that did not (body data attributes), so a headless browser can check
that nothing is broken.
"""

from __future__ import annotations

import csv
import html
import json
import shutil
from pathlib import Path
from typing import Any

from gensci.errors import FormatError
from gensci.runtime import atomic_save, atomic_write_text

STUDIES = {
    "core": "The generative core on densities with known answers",
    "ct": "Limited-angle CT with a diffusion prior",
    "poisson": "A neural surrogate of the Poisson equation",
    "protein": "Protein design with a family VAE",
    "cells": "Single-cell perturbation by latent arithmetic",
    "dynamics": "Physics of interacting defects from snapshots",
    "symmetry": "Equivariant generators",
    "style": "Disentangled style and content",
    "calorimetry": "Fast calorimeter simulation",
}

STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
    "text-align:right}th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}"
    "img{max-width:100%}figure{margin:1.5em 0}figcaption{font-size:90%;color:#444}"
    "code{background:#f4f4f4;padding:1px 4px}nav a{margin-right:1em}"
)

# counted in the browser: how many images loaded, how many failed (read by the site's tests)
CHECK_IMAGES = (
    "<script>window.addEventListener('load',function(){var ok=0,bad=0;"
    "document.querySelectorAll('img').forEach(function(i){"
    "if(i.complete&&i.naturalWidth>0){ok++}else{bad++}});"
    "document.body.setAttribute('data-images-loaded',ok);"
    "document.body.setAttribute('data-images-broken',bad);});</script>"
)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def table_html(rows: list[dict[str, Any]], caption: str = "") -> str:
    """Return an HTML table whose columns are the keys of the rows (in first-seen order)."""
    if not rows:
        return ""
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows
    )
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page_html(title: str, body: str, nav: str = "") -> str:
    """Return a complete, self-contained HTML page."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{nav}<h1>{html.escape(title)}</h1>{body}"
        f"{CHECK_IMAGES}</body></html>"
    )


def record(
    out_dir: str | Path,
    study: str,
    title: str,
    command: str,
    summary: str,
    table: list[dict[str, Any]],
    figures: list[tuple[str, str]],
    results: dict[str, Any] | None = None,
) -> Path:
    """Add the section a report is built from to out_dir/results.json; return its path.

    The study's own results stay as they are: the keys of an existing results.json are kept (or
    `results` is stored under "results"). figures: (file name inside out_dir, caption).
    """
    if study not in STUDIES:
        raise FormatError(f"unknown study {study!r}; known: {sorted(STUDIES)}")
    out = Path(out_dir)
    missing = [f for f, _ in figures if not (out / f).is_file()]
    if missing:
        raise FormatError(f"figures {missing} named in the report of {out} do not exist")
    doc: dict[str, Any] = {}
    if (out / "results.json").is_file():
        try:
            doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            doc = {}
        doc = doc if isinstance(doc, dict) else {}
    if results is not None:
        doc["results"] = results
    doc["study"] = study
    doc["report"] = {
        "title": title,
        "command": command,
        "summary": summary,
        "table": table,
        "figures": [{"file": f, "caption": c} for f, c in figures],
    }
    return atomic_write_text(
        out / "results.json", json.dumps(doc, indent=1, default=_plain), overwrite=True
    )


def _plain(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def read_record(folder: Path) -> dict[str, Any]:
    """Return the report section of folder/results.json; raise FormatError naming the problem."""
    from gensci.files import parse_json_object, read_text

    if not folder.is_dir():
        raise FormatError(f"{folder} is not a folder of study outputs")
    path = folder / "results.json"
    if not path.is_file():
        raise FormatError(
            f"{folder} has no results.json: not the output folder of a gensci study"
        )
    doc = parse_json_object(read_text(path, "results file", FormatError, FormatError), str(path),
                            FormatError)
    study = doc.get("study")
    if study not in STUDIES:
        raise FormatError(
            f"{path} is the results of an unknown study ({study!r}); gensci reports "
            f"{', '.join(sorted(STUDIES))}"
        )
    section = doc.get("report")
    if not isinstance(section, dict) or not isinstance(section.get("figures", []), list):
        raise FormatError(f"{path} has no report section (study {study!r} wrote no figures list)")
    for fig in section.get("figures", []):
        if not isinstance(fig, dict) or not (folder / str(fig.get("file", ""))).is_file():
            raise FormatError(f"{path} names a figure that is not in {folder}: {fig!r}")
    return {"study": study, **section}


def training_curve(metrics_csv: Path, png: Path) -> bool:
    """Draw loss (and validation loss) against step from a Trainer's metrics.csv; False if empty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, loss, vsteps, vloss = [], [], [], []
    with metrics_csv.open(newline="", encoding="utf-8", errors="replace") as fh:
        for row in csv.DictReader(fh):
            try:
                if row.get("loss"):
                    steps.append(float(row["step"]))
                    loss.append(float(row["loss"]))
                if row.get("val_loss"):
                    vsteps.append(float(row["step"]))
                    vloss.append(float(row["val_loss"]))
            except (TypeError, ValueError):
                continue
    if not steps:
        return False
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(steps, loss, label="training loss")
    if vloss:
        ax.plot(vsteps, vloss, "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    atomic_save(png, lambda p: fig.savefig(p, dpi=100), overwrite=True, suffix=".png")
    plt.close(fig)
    return True


def build_site(folders: list[Path], site: Path) -> Path:
    """Write the site into the (claimed) folder `site`: index.html and one page per folder.

    Returns the path of index.html. Figures are copied into site/<name>/ beside each page.
    """
    records = [(Path(f), read_record(Path(f))) for f in folders]
    if not records:
        raise FormatError("no study output folders to report")
    names: list[str] = []
    for _, rec in records:
        name = rec["study"]
        k = 2
        while name in names:  # two folders of one study
            name = f"{rec['study']}-{k}"
            k += 1
        names.append(name)
    nav = "<nav><a href='../index.html'>index</a>" + "".join(
        f"<a href='../{n}/index.html'>{html.escape(n)}</a>" for n in names
    ) + "</nav>"
    rows = []
    for name, (folder, rec) in zip(names, records, strict=True):
        page_dir = site / name
        page_dir.mkdir(parents=True, exist_ok=True)
        parts = [f"<p>{html.escape(str(rec.get('summary', '')))}</p>"]
        command = str(rec.get("command", ""))
        if command:
            parts.append(f"<p>Made by <code>{html.escape(command)}</code></p>")
        parts.append(table_html(list(rec.get("table", []))))
        figures = list(rec.get("figures", []))
        for i, curve in enumerate(sorted(folder.rglob("metrics.csv"))):
            png = page_dir / f"training_curve_{i}.png"
            if training_curve(curve, png):
                figures.append({"file": None, "copied": png.name,
                                "caption": f"training curve ({curve.relative_to(folder)})"})
        for fig in figures:
            if fig.get("file") is not None:
                src = folder / fig["file"]
                target = page_dir / src.name
                shutil.copyfile(src, target)
                fig = {**fig, "copied": target.name}
            caption = str(fig.get("caption", ""))
            made_by = f" Made by <code>{html.escape(command)}</code>." if command else ""
            parts.append(
                f"<figure><img src='{html.escape(fig['copied'])}' alt='{html.escape(caption)}'>"
                f"<figcaption>{html.escape(caption)}.{made_by}</figcaption></figure>"
            )
        title = str(rec.get("title") or STUDIES[rec["study"]])
        atomic_write_text(page_dir / "index.html", page_html(title, "".join(parts), nav), True)
        rows.append({"study": name, "title": title, "summary": rec.get("summary", ""),
                     "page": name})
    index_rows = "".join(
        f"<tr><td><a href='{html.escape(r['page'])}/index.html'>{html.escape(r['study'])}</a>"
        f"</td><td style='text-align:left'>{html.escape(r['title'])}</td><td style='text-align:left'>"
        f"{html.escape(str(r['summary']))}</td></tr>"
        for r in rows
    )
    body = (
        "<p>One page per study; every figure names the command that made it.</p>"
        "<table><thead><tr><th>study</th><th style='text-align:left'>what</th>"
        "<th style='text-align:left'>result</th></tr></thead>"
        f"<tbody>{index_rows}</tbody></table>"
    )
    return atomic_write_text(site / "index.html", page_html("gensci report", body), True)
