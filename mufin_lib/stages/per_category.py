"""Stage 09, per_category: P@1 and P@5 per category of the test point (the paper's Table 6 and Fig. 3), for the run's
main MUFIN row, MUFIN-(alpha=1), the paper's fusion and the strongest peers of stage 07, from the test scores stage
07 saved (nothing is trained). The paper's Table 6 is P@5 on MM-AmazonTitles-300K: it stays in its own columns."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import ranged
from ..data.xc import label_category_paths
from ..layout import METRICS
from ..metrics import point_parts
from ..report import read_paper_table, write_metrics, write_table
from .peers import compared_rows

OVERALL, OTHER, UNKNOWN = "Overall", "other", "(no category)"
PAPER_COLUMNS = {"mufin": "paper: MUFIN P@5", "mufin_alpha1": "paper: MUFIN-(alpha=1) P@5"}


@dataclass
class PerCategoryParams:
    """Stage 09's parameters (notebook 09's parameters cell equals these defaults)."""
    # the level of each label's category path: 0 the top level (Amazon's first level); 1 the synthetic catalogue's
    # product type and H&M's product group. A path shorter than the level gives its last level
    category_level: int = ranged(1, 0)
    max_categories: int = ranged(20, 1)  # the categories with the most test points; the rest pooled as "other"
    peers: int = ranged(2, 0)  # the strongest peers of stage 07 (by test P@5) beside MUFIN's rows


@dataclass
class PerCategoryResult:
    table: pd.DataFrame  # Table 6's layout at P@5: category, labels, test points, one column per method
    table_p1: pd.DataFrame  # the same at P@1
    methods: list  # the method columns, in order
    summary: dict  # metrics.json


def categories_at(paths: list[list[str]], level: int) -> list[str]:
    return [p[min(level, len(p) - 1)] if p else UNKNOWN for p in paths]


def point_categories(run, level: int) -> tuple[list[str], Counter]:
    """(each test point's category, labels per category): a test point's category is its own product's."""
    ds = run.dataset
    paths = label_category_paths(ds.root, ds.uids["label"])
    if paths is None:
        raise FileNotFoundError(f"{ds.root}: no category file (label_category_paths.txt, attributes.tsv or "
                                "label_categories.txt); stage 09 needs each label's category")
    label_cat = categories_at(paths, level)
    of = dict(zip(ds.uids["label"], label_cat))
    return [of.get(u, UNKNOWN) for u in run.split("test").uids], Counter(label_cat)


def per_category(parts: dict[str, tuple[np.ndarray, np.ndarray]], cats: list[str], order: list[str]) -> dict:
    """method -> {category: 100 * sum(num) / sum(den) over its test points} (point_parts of each method)."""
    cats = np.asarray(cats)
    out = {}
    for m, (num, den) in parts.items():
        out[m] = {OVERALL: 100 * num.sum() / max(den.sum(), 1e-12)}
        for c in order:
            mask = cats == c
            out[m][c] = 100 * num[mask].sum() / max(den[mask].sum(), 1e-12)
    return out


def _paper_rows() -> dict[str, dict]:
    """The paper's Table 6 (P@5, MM-AmazonTitles-300K) by lower-cased category name; {} without the paper's tables."""
    try:
        t = read_paper_table("table6_per_category.csv")
    except FileNotFoundError:
        return {}
    return {str(r["category"]).lower(): {col: float(r[k]) for k, col in PAPER_COLUMNS.items()} for _, r in t.iterrows()}


def _table(values: dict, order: list[str], n_points: Counter, n_labels: Counter, metric: str, paper: bool):
    methods = list(values)
    paper_rows = _paper_rows() if paper else {}
    rows = []
    for c in [OVERALL] + order:
        rec = {"category": c, "labels": sum(n_labels.values()) if c == OVERALL else n_labels.get(c, 0),
               "test points": sum(n_points.values()) if c == OVERALL else n_points[c]}
        rec.update({f"{m} {metric}": round(values[m][c], 4) for m in methods})
        if paper:
            rec.update({col: paper_rows.get(c.lower(), {}).get(col) for col in PAPER_COLUMNS.values()})
        rows.append(rec)
    t = pd.DataFrame(rows)
    cols = [f"{m} {metric}" for m in methods]
    best = t[cols].max(axis=1)
    bold = pd.DataFrame(False, index=t.index, columns=t.columns)
    for c in cols:
        bold[c] = t[c] >= best - 1e-9
    return t, bold


def stage(run, params: PerCategoryParams) -> PerCategoryResult:
    """Per category of the test point, each compared row's P@1 and P@5; writes table6_per_category.* (P@5, the
    paper's metric), table6_per_category_p1.* and metrics.json."""
    out = run.stage("per_category")
    test = run.split("test")
    rows = compared_rows(run, params.peers)
    cats, n_labels = point_categories(run, params.category_level)
    n_points = Counter(cats)
    order = [c for c, _ in n_points.most_common(params.max_categories)]
    if len(n_points) > len(order):  # the smaller categories pooled, so that the table keeps Table 6's size
        keep = set(order)
        pooled = sorted(set(n_points) - keep)
        cats = [c if c in keep else OTHER for c in cats]
        n_labels = Counter({**{c: n for c, n in n_labels.items() if c in keep},
                            OTHER: sum(n for c, n in n_labels.items() if c not in keep)})
        n_points = Counter(cats)
        order.append(OTHER)
    else:
        pooled = []
    tables = {}
    for metric in ("P@5", "P@1"):
        parts = {name: point_parts(scores, test.Y, None, test.filter, metric) for name, _, _, scores in rows}
        tables[metric] = _table(per_category(parts, cats, order), order, n_points, n_labels, metric, metric == "P@5")
    caption = (f"P@5 per category of the test point ({run.data_title}; level {params.category_level}); best per row in "
               "bold; paper columns: the paper's Table 6, P@5 on MM-AmazonTitles-300K, where a category has the same name")
    write_table(tables["P@5"][0], out, "table6_per_category", caption=caption, bold=tables["P@5"][1])
    write_table(tables["P@1"][0], out, "table6_per_category_p1", bold=tables["P@1"][1],
                caption=f"P@1 per category of the test point ({run.data_title}; level {params.category_level}); best per "
                        "row in bold (the paper's Table 6 is P@5: no paper column here)")
    summary = {"data": run.data_title, "synthetic": run.synthetic, "category_level": params.category_level,
               "methods": {r.name: r.method for r in rows}, "pooled_as_other": pooled,
               "P@5": tables["P@5"][0].to_dict("records"), "P@1": tables["P@1"][0].to_dict("records")}
    write_metrics(out, summary, METRICS)
    return PerCategoryResult(tables["P@5"][0], tables["P@1"][0], [r.name for r in rows], summary)
