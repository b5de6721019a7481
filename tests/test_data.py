"""Readers, curation (on the real Amazon 2018 samples), XC layout, img.bin and URL images."""
import gzip
import http.server
import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from PIL import Image

from mufin_lib.data.amazon import MalformedRecord, clean_title, iter_products
from mufin_lib.data.curate import CurateParams, curate_amazon, curate_to_dir
from mufin_lib.data.images import Downloader, ImageStore, build_img_bin, thumbnail, write_img_bin
from mufin_lib.data.xc import XCDataset, XCFormatError, carve_validation, read_xc, write_xc

# The README of ../shared/data/amazon2018 (raw titles: every asin with a non-empty title is a label).
README_COUNTS = {
    "meta_Magazine_Subscriptions.json.gz": (3385, 2320, 875, 6449),
    "meta_Gift_Cards.json.gz": (1547, 1547, 309, 5993),
    "meta_Appliances.first100.json.gz": (100, 100, 12, 19),
}


@pytest.mark.parametrize("fname", sorted(README_COUNTS))
def test_curation_matches_the_readme_counts(amazon_dir, fname):
    lines, labels, points, pairs = README_COUNTS[fname]
    ds, rep = curate_amazon([amazon_dir / fname], CurateParams(clean_titles=False))
    assert (rep.input_lines, rep.kept_labels, rep.kept_points) == (lines, labels, points)
    assert ds.Y["train"].nnz + ds.Y["test"].nnz == pairs
    assert rep.kept_labels + sum(rep.dropped.values()) == rep.input_lines
    assert rep.n_train + rep.n_test == points


def test_cleaning_drops_markup_only_titles_and_still_adds_up(amazon_dir):
    # 2,163 of the Magazine titles are a bare `<span class="...` fragment: cleaned to '' and, when the product
    # also has no image, dropped as no_title_no_image.
    ds, rep = curate_amazon([amazon_dir / "meta_Magazine_Subscriptions.json.gz"], CurateParams(clean_titles=True))
    # an empty line is counted as empty before it is looked at as a repeat (an empty first copy never hides a good
    # second one): of the 1,065 repeated lines, 424 are empty once cleaned
    assert (rep.kept_labels, rep.dropped["duplicate_asin"], rep.dropped["no_title_no_image"]) == (942, 641, 1802)
    assert rep.kept_labels + sum(rep.dropped.values()) == 3385
    assert all("<" not in t and "class=" not in t for t in ds.titles["label"])


def test_imageurl_variant_gives_the_same_dataset(amazon_dir):
    a, _ = curate_amazon([amazon_dir / "meta_Magazine_Subscriptions.json.gz"])
    b, _ = curate_amazon([amazon_dir / "meta_Magazine_Subscriptions.imageURL-variant.json.gz"])
    assert a.uids == b.uids and a.titles == b.titles and a.image_urls == b.image_urls
    for s in ("train", "test"):
        assert (a.Y[s] != b.Y[s]).nnz == 0
        assert np.array_equal(a.filters[s], b.filters[s])


def test_appliances_titles_are_cleaned(amazon_dir):
    ds, _ = curate_amazon([amazon_dir / "meta_Appliances.first100.json.gz"])
    titles = ds.titles["label"]
    assert not any("&quot;" in t or "&amp;" in t or "&ndash;" in t for t in titles)
    assert any('"' in t for t in titles)  # entities became characters
    assert clean_title(" Maggiano&#39;s <b>Gift</b>\n Card ") == "Maggiano's Gift Card"
    assert clean_title('<span class="a-size-medium a-color-secondary"') == ""


def test_curation_split_is_deterministic_and_filters_self_and_reciprocal(amazon_dir):
    f = amazon_dir / "meta_Gift_Cards.json.gz"
    a, _ = curate_amazon([f], CurateParams(seed=3))
    b, _ = curate_amazon([f], CurateParams(seed=3))
    c, _ = curate_amazon([f], CurateParams(seed=4))
    assert a.uids["test"] == b.uids["test"] and a.uids["test"] != c.uids["test"]
    lab = {u: i for i, u in enumerate(a.uids["label"])}
    ft = {tuple(x) for x in a.filters["test"]}
    for r, u in enumerate(a.uids["test"]):
        assert (r, lab[u]) in ft  # self pair listed
        assert a.Y["test"][r, lab[u]] == 0  # never its own label
    # every reciprocal entry: train point q has test point p as a label
    trow = {u: r for r, u in enumerate(a.uids["train"])}
    recip = [(r, c) for r, c in ft if a.uids["label"][c] != a.uids["test"][r]]
    assert recip
    for r, c in recip:
        assert a.Y["train"][trow[a.uids["label"][c]], lab[a.uids["test"][r]]] == 1


def test_malformed_lines_counted_or_strict(tmp_path):
    p = tmp_path / "m.json.gz"
    good = {"asin": "A1", "title": "one", "also_buy": ["A2"]}
    with gzip.open(p, "wt") as f:
        f.write(json.dumps(good) + "\n")
        f.write("{not json\n")
        f.write("\n")
        f.write(json.dumps({"asin": "A2", "title": "two", "also_buy": ["A1"]}) + "\n")
        f.write(json.dumps({"title": "no asin"}) + "\n")
        f.write(json.dumps({"asin": "A3", "title": "", "also_buy": []}) + "\n")
    ds, rep = curate_amazon([p])
    assert rep.input_lines == 6 and rep.kept_labels == 2
    assert rep.dropped["malformed_line"] == 1 and rep.dropped["blank_line"] == 1
    assert rep.dropped["no_asin"] == 1 and rep.dropped["no_title_no_image"] == 1
    assert rep.malformed_lines[0][0] == "m.json.gz:2"
    with pytest.raises(MalformedRecord, match=r"m.json.gz: line 2: not JSON"):
        curate_amazon([p], CurateParams(strict=True))


def test_2014_python_literal_format(tmp_path):
    p = tmp_path / "meta_2014.json"
    p.write_text(
        "{'asin': 'B1', 'title': 'Kettle &amp; lid', 'imUrl': 'http://x/1.jpg', "
        "'related': {'also_bought': ['B2', 'B9']}, 'categories': [['Home and Kitchen', 'Kettles']]}\n"
        "{'asin': 'B2', 'title': 'Toaster', 'related': {'also_viewed': ['B1'], 'also_bought': ['B1']}, "
        "'categories': [['Home and Kitchen']]}\n")
    prods = list(iter_products(p))
    assert prods[0].title == "Kettle & lid" and prods[0].image_refs == ["http://x/1.jpg"]
    assert prods[0].also_buy == ["B2", "B9"] and prods[0].category == "Home and Kitchen"
    ds, rep = curate_amazon([p])
    assert rep.kept_points == 2 and rep.also_buy_targets == {"in_catalogue": 2, "outside_catalogue": 1}


def _small_ds(root):
    Y = sp.csr_matrix(np.array([[0, 1, 1, 0], [1, 0, 0, 1], [0, 0, 0, 1]], np.float32))
    return XCDataset(root, {"train": ["a", "b"], "test": ["c"], "label": ["a", "b", "c", "d"]},
                     {"train": ["A title", "B -> arrow"], "test": ["C"], "label": ["A title", "B -> arrow", "C", ""]},
                     {"train": Y[:2], "test": Y[2:]},
                     {"train": np.array([[0, 0], [1, 1]]), "test": np.array([[0, 2]])},
                     {"a": ["http://h/a1.jpg", "http://h/a2.jpg"], "c": ["http://h/c.jpg"]})


def test_xc_layout_round_trip(tmp_path):
    ds = _small_ds(tmp_path)
    write_xc(ds, tmp_path)
    assert (tmp_path / "trn_X_Y.txt").read_text().splitlines()[0] == "2 4"
    back = read_xc(tmp_path)
    assert back.uids == ds.uids and back.titles == ds.titles and back.image_urls == ds.image_urls
    for s in ("train", "test"):
        assert (back.Y[s] != ds.Y[s]).nnz == 0
        assert np.array_equal(back.filters[s], ds.filters[s])
    assert not list(tmp_path.rglob("*.tmp")), "temporary files left behind"


def test_xc_errors_name_file_and_line(tmp_path):
    write_xc(_small_ds(tmp_path), tmp_path)
    (tmp_path / "tst_X_Y.txt").write_text("1 4\n3:1 x:1\n")
    with pytest.raises(XCFormatError, match=r"tst_X_Y.txt: line 2: expected `label:value`"):
        read_xc(tmp_path)
    (tmp_path / "tst_X_Y.txt").write_text("1 4\n9:1\n")
    with pytest.raises(XCFormatError, match=r"line 2: label 9 outside"):
        read_xc(tmp_path)
    (tmp_path / "raw_data/test.raw.txt").write_text("no arrow here\n")
    with pytest.raises(XCFormatError, match=r"test.raw.txt: line 1: expected `UID->title`"):
        read_xc(tmp_path)


def test_carve_validation_is_deterministic():
    a = carve_validation(100, 0.1, 0)
    b = carve_validation(100, 0.1, 0)
    assert np.array_equal(a[1], b[1]) and len(a[1]) == 10 and not set(a[0]) & set(a[1])


def test_validation_filter_removes_self_and_reciprocal_pairs_as_test_does():
    """Products a..e; train points a, b, c, d (rows 0-3); validation rows 1 (b) and 3 (d), fit rows 0 (a), 2 (c).
    b -> a with a -> b: reciprocal with a fit point, filtered. b -> e: e bought nothing, kept.
    d -> c with c -> d: filtered. d -> b with b -> d: b is a validation point, not fit, so kept."""
    import scipy.sparse as sp

    from mufin_lib.data.xc import validation_filter

    uids = list("abcde")
    Y = sp.csr_matrix(np.array([[0, 1, 0, 0, 0],    # a -> b
                                [1, 0, 0, 1, 1],    # b -> a, d, e
                                [0, 0, 0, 1, 0],    # c -> d
                                [0, 1, 1, 0, 0]]))  # d -> b, c
    ds = XCDataset(root=None, uids={"train": list("abcd"), "test": [], "label": uids},
                   titles={"train": list("abcd"), "test": [], "label": uids}, Y={"train": Y, "test": Y[:0]},
                   filters={"train": np.array([[0, 0], [1, 1], [2, 2], [3, 3]]), "test": np.zeros((0, 2), np.int64)},
                   image_urls={})
    got = validation_filter(ds, fit=np.array([0, 2]), val=np.array([1, 3]))
    assert sorted(map(tuple, got.tolist())) == [(0, 0), (0, 1), (1, 2), (1, 3)]
    # a dataset without filter_labels_train.txt (optional for a user's own data): the self pairs come from the UIDs
    ds.filters["train"] = np.zeros((0, 2), np.int64)
    assert sorted(map(tuple, validation_filter(ds, np.array([0, 2]), np.array([1, 3])).tolist())) == \
        [(0, 0), (0, 1), (1, 2), (1, 3)]


def _img(colour, size=(60, 30)):
    return Image.new("RGB", size, colour)


def test_thumbnail_pads_white_and_keeps_aspect():
    t = thumbnail(_img((255, 0, 0), (200, 100)))
    assert t.size == (128, 128)
    arr = np.asarray(t)
    assert (arr[0, 0] == 255).all() and arr[64, 64, 0] > 200 and arr[64, 64, 1] < 50
    assert (arr[10, 64] == 255).all()  # padding above a 128x64 image


def test_img_bin_corrupt_lines_skipped_and_counted(tmp_path):
    p = tmp_path / "images" / "label.img.bin"
    write_img_bin(p, [("u1", _img((255, 0, 0))), ("u1", _img((0, 255, 0))), ("u1", _img((0, 0, 255))),
                      ("u2", _img((9, 9, 9)))])
    with open(p, "a") as f:
        f.write("u3\t!!!not base64!!!\n")
        f.write("u4\t" + "aGVsbG8gd29ybGQ=" + "\n")  # valid base64, not a JPEG
        f.write("no tab on this line\n")
    store = ImageStore.from_dir(tmp_path, keep_top_k=2)
    assert store.count("u1") == 2 and store.report.beyond_top_k == 1
    rep = store.validate()
    assert "u3" not in store and "u4" not in store
    assert len(rep.corrupt) == 3 and {c[0] for c in rep.corrupt} == {"label.img.bin:5", "label.img.bin:6", "label.img.bin:7"}
    ims = store.get("u1")
    assert [im.size for im in ims] == [(128, 128)] * 2
    assert np.asarray(ims[0])[64, 64, 0] > 200  # first image kept first
    # one images/img.bin for every UID is accepted too
    p.rename(tmp_path / "images" / "img.bin")
    assert ImageStore.from_dir(tmp_path).count("u2") == 1


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/good"):
            buf = io.BytesIO()
            _img((10, 200, 10), (90, 45)).save(buf, "JPEG")
            self._send(200, buf.getvalue(), "image/jpeg")
        elif self.path == "/slow.jpg":
            time.sleep(1.5)
            self._send(200, b"late", "image/jpeg")
        elif self.path == "/text.jpg":
            self._send(200, b"<html>not an image</html>", "text/html")
        else:
            self._send(404, b"missing", "text/plain")

    def _send(self, code, body, ctype):
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *a):
        pass


def test_img_bin_from_urls_against_a_local_server(tmp_path):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        ds = _small_ds(tmp_path)
        ds.image_urls = {"a": [f"{base}/good1.jpg", f"{base}/slow.jpg"], "b": [f"{base}/missing.jpg"],
                         "c": [f"{base}/text.jpg", f"{base}/good2.jpg"]}
        write_xc(ds, tmp_path)
        dl = Downloader(tmp_path / "cache", timeout=0.5, retries=1, backoff=0.01, workers=4)
        rep = build_img_bin(tmp_path, dl)
        assert rep["failures"] == {f"{base}/slow.jpg": "timeout", f"{base}/missing.jpg": "http_404",
                                   f"{base}/text.jpg": "not_an_image"}
        assert rep["written"] == {"train": 1, "test": 1, "label": 2}
        store = ImageStore.from_dir(tmp_path)
        assert store.count("a") == 1 and store.count("b") == 0 and store.count("c") == 1
        assert store.get("a")[0].size == (128, 128)
        # resumable: a second build fetches nothing that is cached
        dl2 = Downloader(tmp_path / "cache", timeout=0.5, retries=0, workers=4)
        rep2 = build_img_bin(tmp_path, dl2)
        assert rep2["outcomes"]["cached"] == 2 and "downloaded" not in rep2["outcomes"]
    finally:
        srv.shutdown()


def test_curate_to_dir_writes_the_release_layout(amazon_dir, tmp_path):
    ds, rep = curate_to_dir([amazon_dir / "meta_Appliances.first100.json.gz"], tmp_path / "xc")
    for f in ("raw_data/train.raw.txt", "raw_data/test.raw.txt", "raw_data/label.raw.txt", "trn_X_Y.txt",
              "tst_X_Y.txt", "filter_labels_train.txt", "filter_labels_test.txt", "img.urls.txt",
              "curation_report.json"):
        assert (tmp_path / "xc" / f).exists(), f
    back = read_xc(tmp_path / "xc")
    assert back.num_labels == 100 and len(back.image_urls) == 53


def test_prepare_amazon_json_names_the_real_data(amazon_dir, tmp_path):
    """Tables on curated Amazon metadata say which file they come from, and are not marked synthetic."""
    from mufin_lib.data.prepare import prepare_dataset
    from mufin_lib.stages.dataset import DatasetParams

    _, info = prepare_dataset(DatasetParams(source="amazon-json", input_path=str(amazon_dir / "meta_Appliances.first100.json.gz")),
                              tmp_path / "dataset")
    assert info["data_label"] == "Amazon Appliances" and not info["synthetic"]
    assert info["stats"]["L"] == 100 and json.loads((tmp_path / "dataset" / "dataset.json").read_text())["data_label"] == info["data_label"]


def test_carve_validation_caps_the_points_and_halves_are_disjoint():
    from mufin_lib.data.xc import validation_halves

    fit, val = carve_validation(20000, 0.15, 0, max_points=2000)
    assert len(val) == 2000 and len(fit) == 18000  # 15% would be 3,000
    assert len(carve_validation(1000, 0.15, 0, max_points=2000)[1]) == 150  # below the cap: the share
    a, b = validation_halves(len(val), 0)
    assert not set(a) & set(b) and len(a) + len(b) == len(val) and abs(len(a) - len(b)) <= 1


def test_local_images_relative_file_url_missing_and_unreadable_all_accounted(tmp_path):
    """Curation reads local image files (a path relative to the metadata file's folder, and file://), writes them
    to img.bin as downloaded ones, and counts a missing or unreadable file as a skip with its reason."""
    from mufin_lib.data.prepare import prepare_dataset
    from mufin_lib.stages.dataset import DatasetParams

    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    _img((200, 10, 10)).save(src / "images" / "a.jpg")
    _img((10, 200, 10)).save(tmp_path / "b.png")
    (src / "images" / "d.jpg").write_text("not a jpeg")
    recs = [{"asin": "a", "title": "red top", "image": ["images/a.jpg"], "also_buy": ["b", "c"]},
            {"asin": "b", "title": "green skirt", "image": [f"file://{tmp_path / 'b.png'}"], "also_buy": ["a"]},
            {"asin": "c", "title": "blue socks", "image": ["images/missing.jpg"], "also_buy": ["a", "d"]},
            {"asin": "d", "title": "black shoes", "image": ["images/d.jpg"], "also_buy": ["c"]}]
    meta = src / "meta.json"
    meta.write_text("".join(json.dumps(r) + "\n" for r in recs))
    stage = tmp_path / "stage"
    ds, info = prepare_dataset(DatasetParams(source="amazon-json", input_path=str(meta), test_fraction=0.5), stage)
    imgs = info["curation_report"]["images"]
    assert imgs["references"] == 4 and imgs["local"] == 4
    assert imgs["outcomes"] == {"read_local": 2, "missing_file": 1, "not_an_image": 1}
    assert imgs["failures_by_reason"] == {"missing_file": 1, "not_an_image": 1}
    assert imgs["written"]["label"] == 2
    store = ImageStore.from_dir(ds.root)
    assert store.count("a") == 1 and store.count("b") == 1 and "c" not in store and "d" not in store
    assert store.get("a")[0].getpixel((64, 64))[0] > 150  # the red image, thumbnailed
    assert info["stats"]["products_without_image"] == 2


def test_hm_curation_matches_its_readme(tmp_path):
    """The real H&M set (../shared/data/hm): every record kept, every also_buy pair inside the catalogue, as its
    README says; images are checked on a slice (the full build is stage 01's job and its report's)."""
    from tests.conftest import need_shared

    from mufin_lib.paths import HM_DIR

    meta = need_shared(HM_DIR) / "meta_HM.json.gz"
    ds, rep = curate_amazon([meta])
    assert rep.input_lines == 11800 and rep.kept_labels == 11800 and rep.kept_points == 11508
    assert rep.also_buy_targets == {"in_catalogue": 61186}
    assert sum(rep.dropped.values()) == 0
    # image references were made absolute from the metadata file's folder, and each file is there
    refs = [r for lst in ds.image_urls.values() for r in lst]
    assert len(refs) == 11800 and all(r.startswith(str(HM_DIR.resolve())) for r in refs)
    assert all(Path(r).is_file() for r in refs[:200])


def test_curation_keeps_each_labels_category_path(amazon_dir, tmp_path):
    """label_category_paths.txt: one line per label, the whole category path; its top level is label_categories.txt
    (what per-category tables group by); the synthetic catalogue answers the same call from attributes.tsv."""
    from mufin_lib.data.curate import curate_to_dir
    from mufin_lib.data.synthetic import SyntheticParams, generate
    from mufin_lib.data.xc import label_category_paths, read_xc

    ds, _ = curate_to_dir([amazon_dir / "meta_Appliances.first100.json.gz"], tmp_path / "xc")
    paths = label_category_paths(tmp_path / "xc", ds.uids["label"])
    top = (tmp_path / "xc" / "label_categories.txt").read_text().splitlines()
    assert len(paths) == ds.num_labels == len(top)
    assert [p[0] if p else "" for p in paths] == top and max(len(p) for p in paths) >= 2
    generate(tmp_path / "syn", SyntheticParams(n_products=60, seed=1, with_images=False))
    syn = read_xc(tmp_path / "syn")
    attrs = {l.split("\t")[0]: l.split("\t") for l in (tmp_path / "syn" / "attributes.tsv").read_text().splitlines()[1:]}
    assert label_category_paths(tmp_path / "syn", syn.uids["label"]) == [[attrs[u][1], attrs[u][6]] for u in syn.uids["label"]]
