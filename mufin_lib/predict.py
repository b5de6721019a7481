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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data.amazon import clean_title
from .data.images import Downloader, ImageStore
from .data.prepare import load_prepared
from .encoders import encode_images, encode_texts, load_image_encoder, load_text_encoder
from .module1 import Module1Params, bag_source, load_model, load_params
from .paths import atomic_write, resolve
from .ranker import fuse, load_ranker, score_pairs
from .retrieval import LabelIndex


@dataclass
class Product:
    id: str
    title: str
    images: list  # PIL images


class Predictor:
    """Everything a run trained, loaded once: Module I, the index, the ranker and alpha."""

    def __init__(self, run_dir: str | Path, text_encoder: str | None = None, image_encoder: str | None = None):
        from .encoders import embed_dataset

        self.run_dir = resolve(run_dir)
        self.ds, info = load_prepared(self.run_dir)
        self.p1: Module1Params = load_params(self.run_dir / "module1")
        self.model1 = load_model(self.run_dir / "module1", self.ds)
        te = text_encoder or self.p1.text_encoder
        ie = image_encoder if image_encoder is not None else self.p1.image_encoder
        self.emb = embed_dataset(self.ds.root, text_encoder=te, image_encoder=ie) if self.p1.freeze_encoders else None
        self.table = bag_source(self.model1, self.ds, self.emb, self.p1)
        self.index = LabelIndex.load(self.run_dir / "module2" / "index")
        self.ranker = load_ranker(self.run_dir / "module4", self.model1, self.ds.num_labels)
        alpha_file = self.run_dir / "evaluate" / "alpha.json"
        if not alpha_file.exists():
            raise FileNotFoundError(f"{alpha_file}: missing; run notebook 06_evaluate first (it tunes alpha)")
        self.alpha = json.loads(alpha_file.read_text())["alpha"]
        self.label_rows = self.table.rows_of(self.ds.uids["label"])
        if self.p1.freeze_encoders:
            self.text_model = load_text_encoder(te)
            self.image_enc = load_image_encoder(ie) if ie and self.p1.modalities != "text" else None

    def inputs(self, products: list[Product]):
        """The model inputs of new products (same layout as the dataset's bags)."""
        k = self.p1.keep_top_k
        if not self.p1.freeze_encoders:  # fine-tuned encoders: raw inputs through the tower
            tbl = self.table
            feats = {kk: v for kk, v in tbl.text_model.preprocess([p.title or "." for p in products]).items() if torch.is_tensor(v)}
            ims = [p.images[:k] if tbl.use_image else [] for p in products]
            w = max((len(x) for x in ims), default=0)
            size = tbl.image_enc.size if tbl.image_enc else 1
            pix, mask = torch.zeros(len(products), w, 3, size, size), torch.zeros(len(products), w, dtype=torch.bool)
            for i, x in enumerate(ims):
                if x:
                    pix[i, :len(x)] = tbl.image_enc.preprocess(x)
                    mask[i, :len(x)] = True
            return feats, torch.tensor([bool(p.title) for p in products]), pix, mask
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
        t0 = time.perf_counter()
        inputs = self.inputs(products)
        x1 = self.model1.eval()(*inputs)[0].numpy()
        t1 = time.perf_counter()
        _, sl = self.index.search(x1, shortlist)
        t2 = time.perf_counter()
        e, r = score_pairs(self.ranker, inputs, self.table, self.label_rows, sl, self.model1)
        scores = fuse(e, r, sl, self.alpha, self.ds.num_labels)
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


def read_products(path: str | Path, downloader: Downloader | None = None) -> tuple[list[Product], list[dict]]:
    """Products from JSONL; returns (usable products, problems) — a line with no title and no usable image,
    or bad JSON, is a problem naming the file and line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (expected JSON lines: id, title, images)")
    products, problems = [], []
    dl = downloader
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append({"line": line_no, "error": f"{path}: line {line_no}: not JSON ({e.msg})"})
                continue
            pid = str(rec.get("id", f"line{line_no}"))
            ims, bad = [], []
            for ref in rec.get("images", []) or []:
                try:
                    if str(ref).startswith(("http://", "https://")):
                        dl = dl or Downloader()
                        p, why = dl.fetch(ref)
                        if p is None:
                            bad.append(f"{ref}: {why}")
                            continue
                        ims.append(Image.open(io.BytesIO(p.read_bytes())).convert("RGB"))
                    else:
                        ims.append(Image.open(resolve(ref)).convert("RGB"))
                except Exception as e:  # noqa: BLE001 - any unreadable image is reported, not fatal
                    bad.append(f"{ref}: {type(e).__name__}")
            title = clean_title(rec.get("title") or "")
            if not title and not ims:
                problems.append({"id": pid, "line": line_no, "error": "no title and no usable image",
                                 "image_problems": bad})
                continue
            products.append(Product(pid, title, ims))
    return products, problems


def predict_file(run_dir, input_path, output_path=None, top_k: int = 10) -> dict:
    pred = Predictor(run_dir)
    products, problems = read_products(input_path)
    recs = pred.recommend(products, top_k=top_k) if products else []
    out_path = Path(output_path) if output_path else Path(input_path).with_suffix(".recommendations.jsonl")
    with atomic_write(out_path) as f:
        for p, r in zip(products, recs):
            f.write(json.dumps({"id": p.id, "title": p.title, "recommendations": [
                {"label": u, "title": t, "score": s} for u, t, s in r]}) + "\n")
        for pr in problems:
            f.write(json.dumps({**pr, "recommendations": []}) + "\n")
    return {"output": str(out_path), "recommended": len(products), "problems": len(problems)}


def time_prediction(ds, model1, ranker, index, p1: Module1Params, n_points: int = 50, shortlist: int = 100,
                    text_encoder: str = "all-MiniLM-L6-v2", image_encoder: str = "efficientnet-lite0", seed: int = 0) -> dict:
    """ms per point for encode (raw title and images through the encoders and Module I) / retrieve / rank,
    on test products, in one batch."""
    pred = Predictor.__new__(Predictor)
    pred.ds, pred.p1, pred.model1, pred.index, pred.ranker = ds, p1, model1, index, ranker
    pred.emb = None
    from .encoders import embed_dataset
    if p1.freeze_encoders:
        pred.emb = embed_dataset(ds.root, text_encoder=text_encoder, image_encoder=image_encoder)
        pred.text_model = load_text_encoder(text_encoder)
        pred.image_enc = load_image_encoder(image_encoder) if image_encoder and p1.modalities != "text" else None
    pred.table = bag_source(model1, ds, pred.emb, p1)
    pred.label_rows = pred.table.rows_of(ds.uids["label"])
    pred.alpha = 0.5
    store = ImageStore.from_dir(ds.root)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(ds.uids["test"]), size=min(n_points, len(ds.uids["test"])), replace=False)
    prods = [Product(ds.uids["test"][i], ds.titles["test"][i], store.get(ds.uids["test"][i])) for i in idx]
    t = {}
    pred.recommend(prods, shortlist=shortlist, timings=t)
    t = {k: round(v, 3) for k, v in t.items()}
    t.update(points=len(prods), shortlist=shortlist, images_per_point=round(float(np.mean([len(p.images) for p in prods])), 2),
             device="cuda" if torch.cuda.is_available() else "cpu", threads=torch.get_num_threads())
    return t
