"""Tables and metrics files that every notebook writes (CSV + Markdown, metrics.json), atomically."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .paths import atomic_write


def write_table(df: pd.DataFrame, out_dir: Path, name: str, caption: str = "") -> dict[str, Path]:
    """name.csv and name.md (with the caption on top, e.g. 'SYNTHETIC data')."""
    out_dir = Path(out_dir)
    with atomic_write(out_dir / f"{name}.csv") as f:
        df.to_csv(f, index=False)
    md = (f"{caption}\n\n" if caption else "") + _markdown(df)
    with atomic_write(out_dir / f"{name}.md") as f:
        f.write(md)
    return {"csv": out_dir / f"{name}.csv", "md": out_dir / f"{name}.md"}


def _markdown(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_metrics(out_dir: Path, metrics: dict, name: str = "metrics.json") -> Path:
    path = Path(out_dir) / name
    with atomic_write(path) as f:
        json.dump(metrics, f, indent=2, default=float)
    return path
