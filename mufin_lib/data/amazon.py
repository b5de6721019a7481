"""Streaming readers for Amazon product metadata as published.

- 2018 (Ni et al.): JSON lines, gzip or plain: `asin`, `title`, images under `image` or
  `imageURL` / `imageURLHighRes`, `also_buy`, `category`.
- 2014 (McAuley et al.): one Python literal per line (`eval`-style, single quotes): `imUrl` (one URL),
  `related.also_bought`, `categories` (list of lists).

Records are yielded one at a time, so a file of millions of lines is never held in memory.
"""
from __future__ import annotations

import ast
import gzip
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


class MalformedRecord(ValueError):
    def __init__(self, path, line_no, what):
        super().__init__(f"{path}: line {line_no}: {what}")
        self.path, self.line_no, self.what = str(path), line_no, what


@dataclass
class Product:
    """One product as any input gives it: a metadata record (curation) or a new product (`mufin predict`)."""
    uid: str  # the asin of Amazon metadata; the id of a prediction input
    title: str
    image_refs: list[str] = field(default_factory=list)  # image URLs or paths, as given
    also_buy: list[str] = field(default_factory=list)
    category: str = ""  # top-level category (the paper's Table 6 rows)
    line_no: int = 0
    images: list = field(default_factory=list)  # decoded images (PIL), once read


def open_text(path: str | Path):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (expected Amazon metadata, JSON lines, .json or .json.gz)")
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", encoding="utf-8") if gz else open(path, encoding="utf-8")


_TAG = re.compile(r"<[^>]*>?")  # also an unterminated tag, as in the real `<span class="..."` titles
_CSS = re.compile(r"\{[^}]*\}")
_WS = re.compile(r"\s+")


def clean_title(raw) -> str:
    """HTML entities and markup out, whitespace collapsed. A title that is only markup becomes ''."""
    if not isinstance(raw, str):
        return ""
    text = html.unescape(html.unescape(raw))  # some titles are escaped twice (&amp;quot;)
    text = _TAG.sub(" ", text)
    text = _CSS.sub(" ", text)
    return _WS.sub(" ", text).strip()


def _as_list(v) -> list[str]:
    if v is None or v == "":
        return []
    if isinstance(v, str):
        return [v]
    out = []
    for x in v:  # nested lists appear in the wild
        out.extend(_as_list(x) if isinstance(x, (list, tuple)) else ([x] if isinstance(x, str) and x else []))
    return out


def _first_category(v) -> str:
    cats = v
    while isinstance(cats, list) and cats:
        if isinstance(cats[0], list):
            cats = cats[0]
        else:
            return html.unescape(str(cats[0])).strip()
    return html.unescape(cats).strip() if isinstance(cats, str) else ""


def parse_record(obj: dict, path, line_no: int, clean: bool = True) -> Product:
    if not isinstance(obj, dict):
        raise MalformedRecord(path, line_no, f"expected a JSON object, got {type(obj).__name__}")
    asin = obj.get("asin")
    asin = asin.strip() if isinstance(asin, str) else ""
    title = clean_title(obj.get("title")) if clean else (obj.get("title") or "").strip()
    if "related" in obj or "imUrl" in obj:  # 2014 format
        images = _as_list(obj.get("imUrl"))
        also = _as_list((obj.get("related") or {}).get("also_bought"))
        category = _first_category(obj.get("categories"))
    else:
        images = _as_list(obj.get("image")) or _as_list(obj.get("imageURL")) or _as_list(obj.get("imageURLHighRes"))
        also = _as_list(obj.get("also_buy"))
        category = _first_category(obj.get("category")) or _first_category(obj.get("main_cat"))
    return Product(asin, title, images, also, category, line_no)


def iter_products(path: str | Path, clean: bool = True, strict: bool = False,
                  errors: list | None = None) -> Iterator[Product]:
    """Yield Products. A malformed line raises MalformedRecord if `strict`, else is appended to
    `errors` as (line_no, reason) and skipped."""
    with open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            s = line.strip()
            if not s:
                if errors is not None:
                    errors.append((line_no, "blank line"))
                continue
            try:
                try:
                    obj = json.loads(s)
                except json.JSONDecodeError as je:
                    if s.startswith("{'") or s.startswith('{"'):
                        try:  # 2014 dumps: Python literals
                            obj = ast.literal_eval(s)
                        except (ValueError, SyntaxError):
                            raise MalformedRecord(path, line_no, f"neither JSON nor a Python literal ({je.msg})") from None
                    else:
                        raise MalformedRecord(path, line_no, f"not JSON: {je.msg} at column {je.colno}") from None
                yield parse_record(obj, path, line_no, clean)
            except MalformedRecord as e:
                if strict:
                    raise
                if errors is not None:
                    errors.append((line_no, e.what))
