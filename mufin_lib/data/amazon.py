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
import zlib
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
    categories: list[str] = field(default_factory=list)  # the whole category path, top level first
    description: str = ""
    line_no: int = 0
    images: list = field(default_factory=list)  # decoded images (PIL), once read
    image_problems: list = field(default_factory=list)  # why an image of image_refs could not be read


TRUNCATED = "truncated"  # the reason's first word when a compressed file ends early


def iter_lines(path: str | Path) -> Iterator[tuple[int, str | None, str]]:
    """(line number, text or None, reason) for each line of a plain or gzip file, read as bytes: a line that is not
    UTF-8 comes with text None and its reason, so one bad line never costs the rest of the file. A gzip file that
    ends early yields what was readable, then (N + 1, None, "truncated after line N: ...")."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (expected Amazon metadata, JSON lines, .json or .json.gz)")
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    line_no = 0
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
        try:
            for line_no, raw in enumerate(f, 1):
                try:
                    yield line_no, raw.decode("utf-8"), ""
                except UnicodeDecodeError as e:
                    yield line_no, None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            yield line_no + 1, None, f"{TRUNCATED} after line {line_no}: {type(e).__name__}: {e}"


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


def _as_list(v, what: str = "", path=None, line_no: int = 0) -> list[str]:
    """A list of strings. One string stands for a one-element list (unambiguous); nested lists are flattened (they
    appear in the wild). Anything else (a number, an object) is a MalformedRecord naming the field."""
    if v is None or v == "":
        return []
    if isinstance(v, str):
        return [v]
    if not isinstance(v, (list, tuple)):
        raise MalformedRecord(path, line_no, f"{what}: expected a list of strings, got {type(v).__name__}")
    out = []
    for x in v:
        out.extend(_as_list(x, what, path, line_no) if isinstance(x, (list, tuple)) else ([x] if isinstance(x, str) and x else []))
    return out


def _string(obj: dict, key: str, path, line_no: int) -> str:
    """A field that must be a string when present (asin, title): a list or a number is named as such."""
    v = obj.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise MalformedRecord(path, line_no, f"{key}: expected a string, got {type(v).__name__} {json.dumps(v)[:60]}")
    return v


def _first_category(v) -> str:
    cats = v
    while isinstance(cats, list) and cats:
        if isinstance(cats[0], list):
            cats = cats[0]
        else:
            return html.unescape(str(cats[0])).strip()
    return html.unescape(cats).strip() if isinstance(cats, str) else ""


def _category_path(v) -> list[str]:
    while isinstance(v, list) and v and isinstance(v[0], list):
        v = v[0]
    return [html.unescape(str(c)).strip() for c in v] if isinstance(v, list) else ([v.strip()] if isinstance(v, str) else [])


def parse_record(obj: dict, path, line_no: int, clean: bool = True) -> Product:
    if not isinstance(obj, dict):
        raise MalformedRecord(path, line_no, f"expected a JSON object, got {type(obj).__name__}")
    asin = _string(obj, "asin", path, line_no).strip()
    raw_title = _string(obj, "title", path, line_no)
    title = clean_title(raw_title) if clean else raw_title.strip()
    if "related" in obj or "imUrl" in obj:  # 2014 format
        images = _as_list(obj.get("imUrl"), "imUrl", path, line_no)
        related = obj.get("related") or {}
        if not isinstance(related, dict):
            raise MalformedRecord(path, line_no, f"related: expected an object, got {type(related).__name__}")
        also = _as_list(related.get("also_bought"), "related.also_bought", path, line_no)
        category = _first_category(obj.get("categories"))
        path_cats = _category_path(obj.get("categories"))
        description = ""
    else:
        images = []
        for key in ("image", "imageURL", "imageURLHighRes"):
            images = images or _as_list(obj.get(key), key, path, line_no)
        also = _as_list(obj.get("also_buy"), "also_buy", path, line_no)
        category = _first_category(obj.get("category")) or _first_category(obj.get("main_cat"))
        path_cats = _category_path(obj.get("category"))
        description = " ".join(clean_title(d) for d in _as_list(obj.get("description"), "description", path, line_no))
    return Product(asin, title, images, also, category, path_cats, description.strip(), line_no)


def iter_products(path: str | Path, clean: bool = True, strict: bool = False,
                  errors: list | None = None) -> Iterator[Product]:
    """Yield Products. A malformed line (not JSON, not UTF-8, a field of the wrong type) raises MalformedRecord if
    `strict`, else is appended to `errors` as (line_no, reason) and skipped; a gzip file cut short keeps every
    record read before the cut and adds (N + 1, "truncated after line N: ...")."""
    for line_no, line, why in iter_lines(path):
        try:
            if line is None:
                raise MalformedRecord(path, line_no, why)
            s = line.strip()
            if not s:
                if errors is not None:
                    errors.append((line_no, "blank line"))
                continue
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
