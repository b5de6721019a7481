"""Benchmark: does the Predictor (what `mufin predict` and a model folder run) reach benchmarks/scaling.py's speed at a
run's own shape? A finished run (stages 02-06) as `stages.evaluate.predictor` builds it, its test points' bags of
pre-embeddings fed in place of raw titles and photos (the encoders excluded, as scaling.py excludes them): ms per
product of Module I's forward ("encode" here: no encoder runs), retrieve (Module II's index and Module III's second
source) and rank (Module IV, the fused score and its added terms), one product at a time on one thread (mean of 50,
after 5 untimed) and in one batch on every core. Writes runs/benchmarks/predictor_speed.json (one entry per run).

    python benchmarks/predictor_speed.py --run runs/<id> [--points 200]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

from mufin_lib.paths import RUNS_DIR, atomic_write  # noqa: E402

OUT = RUNS_DIR / "benchmarks" / "predictor_speed.json"


def measure(run_dir: str, n_points: int, seed: int) -> dict:
    import resource
    import time

    import mufin_lib.predictor as pm
    from mufin_lib.artifacts import open_run
    from mufin_lib.data.amazon import Product
    from mufin_lib.stages.evaluate import predictor

    run = open_run(run_dir)
    ds = run.dataset
    # the points come pre-embedded: no encoder is loaded (a run on precomputed embeddings names one that loads nothing)
    loaders = pm.load_text_encoder, pm.load_image_encoder
    pm.load_text_encoder = pm.load_image_encoder = (lambda *a, **k: None)
    try:
        t = time.perf_counter()
        p = predictor(run)
        load_s = time.perf_counter() - t
    finally:
        pm.load_text_encoder, pm.load_image_encoder = loaders
    rng = np.random.default_rng(seed)
    test = ds.uids["test"]
    idx = rng.choice(len(test), size=min(n_points, len(test)), replace=False)
    uids = [test[i] for i in idx]
    rows = dict(zip(uids, run.bags.rows_of(uids)))
    p.inputs = lambda products: run.bags.batch(np.array([rows[q.uid] for q in products]))  # in place of the encoders
    prods = [Product(u, "") for u in uids]
    single, warm = [], []
    for i, q in enumerate(prods[:55] if len(prods) > 5 else prods * 2):  # a tiny split: its points twice
        s = {}
        p.recommend([q], timings=s)
        (single if i >= min(5, len(prods)) else warm).append(s)
    batch = {}
    p.recommend(prods, timings=batch)
    mean = {k: round(float(np.mean([s[k] for s in single])), 3) for k in single[0]}
    mean["retrieve_rank_ms"] = round(mean["retrieve_ms"] + mean["rank_ms"], 3)
    return {"run": str(run.dir.name), "labels": p.n_labels, "fit_points": int(p.fit_embeddings.shape[0]),
            "shortlist": p.shortlist.size, "second_source": p.shortlist.augment, "vote_index": p.vote_index.kind,
            "with_ranker": bool(p.with_ranker), "label_side": None if p.label_side is None else str(p.label_side.w.dtype),
            "added_terms": bool(p.fusion.added_terms), "load_s": round(load_s, 1),
            "one_product_1_thread": mean | {"products": len(single)},
            "warm_up_ms": [round(s["retrieve_ms"] + s["rank_ms"], 3) for s in warm],
            "batch": {k: round(v, 3) for k, v in batch.items()} | {"products": len(prods)},
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)}


def main():
    from scaling import _provenance

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", required=True)
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    old = json.loads(OUT.read_text()).get("results", []) if OUT.exists() else []
    new = [measure(r, a.points, a.seed) | _provenance() for r in a.run]  # each entry its commit and machine
    keep = [r for r in old if r["run"] not in {n["run"] for n in new}]  # one entry per run: the latest
    print(json.dumps(new, indent=1))
    with atomic_write(OUT) as f:
        json.dump({"benchmark": "predictor_speed", "encoders": "excluded (points pre-embedded)",
                   "results": keep + new}, f, indent=1)


if __name__ == "__main__":
    main()
