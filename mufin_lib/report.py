"""Tables and metrics files that every notebook writes (CSV + Markdown, metrics.json), atomically."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .paths import atomic_write


def write_table(df: pd.DataFrame, out_dir: Path, name: str, caption: str = "", bold: pd.DataFrame | None = None
                ) -> dict[str, Path]:
    """name.csv, name.md and name.tex (the caption on top of the Markdown and in the LaTeX table, e.g.
    'SYNTHETIC catalogue'); numbers as the paper prints them (two decimals) in Markdown and LaTeX. `bold`: a mask of
    df's shape, True where a cell is set in bold there (e.g. the best per row)."""
    out_dir = Path(out_dir)
    with atomic_write(out_dir / f"{name}.csv") as f:
        df.to_csv(f, index=False)
    md = (f"{caption}\n\n" if caption else "") + _markdown(df, bold)
    with atomic_write(out_dir / f"{name}.md") as f:
        f.write(md)
    tex = df if bold is None else _cells(df.map(_tex_escape), bold, "\\textbf{{{}}}")
    with atomic_write(out_dir / f"{name}.tex") as f:
        f.write(tex.to_latex(index=False, float_format="%.2f", na_rep="", caption=caption or None,
                             escape=bold is None))
    return {"csv": out_dir / f"{name}.csv", "md": out_dir / f"{name}.md", "tex": out_dir / f"{name}.tex"}


def save_scores(path: Path, rows: list[tuple[str, str, object]]) -> None:
    """Rows' test scores [(method, family, sparse matrix)] in one .npz (written atomically), so that later stages read
    them instead of computing them again."""
    import numpy as np
    import scipy.sparse as sp

    from .paths import atomic_path

    arrays = {}
    for i, (_, _, S) in enumerate(rows):
        S = sp.csr_matrix(S)
        arrays.update({f"data{i}": S.data, f"indices{i}": S.indices, f"indptr{i}": S.indptr})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, methods=np.array([m for m, _, _ in rows]), families=np.array([fam for _, fam, _ in rows]),
                     shape=np.array(sp.csr_matrix(rows[0][2]).shape), **arrays)


def load_scores(path: Path) -> dict:
    """method -> (family, sparse test scores), as save_scores wrote them."""
    import numpy as np
    import scipy.sparse as sp

    z = np.load(path)
    shape = tuple(z["shape"])
    return {str(m): (str(fam), sp.csr_matrix((z[f"data{i}"], z[f"indices{i}"], z[f"indptr{i}"]), shape=shape))
            for i, (m, fam) in enumerate(zip(z["methods"], z["families"]))}


def curation_table(rep: dict) -> pd.DataFrame:
    """The curation report (stage 01) as rows of (what, count): kept, dropped by reason, also_buy targets."""
    rows = [("input lines", rep["input_lines"]), ("kept: labels (catalogue)", rep["kept_labels"]),
            ("   of which data points", rep["kept_points"])]
    rows += [(f"dropped: {k}", v) for k, v in rep["dropped"].items()]
    rows += [("titles emptied by cleaning (kept: they have images)", rep["titles_emptied_by_cleaning"])]
    rows += [(f"also_buy targets: {k}", v) for k, v in rep["also_buy_targets"].items()]
    rows += [("test reciprocal pairs filtered", rep["reciprocal_pairs_filtered"])]
    img = rep.get("images")
    if img:  # every image reference: read, or skipped with its reason
        rows += [("image references (local files + URLs)", img["references"]),
                 *[(f"   images: {k}", v) for k, v in img["outcomes"].items()],
                 ("   images beyond the first 15 of a product", img["beyond_top_k"]),
                 *[(f"   images written to {k}.img.bin", v) for k, v in img["written"].items()]]
    return pd.DataFrame(rows, columns=["what", "count"])


def dataset_stats_table(info: dict) -> pd.DataFrame:
    """One row of dataset statistics in the columns of the paper's dataset table (from dataset.json)."""
    st = info["stats"]
    return pd.DataFrame([{"dataset": info["data_label"], "N train": st["N_train"], "N test": st["N_test"],
                          "L": st["L"], "labels/point": st["avg_labels_per_point"],
                          "points/label": st["avg_points_per_label"], "images/product": st["avg_images_per_product"],
                          "no image": st["products_without_image"], "no title": st["products_without_title"]}])


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
        "~": r"\textasciitilde{}", "^": r"\^{}"}


def _tex_escape(v):
    """LaTeX's special characters in a text cell (to_latex escapes them itself when no cell is bold)."""
    return "".join(_TEX.get(ch, ch) for ch in v) if isinstance(v, str) else v


def _cell(v) -> str:
    return "" if v is None or (isinstance(v, float) and v != v) else f"{v:.2f}" if isinstance(v, float) else str(v)


def _cells(df: pd.DataFrame, bold: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """df as text cells, the `bold` ones wrapped by fmt."""
    return pd.DataFrame([[fmt.format(_cell(v)) if b and _cell(v) else _cell(v) for v, b in zip(row, brow)]
                         for row, brow in zip(df.itertuples(index=False), bold.itertuples(index=False))],
                        columns=df.columns)


def _markdown(df: pd.DataFrame, bold: pd.DataFrame | None = None) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    text = _cells(df, bold if bold is not None else df.map(lambda _: False), "**{}**")
    for row in text.itertuples(index=False):
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_metrics(out_dir: Path, metrics: dict, name: str = "metrics.json") -> Path:
    path = Path(out_dir) / name
    with atomic_write(path) as f:
        json.dump(metrics, f, indent=2, default=float)
    return path


def read_paper_table(name: str) -> pd.DataFrame:
    """A table of the paper's reported numbers from ../shared/paper_tables (data, never our results).
    Rows with more fields than the header (an unquoted comma inside a free-text column, as in
    table4_ablations.csv's `x^{2,l}`) are mended by joining the surplus into the first free-text column;
    any other shape raises with the file and line."""
    import csv

    from .paths import PAPER_TABLES_DIR

    path = PAPER_TABLES_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (the paper's tables live in ../shared/paper_tables)")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], []
    text_col = 1  # variant,what_changes,... / category,n_labels,...: the second column is the free text one
    for line_no, r in enumerate(rows[1:], 2):
        if len(r) > len(header):
            extra = len(r) - len(header)
            r = r[:text_col] + [",".join(r[text_col:text_col + extra + 1])] + r[text_col + extra + 1:]
        if len(r) != len(header):
            raise ValueError(f"{path}: line {line_no}: {len(r)} fields, expected {len(header)} ({', '.join(header)})")
        body.append(r)
    df = pd.DataFrame(body, columns=header)
    for c in header[1:]:
        try:  # numeric columns become numbers; ranges such as "-2 to -3" keep the column as text
            df[c] = pd.to_numeric(df[c].replace("", None))
        except (ValueError, TypeError):
            pass
    return df


def read_benchmarks(bench_dir: Path) -> dict[str, dict]:
    """Every benchmark JSON under bench_dir (written by benchmarks/*.py), by benchmark name. A file that is not
    a benchmark result raises, naming it."""
    out = {}
    for f in sorted(Path(bench_dir).glob("*.json")):
        try:
            data = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{f}: not valid JSON (line {e.lineno}): {e.msg}") from None
        if not isinstance(data, dict) or "benchmark" not in data or not isinstance(data.get("results"), list):
            raise ValueError(f"{f}: expected a benchmark result with 'benchmark' and a 'results' list")
        out[data["benchmark"]] = data
    return out


def ranker_variants_table(bench: dict) -> pd.DataFrame:
    """One row per (run, variant) of benchmarks/ranker_variants.py: test P@1 and P@5 of Module IV alone,
    MUFIN-(alpha=1) and MUFIN at the alpha tuned on validation."""
    return pd.DataFrame([{"run": r["run"], "data": r["data"], "variant": r["variant"], "alpha": r["alpha"],
                          "train_s": r["train_seconds"],
                          **{f"{m} {k}": v[k] for m, v in r["test"].items() for k in ("P@1", "P@5")}}
                         for r in bench["results"]])
