"""The synthetic catalogue: deterministic, in the XC layout, with a head and a tail, and modality-specific
attributes (colour and pattern never in titles; brand and line never in images)."""
import hashlib

import numpy as np

from mufin_lib.data.images import ImageStore
from mufin_lib.data.synthetic import (COLOURS, PATTERNS, SyntheticParams, generate, generate_products, oracle_table,
                                      relation_facts)
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


def test_v2_relation_is_mostly_the_collection():
    prod = generate_products(SyntheticParams(n_products=3000, seed=2, with_images=False, relation="collections"))
    Y = prod["Y"].tocoo()
    same_coll = prod["collection"][Y.row] == prod["collection"][Y.col]
    same_type = same_coll & (prod["ptype"][Y.row] == prod["ptype"][Y.col])
    assert 0.5 < same_coll.mean() < 0.95  # mostly the collection, with noise
    assert same_type.sum() == 0  # a collection holds different types: complements, not duplicates


def test_complementary_relation_is_directed_with_hubs_and_an_oracle_gap():
    """v3: also_buy is one draw of known probabilities P. The relation is directed (few pairs reciprocated), has
    hubs bought by several product types, the same products, titles and images as v2, and the per-label oracle
    (P itself) beats its symmetric part, which is what a per-label component can add above a shared embedding."""
    p = SyntheticParams(n_products=3000, seed=2, with_images=False)
    prod = generate_products(p)
    v2 = generate_products(SyntheticParams(n_products=3000, seed=2, with_images=False, relation="collections"))
    assert prod["titles"] == v2["titles"] and (prod["n_images"] == v2["n_images"]).all()
    P, Y = prod["P"], prod["Y"]
    assert P.diagonal().max() == 0 and P.data.max() <= 0.95 and P.data.min() > 0
    assert (Y.multiply(P) > 0).nnz == Y.nnz  # every pair drawn has a probability
    facts = relation_facts(prod, Y)
    assert facts["pairs_reciprocated"] < 0.3 and facts["labels_with_20_or_more"] >= 5
    gt = prod["category"] * 8 + prod["ptype"]
    for g, outs in list(prod["complements"].items())[:40]:
        assert g not in outs and len(outs) >= 3
    Yc = Y.tocsc()
    top = int(np.argmax(Yc.getnnz(0)))
    buyers = Yc.indices[Yc.indptr[top]:Yc.indptr[top + 1]]
    assert top in prod["hubs"] and len(set(gt[buyers].tolist())) >= 2
    assert (gt[buyers] == gt[top]).mean() < 0.3  # bought by other types (its own type only as an alternative)
    pts = np.flatnonzero(Y.getnnz(1) > 0)
    te, tr = pts[::3], np.setdiff1d(pts, pts[::3])
    table, headroom = oracle_table(P, Y[tr], Y[te], te)
    by = table.set_index("scorer")["P@1"]
    assert by.iloc[0] > by.iloc[1] > by.iloc[2] and headroom["per_label_headroom_P@1"] > 2
