"""Curate raw Amazon metadata into an XC dataset, as MM-AmazonTitles-300K was curated (paper §B).

Every input line is accounted for in the report: dropped with its reason, or kept as a label (and
a data point when it has an also_buy target in the catalogue). The counts add up to the input.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from ..progress import tqdm

from ..paths import atomic_write
from .amazon import TRUNCATED, iter_products
from .xc import CATEGORY_PATHS, XCDataset, reciprocal_pairs, write_xc

DROP_REASONS = ("malformed_line", "blank_line", "truncated_file", "no_asin", "duplicate_asin", "no_title_no_image")


@dataclass
class CurateParams:
    test_fraction: float = 0.3  # AmazonTitles releases hold out about 30% of points
    seed: int = 0
    clean_titles: bool = True
    strict: bool = False  # raise on the first malformed line instead of counting it
    text_from: str = "title"  # the paper: title; also title+category | title+description (a named option)


TEXT_FROM = ("title", "title+category", "title+description")


def product_text(p, text_from: str) -> str:
    """The text a product is known by: its title (the paper), optionally followed by its category path or its
    description."""
    if text_from == "title":
        return p.title
    if text_from == "title+category":
        return " ".join([p.title, *[c for c in p.categories if c]]).strip()
    if text_from == "title+description":
        return f"{p.title} {p.description}".strip()
    raise ValueError(f"text_from '{text_from}': expected one of {', '.join(TEXT_FROM)}")


def absolute_refs(refs: list[str], base: Path) -> list[str]:
    """Image references as curation stores them: URLs as given, local paths absolute (a relative path is taken
    from the folder of the metadata file that names it, so the dataset can be read from anywhere)."""
    import os

    from .images import is_url, local_image_path
    # abspath, not resolve: a broken reference (a symlink loop) stays one named image problem, never a crash
    return [r if is_url(r) else os.path.abspath(local_image_path(r, base)) for r in refs]


@dataclass
class CurationReport:
    inputs: str  # the metadata file(s) read
    input_lines: int
    kept_labels: int
    kept_points: int  # labels that are also data points
    dropped: dict  # reason -> count
    malformed_lines: list  # (line_no, reason), the first 100
    truncated_files: list  # "file: truncated after line N: ..." for each compressed file that ended early
    titles_emptied_by_cleaning: int
    also_buy_targets: dict  # in catalogue / outside catalogue / self
    n_train: int
    n_test: int
    reciprocal_pairs_filtered: int

    def check(self) -> None:
        total = self.kept_labels + sum(self.dropped.values())
        if total != self.input_lines:
            raise AssertionError(f"curation report does not add up: {total} accounted for, {self.input_lines} read")

    def to_json(self, path: Path) -> None:
        with atomic_write(path) as f:
            json.dump(asdict(self), f, indent=2)


def curate_amazon(paths: list[str | Path], params: CurateParams = CurateParams()) -> tuple[XCDataset, CurationReport]:
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if params.text_from not in TEXT_FROM:
        raise ValueError(f"text_from '{params.text_from}': expected one of {', '.join(TEXT_FROM)}")
    asins, titles, urls, also, cats, cat_paths = [], [], [], [], [], []
    index: dict[str, int] = {}
    seen: set[str] = set()
    dropped = Counter({r: 0 for r in DROP_REASONS})
    errors: list = []
    truncated: list = []
    n_lines = 0
    for path in paths:
        errs: list = []
        last_line = 0
        for p in tqdm(iter_products(path, clean=params.clean_titles, strict=params.strict, errors=errs),
                      desc=f"read {path.name}", unit=" rec", mininterval=2):
            last_line = p.line_no
            if not p.uid:
                dropped["no_asin"] += 1
                continue
            if not p.title and not p.image_refs:  # before the duplicate check: an empty copy never hides a good one
                dropped["no_title_no_image"] += 1
                continue
            if p.uid in seen:  # keep the first usable record of an asin (the release repeats some)
                dropped["duplicate_asin"] += 1
                continue
            seen.add(p.uid)
            index[p.uid] = len(asins)
            asins.append(p.uid); titles.append(product_text(p, params.text_from)); also.append(p.also_buy)
            urls.append(absolute_refs(p.image_refs, path.parent))
            cats.append(p.category)
            cat_paths.append([c for c in p.categories if c] or ([p.category] if p.category else []))
        for line_no, why in errs:
            if why.startswith(TRUNCATED):
                truncated.append(f"{path}: {why}")
            dropped["blank_line" if why == "blank line" else
                    "truncated_file" if why.startswith(TRUNCATED) else "malformed_line"] += 1
            if len(errors) < 100:
                errors.append((f"{path.name}:{line_no}", why))
        n_lines += max(last_line, max((e[0] for e in errs), default=0))
    if not asins:
        why = ", ".join(f"{k} {v}" for k, v in dropped.items() if v) or "no lines"
        raise ValueError(f"{', '.join(str(p) for p in paths)}: no product kept from {n_lines} input lines ({why}); "
                         "expected Amazon metadata, one JSON object per line with asin, title, image and also_buy")
    # Empty-title products that survive have images; count titles cleaned to nothing separately.
    emptied = sum(1 for t in titles if not t)

    # Ground truth: also_buy targets inside the catalogue; never the product itself.
    targets = Counter()
    rows, cols = [], []
    for i, lst in enumerate(also):
        seen = set()
        for b in lst:
            j = index.get(b)
            if j is None:
                targets["outside_catalogue"] += 1
            elif j == i:
                targets["self"] += 1
            elif j not in seen:
                seen.add(j); rows.append(i); cols.append(j); targets["in_catalogue"] += 1
            else:
                targets["repeated"] += 1
    L = len(asins)
    Yall = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(L, L))
    points = np.flatnonzero(Yall.getnnz(1) > 0)
    rng = np.random.default_rng(params.seed)
    perm = rng.permutation(points)
    n_test = int(round(len(points) * params.test_fraction))
    if n_test == 0 or n_test == len(points):
        raise ValueError(f"{', '.join(str(p) for p in paths)}: {len(points)} product(s) with co-purchases in the "
                         f"catalogue; test_fraction {params.test_fraction} leaves {len(points) - n_test} train and "
                         f"{n_test} test points, and the kit needs both (more records, or another test_fraction)")
    test_pts, train_pts = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    ds = split_dataset(asins, titles, urls, Yall, train_pts, test_pts, root=Path("."))
    report = CurationReport(
        inputs=", ".join(str(p) for p in paths), input_lines=n_lines, kept_labels=L, kept_points=len(points),
        dropped=dict(dropped), malformed_lines=errors, truncated_files=truncated, titles_emptied_by_cleaning=emptied,
        also_buy_targets=dict(targets), n_train=len(train_pts), n_test=len(test_pts),
        reciprocal_pairs_filtered=int(ds.filters["test"].shape[0] - len(test_pts)),
    )
    report.check()
    ds.categories = cats  # top-level category per label (per-category tables)
    ds.category_paths = cat_paths  # the whole path per label, top level first
    return ds, report


def split_dataset(uids, titles, urls, Yall: sp.csr_matrix, train_pts, test_pts, root: Path) -> XCDataset:
    """Build the XC dataset from a product x product also_buy matrix (rows: points, cols: labels).

    filter_labels: every point's own product (self pair) in both splits; in test, also reciprocal pairs
    (test point p with label q where train point q has label p), which a model has seen the other way round.
    """
    Yall = sp.csr_matrix(Yall)
    Ytr, Yte = Yall[train_pts], Yall[test_pts]
    filt_tr = np.stack([np.arange(len(train_pts)), train_pts], 1)
    recip = reciprocal_pairs(Yte, np.asarray(test_pts), Ytr, {int(q): r for r, q in enumerate(train_pts)})
    filt_te = np.concatenate([np.stack([np.arange(len(test_pts)), test_pts], 1),
                              np.asarray(recip, np.int64).reshape(-1, 2)]).astype(np.int64)
    return XCDataset(
        root=root,
        uids={"train": [uids[i] for i in train_pts], "test": [uids[i] for i in test_pts], "label": list(uids)},
        titles={"train": [titles[i] for i in train_pts], "test": [titles[i] for i in test_pts], "label": list(titles)},
        Y={"train": Ytr, "test": Yte},
        filters={"train": filt_tr.astype(np.int64), "test": filt_te},
        image_urls={u: list(us) for u, us in zip(uids, urls) if us},
    )


def curate_to_dir(paths, out_dir: str | Path, params: CurateParams = CurateParams()) -> tuple[XCDataset, CurationReport]:
    out_dir = Path(out_dir)
    ds, report = curate_amazon(paths, params)
    write_xc(ds, out_dir)
    with atomic_write(out_dir / "label_categories.txt") as f:
        f.writelines(f"{c}\n" for c in ds.categories)
    with atomic_write(out_dir / CATEGORY_PATHS) as f:  # " > " between levels, top level first
        f.writelines(" > ".join(c.replace(" > ", " / ") for c in path) + "\n" for path in ds.category_paths)
    report.to_json(out_dir / "curation_report.json")
    ds.root = out_dir
    return ds, report
