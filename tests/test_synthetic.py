"""The synthetic catalogue: deterministic, in the XC layout, with a head and a tail, and modality-specific
attributes (colour and pattern never in titles; brand and line never in images)."""
import hashlib
import json

import numpy as np

from mufin_lib.data.images import ImageStore
from mufin_lib.data.synthetic import COLOURS, PATTERNS, SyntheticParams, generate, generate_products
from mufin_lib.data.xc import read_xc


def _digest(root):
    h = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return h


def test_generation_is_bit_for_bit_deterministic(tmp_path):
    p = SyntheticParams(n_products=300, seed=5)
    generate(tmp_path / "a", p)
    generate(tmp_path / "b", p)
    da, db = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert da == db and "images/label.img.bin" in da
    generate(tmp_path / "c", SyntheticParams(n_products=300, seed=6))
    assert _digest(tmp_path / "c")["trn_X_Y.txt"] != da["trn_X_Y.txt"]


def test_layout_and_statistics(tmp_path):
    s = generate(tmp_path, SyntheticParams(n_products=1500, seed=0))
    assert s["synthetic"] is True
    ds = read_xc(tmp_path)
    assert ds.num_labels == 1500 and ds.Y["train"].shape[0] == s["n_train"]
    store = ImageStore.from_dir(tmp_path)
    counts = np.array([store.count(u) for u in ds.uids["label"]])
    assert counts.max() <= 15 and (counts == 0).mean() > 0.03 and counts.mean() > 1.5
    assert sum(1 for t in ds.titles["label"] if not t) > 0
    for u, t in zip(ds.uids["label"], ds.titles["label"]):
        if not t:
            assert store.count(u) > 0, "a product without title must have an image"
    freq = np.sort(np.asarray((ds.Y["train"] + 0).sum(0)).ravel())[::-1]
    assert freq[0] >= 10 * max(np.median(freq), 1), "needs a head: the top label far above the median"
    assert (freq <= 1).mean() > 0.3, "needs a tail"


def test_titles_never_state_image_only_attributes():
    prod = generate_products(SyntheticParams(n_products=2000, seed=1, with_images=False))
    words = set(COLOURS) | set(PATTERNS) - {"solid"}
    for t in prod["titles"]:
        assert not set(t.lower().split()) & words, t
    # brand and line are in the title; the collection is identified by them AND the colourway
    coll = prod["collection"]
    same_line_other_style = 0
    for c in np.unique(coll)[:200]:
        i = np.flatnonzero(coll == c)[0]
        other = (prod["brand"] == prod["brand"][i]) & (prod["line"] == prod["line"][i]) & (coll != c)
        same_line_other_style += other.any()
    assert same_line_other_style > 100, "titles alone must not identify a collection"


def test_also_buy_is_mostly_complementary():
    prod = generate_products(SyntheticParams(n_products=3000, seed=2, with_images=False))
    Y = prod["Y"].tocoo()
    same_coll = prod["collection"][Y.row] == prod["collection"][Y.col]
    same_type = same_coll & (prod["ptype"][Y.row] == prod["ptype"][Y.col])
    assert 0.5 < same_coll.mean() < 0.95  # mostly the collection, with noise
    assert same_type.sum() == 0  # a collection holds different types: complements, not duplicates
