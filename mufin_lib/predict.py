"""Prediction for new products, and the per-point cost of prediction (encode / retrieve / rank).

    mufin predict --run runs/<id> --input new_products.jsonl --top-k 10 [--output recs.jsonl]

Each input line: {"id": "...", "title": "...", "images": ["path/or/URL", ...]}. Each output line: the
product's id and its recommendations (label UIDs, titles, fused scores), or an `error` saying why it got
none (no title and no usable image: reported, never guessed).
"""
from __future__ import annotations

import io
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .artifacts import Run, open_run
from .data.amazon import Product, clean_title
from .data.images import Downloader, ImageStore
from .encoders import encode_images, encode_texts, load_image_encoder, load_text_encoder
from .fusion import fuse, label_alphas, run_extra, score_pairs
from .retrieval import shortlist_points
from .paths import atomic_write, resolve


class Predictor:
    """A finished run, ready to recommend: Module I, its bags and encoders, the index, the ranker and the alpha
    that stage 06 tuned and saved (all from `open_run`)."""

    def __init__(self, run: Run | str | Path):
        self.run = run if isinstance(run, Run) else open_run(run)
        self.ds, self.p1, self.model1 = self.run.dataset, self.run.module1_params, self.run.module1
        self.table, self.label_rows = self.run.bags, self.run.label_rows
        self.index, self.ranker, self.alpha = self.run.index, self.run.ranker, label_alphas(self.run)
        terms = self.run.alpha_record.get("terms")
        if terms:  # the voters (the fit points' Module I embeddings) load with the model, not in the first request
            self.run.train_votes(terms["vote_neighbours"])
        if self.p1.freeze_encoders:
            self.text_model = load_text_encoder(self.p1.text_encoder)
            self.image_enc = (load_image_encoder(self.p1.image_encoder)
                              if self.p1.image_encoder and self.p1.modalities != "text" else None)

    def inputs(self, products: list[Product]):
        """The model inputs of new products (same layout as the dataset's bags)."""
        k = self.p1.keep_top_k
        if not self.p1.freeze_encoders:  # fine-tuned encoders: raw inputs through the tower
            return self.table.inputs([p.title for p in products], [p.images for p in products])
        text = torch.from_numpy(encode_texts(self.text_model, [p.title if self.p1.modalities != "image" else "" for p in products]))
        has_text = text.abs().sum(1) > 0
        ims = [p.images[:k] if self.image_enc is not None else [] for p in products]
        dim = self.table.image_dim
        w = max((len(x) for x in ims), default=0)
        flat = encode_images(self.image_enc, (im for x in ims for im in x), desc="encode") if w else np.zeros((0, dim), np.float32)
        images, mask = torch.zeros(len(products), w, dim), torch.zeros(len(products), w, dtype=torch.bool)
        o = 0
        for i, x in enumerate(ims):
            images[i, :len(x)] = torch.from_numpy(flat[o:o + len(x)])
            mask[i, :len(x)] = True
            o += len(x)
        empty = ~has_text & ~mask.any(1)
        has_text[empty] = True
        return text, has_text, images, mask

    @torch.no_grad()
    def recommend(self, products: list[Product], top_k: int = 10, shortlist: int = 100,
                  timings: dict | None = None) -> list[list[tuple[str, str, float]]]:
        shortlist = max(shortlist, top_k)
        t0 = time.perf_counter()
        inputs = self.inputs(products)
        x1 = self.model1.eval()(*inputs)[0].numpy()
        t1 = time.perf_counter()
        _, sl = shortlist_points(self.run, x1, replace(self.run.shortlist_params, shortlist=shortlist))
        t2 = time.perf_counter()
        e, r = score_pairs(self.ranker, inputs, self.table, self.label_rows, sl, self.model1)
        scores = fuse(e, r, sl, self.alpha, self.ds.num_labels, run_extra(self.run, x1, sl))
        t3 = time.perf_counter()
        if timings is not None:
            n = max(1, len(products))
            timings.update(encode_ms=1000 * (t1 - t0) / n, retrieve_ms=1000 * (t2 - t1) / n, rank_ms=1000 * (t3 - t2) / n)
        out = []
        for i in range(len(products)):
            s, e_ = scores.indptr[i], scores.indptr[i + 1]
            order = np.argsort(-scores.data[s:e_])[:top_k]
            labs = scores.indices[s:e_][order]
            out.append([(self.ds.uids["label"][l], self.ds.titles["label"][l], round(float(scores.data[s:e_][o] - 10.0), 5))
                        for l, o in zip(labs, order)])
        return out


def _load_image(ref: str, dl: Downloader | None):
    """(image or None, the downloader used, the reason it could not be read)."""
    try:
        if ref.startswith(("http://", "https://")):
            dl = dl or Downloader()
            p, why = dl.fetch(ref)
            if p is None:
                return None, dl, why
            return Image.open(io.BytesIO(p.read_bytes())).convert("RGB"), dl, ""
        return Image.open(resolve(ref)).convert("RGB"), dl, ""
    except Exception as e:  # noqa: BLE001 - any unreadable image is reported, not fatal
        return None, dl, f"{type(e).__name__}: {e}"


def read_products(path: str | Path, downloader: Downloader | None = None) -> tuple[list[Product], list[dict]]:
    """Products from JSON lines; returns (usable products, problems). Each problem names the file and line: a line
    that is not UTF-8, not JSON or not an object, a field of the wrong type, or no title and no usable image.
    A usable product keeps the reasons its unreadable images were left out (`image_problems`)."""
    from .data.amazon import iter_lines

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (expected JSON lines: id, title, images)")
    products, problems = [], []
    dl = downloader
    for line_no, line, why in iter_lines(path):
        def problem(what: str, **extra):
            problems.append({**extra, "line": line_no, "error": f"{path}: line {line_no}: {what}"})
        if line is None:
            problem(why)
            continue
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            problem(f"not JSON ({e.msg})")
            continue
        if not isinstance(rec, dict):
            problem(f"expected a JSON object with id, title and images, got {type(rec).__name__}")
            continue
        pid = str(rec.get("id", f"line{line_no}"))
        title, refs = rec.get("title") or "", rec.get("images") or []
        if isinstance(refs, str):
            refs = [refs]  # one image given as a string: unambiguous
        if not isinstance(title, str):
            problem(f"title: expected a string, got {type(title).__name__}", id=pid)
            continue
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            problem("images: expected a list of paths or URLs (strings)", id=pid)
            continue
        ims, bad = [], []
        for ref in refs:
            im, dl, why = _load_image(ref, dl)
            if im is None:
                bad.append(f"{ref}: {why}")
            else:
                ims.append(im)
        title = clean_title(title)
        if not title and not ims:
            problem("no title and no usable image", id=pid, image_problems=bad)
            continue
        products.append(Product(pid, title, refs, line_no=line_no, images=ims, image_problems=bad))
    return products, problems


def predict_file(run_dir, input_path, output_path=None, top_k: int = 10) -> dict:
    pred = Predictor(run_dir)
    products, problems = read_products(input_path)
    recs = pred.recommend(products, top_k=top_k) if products else []
    out_path = Path(output_path) if output_path else Path(input_path).with_suffix(".recommendations.jsonl")
    with atomic_write(out_path) as f:
        for p, r in zip(products, recs):
            f.write(json.dumps({"id": p.uid, "title": p.title, "image_problems": p.image_problems, "recommendations": [
                {"label": u, "title": t, "score": s} for u, t, s in r]}) + "\n")
        for pr in problems:
            f.write(json.dumps({**pr, "recommendations": []}) + "\n")
    return {"output": str(out_path), "recommended": len(products), "problems": len(problems)}


def time_prediction(run: Run, n_points: int = 50, shortlist: int = 100, seed: int = 0) -> dict:
    """ms per point for encode (raw title and images through the encoders and Module I) / retrieve / rank, on
    test products in one batch, through the same Predictor as `mufin predict` (the run's saved alpha)."""
    pred = Predictor(run)
    ds = run.dataset
    store = ImageStore.from_dir(ds.root)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(ds.uids["test"]), size=min(n_points, len(ds.uids["test"])), replace=False)
    prods = [Product(ds.uids["test"][i], ds.titles["test"][i], images=store.get(ds.uids["test"][i])) for i in idx]
    t = {}
    pred.recommend(prods, shortlist=shortlist, timings=t)
    t = {k: round(v, 3) for k, v in t.items()}
    t.update(points=len(prods), shortlist=shortlist, images_per_point=round(float(np.mean([len(p.images) for p in prods])), 2),
             device="cuda" if torch.cuda.is_available() else "cpu", threads=torch.get_num_threads())
    return t
