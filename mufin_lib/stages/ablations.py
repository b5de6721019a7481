"""Stage 08, ablations: the paper's Table 4 on the run's data, and the decomposition of the kit's score.

Three kinds of rows, each with its test P@1, P@5, PSP@1, PSP@5 and its difference to the row it is compared with
(the 95% paired-bootstrap interval over the test points, and win / loss / tie):
- the decomposition of the run's own score (stage 06's rows, no retraining): the paper's score (alpha only),
  MUFIN-(alpha=1), alpha = 1 plus the added terms (no Module IV), the votes alone, Module I alone, Module IV alone;
- P-I-vec against P-I-bag after Module I only (as the paper compares them), from the run's Module I;
- the variants (mufin_lib.variants), each a run beside this one that the runner made before this notebook
  (runs/<id>.<variant>, retraining only the stages the variant changes), by its main row.
The paper's stated delta (../shared/paper_tables/table4_ablations.csv, MM-AmazonTitles-300K) stands in its own
column, beside ours.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ..artifacts import open_run
from ..bags import embed_bags, embed_rows
from ..config import ranged
from ..layout import INDEX_DIR, METRICS, TEST_SCORES
from ..metrics import evaluate, filter_room, paired_bootstrap, point_parts, topk_to_csr
from ..report import load_scores, read_paper_table, write_metrics, write_table
from ..retrieval import IndexParams, LabelIndex, label_vectors
from ..variants import selected, variant_run_id

METRICS_SHOWN = ("P@1", "P@5", "PSP@1", "PSP@5")


@dataclass
class AblationsParams:
    """Stage 08's parameters (notebook 08's parameters cell equals these defaults)."""
    # the variants the runner runs beside this run before notebook 08: "all", names of mufin_lib.variants.VARIANTS, or
    # "" (smoke size, and a notebook opened alone): the rows that need no retraining only
    variants: str = ""
    bootstrap: int = ranged(1000, 10)  # paired-bootstrap resamples of the test points
    seed: int = ranged(0, 0)


@dataclass
class AblationsResult:
    table: pd.DataFrame  # one row per ablation row: metrics, difference to its reference with interval, paper's delta
    summary: dict  # metrics.json


def paper_deltas() -> dict[str, dict]:
    """The paper's Table 4 deltas by variant (strings as stated: "-2 to -3"); {} without ../shared/paper_tables."""
    try:
        t = read_paper_table("table4_ablations.csv")
    except FileNotFoundError:
        return {}
    return {r["variant"]: {"P@1": r["delta_p1_pct"], "P@5": r["delta_p5_pct"]} for _, r in t.iterrows()}


def data_size_benchmark(runs_dir) -> dict | None:
    """benchmarks/data_size.py's results (runs/benchmarks/data_size.json), which notebook 08 plots; None before it ran."""
    f = runs_dir / "benchmarks" / "data_size.json"
    return json.loads(f.read_text()) if f.exists() else None


def _cost(runs_dir, entry: dict, name: str) -> float:
    """What a reused stage had cost where it ran: followed through the runs it was taken from (a variant takes stage 01
    from the ablations' main run, which took it from an earlier run)."""
    for _ in range(100):  # a chain of runs, never a loop
        src = (entry.get("reused_from") or {}).get("run")
        f = runs_dir / str(src) / "run.json"
        if not src or not f.exists():
            break
        entry = json.loads(f.read_text())["notebooks"].get(name) or {}
    return float(entry.get("duration_s") or 0.0)


def _run_time(run_dir) -> dict:
    """How long a variant's run took, and which of its stages it took from another run (and what they had cost)."""
    rec = json.loads((run_dir / "run.json").read_text())
    nbs = rec["notebooks"].values()
    reused = [n for n, e in rec["notebooks"].items() if e.get("reused_from")]
    return {"wall_s": round(sum(e.get("duration_s") or 0 for e in nbs), 1),
            "reused": ",".join(n[:2] for n in reused),
            "saved_s": round(sum(_cost(run_dir.parent, rec["notebooks"][n], n) for n in reused), 1)}


def _retrieval_rows(run) -> list[tuple[str, str, object]]:
    """Module I with P-I-bag and with P-I-vec retrieval (the index stage 03 built: HNSW or exact), on test."""
    test = run.split("test")
    z1, desc, owner = embed_bags(run.module1, run.bags, run.label_rows)
    x = embed_rows(run.module1, run.bags, run.bags.rows_of(test.uids))
    base = IndexParams.from_fields(json.loads(run.need("module2", INDEX_DIR, "index.json").read_text())["params"])
    k = 5 + filter_room(test.filter)
    out = []
    for mode, name in (("bag", "Module I + P-I-bag retrieval (every descriptor indexed; after Module I only)"),
                       ("vec", "Module I + P-I-vec retrieval (one vector z_l^1 per label; after Module I only)")):
        vecs, own = label_vectors(z1, desc, owner, mode)
        idx = LabelIndex(vecs, own, run.dataset.num_labels, IndexParams(**{**asdict(base), "mode": mode}))
        S, I = idx.search(x, k)
        out.append((name, mode, topk_to_csr(I, S, run.dataset.num_labels)))
    return out


def stage(run, params: AblationsParams) -> AblationsResult:
    """Every row of Table 4 on this run and its variants' runs; writes table4_ablations.{csv,md,tex} and metrics.json."""
    test = run.split("test")
    inv_p = run.inv_propensity()
    ev = run.metrics("evaluate")
    scores = load_scores(run.need("evaluate", TEST_SCORES))
    main = ev["mufin"]
    paper = paper_deltas()
    rows = []  # (row, kind, reference row, scores, paper variant, extra)

    def add(name, kind, against, S, paper_variant="", **extra):
        rows.append({"row": name, "kind": kind, "against": against, "scores": S, "paper_variant": paper_variant, **extra})

    add(main, "main row (the kit's score)", None, scores[main][1])
    for name, (_, S) in scores.items():
        if name == main:
            continue
        if name == ev["paper_fusion"] and name != main:
            add(name, "decomposition: the paper's score (alpha alone) on the same Modules I-IV", main, S)
        elif name == "MUFIN-(alpha=1)":
            # the paper's MUFIN-(alpha=1): the classifiers ignored, against the paper's score on the same modules
            add(name, "decomposition: the embedding score alone (classifiers ignored)", ev["paper_fusion"], S,
                "MUFIN-(alpha=1)")
        elif name.endswith("(no Module IV)"):
            add(name, "decomposition: alpha = 1 plus the added terms (no Module IV)", main, S)
        elif name.startswith("training-point votes alone"):
            add(name, "decomposition: the added terms alone (no embedding score, no Module IV)", main, S)
        else:
            add(name, "decomposition: " + ("Module I alone" if name.startswith("Module I") else "Module IV alone"), main, S)
    (bag, _, S_bag), (vec, _, S_vec) = _retrieval_rows(run)
    add(bag, "retrieval after Module I", None, S_bag)
    add(vec, "retrieval after Module I", bag, S_vec, "MUFIN-P-I-vec")

    variant_rows, took_by = {}, {}  # took_by: each variant run's time, once (a variant may have two rows)
    for v in selected(params.variants):
        vdir = run.dir.parent / variant_run_id(run.dir.name, v.name)
        if not (vdir / "run.json").exists():
            raise FileNotFoundError(f"{vdir}: the variant '{v.name}' has no run; run the ablations through the runner "
                                    f"(mufin run --resume {run.dir.name} --only 08), which makes it before notebook 08")
        vrun = open_run(vdir)
        if list(vrun.split("test").uids) != list(test.uids):
            raise ValueError(f"{vdir}: its test points differ from run {run.dir.name}'s: a paired comparison needs the "
                             "same stage 01")
        vev = vrun.metrics("evaluate")
        vs = load_scores(vrun.need("evaluate", TEST_SCORES))
        took = took_by[v.name] = _run_time(vdir)
        if v.against != "main":  # a variant of the paper's pipeline, against that pipeline (both the paper's score)
            add(v.row, f"variant run {vdir.name}: {vev['mufin']}", variant_rows[v.against], vs[vev["mufin"]][1], v.paper,
                **took)
        elif vev["paper_pipeline"]:  # the paper's pipeline: against the kit's score, and the paper's on the kit's modules
            add(v.row, f"variant run {vdir.name}: {vev['mufin']}", main, vs[vev["mufin"]][1], v.paper, **took)
            add(v.row, f"variant run {vdir.name}: {vev['mufin']}", ev["paper_fusion"], vs[vev["mufin"]][1], v.paper,
                **took)
        else:  # a variant of the kit's pipeline: its kit score against the main row, its paper score against the main
            # run's (where the paper's delta belongs: the paper's MUFIN is its score alone)
            add(f"{v.row}, kit fusion", f"variant run {vdir.name}: {vev['mufin']}", main, vs[vev["mufin"]][1], **took)
            add(f"{v.row}, paper's score", f"variant run {vdir.name}: {vev['paper_fusion']}", ev["paper_fusion"],
                vs[vev["paper_fusion"]][1], v.paper, **took)
        variant_rows[v.name] = v.row

    by_name = {}
    for r in rows:  # a row compared with two references appears twice, with the same scores
        by_name.setdefault(r["row"], r)
    parts = {}

    def parts_of(name, m):
        if (name, m) not in parts:
            parts[(name, m)] = point_parts(by_name[name]["scores"], test.Y, inv_p, test.filter, m)
        return parts[(name, m)]

    out = []
    for r in rows:
        rec = {"data": run.data_name, "row": r["row"], "kind": r["kind"], "compared with": r["against"] or ""}
        met = evaluate(r["scores"], test.Y, inv_p, test.filter)  # once per row, every metric
        rec.update({m: met[m] for m in METRICS_SHOWN})
        for m in METRICS_SHOWN:
            if r["against"]:
                b = paired_bootstrap(parts_of(r["row"], m), parts_of(r["against"], m), params.bootstrap, params.seed)
                rec.update({f"d{m}": b["diff"], f"d{m} lo": b["lo"], f"d{m} hi": b["hi"], f"d{m} verdict": b["verdict"]})
        pv = paper.get(r["paper_variant"], {})
        rec.update({"paper variant": r["paper_variant"], "paper dP@1 (MM-AmazonTitles-300K)": pv.get("P@1"),
                    "paper dP@5 (MM-AmazonTitles-300K)": pv.get("P@5")})
        rec.update({k: r.get(k) for k in ("wall_s", "reused", "saved_s")})
        out.append(rec)
    table = pd.DataFrame(out)
    times = pd.DataFrame(list(took_by.values()))
    summary = {"data": run.data_title, "synthetic": run.synthetic, "main": main, "test_points": len(test.uids),
               "bootstrap_resamples": params.bootstrap, "variants": [v.name for v in selected(params.variants)],
               "variants_wall_s": round(float(times["wall_s"].sum()), 1) if len(times) else 0.0,
               "variants_saved_by_reuse_s": round(float(times["saved_s"].sum()), 1) if len(times) else 0.0,
               "variant_runs": took_by,
               "paper_table": bool(paper), "propensity": run.propensity,
               "results": table.astype(object).where(table.notna(), None).to_dict("records")}
    folder = run.stage("ablations")
    write_table(table, folder, "table4_ablations",
                caption=f"Table 4 on {run.data_title}: each row against the row it is compared with, test split, 95% "
                        "paired-bootstrap intervals; the paper's deltas are on MM-AmazonTitles-300K")
    write_metrics(folder, summary, METRICS)
    return AblationsResult(table, summary)
