"""Stage 03, module2: Module II, the labels indexed by the Module I model (P-I-bag or P-I-vec; HNSW or exact), test
recall and P@k after Module I alone, and the saved index (module2/index) that stage 04 and prediction search."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import pandas as pd

from ..bags import embed_bags, embed_rows
from ..config import choice, ranged
from ..layout import INDEX_DIR, METRICS
from ..metrics import evaluate, recall_at_k, topk_to_csr
from ..report import read_paper_table, write_metrics, write_table
from ..retrieval import IndexParams, LabelIndex, label_vectors, topk_overlap


@dataclass
class Module2Params:
    """Stage 03's parameters (notebook 03's parameters cell equals these defaults)."""
    mode: str = choice("bag", "vec")  # bag (P-I-bag, paper) | vec (P-I-vec, authors' code)
    index: str = choice("hnsw", "flat")  # hnsw | flat (exact)
    M: int = ranged(32, 2)  # authors' code: 100
    ef_construction: int = ranged(200, 1)  # authors' code: 300
    ef_search: int = ranged(300, 1)
    shortlist: int = ranged(100, 1)  # labels retrieved per test point for recall (authors' code: 300)
    gpu: bool = True  # use faiss GPU when available (flat search; HNSW stays on the CPU)
    compare: bool = True  # also measure P-I-vec against P-I-bag and HNSW against exact search


@dataclass
class Module2Result:
    table: pd.DataFrame  # one row per (mode, index): vectors, build time, ms/query, P@k, R@k
    recall_curves: dict  # "P-I-bag / hnsw" -> {"R@k": ...}
    hnsw_vs_exact_overlap: float | None  # share of the exact top-k that HNSW finds (chosen mode)
    table4: pd.DataFrame | None  # P-I-vec vs P-I-bag beside the paper's deltas (Table 4), when both were built
    index: LabelIndex  # the chosen index, saved under module2/index
    summary: dict  # metrics.json


def _table4(table: pd.DataFrame, data_name: str, index: str) -> pd.DataFrame:
    """P-I-vec against P-I-bag after Module I, beside the paper's deltas (../shared/paper_tables, when present)."""
    try:
        paper = read_paper_table("table4_ablations.csv")
        pv = paper[paper.variant == "MUFIN-P-I-vec"].iloc[0]
    except FileNotFoundError as e:
        pv = {"delta_p1_pct": None, "delta_p5_pct": None, "note": f"paper table not found: {e}"}
    by = table.set_index("retrieval")
    b, v = by.loc[f"P-I-bag / {index}"], by.loc[f"P-I-vec / {index}"]
    return pd.DataFrame([{"data": data_name, "variant": "P-I-vec vs P-I-bag (after Module I)",
                          "ours_P@1_bag": b["P@1"], "ours_P@1_vec": v["P@1"],
                          "ours_delta_P@1": round(v["P@1"] - b["P@1"], 2), "ours_delta_P@5": round(v["P@5"] - b["P@5"], 2),
                          "paper_delta_P@1_pct": pv["delta_p1_pct"], "paper_delta_P@5_pct": pv["delta_p5_pct"],
                          "paper_note": pv["note"]}])


def stage(run, params: Module2Params) -> Module2Result:
    """Index the labels, measure each index on test (with params.compare, every mode and index), save the chosen one,
    and write module2_retrieval.*, table4_pi_bag_vs_vec.*, recall.json and metrics.json."""
    ds, out, test = run.dataset, run.stage("module2"), run.split("test")
    z1, desc, owner = embed_bags(run.module1, run.bags, run.label_rows)
    x_test = embed_rows(run.module1, run.bags, run.bags.rows_of(test.uids))
    ks = [k for k in (1, 5, 10, 20, 50, 100, 200, 300) if k <= params.shortlist]
    inv_p = run.inv_propensity()
    base = IndexParams.from_fields(asdict(params))
    chosen = (params.mode, params.index)
    todo = [chosen] + ([(m, i) for m in ("bag", "vec") for i in ("hnsw", "flat") if (m, i) != chosen]
                       if params.compare else [])
    rows, curves, indexes, found = [], {}, {}, {}
    for m, i in todo:
        vecs, own = label_vectors(z1, desc, owner, m)
        idx = LabelIndex(vecs, own, ds.num_labels, replace(base, mode=m, index=i))
        t0 = time.perf_counter()
        S, I = idx.search(x_test, params.shortlist)
        ms = 1000 * (time.perf_counter() - t0) / max(1, len(x_test))
        rec = recall_at_k(I, test.Y, ks, test.filter)
        met = evaluate(topk_to_csr(I, S, ds.num_labels), test.Y, inv_p, test.filter)
        name = f"P-I-{m} / {i}"
        curves[name], indexes[(m, i)], found[(m, i)] = rec, idx, I
        rows.append({"data": run.data_name, "retrieval": name, "vectors": len(vecs),
                     "build_s": round(idx.build_seconds, 2), "ms_per_query": round(ms, 3),
                     **{k: met[k] for k in ("P@1", "P@3", "P@5", "PSP@5")}, **rec})
    table = pd.DataFrame(rows)
    overlap = None
    if (params.mode, "hnsw") in found and (params.mode, "flat") in found:
        overlap = topk_overlap(found[(params.mode, "hnsw")], found[(params.mode, "flat")])
    t4 = _table4(table, run.data_name, params.index) if {("bag", params.index), ("vec", params.index)} <= set(indexes) else None
    indexes[chosen].save(out / INDEX_DIR)  # stage 04 and prediction load it without rebuilding
    write_table(table, out, "module2_retrieval", caption=f"Module II retrieval after Module I, test split ({run.data_title})")
    if t4 is not None:
        write_table(t4, out, "table4_pi_bag_vs_vec",
                    caption=f"Table 4 rows P-I-bag / P-I-vec ({run.data_title}; paper column: MM-AmazonTitles-300K)")
    summary = {"data": run.data_title, "synthetic": run.synthetic, "mode": params.mode, "index": params.index,
               "results": table.to_dict("records"), "propensity": run.propensity, "hnsw_vs_exact_overlap": overlap,
               "table4": None if t4 is None else t4.to_dict("records")}
    write_metrics(out, summary, METRICS)
    write_metrics(out, curves, name="recall.json")
    return Module2Result(table, curves, overlap, t4, indexes[chosen], summary)
