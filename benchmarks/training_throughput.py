"""Benchmark: training throughput of Modules I and IV (points/s) read from finished runs' training histories (each
epoch's seconds, validation excluded), and the offline encoders' throughput (titles/s, images/s) measured here on
this machine's threads (stage 11 tabulates it). Module IV's epochs are split into those on frozen features (its encoder copy fixed) and those
that train the encoder copy too. Writes runs/benchmarks/training_throughput.json.

    python benchmarks/training_throughput.py [--run runs/<id> ...] [--texts 2048] [--images 256]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mufin_lib.artifacts import open_run  # noqa: E402
from mufin_lib.paths import RUNS_DIR, atomic_write  # noqa: E402

OUT = RUNS_DIR / "benchmarks" / "training_throughput.json"


def from_run(run_dir: str) -> list[dict]:
    run = open_run(run_dir)
    fit, train = len(run.carve[0]), len(run.dataset.uids["train"])
    out = []
    for module, points, key in (("Module I", fit, None), ("Module IV", train, "frozen_features")):
        f = run.dir / ("module1" if module == "Module I" else "module4") / "history.json"
        if not f.exists():
            continue
        hist = [h for h in json.loads(f.read_text()) if h.get("seconds")]
        groups = {None: hist} if key is None else {True: [h for h in hist if h.get(key)], False: [h for h in hist if not h.get(key)]}
        for g, hs in groups.items():
            if not hs:
                continue
            secs = float(np.median([h["seconds"] for h in hs]))
            what = module if g is None else f"{module}, {'frozen features' if g else 'encoder copy trained'}"
            out.append({"run": run.dir.name, "data": run.data_title, "what": what, "points_per_epoch": points,
                        "epochs": len(hs), "median_epoch_s": round(secs, 2), "points_per_s": round(points / secs, 1)})
    return out


def encoders(n_texts: int, n_images: int) -> list[dict]:
    from PIL import Image

    from mufin_lib.encoders import OFFLINE_IMAGE, OFFLINE_TEXT, encode_images, encode_texts, load_image_encoder, load_text_encoder

    rng = np.random.default_rng(0)
    words = ["linen", "shirt", "wide", "leg", "trousers", "cotton", "dress", "leather", "sandals", "straw", "bag", "knit"]
    titles = [" ".join(rng.choice(words, 6)) for _ in range(n_texts)]
    out = []
    m = load_text_encoder(OFFLINE_TEXT)
    encode_texts(m, titles[:64])  # warm-up
    t = time.perf_counter()
    encode_texts(m, titles)
    out.append({"what": f"text encoder ({OFFLINE_TEXT})", "items": n_texts, "items_per_s": round(n_texts / (time.perf_counter() - t), 1)})
    enc = load_image_encoder(OFFLINE_IMAGE)
    ims = [Image.fromarray(rng.integers(0, 255, (256, 192, 3), dtype=np.uint8)) for _ in range(n_images)]
    encode_images(enc, ims[:16])
    t = time.perf_counter()
    encode_images(enc, ims)
    out.append({"what": f"image encoder ({OFFLINE_IMAGE}, 256 x 192 photos)", "items": n_images,
                "items_per_s": round(n_images / (time.perf_counter() - t), 1)})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", default=[])
    ap.add_argument("--texts", type=int, default=2048)
    ap.add_argument("--images", type=int, default=256)
    a = ap.parse_args()
    res = {"benchmark": "training_throughput",
           "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                       "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()},
           "results": [r for d in a.run for r in from_run(d)] + encoders(a.texts, a.images)}
    print(json.dumps(res, indent=1))
    with atomic_write(OUT) as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
