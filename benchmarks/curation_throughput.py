"""Benchmark: curation throughput (records/s) and peak memory on synthetic Amazon-2018 JSON lines, at
several sizes up to 1M records, beside a peer in the same run: pandas.read_json(lines=True), which parses
the whole file into memory (and does no curation). Writes runs/benchmarks/curation_throughput.json.

    python benchmarks/curation_throughput.py [--sizes 10000,100000,1000000]
"""
from __future__ import annotations

import argparse
import gzip
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mufin_lib.paths import CACHE_DIR, RUNS_DIR, atomic_write  # noqa: E402

WORKER = r"""
import json, resource, sys, time
kind, path = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if kind == "mufin":
    from mufin_lib.data.curate import curate_amazon
    ds, rep = curate_amazon([path])
    n, extra = rep.input_lines, {"labels": rep.kept_labels, "points": rep.kept_points}
else:
    import pandas as pd
    df = pd.read_json(path, lines=True, compression="gzip")
    n, extra = len(df), {}
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "records": n, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra}))
"""


def make_json(n: int) -> Path:
    """Amazon-2018-style metadata from the synthetic generator (text and also_buy; fake image URLs)."""
    from mufin_lib.data.synthetic import SyntheticParams, generate_products

    path = CACHE_DIR / "bench" / f"meta_synthetic_{n}.json.gz"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    prod = generate_products(SyntheticParams(n_products=n, seed=0, with_images=False))
    Y = prod["Y"]
    uids = prod["uids"]
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", compresslevel=1) as f:
        for i in range(n):
            rec = {"asin": uids[i], "title": prod["titles"][i], "category": [prod["category_names"][prod["category"][i]]],
                   "also_buy": [uids[j] for j in Y.indices[Y.indptr[i]:Y.indptr[i + 1]]],
                   "image": [f"https://img.invalid/{uids[i]}_{k}.jpg" for k in range(i % 3)]}
            f.write(json.dumps(rec) + "\n")
    tmp.rename(path)
    return path


def measure(kind: str, path: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", WORKER, kind, str(path)], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": r.stderr[-500:]}
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["records_per_s"] = out["records"] / out["seconds"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--peer-max", type=int, default=1_000_000, help="largest size the pandas peer is run on")
    args = ap.parse_args()
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        t = time.perf_counter()
        path = make_json(n)
        print(f"{n:>9,} records: file {path.stat().st_size / 1e6:.1f} MB (made in {time.perf_counter() - t:.0f} s)")
        for kind in ("mufin", "pandas.read_json") if n <= args.peer_max else ("mufin",):
            m = measure("mufin" if kind == "mufin" else "pandas", path)
            m.update(size=n, method=kind, file_mb=path.stat().st_size / 1e6)
            results.append(m)
            print(f"    {kind:18s} {m.get('records_per_s', 0):>10,.0f} rec/s  peak RSS {m.get('peak_rss_mb', 0):>7,.0f} MB")
    out = RUNS_DIR / "benchmarks" / "curation_throughput.json"
    with atomic_write(out) as f:
        json.dump({"benchmark": "curation_throughput", "machine": platform.platform(), "python": platform.python_version(),
                   "data": "synthetic Amazon-2018 JSON lines (gzip)", "results": results}, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
