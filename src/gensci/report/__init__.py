"""HTML reports of studies: headings, text, tables and figures in one self-contained folder."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from gensci.runtime import atomic_write_text


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


class Report:
    """Collects sections and writes `index.html` (plus figure PNGs and results.json) into `out_dir`."""

    def __init__(self, out_dir: str | Path, title: str) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.title = title
        self.parts: list[str] = []
        self.results: dict[str, Any] = {}

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def table(self, rows: list[dict[str, Any]], caption: str = "") -> None:
        """Add a table whose columns are the keys of the first row."""
        if not rows:
            return
        cols = list(rows[0])
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{_cell(r.get(c, ''))}</td>" for c in cols) + "</tr>"
            for r in rows
        )
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.parts.append(f"<table>{cap}<tr>{head}</tr>{body}</table>")

    def figure(self, fig: Any, name: str, caption: str = "") -> Path:
        """Save a matplotlib figure as `name`.png, add it to the report, close it; return its path."""
        import matplotlib.pyplot as plt

        path = self.out_dir / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.parts.append(
            f'<figure><img src="{path.name}" alt="{html.escape(name)}">{cap}</figure>'
        )
        return path

    def write(self) -> Path:
        """Write index.html and results.json; return the path of index.html."""
        style = (
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
            "text-align:right}th{background:#f0f0f0}img{max-width:100%}caption{font-style:italic}"
        )
        page = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}"
            f"</title><style>{style}</style></head><body><h1>{html.escape(self.title)}</h1>"
            + "\n".join(self.parts)
            + "</body></html>"
        )
        atomic_write_text(
            self.out_dir / "results.json",
            json.dumps(self.results, indent=2, default=float),
            overwrite=True,
        )
        return atomic_write_text(self.out_dir / "index.html", page, overwrite=True)
