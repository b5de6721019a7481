"""Stage 12, qualitative: the paper's Fig. 8 on the run's data: for chosen and random test products, the product's
photo and title, then its top recommendations by the run's main MUFIN row and by the best peer of stage 07, each
marked bought-with-it or not (the paper's Z_1 / Z_-1), from the test scores stage 07 saved."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..config import ranged
from ..data.images import ImageStore
from ..data.xc import filter_rows
from ..layout import METRICS
from ..metrics import _drop, topk_from_scores
from ..report import write_metrics, write_table
from .peers import compared_rows


@dataclass
class QualitativeParams:
    """Stage 12's parameters (notebook 12's parameters cell equals these defaults)."""
    products: str = ""  # test products to show, by UID, comma-separated (the chosen ones)
    # and the test products bought with the most others (a rule on the truth alone, never on a model's output: they
    # are the easiest to judge), then this many random test products
    most_bought: int = ranged(2, 0)
    random_products: int = ranged(3, 0)
    top_k: int = ranged(5, 1)
    seed: int = ranged(0, 0)  # numpy and torch seeds: 0 or more


@dataclass
class QualitativeResult:
    items: list  # what plots.recommendation_grid draws
    methods: list  # the row names: the main MUFIN row, the best peer
    table: pd.DataFrame  # one row per (product, method, rank): label, title, bought-with-it
    summary: dict  # metrics.json


def pick_products(test_uids: list[str], chosen: str, n_random: int, seed: int, n_positives=None,
                  most_bought: int = 0) -> list[int]:
    """Positions of the chosen test products (an unknown UID is an error naming it), then the `most_bought` with the
    most positives (`n_positives`; ties: the first), then n_random others."""
    pos = {u: i for i, u in enumerate(test_uids)}
    want = [u.strip() for u in chosen.split(",") if u.strip()]
    missing = [u for u in want if u not in pos]
    if missing:
        raise ValueError(f"products: {', '.join(missing)} not among the run's {len(test_uids)} test products")
    picked = [pos[u] for u in want]
    if most_bought and n_positives is not None:
        order = [int(i) for i in np.argsort(-np.asarray(n_positives), kind="stable") if int(i) not in picked]
        picked += order[:most_bought]
    rest = np.setdiff1d(np.arange(len(test_uids)), picked)
    rng = np.random.default_rng(seed)
    return picked + sorted(rng.choice(rest, size=min(n_random, len(rest)), replace=False).tolist())


def stage(run, params: QualitativeParams) -> QualitativeResult:
    """The products' top-k recommendations by each row, with photos and titles; writes fig8_qualitative.* (the table
    behind the figure) and metrics.json (the share of shown recommendations that were bought)."""
    out = run.stage("qualitative")
    ds, test = run.dataset, run.split("test")
    rows = compared_rows(run, 1)
    shown = [rows[0]] + [r for r in rows if r.family == "peer"]  # the main MUFIN row and the best peer
    store = ImageStore.from_dir(ds.root)
    titles = dict(zip(ds.uids["label"], ds.titles["label"]))
    test_titles = dict(zip(ds.uids["test"], ds.titles["test"]))
    Y = _drop(sp.csr_matrix(test.Y) > 0, test.filter)
    picks = pick_products(test.uids, params.products, params.random_products, params.seed, Y.getnnz(1),
                          params.most_bought)
    tops = {r.name: topk_from_scores(_drop(r.scores[picks], filter_rows(test.filter, np.asarray(picks))), params.top_k)
            for r in shown}
    items, recs = [], []
    for r, i in enumerate(picks):
        uid = test.uids[i]
        pos = set(Y.indices[Y.indptr[i]:Y.indptr[i + 1]].tolist())
        item = {"uid": uid, "title": test_titles.get(uid, ""), "image": _first(store, uid), "recs": {}}
        for name in (r.name for r in shown):
            item["recs"][name] = []
            for rank, lab in enumerate(l for l in tops[name][r] if l >= 0):
                luid = ds.uids["label"][lab]
                rec = {"title": titles.get(luid, ""), "image": _first(store, luid), "relevant": lab in pos}
                item["recs"][name].append(rec)
                recs.append({"product": uid, "method": name, "rank": rank + 1, "label": luid, "title": rec["title"],
                             "bought with it": rec["relevant"]})
        items.append(item)
    table = pd.DataFrame(recs)
    write_table(table, out, "fig8_qualitative", caption=f"Top-{params.top_k} recommendations shown in Fig. 8 ({run.data_title})")
    summary = {"data": run.data_title, "synthetic": run.synthetic, "products": [it["uid"] for it in items],
               "methods": {r.name: r.method for r in shown},
               "bought_share": {r.name: float(table[table.method == r.name]["bought with it"].mean()) if len(table) else None
                                for r in shown}}
    write_metrics(out, summary, METRICS)
    return QualitativeResult(items, [r.name for r in shown], table, summary)


def _first(store: ImageStore, uid: str):
    ims = store.get(uid)
    return ims[0] if ims else None

