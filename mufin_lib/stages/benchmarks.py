"""Stage 11, benchmarks: the speed and memory results the scripts in benchmarks/ wrote (JSON under runs/benchmarks/),
as tables beside the peers; notebook 11 plots them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..layout import METRICS
from ..paths import RUNS_DIR
from ..report import ranker_variants_table, read_benchmarks, write_metrics, write_table


@dataclass
class BenchmarksParams:
    """Stage 11's parameters (notebook 11's parameters cell equals these defaults)."""
    bench_dir: str = ""  # empty: runs/benchmarks/ (where `make bench` writes)


@dataclass
class BenchmarksResult:
    bench_dir: Path
    raw: dict  # benchmark name -> its JSON
    tables: dict  # "curation" | "module1" | "ranker_variants" | "training" | "label_side" -> DataFrame
    summary: dict  # metrics.json


def stage(run, params: BenchmarksParams) -> BenchmarksResult:
    """Read the benchmarks' JSON and write their tables and metrics.json."""
    out = run.stage("benchmarks")
    path = Path(params.bench_dir) if params.bench_dir else RUNS_DIR / "benchmarks"
    bench = read_benchmarks(path) if path.exists() else {}
    tables = {}
    if "curation_throughput" in bench:
        cur = bench["curation_throughput"]
        tables["curation"] = pd.DataFrame(cur["results"])[["method", "size", "records_per_s", "peak_rss_mb", "seconds"]]
        write_table(tables["curation"], out, "bench_curation", caption=f"Curation throughput on {cur['data']}; machine: {cur['machine']}")
    if "module1_throughput" in bench:
        m1 = bench["module1_throughput"]
        tables["module1"] = pd.DataFrame(m1["results"])
        write_table(tables["module1"], out, "bench_module1", caption=f"Module I training throughput, {m1['data']}; CUDA: {m1['cuda']}")
    if "ranker_variants" in bench:
        rv = bench["ranker_variants"]
        tables["ranker_variants"] = ranker_variants_table(rv)
        write_table(tables["ranker_variants"], out, "bench_ranker_variants",
                    caption=f"Module IV variants, test split ({rv['split']}); data per row")
    if "training_throughput" in bench:
        tt = bench["training_throughput"]
        tables["training"] = pd.DataFrame(tt["results"])
        write_table(tables["training"], out, "bench_training", caption=f"Training (points/s) and encoder (items/s) "
                    f"throughput; machine: {tt['machine']}")
    if "label_side_precision" in bench:
        lp = bench["label_side_precision"]
        tables["label_side"] = pd.DataFrame([{"run": r["run"], "data": r["data"], "split": r["split"],
                                              "max |score diff|": r["max_abs_score_diff"],
                                              **{f"{row} {k} ({dt})": v for dt in ("float32", "float16")
                                                 for row, m in r[dt].items() if isinstance(m, dict) for k, v in m.items()}}
                                             for r in lp["results"]])
        write_table(tables["label_side"], out, "bench_label_side", caption="Module IV's label side in float16 against "
                    "float32: P@k on validation")
    summary = {"bench_dir": str(path), "benchmarks": {k: v["results"] for k, v in bench.items()}}
    write_metrics(out, summary, METRICS)
    return BenchmarksResult(path, bench, tables, summary)
