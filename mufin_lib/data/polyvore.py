"""The Polyvore Outfits layout (Vasileva et al. 2018), read as released, and written as an XC data set.

    polyvore_outfits/polyvore_item_metadata.json     item_id -> {title, description, catgeories, category_id,
                                                     semantic_category, ...} (`catgeories` is Polyvore's spelling;
                                                     `categories` is read too)
    polyvore_outfits/categories.csv                  `category_id,fine-grained category,semantic category` (optional)
    polyvore_outfits/images/<item_id>.jpg            one photo per item
    polyvore_outfits/<split>/{train,valid,test}.json [{set_id, items: [{item_id, index}]}]   (split: disjoint | nondisjoint)
    polyvore_outfits/<split>/fill_in_blank_<s>.json  [{question: ["setid_index", ...], answers: [4 x "setid_index"],
                                                     blank_position}]; the right answer is the one of the question's set
    polyvore_outfits/<split>/compatibility_<s>.txt   `label setid_index ...` (1 a real outfit, 0 a negative)

A user with Polyvore Outfits points `input_path` at the folder holding `polyvore_outfits/` (or at it); the MANGO
outfits of ../shared/data/mango are in the same layout. `generate_outfits` writes a small synthetic outfit set in it
(the smoke tier's; every result on it is SYNTHETIC).
"""
from __future__ import annotations

import csv
import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from PIL import Image

from ..paths import CACHE_DIR, atomic_write, process_alive
from .images import DECODE_ERRORS, write_img_bin
from .xc import CATEGORY_PATHS, XCDataset, write_xc

SPLIT_KINDS = ("disjoint", "nondisjoint")
OUTFIT_SPLITS = ("train", "valid", "test")
TASKS = ("outfits", "xc")


class PolyvoreFormatError(ValueError):
    pass


@dataclass
class Item:
    item_id: str
    title: str
    description: str
    categories: list[str]
    category_id: str  # the fine category
    semantic_category: str
    image: Path | None  # None: no readable photo (counted in Outfits.report)

    def text(self, text_from: str = "title") -> str:
        if text_from == "title+description":
            return " ".join(t for t in (self.title, self.description) if t)
        if text_from == "title+category":
            return " ".join([self.title, *self.categories]).strip()
        return self.title


@dataclass
class Question:
    """A fill-in-the-blank question: the outfit's given items, the four candidates, which one is right."""
    given: list[str]
    answers: list[str]
    correct: int
    blank_position: int


@dataclass
class Outfits:
    root: Path  # the polyvore_outfits folder
    split: str  # disjoint | nondisjoint
    items: dict[str, Item]
    outfits: dict[str, list[tuple[str, list[str]]]]  # split -> [(set_id, item ids in index order)]
    fitb: dict[str, list[Question]]
    compat: dict[str, list[tuple[int, list[str]]]]  # split -> [(1 real | 0 negative, item ids)]
    fine_names: dict[str, str] = field(default_factory=dict)  # category_id -> fine-grained name (categories.csv)
    report: dict = field(default_factory=dict)  # what was read, and every dropped record with its reason

    def split_items(self, split: str) -> list[str]:
        """The items of a split's outfits, in first-seen order."""
        seen: dict[str, None] = {}
        for _, its in self.outfits[split]:
            for i in its:
                seen.setdefault(i, None)
        return list(seen)

    def stats(self) -> list[dict]:
        rows = []
        for s in OUTFIT_SPLITS:
            sizes = [len(i) for _, i in self.outfits[s]]
            c = self.compat[s]
            rows.append({"split": s, "outfits": len(sizes), "items": len(self.split_items(s)),
                         "items_per_outfit_median": float(np.median(sizes)) if sizes else 0.0,
                         "items_per_outfit_max": max(sizes, default=0), "fitb_questions": len(self.fitb[s]),
                         "compat_pos": sum(1 for l, _ in c if l == 1), "compat_neg": sum(1 for l, _ in c if l == 0)})
        return rows


def polyvore_dir(path: str | Path) -> Path:
    """The `polyvore_outfits` folder of `path` (the folder holding it, or the folder itself)."""
    p = Path(path)
    if (p / "polyvore_outfits").is_dir():
        return p / "polyvore_outfits"
    if (p / "polyvore_item_metadata.json").exists():
        return p
    raise FileNotFoundError(f"{p}: no polyvore_outfits/ folder and no polyvore_item_metadata.json in it (expected the "
                            "Polyvore Outfits layout: the folder holding polyvore_outfits/; see data_manifest/mango.yaml)")


def _load_json(path: Path):
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (expected the Polyvore Outfits layout)")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise PolyvoreFormatError(f"{path}: line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise PolyvoreFormatError(f"{path}: byte {e.start}: not UTF-8 text") from None


def _str(v) -> str:
    return "" if v is None else str(v)


def _read_items(root: Path, report: dict) -> dict[str, Item]:
    path = root / "polyvore_item_metadata.json"
    meta = _load_json(path)
    if not isinstance(meta, dict):
        raise PolyvoreFormatError(f"{path}: expected an object item_id -> metadata, got a {type(meta).__name__}")
    items, no_image = {}, []
    for n, (iid, rec) in enumerate(meta.items(), 1):
        where = f"{path}: item {iid!r} (record {n})"
        if not isinstance(rec, dict):
            raise PolyvoreFormatError(f"{where}: expected an object, got a {type(rec).__name__}")
        cats = rec.get("catgeories", rec.get("categories", []))  # Polyvore's own spelling first
        if cats is None:
            cats = []
        if not isinstance(cats, list):
            raise PolyvoreFormatError(f"{where}: `catgeories` must be a list of category names, got {cats!r:.60}")
        if not _str(rec.get("semantic_category")).strip():
            raise PolyvoreFormatError(f"{where}: no `semantic_category` (expected e.g. tops, bottoms, shoes)")
        for key in ("title", "description", "category_id"):
            if rec.get(key) is not None and not isinstance(rec[key], (str, int)):
                raise PolyvoreFormatError(f"{where}: `{key}` must be a string, got {type(rec[key]).__name__}")
        img = root / "images" / f"{iid}.jpg"
        if not img.exists():
            no_image.append(iid)
        items[str(iid)] = Item(str(iid), " ".join(_str(rec.get("title")).split()),
                               " ".join(_str(rec.get("description")).split()), [_str(c) for c in cats],
                               _str(rec.get("category_id")), _str(rec["semantic_category"]).strip(),
                               img if img.exists() else None)
    report["items_in_metadata"] = len(items)
    report["items_without_image_file"] = len(no_image)  # kept: text alone (Polyvore has a photo for every item)
    report["items_without_image_file_examples"] = no_image[:5]
    return items


def _read_fine_names(root: Path) -> dict[str, str]:
    path = root / "categories.csv"
    if not path.exists():
        return {}
    out = {}
    with open(path, encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row:
                continue
            if len(row) < 2:
                raise PolyvoreFormatError(f"{path}: line {n}: expected `category_id,fine-grained category,semantic "
                                          f"category`, got {','.join(row)!r:.80}")
            out[row[0].strip()] = row[1].strip()
    return out


def _read_outfits(path: Path, items: dict[str, Item]) -> tuple[list[tuple[str, list[str]]], dict[tuple[str, int], str]]:
    """The outfits, and (set_id, index) -> item id: the FITB and compatibility files name items by their `index`."""
    data = _load_json(path)
    if not isinstance(data, list):
        raise PolyvoreFormatError(f"{path}: expected a list of outfits [{{set_id, items}}], got a {type(data).__name__}")
    out, seen, index = [], {}, {}
    for n, rec in enumerate(data, 1):
        where = f"{path}: outfit {n}"
        if not isinstance(rec, dict) or "set_id" not in rec or not isinstance(rec.get("items"), list):
            raise PolyvoreFormatError(f"{where}: expected {{set_id, items: [{{item_id, index}}]}}, got {str(rec)[:80]!r}")
        sid = _str(rec["set_id"])
        if sid in seen:
            raise PolyvoreFormatError(f"{where}: set_id {sid!r} repeats outfit {seen[sid]} (expected one per outfit)")
        seen[sid] = n
        its = []
        for it in rec["items"]:
            if not isinstance(it, dict) or "item_id" not in it or "index" not in it:
                raise PolyvoreFormatError(f"{where} (set_id {sid}): expected items as {{item_id, index}}, got {str(it)[:60]!r}")
            iid = _str(it["item_id"])
            if iid not in items:
                raise PolyvoreFormatError(f"{where} (set_id {sid}): item {iid!r} is not in polyvore_item_metadata.json")
            try:
                idx = int(it["index"])
            except (TypeError, ValueError):
                raise PolyvoreFormatError(f"{where} (set_id {sid}): index {it['index']!r} is not a number") from None
            its.append((idx, iid))
        if len({i for i, _ in its}) != len(its):
            raise PolyvoreFormatError(f"{where} (set_id {sid}): two items with the same index")
        out.append((sid, [iid for _, iid in sorted(its)]))
        index.update({(sid, idx): iid for idx, iid in its})
    return out, index


def _ref(ref, index: dict[tuple[str, int], str], where: str) -> str:
    """An item reference `setid_index` (index 1-based, as the outfit files number items) -> item id."""
    s = _str(ref)
    sid, _, idx = s.rpartition("_")
    if not sid or not idx.isdigit():
        raise PolyvoreFormatError(f"{where}: {s!r} is not `setid_index`")
    if (sid, int(idx)) not in index:
        raise PolyvoreFormatError(f"{where}: {s!r} names no item of the split's outfits (set {sid!r}, index {idx})")
    return index[(sid, int(idx))]


def _read_fitb(path: Path, index) -> list[Question]:
    data = _load_json(path)
    if not isinstance(data, list):
        raise PolyvoreFormatError(f"{path}: expected a list of questions, got a {type(data).__name__}")
    out = []
    for n, rec in enumerate(data, 1):
        where = f"{path}: question {n}"
        if not isinstance(rec, dict) or not isinstance(rec.get("question"), list) or not isinstance(rec.get("answers"), list):
            raise PolyvoreFormatError(f"{where}: expected {{question: [...], answers: [...], blank_position}}")
        if not rec["question"] or len(rec["answers"]) < 2:
            raise PolyvoreFormatError(f"{where}: expected given items and at least 2 answers, got "
                                      f"{len(rec['question'])} and {len(rec['answers'])}")
        qset = {_str(q).rpartition("_")[0] for q in rec["question"]}
        right = [j for j, a in enumerate(rec["answers"]) if _str(a).rpartition("_")[0] in qset]
        if len(right) != 1:
            raise PolyvoreFormatError(f"{where}: {len(right)} answers belong to the question's outfit (expected 1)")
        out.append(Question([_ref(q, index, where) for q in rec["question"]], [_ref(a, index, where) for a in rec["answers"]],
                            right[0], int(rec.get("blank_position", 0) or 0)))
    return out


def _read_compat(path: Path, index) -> list[tuple[int, list[str]]]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (expected `label setid_index ...` lines)")
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            where = f"{path}: line {n}"
            if parts[0] not in ("0", "1") or len(parts) < 3:
                raise PolyvoreFormatError(f"{where}: expected `label setid_index setid_index ...` with label 0 or 1 "
                                          f"and 2 or more items, got {line.strip()[:80]!r}")
            out.append((int(parts[0]), [_ref(p, index, where) for p in parts[1:]]))
    return out


def read_polyvore(path: str | Path, split: str = "disjoint") -> Outfits:
    """Read the layout; every malformed record is an error naming its file and its line or record."""
    if split not in SPLIT_KINDS:
        raise ValueError(f"split '{split}': expected one of {', '.join(SPLIT_KINDS)}")
    root = polyvore_dir(path)
    if not (root / split).is_dir():
        raise FileNotFoundError(f"{root / split}: missing (this copy has {', '.join(s for s in SPLIT_KINDS if (root / s).is_dir()) or 'no split folder'})")
    report: dict = {}
    items = _read_items(root, report)
    outfits, fitb, compat = {}, {}, {}
    for s in OUTFIT_SPLITS:
        outfits[s], index = _read_outfits(root / split / f"{s}.json", items)
        fitb[s] = _read_fitb(root / split / f"fill_in_blank_{s}.json", index)
        compat[s] = _read_compat(root / split / f"compatibility_{s}.txt", index)
    if split == "disjoint":
        where = {}
        for s in OUTFIT_SPLITS:
            for i in {i for _, its in outfits[s] for i in its}:
                where.setdefault(i, []).append(s)
        shared = {i: ss for i, ss in where.items() if "train" in ss and len(ss) > 1}
        if shared:
            i, ss = next(iter(shared.items()))
            raise PolyvoreFormatError(f"{root / split}: {len(shared)} items are in train and in another split (e.g. item "
                                      f"{i!r} in {', '.join(ss)}): not a disjoint split")
    used = {i for s in OUTFIT_SPLITS for _, its in outfits[s] for i in its}
    report["items_in_no_outfit"] = len(items) - len(used)  # read, used by no split: left out of everything
    return Outfits(root, split, items, outfits, fitb, compat, _read_fine_names(root), report)


# ---- as an XC data set ----------------------------------------------------------------------------------------

def co_worn(outfits: list[tuple[str, list[str]]], uids: list[str]) -> sp.csr_matrix:
    """uids x uids: 1 where two different items are worn in one outfit (symmetric)."""
    row = {u: i for i, u in enumerate(uids)}
    r, c = [], []
    for _, its in outfits:
        idx = sorted({row[i] for i in its if i in row})
        for a in idx:
            for b in idx:
                if a != b:
                    r.append(a)
                    c.append(b)
    M = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(uids), len(uids)))
    M.data[:] = 1.0
    return M


def _write_images(o: Outfits, uids: list[str], path: Path, report: dict) -> None:
    bad = []

    def images():
        for u in uids:
            img = o.items[u].image
            if img is None:
                continue
            try:
                with Image.open(img) as im:
                    yield u, im.convert("RGB")
            except DECODE_ERRORS as e:
                bad.append((str(img), type(e).__name__))
    write_img_bin(path, images())
    report["images_unreadable"] = len(bad)
    report["images_unreadable_examples"] = bad[:5]


def to_xc(o: Outfits, out: Path, task: str, test_fraction: float, seed: int, text_from: str = "title") -> tuple[Path, Path, dict]:
    """Write (xc root, items root, report).

    task "outfits": the chain's data are the train outfits: points and labels are their items, a point's labels the
    items it was worn with; a point split of those items (test_fraction) is the XC test split (a check of the chain,
    not the outfit task). Valid and test items are never in it: stage 14 scores them from their content alone.
    task "xc": the same over every outfit of every split (labels span all items).
    Co-wearing is symmetric, so a test item's partner that is a train point has it as a label: those pairs are kept
    (filtering them, as the kit does for also_buy, would leave almost no test positives). The items root holds every
    item of the three splits (label split only), so that the encoders encode each once."""
    if task not in TASKS:
        raise ValueError(f"task '{task}': expected one of {', '.join(TASKS)}")
    outfits = o.outfits["train"] if task == "outfits" else [x for s in OUTFIT_SPLITS for x in o.outfits[s]]
    seen: dict[str, None] = {}
    for _, its in outfits:
        for i in its:
            seen.setdefault(i, None)
    uids = list(seen)
    Y = co_worn(outfits, uids)
    has = np.flatnonzero(Y.getnnz(1) > 0)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(has)
    n_test = int(round(test_fraction * len(perm)))
    test_pts, train_pts = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    titles = [o.items[u].text(text_from) for u in uids]
    ds = XCDataset(out / "xc", {"train": [uids[i] for i in train_pts], "test": [uids[i] for i in test_pts], "label": uids},
                   {"train": [titles[i] for i in train_pts], "test": [titles[i] for i in test_pts], "label": titles},
                   {"train": Y[train_pts], "test": Y[test_pts]},
                   {"train": np.stack([np.arange(len(train_pts)), train_pts], 1).astype(np.int64),
                    "test": np.stack([np.arange(len(test_pts)), test_pts], 1).astype(np.int64)})
    report = {"task": task, "outfits_used": len(outfits), "items": len(uids),
              "items_without_partner": int(len(uids) - len(has)),  # a label only (an outfit of one item)
              "train_points": len(train_pts), "test_points": len(test_pts)}
    write_xc(ds, ds.root)
    with atomic_write(ds.root / CATEGORY_PATHS) as f:  # per label: semantic > fine category (stage 09's groups)
        for u in uids:
            it = o.items[u]
            f.write(" > ".join(c.replace(" > ", " / ") for c in (it.semantic_category, o.fine_names.get(it.category_id, it.category_id)) if c) + "\n")
    _write_images(o, uids, ds.root / "images" / "label.img.bin", report)
    every = [u for s in OUTFIT_SPLITS for u in o.split_items(s)]
    every = list(dict.fromkeys(every))
    items_root = out / "items"
    all_titles = [o.items[u].text(text_from) for u in every]
    write_xc(XCDataset(items_root, {"train": [], "test": [], "label": every}, {"train": [], "test": [], "label": all_titles},
                       {"train": sp.csr_matrix((0, len(every))), "test": sp.csr_matrix((0, len(every)))}), items_root)
    _write_images(o, every, items_root / "images" / "label.img.bin", {})
    report["items_all_splits"] = len(every)
    return ds.root, items_root, report


# ---- a synthetic outfit set (the smoke tier's) -----------------------------------------------------------------

SYN_VERSION = 1
SYN_SIZES = {"smoke": (160, 40, 60), "default": (1400, 200, 400)}  # outfits per split
SYN_SEMANTIC = {"tops": ("shirt", "tee"), "bottoms": ("trousers", "skirt"), "shoes": ("sneakers", "boots"),
                "bags": ("tote", "clutch"), "jewellery": ("necklace", "ring"), "outerwear": ("coat", "jacket")}
SYN_STYLES = {"boho": (196, 120, 60), "sport": (40, 160, 220), "office": (70, 70, 90), "beach": (240, 210, 120),
              "rock": (20, 20, 20), "garden": (80, 170, 90), "party": (200, 40, 120), "winter": (230, 235, 245)}
SYN_NEUTRAL = ("classic", "basic", "soft", "slim", "new")


def _syn_image(style: str, sem: str, rng: random.Random) -> Image.Image:
    from PIL import ImageDraw
    base = SYN_STYLES[style]
    col = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in base)
    img = Image.new("RGB", (64, 64), (250, 250, 250))
    d = ImageDraw.Draw(img)
    k = list(SYN_SEMANTIC).index(sem)
    box = (8 + rng.randint(0, 6), 8 + rng.randint(0, 6), 56 - rng.randint(0, 6), 56 - rng.randint(0, 6))
    [d.rectangle, d.ellipse, d.rectangle, d.ellipse, d.polygon, d.rectangle][k](
        [(box[0], box[3]), ((box[0] + box[2]) // 2, box[1]), (box[2], box[3])] if k == 4 else box, fill=col)
    return img


def generate_outfits(out: Path, size: str = "smoke", seed: int = 0) -> Path:
    """A disjoint outfit set in the Polyvore layout: items of 8 styles (colour in the photo; the style word in 60% of
    titles) x 6 semantic categories; an outfit is 3-5 items of one style, of different semantic categories. Each split
    has its own items. FITB and compatibility are drawn as the Polyvore files draw them (same semantic category)."""
    n_out = SYN_SIZES[size] if size in SYN_SIZES else (int(size), max(10, int(size) // 4), max(10, int(size) // 3))
    rng = random.Random(f"{seed}-outfits")
    root = out / "polyvore_outfits"
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "disjoint").mkdir(exist_ok=True)
    meta, next_id = {}, 1
    cat_ids = {f: str(10 + 2 * k + j) for k, (s, fs) in enumerate(SYN_SEMANTIC.items()) for j, f in enumerate(fs)}
    for split, n in zip(OUTFIT_SPLITS, n_out):
        pool = {}  # (style, semantic) -> item ids of this split
        per = max(2, n // 12)
        for st in SYN_STYLES:
            for sem, fines in SYN_SEMANTIC.items():
                for _ in range(per):
                    fine = rng.choice(fines)
                    word = st if rng.random() < 0.6 else rng.choice(SYN_NEUTRAL)
                    iid = str(next_id)
                    next_id += 1
                    meta[iid] = {"title": f"{word} {fine}", "description": f"{fine} in {sem}", "catgeories": [sem, fine],
                                 "category_id": cat_ids[fine], "semantic_category": sem, "url_name": "", "related": []}
                    _syn_image(st, sem, rng).save(root / "images" / f"{iid}.jpg", quality=88)
                    pool.setdefault((st, sem), []).append(iid)
        sets = []
        for k in range(n):
            st = rng.choice(list(SYN_STYLES))
            sems = rng.sample(list(SYN_SEMANTIC), rng.randint(3, 5))
            sets.append({"set_id": f"{split}{k}", "items": [{"item_id": rng.choice(pool[(st, s)]), "index": j + 1}
                                                            for j, s in enumerate(sems)]})
        (root / "disjoint" / f"{split}.json").write_text(json.dumps(sets))
        by_sem = {}
        for o in sets:
            for it in o["items"]:
                by_sem.setdefault(meta[it["item_id"]]["semantic_category"], []).append((o["set_id"], it["index"], it["item_id"]))
        qs, lines = [], []
        for o in sets:
            its = o["items"]
            b = rng.randrange(len(its))
            sem = meta[its[b]["item_id"]]["semantic_category"]
            others = [x for x in by_sem[sem] if x[0] != o["set_id"]]
            wrong = rng.sample(others, 3)
            answers = [f"{o['set_id']}_{its[b]['index']}"] + [f"{x[0]}_{x[1]}" for x in wrong]
            rng.shuffle(answers)
            qs.append({"question": [f"{o['set_id']}_{it['index']}" for j, it in enumerate(its) if j != b],
                       "answers": answers, "blank_position": b + 1})
            lines.append("1 " + " ".join(f"{o['set_id']}_{it['index']}" for it in its))
            neg = [rng.choice([x for x in by_sem[meta[it["item_id"]]["semantic_category"]] if x[0] != o["set_id"]]) for it in its]
            lines.append("0 " + " ".join(f"{x[0]}_{x[1]}" for x in neg))
        (root / "disjoint" / f"fill_in_blank_{split}.json").write_text(json.dumps(qs))
        (root / "disjoint" / f"compatibility_{split}.txt").write_text("\n".join(lines) + "\n")
    (root / "polyvore_item_metadata.json").write_text(json.dumps(meta))
    with open(root / "categories.csv", "w") as f:
        for fine, cid in cat_ids.items():
            sem = next(s for s, fs in SYN_SEMANTIC.items() if fine in fs)
            f.write(f"{cid},{fine},{sem}\n")
    (root / "synthetic.json").write_text(json.dumps({"generator": "mufin_lib.data.polyvore.generate_outfits",
                                                     "version": SYN_VERSION, "size": size, "seed": seed}))
    return out


def get_synthetic_outfits(size: str = "smoke", seed: int = 0) -> Path:
    """The synthetic outfit set, generated once into the cache (synthetic.json, written last, marks it complete)."""
    out = CACHE_DIR / "datasets" / f"outfits-synthetic-{size}-seed{seed}-v{SYN_VERSION}"
    if not (out / "polyvore_outfits" / "synthetic.json").exists():
        tmp = out.with_name(f"{out.name}.partial-{os.getpid()}")
        for stale in out.parent.glob(f"{out.name}.partial-*"):
            if not process_alive(stale.name.rsplit("-", 1)[1]):
                shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        generate_outfits(tmp, size, seed)
        try:
            tmp.rename(out)
        except OSError:
            if not (out / "polyvore_outfits" / "synthetic.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    return out
