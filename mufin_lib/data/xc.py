"""The Extreme Classification Repository layout, read and written exactly as released.

    raw_data/{train,test,label}.raw.txt   one `UID->title` line per row (row order = index)
    trn_X_Y.txt, tst_X_Y.txt              header `N L`, then one line per point: `label:value ...` (0-based)
    filter_labels_{train,test}.txt        `row col` lines removed from truth AND predictions before metrics
    img.urls.txt                          `UID<TAB>URL`, several lines per UID allowed
    images/{train,test,label}.img.bin     `UID<TAB>base64(JPEG)` (or one images/img.bin for all UIDs)

The validation split is not a file: it is carved from train deterministically (seed) by `carve_validation`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..paths import atomic_write

SPLITS = ("train", "test", "label")
XY_FILE = {"train": "trn_X_Y.txt", "test": "tst_X_Y.txt"}


class XCFormatError(ValueError):
    pass


@dataclass
class XCDataset:
    root: Path
    uids: dict[str, list[str]]  # split -> UIDs in row order ("train", "test", "label")
    titles: dict[str, list[str]]
    Y: dict[str, sp.csr_matrix]  # "train", "test": points x labels
    filters: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (k, 2) int rows/cols
    image_urls: dict[str, list[str]] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.uids["label"])

    def stats(self) -> dict:
        """Dataset statistics in the layout of the paper's dataset table."""
        Ytr, Yte = self.Y["train"], self.Y["test"]
        lab_freq = np.asarray(Ytr.sum(0)).ravel()
        out = {
            "N_train": Ytr.shape[0], "N_test": Yte.shape[0], "L": self.num_labels,
            "avg_labels_per_point": round(float(Ytr.getnnz(1).mean()) if Ytr.shape[0] else 0.0, 2),
            "avg_points_per_label": round(float(lab_freq.mean()) if len(lab_freq) else 0.0, 2),
            "labels_without_train_point": int((lab_freq == 0).sum()),
        }
        return out


def _read_raw(path: Path) -> tuple[list[str], list[str]]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (expected one `UID->title` line per row)")
    uids, titles, first = [], [], {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if "->" not in line:
                raise XCFormatError(f"{path}: line {i}: expected `UID->title`, got {line[:80]!r}")
            uid, title = line.split("->", 1)
            if uid in first:  # one UID, two rows: which row a label or an image means would be a guess
                raise XCFormatError(f"{path}: line {i}: UID {uid!r} repeats line {first[uid]} (expected one row per UID)")
            first[uid] = i
            uids.append(uid)
            titles.append(title)
    return uids, titles


def read_xy(path: Path, n_labels: int | None = None) -> sp.csr_matrix:
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (expected header `N L`, then `label:value` lines)")
    with open(path, encoding="utf-8") as f:
        header = f.readline().split()
        if len(header) != 2 or not all(h.isdigit() for h in header):
            raise XCFormatError(f"{path}: line 1: expected header `N L`, got {' '.join(header)!r}")
        n, L = map(int, header)
        if n_labels is not None and L != n_labels:
            raise XCFormatError(f"{path}: line 1: header says {L} labels, label.raw.txt has {n_labels}")
        indptr, indices, data = [0], [], []
        for i, line in enumerate(f, 2):
            for tok in line.split():
                try:
                    lab, val = tok.split(":") if ":" in tok else (tok, "1")
                    lab, val = int(lab), float(val)
                except ValueError:
                    raise XCFormatError(f"{path}: line {i}: expected `label:value` pairs, got {tok!r}") from None
                if not 0 <= lab < L:
                    raise XCFormatError(f"{path}: line {i}: label {lab} outside 0..{L - 1}")
                if not (np.isfinite(val) and val > 0):  # a 0 would count as a positive, a nan turn a statistic NaN
                    raise XCFormatError(f"{path}: line {i}: label {lab} has value {val!r}; expected a positive finite "
                                        "number (leave a label out instead of giving it 0)")
                indices.append(lab)
                data.append(val)
            indptr.append(len(indices))
    if len(indptr) - 1 != n:
        raise XCFormatError(f"{path}: header says {n} points, file has {len(indptr) - 1} lines")
    Y = sp.csr_matrix((np.asarray(data, np.float32), np.asarray(indices, np.int64), np.asarray(indptr, np.int64)),
                      shape=(n, L))
    Y.sum_duplicates()
    return Y


def write_xy(path: Path, Y: sp.csr_matrix) -> None:
    Y = sp.csr_matrix(Y)
    with atomic_write(path) as f:
        f.write(f"{Y.shape[0]} {Y.shape[1]}\n")
        for i in range(Y.shape[0]):
            s, e = Y.indptr[i], Y.indptr[i + 1]
            f.write(" ".join(f"{c}:{v:g}" for c, v in zip(Y.indices[s:e], Y.data[s:e])) + "\n")


def read_filter(path: Path, n_rows: int | None = None, n_labels: int | None = None) -> np.ndarray:
    """`row col` pairs; with the split's shape, a pair outside it is an error naming its line."""
    if not path.exists():
        return np.zeros((0, 2), np.int64)
    rows = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not all(p.isdigit() for p in parts):
                raise XCFormatError(f"{path}: line {i}: expected `row col` (two whole numbers of 0 or more), got {line.strip()!r}")
            r, c = int(parts[0]), int(parts[1])
            if (n_rows is not None and r >= n_rows) or (n_labels is not None and c >= n_labels):
                raise XCFormatError(f"{path}: line {i}: ({r}, {c}) lies outside the split's {n_rows} points x "
                                    f"{n_labels} labels (rows and columns count from 0)")
            rows.append((r, c))
    return np.asarray(rows, np.int64).reshape(-1, 2)


def read_urls(path: Path) -> dict[str, list[str]]:
    urls: dict[str, list[str]] = {}
    if not path.exists():
        return urls
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            if "\t" not in line:
                raise XCFormatError(f"{path}: line {i}: expected `UID<TAB>URL`")
            uid, url = line.split("\t", 1)
            urls.setdefault(uid, []).append(url)
    return urls


def read_xc(root: str | Path) -> XCDataset:
    """Read a dataset directory in the released layout (e.g. the real MM-AmazonTitles-300K)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory (expected an XC dataset: raw_data/, trn_X_Y.txt, ...)")
    uids, titles = {}, {}
    for split in SPLITS:
        uids[split], titles[split] = _read_raw(root / "raw_data" / f"{split}.raw.txt")
    L = len(uids["label"])
    Y = {s: read_xy(root / XY_FILE[s], L) for s in ("train", "test")}
    for s in ("train", "test"):
        if Y[s].shape[0] != len(uids[s]):
            raise XCFormatError(f"{root / XY_FILE[s]}: {Y[s].shape[0]} points but raw_data/{s}.raw.txt has {len(uids[s])} lines")
    filters = {s: read_filter(root / f"filter_labels_{s}.txt", Y[s].shape[0], L) for s in ("train", "test")}
    return XCDataset(root, uids, titles, Y, filters, read_urls(root / "img.urls.txt"))


def _clean_field(s: str) -> str:
    return " ".join(s.split())  # one line per row: no newlines or tabs inside a title


def write_xc(ds: XCDataset, root: str | Path) -> None:
    root = Path(root)
    for split in SPLITS:
        with atomic_write(root / "raw_data" / f"{split}.raw.txt") as f:
            for uid, title in zip(ds.uids[split], ds.titles[split]):
                if "->" in uid or "\n" in uid or "\t" in uid:
                    raise XCFormatError(f"UID {uid!r} ({split}) contains '->', a tab or a newline")
                f.write(f"{uid}->{_clean_field(title)}\n")
    for s in ("train", "test"):
        write_xy(root / XY_FILE[s], ds.Y[s])
        with atomic_write(root / f"filter_labels_{s}.txt") as f:
            for r, c in np.asarray(ds.filters.get(s, np.zeros((0, 2), np.int64))):
                f.write(f"{r} {c}\n")
    with atomic_write(root / "img.urls.txt") as f:
        for uid, urls in ds.image_urls.items():
            for u in urls:
                f.write(f"{uid}\t{u}\n")


def carve_validation(n_train: int, fraction: float, seed: int, max_points: int = 0,
                     fit_share: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, validation rows) of train: `fraction` of train, at most `max_points` (0: no cap), for validation;
    of the rest, the first `fit_share` of a seeded order fits (the data-size benchmark: the validation points are the
    same at every share, and a smaller share's fit points are among a larger one's). Deterministic in the arguments."""
    rng = np.random.default_rng([seed, 7])
    perm = rng.permutation(n_train)
    n_val = int(round(n_train * fraction))
    if max_points:
        n_val = min(n_val, max_points)
    fit = perm[n_val:]
    if fit_share < 1.0:
        fit = fit[: max(1, int(round(len(fit) * fit_share)))]
    return np.sort(fit), np.sort(perm[:n_val])


def validation_halves(n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of the validation rows (positions 0..n_val-1): the first chooses Module IV's epoch, the
    second alpha, so that neither choice is made on the points that made the other."""
    perm = np.random.default_rng([seed, 11]).permutation(n_val)
    return np.sort(perm[: n_val // 2]), np.sort(perm[n_val // 2:])


def own_label(ds: "XCDataset", split: str) -> np.ndarray:
    """Each point's own product as a label id (-1 when the product is not a label): the pair that is never
    a positive, in training as in the filters."""
    lab = {u: i for i, u in enumerate(ds.uids["label"])}
    return np.array([lab.get(u, -1) for u in ds.uids[split]], np.int64)


def reciprocal_pairs(Y: sp.csr_matrix, product: np.ndarray, Y_ref: sp.csr_matrix, ref_row: dict[int, int]) -> list:
    """The reciprocal-pair rule, the one place it lives: (row r, label q) where point r (whose own product is
    the label `product[r]`) has label q, and q is itself a reference point (row `ref_row[q]` of Y_ref) that has
    r's product as a label. A model has seen such a pair the other way round, so it is filtered from
    evaluation (the release's filter_labels for test; the same for validation)."""
    Y, Y_ref = sp.csr_matrix(Y), sp.csr_matrix(Y_ref)
    pairs = []
    for r in range(Y.shape[0]):
        p = int(product[r])
        if p < 0:
            continue
        for q in Y.indices[Y.indptr[r]:Y.indptr[r + 1]]:
            rq = ref_row.get(int(q))
            if rq is not None and Y_ref[rq, p] > 0:
                pairs.append((r, int(q)))
    return pairs


def validation_filter(ds: "XCDataset", fit: np.ndarray, val: np.ndarray) -> np.ndarray:
    """filter_labels of the validation rows (renumbered 0..len(val)-1), made as the test split's are: the train
    filter pairs of those rows, each point's own product (self pairs, from the UIDs), plus reciprocal pairs, validation point p with label q where fit
    point q has label p. Without the latter, validation keeps pairs that test filters out (about a fifth of the
    validation positives on the default synthetic catalogue), and alpha and epochs are chosen on easier data."""
    pos = {int(r): i for i, r in enumerate(val)}
    pairs = [(pos[int(r)], int(c)) for r, c in ds.filters["train"] if int(r) in pos]
    product = own_label(ds, "train")
    # self pairs follow from the UIDs, whatever filter_labels_train.txt holds (it is optional for a user's own data:
    # without it each validation point's own product stayed in its candidates, always the top-1 with text + image)
    pairs += [(i, int(product[r])) for i, r in enumerate(val) if product[r] >= 0]
    fit_row = {int(product[r]): int(r) for r in fit if product[r] >= 0}
    Y = ds.Y["train"].tocsr()
    pairs += reciprocal_pairs(Y[val], product[val], Y, fit_row)
    return np.unique(np.asarray(pairs, np.int64).reshape(-1, 2), axis=0)


@dataclass
class Split:
    """A split's points: their UIDs, truth (points x labels) and filter pairs (rows renumbered to the split)."""
    name: str
    uids: list
    Y: sp.csr_matrix
    filter: np.ndarray


RUN_SPLITS = ("train", "fit", "val", "val-epoch", "val-alpha", "test")  # what split_of gives


def filter_rows(filt: np.ndarray, pick: np.ndarray) -> np.ndarray:
    """The filter pairs of the rows `pick` (in pick's order), renumbered 0..len(pick)-1."""
    pos = {int(r): i for i, r in enumerate(pick)}
    kept = [(pos[int(r)], int(c)) for r, c in filt if int(r) in pos]
    return np.asarray(kept, np.int64).reshape(-1, 2)


def split_of(ds: XCDataset, name: str, fit: np.ndarray, val: np.ndarray, seed: int) -> Split:
    """"train", "test", "fit" (train minus validation: what every model trains on), "val" (carved from train), or a
    half of it: "val-epoch" (chooses Module IV's epoch), "val-alpha" (chooses the fusion weights)."""
    if name == "val":
        return Split("val", [ds.uids["train"][i] for i in val], ds.Y["train"][val], validation_filter(ds, fit, val))
    if name == "fit":
        return Split("fit", [ds.uids["train"][i] for i in fit], ds.Y["train"][fit], filter_rows(ds.filters["train"], fit))
    if name in ("val-epoch", "val-alpha"):
        v = split_of(ds, "val", fit, val, seed)
        pick = dict(zip(("val-epoch", "val-alpha"), validation_halves(len(val), seed)))[name]
        return Split(name, [v.uids[i] for i in pick], v.Y[pick], filter_rows(v.filter, pick))
    if name not in ds.uids:
        raise ValueError(f"split '{name}': expected one of {', '.join(RUN_SPLITS)}")
    return Split(name, ds.uids[name], ds.Y[name], ds.filters[name])


CATEGORY_PATHS = "label_category_paths.txt"  # curated data: each label's category path, " > " between levels


def label_category_paths(root: str | Path, label_uids: list[str]) -> list[list[str]] | None:
    """Each label's category path, top level first, from what the dataset carries: label_category_paths.txt
    (curated Amazon or H&M metadata), attributes.tsv (the synthetic catalogue: category > product type), or
    label_categories.txt (the top level alone); None when it carries none."""
    root = Path(root)
    if (root / CATEGORY_PATHS).exists():
        return [[c for c in line.split(" > ") if c] for line in (root / CATEGORY_PATHS).read_text().splitlines()]
    if (root / "attributes.tsv").exists():
        lines = (root / "attributes.tsv").read_text().splitlines()
        head = lines[0].split("\t")
        ui, ci, ti = head.index("uid"), head.index("category"), head.index("type")
        by_uid = {f[ui]: [f[ci], f[ti]] for f in (line.split("\t") for line in lines[1:])}
        return [by_uid.get(u, []) for u in label_uids]
    if (root / "label_categories.txt").exists():
        return [[line] if line else [] for line in (root / "label_categories.txt").read_text().splitlines()]
    return None
