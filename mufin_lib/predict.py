"""Prediction for new products from a JSON-lines file, by a finished run or a model folder (mufin_lib.predictor).

    mufin predict --run runs/<id> --input new_products.jsonl --top-k 10 [--output recs.jsonl]
    mufin predict --model DIR --input new_products.jsonl          # a folder written by `mufin export runs/<id> DIR`

Each input line: {"id": "...", "title": "...", "images": ["path/or/URL", ...]}. Each output line: the
product's id and its recommendations (label UIDs, titles, fused scores), or an `error` saying why it got
none (no title and no usable image: reported, never guessed).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from .artifacts import open_run
from .data.amazon import Product, clean_title, iter_lines
from .data.images import Downloader
from .paths import atomic_write, resolve
from .predictor import Predictor
from .stages.evaluate import predictor


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


def read_products(path: str | Path, downloader: Downloader | None = None, max_images: int = 15
                  ) -> tuple[list[Product], list[dict]]:
    """Products from JSON lines; returns (usable products, problems). Each problem names the file and line: a line
    that is not UTF-8, not JSON or not an object, a field of the wrong type, or no title and no usable image.
    A usable product keeps the reasons its unreadable images were left out (`image_problems`)."""
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
        raw_id = rec.get("id", f"line{line_no}")
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
            problem(f"id: expected a string or a whole number, got {type(raw_id).__name__} {json.dumps(raw_id)[:40]}")
            continue
        pid = str(raw_id)
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
        for k, ref in enumerate(refs):
            if len(ims) == max_images:  # Module I reads this many: the rest are never decoded, only counted
                bad.append(f"{len(refs) - k} more image(s) beyond the {max_images} used: not read")
                break
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


def load_predictor(run: str | Path | None = None, model: str | Path | None = None) -> Predictor:
    """The Predictor of a finished run (runs/<id>: stages 02-06) or of a model folder (mufin export)."""
    if (run is None) == (model is None):
        raise ValueError("give one of a run (runs/<id>) or a model folder (mufin export)")
    if model is not None:
        return Predictor.load(resolve(model))
    return predictor(open_run(run))


def write_grid(path, products: list[Product], recs, label_image=None, max_products: int = 12) -> Path:
    """The Fig. 8 grid of new products and their recommendations (no truth: no bought mark). `label_image(uid)` gives
    a label's photo (a run's dataset has them; a model folder carries none: titles on placeholders)."""
    from . import plots

    items = [{"title": p.title, "image": p.images[0] if p.images else None,
              "recs": {"MUFIN": [{"title": t, "image": label_image(u) if label_image else None, "relevant": None}
                                 for u, t, _ in r[:5]]}} for p, r in list(zip(products, recs))[:max_products]]
    fig = plots.recommendation_grid(items, ["MUFIN"], title="top-5 recommendations for new products")
    return plots.save(fig, Path(path))


def predict_file(input_path, output_path=None, top_k: int = 10, run=None, model=None, grid=None) -> dict:
    """Recommendations for the products of a JSON-lines file, one output line per input line (`error` where a line
    could not be used); the output is written atomically. With `grid`, also the Fig. 8 grid as a PNG."""
    out_path = Path(output_path) if output_path else Path(input_path).with_suffix(".recommendations.jsonl")
    if out_path.is_dir():  # said before anything is computed, not after
        raise ValueError(f"--output {out_path}: a directory; expected a file path for the JSON lines")
    if grid and Path(grid).is_dir():
        raise ValueError(f"--grid {grid}: a directory; expected a file path for the PNG")
    if not Path(input_path).is_file():
        raise FileNotFoundError(f"{input_path}: no such file (expected JSON lines: id, title, images)")
    pred = load_predictor(run, model)
    products, problems = read_products(input_path, max_images=pred.encoders.keep_top_k)
    recs = pred.recommend(products, top_k=top_k) if products else []
    if grid:
        store = None
        if run is not None:
            from .data.images import ImageStore
            store = ImageStore.from_dir(open_run(run).root)
        write_grid(grid, products, recs, (lambda u: (store.get(u) or [None])[0]) if store is not None else None)
    with atomic_write(out_path) as f:
        for p, r in zip(products, recs):
            f.write(json.dumps({"id": p.uid, "title": p.title, "image_problems": p.image_problems, "recommendations": [
                {"label": u, "title": t, "score": s} for u, t, s in r]}) + "\n")
        for pr in problems:
            f.write(json.dumps({**pr, "recommendations": []}) + "\n")
    return {"output": str(out_path), "recommended": len(products), "problems": len(problems)}
