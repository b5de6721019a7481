"""Stage 13, scaling: what benchmarks/scaling.py measured (runs/benchmarks/scaling.json): prediction cost per step
against the number of labels L, one query at a time on one thread and in batches, exact and HNSW votes, napkinXC PLT
and PECOS XR-Linear at the same L, index build times, peak memory and P@1 on the planted truth; and what benchmarks/real_shape.py measured
(runs/benchmarks/real_shape.json): each stage's seconds and peak memory at MM-AmazonTitles-300K's shape; and what
benchmarks/predictor_speed.py measured (runs/benchmarks/predictor_speed.json): the Predictor of a finished run, one
product at a time, at that run's shape; the targets of issue 27 beside them. It runs nothing itself; notebook 13 plots it."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..layout import METRICS
from ..paths import RUNS_DIR
from ..report import write_metrics, write_table

TARGET_MS = 2.5  # retrieve + rank + fuse at L = 1M, one query, one core, votes included (issue 27)
TARGET_GROWTH = 1.5  # from 100K to 1M labels
TARGET_INDEX_GB = 4.0  # the P-I-bag index of 1M labels, alone
TARGET_SHAPE_GB = 16.0  # every stage at the real data's shape (303K labels), on a 24 GB machine


@dataclass
class ScalingParams:
    """Stage 13's parameters (notebook 13's parameters cell equals these defaults)."""
    bench_dir: str = ""  # empty: runs/benchmarks/ (where benchmarks/scaling.py writes)


@dataclass
class ScalingResult:
    raw: dict | None  # scaling.json, None before the benchmark has run
    table: pd.DataFrame  # one row per (L, votes index, mode): ms per point of each step, P@1, memory
    reading: dict  # where the measured stand against the targets
    summary: dict
    shape: pd.DataFrame | None = None  # real_shape.json: one row per stage (seconds, peak GB), None before it ran
    cores: int | None = None  # the cores the benchmark could run on (older JSON without cores_used: the machine's)
    predictor: pd.DataFrame | None = None  # predictor_speed.json: one row per run, None before it ran


def _rows(raw: dict) -> list[dict]:
    out = []
    for r in raw["results"]:
        if "error" in r:
            out.append({"L": r["L"], "error": r["error"][-300:]})
            continue
        for votes, res in r["mufin_path"].items():
            for mode, steps in res.items():
                if mode == "P@1":
                    continue
                steps = {k: v for k, v in steps.items() if not isinstance(v, list)}  # the warm-up calls: not a column
                out.append({"L": r["L"], "method": f"MUFIN path, {votes} votes", "mode": mode, **steps, "P@1": res["P@1"],
                            "label_index_build_s": r["label_index_build_s"], "label_index_GB": r.get("label_index_GB"),
                            "label_side_GB": (r.get("label_side") or {}).get("GB"),
                            "vote_index_build_s": r["vote_index_build_s"][{"exact": "flat"}.get(votes, votes)],
                            "vote_recall": 1.0 if votes == "exact" else r["vote_neighbours_recall_hnsw"],
                            "peak_rss_gb": r["peak_rss_gb"]})
        for key, name in (("plt", "napkinXC PLT (TF-IDF)"), ("pecos", "PECOS XR-Linear (TF-IDF)")):
            if isinstance(r.get(key), dict):  # a peer not installed is a string saying so
                out.append({"L": r["L"], "method": name, "mode": "all queries in one call, 1 thread",
                            "total_ms": r[key]["predict_1_thread_ms"], "P@1": r[key]["P@1"], "train_s": r[key]["train_s"],
                            "peak_rss_gb": r["peak_rss_gb"]})
    return out


def stage(run, params: ScalingParams) -> ScalingResult:
    out = run.stage("scaling")
    path = (Path(params.bench_dir) if params.bench_dir else RUNS_DIR / "benchmarks") / "scaling.json"
    raw = json.loads(path.read_text()) if path.exists() else None
    table = pd.DataFrame(_rows(raw)) if raw else pd.DataFrame()
    reading = {}
    if len(table) and "total_ms" in table:
        single = table[table["mode"] == "single_query_1_thread"]
        for method, d in single.groupby("method"):
            by_L = d.set_index("L")["total_ms"]
            top = by_L.index.max()
            rec = {"largest_L": int(top), "ms_at_largest_L": float(by_L[top]), "target_ms_at_1M": TARGET_MS,
                   "meets_target": bool(top >= 1_000_000 and by_L[top] <= TARGET_MS)}
            if 100_000 in by_L.index and top > 100_000:
                rec["growth_from_100K"] = round(float(by_L[top] / by_L[100_000]), 2)
                rec["target_growth"] = TARGET_GROWTH
                rec["meets_growth"] = bool(rec["growth_from_100K"] <= TARGET_GROWTH)
            reading[method] = rec
        sizes = {r["L"]: r.get("label_index_GB") for r in raw["results"] if r.get("label_index_GB") is not None}
        if sizes:
            top = max(sizes)
            reading["P-I-bag index memory"] = {"largest_L": int(top), "GB_at_largest_L": sizes[top],
                                               "target_GB_at_1M": TARGET_INDEX_GB,
                                               "meets_target": bool(top >= 1_000_000 and sizes[top] <= TARGET_INDEX_GB)}
        write_table(table, out, "scaling", caption=f"Prediction cost against L (synthetic planted data, encoders excluded); "
                    f"machine: {raw['machine']}")
    shape = _shape(path.parent / "real_shape.json", reading)
    if shape is not None:
        write_table(shape, out, "real_shape", caption="Each stage at MM-AmazonTitles-300K's shape (planted SYNTHETIC "
                    "data from precomputed embeddings): seconds and peak memory on this machine")
    served = _predictor(path.parent / "predictor_speed.json", reading)
    if served is not None:
        write_table(served, out, "predictor_speed", caption="The Predictor of a finished run (what `mufin predict` runs), "
                    "one product at a time on one thread, its points pre-embedded (encoders excluded)")
    summary = {"bench": str(path), "machine": (raw or {}).get("machine"), "reading": reading}
    write_metrics(out, summary, METRICS)
    machine = (raw or {}).get("machine") or {}
    return ScalingResult(raw, table, reading, summary, shape, machine.get("cores_used", machine.get("cpu_count")), served)


def _predictor(path: Path, reading: dict) -> pd.DataFrame | None:
    """predictor_speed.json as a table (one row per run: its shape, ms per product of each step) and, per run, its
    retrieve + rank against the 2.5 ms target (added to `reading`; met only at 1M labels or more, as the benchmark's)."""
    if not path.exists():
        return None
    rows = []
    for r in json.loads(path.read_text())["results"]:
        one, batch = r["one_product_1_thread"], r["batch"]
        rows.append({"run": r["run"], "labels": r["labels"], "fit_points": r["fit_points"], "shortlist": r["shortlist"],
                     "second source": r["second_source"], "vote index": r["vote_index"], "label side": r["label_side"],
                     "Module I ms": one["encode_ms"], "retrieve ms": one["retrieve_ms"], "rank ms": one["rank_ms"],
                     "retrieve + rank ms": one["retrieve_rank_ms"],
                     "batch retrieve + rank ms": round(batch["retrieve_ms"] + batch["rank_ms"], 3),
                     "peak GB": r["peak_rss_gb"], "commit": (r.get("git") or {}).get("commit", "")[:7]})
        reading[f"Predictor, one product ({r['run']})"] = {
            "labels": r["labels"], "ms": one["retrieve_rank_ms"], "with_module1_ms": round(one["retrieve_rank_ms"] + one["encode_ms"], 3),
            "target_ms_at_1M": TARGET_MS, "meets_target": bool(r["labels"] >= 1_000_000 and one["retrieve_rank_ms"] <= TARGET_MS)}
    return pd.DataFrame(rows)


def _shape(path: Path, reading: dict) -> pd.DataFrame | None:
    """real_shape.json's stages as a table, and its reading against the 16 GB target (added to `reading`)."""
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    shape = pd.DataFrame(raw["results"])
    for col in ("seconds", "peak_rss_GB"):
        shape[col] = pd.to_numeric(shape[col])
    done = shape.dropna(subset=["peak_rss_GB"])
    if len(done):
        top = done.loc[done["peak_rss_GB"].idxmax()]
        reading["303K-shape run, peak memory"] = {
            "stages_measured": int(len(done)), "largest_peak_GB": float(top["peak_rss_GB"]), "in_stage": top["stage"],
            "total_s": round(float(done["seconds"].sum()), 1), "target_GB": TARGET_SHAPE_GB,
            "unfinished": [n for n in shape["stage"] if n not in set(done["stage"])],
            # every stage: a run that stopped early meets it for the stages it finished only (None), unless one is over
            "meets_target": (False if done["peak_rss_GB"].max() > TARGET_SHAPE_GB
                             else None if len(done) < len(shape) else True), "git": raw.get("git")}
    return shape
