"""Bad input: every malformed record named (file, line, what was expected) or counted with its reason; nothing
that was readable is lost; out-of-range parameters refused before anything runs."""
import gzip
import json

import pytest

from mufin_lib.data.amazon import MalformedRecord, iter_products
from mufin_lib.data.curate import CurateParams, curate_amazon


def rec(i, **kw):
    return json.dumps({"asin": f"A{i}", "title": f"product {i}", "also_buy": [f"A{i + 1}", f"A{i - 1}"], **kw})


def lines_file(path, lines: list[bytes], gz=False):
    data = b"".join(l + b"\n" for l in lines)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_invalid_utf8_line_is_one_counted_record_not_the_whole_file(tmp_path, gz):
    good = [rec(i).encode() for i in range(1, 7)]
    bad = b'{"asin": "A9", "title": "caf\xe9 \xff"}'
    p = lines_file(tmp_path / ("m.json.gz" if gz else "m.json"), good[:3] + [bad] + good[3:], gz)
    ds, rep = curate_amazon([p])
    assert rep.kept_labels == 6 and rep.input_lines == 7
    assert rep.dropped["malformed_line"] == 1
    assert rep.malformed_lines == [(f"{p.name}:4", "not valid UTF-8 (byte 0xe9 at column 29)")]
    with pytest.raises(MalformedRecord, match=rf"{p.name}: line 4: not valid UTF-8"):
        curate_amazon([p], CurateParams(strict=True))


def test_truncated_gzip_keeps_what_was_readable_and_says_where_it_was_cut(tmp_path):
    full = gzip.compress(b"".join(rec(i).encode() + b"\n" for i in range(1, 401)))
    p = tmp_path / "cut.json.gz"
    p.write_bytes(full[: len(full) * 6 // 10])
    errs = []
    prods = list(iter_products(p, errors=errs))
    assert 100 < len(prods) < 400 and [q.uid for q in prods] == [f"A{i}" for i in range(1, len(prods) + 1)]
    (line, why), = errs
    assert line == len(prods) + 1 and why.startswith(f"truncated after line {len(prods)}: EOFError")
    ds, rep = curate_amazon([p])
    assert rep.kept_labels == len(prods) and rep.dropped["truncated_file"] == 1
    assert rep.truncated_files == [f"{p}: {why}"]
    assert rep.input_lines == len(prods) + 1  # every line accounted for: the cut one counted as truncated
    with pytest.raises(MalformedRecord, match=rf"line {len(prods) + 1}: truncated after line {len(prods)}"):
        curate_amazon([p], CurateParams(strict=True))


def test_wrong_types_are_named_per_record(tmp_path):
    lines = [rec(1), rec(2, title=["a", "list"]), json.dumps({"asin": 12345, "title": "numeric asin"}),
             rec(3, image="http://x/one.jpg"), rec(4, also_buy=7), rec(5, image={"url": "x"}), rec(6)]
    p = lines_file(tmp_path / "t.json", [l.encode() for l in lines])
    errs = []
    prods = {q.uid: q for q in iter_products(p, errors=errs)}
    assert sorted(prods) == ["A1", "A3", "A6"]
    assert prods["A3"].image_refs == ["http://x/one.jpg"]  # one string where a list is meant: unambiguous
    assert errs == [(2, 'title: expected a string, got list ["a", "list"]'),
                    (3, "asin: expected a string, got int 12345"),
                    (5, "also_buy: expected a list of strings, got int"),
                    (6, "image: expected a list of strings, got dict")]
    _, rep = curate_amazon([p])
    assert rep.dropped["malformed_line"] == 4 and rep.kept_labels == 3
    assert ("t.json:2", 'title: expected a string, got list ["a", "list"]') in rep.malformed_lines


def test_empty_metadata_file_is_refused_naming_it(tmp_path):
    p = tmp_path / "empty.json"
    p.write_text("")
    with pytest.raises(ValueError, match=r"empty.json: no product kept from 0 input lines \(no lines\)"):
        curate_amazon([p])
    q = lines_file(tmp_path / "blank.json", [b"", b"{not json"])
    with pytest.raises(ValueError, match=r"blank.json: no product kept from 2 input lines \(malformed_line 1, blank_line 1\)"):
        curate_amazon([q])


def test_predict_input_problems_are_per_line(tmp_path):
    from PIL import Image

    from mufin_lib.predict import read_products

    img = tmp_path / "ok.png"
    Image.new("RGB", (20, 20), (200, 10, 10)).save(img)
    lines = [json.dumps({"id": "a", "title": "kettle", "images": [str(img)]}).encode(),
             b'["not", "an", "object"]',
             json.dumps({"id": "b", "title": "mug", "images": str(img)}).encode(),  # a string: one image
             b'{"id": "c", "title": "caf\xe9"}',
             json.dumps({"id": "d", "title": ["a", "list"]}).encode(),
             json.dumps({"id": "e", "title": "lamp", "images": [str(tmp_path / "missing.jpg")]}).encode(),
             json.dumps({"id": "f", "images": [7]}).encode(),
             b"{not json"]
    p = lines_file(tmp_path / "new.jsonl", lines)
    products, problems = read_products(p)
    by = {q.uid: q for q in products}
    assert sorted(by) == ["a", "b", "e"]
    assert len(by["a"].images) == 1 and len(by["b"].images) == 1 and by["b"].image_refs == [str(img)]
    assert by["e"].images == [] and by["e"].image_problems[0].startswith(f"{tmp_path / 'missing.jpg'}: FileNotFoundError")
    assert [(q["line"], q["error"].split(": ", 1)[1]) for q in problems] == [
        (2, "line 2: expected a JSON object with id, title and images, got list"),
        (4, "line 4: not valid UTF-8 (byte 0xe9 at column 26)"),
        (5, "line 5: title: expected a string, got list"),
        (7, "line 7: images: expected a list of paths or URLs (strings)"),
        (8, "line 8: not JSON (Expecting property name enclosed in double quotes)")]


def test_out_of_range_parameters_are_refused_before_anything_runs(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, MUFIN_RUNS_DIR=str(tmp_path / "runs"))
    cases = {("-p", "test_fraction=1.5"): "parameter 'test_fraction' must be in (0, 1), got 1.5",
             ("-p", "test_fraction=-0.2"): "parameter 'test_fraction' must be in (0, 1), got -0.2",
             ("-p", "02.epochs=0"): "parameter 'epochs' must be in [1, inf], got 0",
             ("-p", "source=csv"): "parameter 'source' must be one of 'synthetic', 'amazon-json', 'xc-dir', got 'csv'",
             ("-p", "05.combiner=mlp"): "parameter 'combiner' must be one of 'cross_attention', 'concat', 'none'"}
    for args, words in cases.items():
        r = subprocess.run([sys.executable, "-m", "mufin_lib.run", "--preset", "smoke", *args], cwd=root, env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and words in r.stderr, (args, r.stderr[-500:])
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").glob("*/notebooks/*.ipynb"))
    r = subprocess.run([sys.executable, "-m", "mufin_lib.cli", "predict", "--run", "x", "--input", "y", "--top-k", "0"],
                       cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "expected a whole number of 1 or more, got 0" in r.stderr


def test_corrupt_and_unknown_images_are_accounted_for_and_not_counted_as_images(tmp_path):
    from mufin_lib.data.prepare import DataParams, prepare_dataset
    from mufin_lib.data.synthetic import SyntheticParams, generate
    from mufin_lib.data.xc import read_xc

    root = tmp_path / "syn"
    generate(root, SyntheticParams(n_products=80, seed=4))
    _, clean = prepare_dataset(DataParams(source="xc-dir", input_path=str(root)), tmp_path / "clean")
    ds = read_xc(root)
    no_image = [u for u in ds.uids["label"]
                if not any(l.startswith(u.encode() + b"\t") for l in (root / "images" / "label.img.bin").read_bytes().splitlines())]
    assert len(no_image) >= 2
    with open(root / "images" / "label.img.bin", "ab") as f:
        f.write(f"{no_image[0]}\t!!!not base64!!!\n".encode())
        f.write(f"{no_image[1]}\taGVsbG8gd29ybGQ=\n".encode())  # base64 of text, not an image
        f.write(b"SOMEONE-ELSE\taGVsbG8gd29ybGQ=\n")  # not a product of this dataset
        f.write(b"no tab on this line\n")
    _, info = prepare_dataset(DataParams(source="xc-dir", input_path=str(root)), tmp_path / "dirty")
    assert info["stats"]["products_without_image"] == clean["stats"]["products_without_image"]
    assert info["stats"]["avg_images_per_product"] == clean["stats"]["avg_images_per_product"]
    rep, before = info["image_read_report"], clean["image_read_report"]
    assert rep["lines"] == before["lines"] + 4 and rep["accounted_for"] == rep["lines"]
    assert rep["kept"] == before["kept"] and rep["unknown_uid"] == 1 and rep["corrupt"] == 3
    whys = sorted(why for _, why in rep["corrupt_lines"])
    assert whys[0] == "no `UID<TAB>` prefix" and whys[1].startswith("not an image") and whys[2].startswith("not base64")
    n = len((root / "images" / "label.img.bin").read_bytes().splitlines())
    assert {where for where, _ in rep["corrupt_lines"]} == {f"label.img.bin:{n - k}" for k in (3, 2, 0)}


def test_filter_pair_out_of_range_names_its_line(tmp_path):
    import shutil

    from mufin_lib.data.synthetic import SyntheticParams, generate
    from mufin_lib.data.xc import XCFormatError, read_xc

    root = tmp_path / "syn"
    generate(root, SyntheticParams(n_products=60, seed=2, with_images=False))
    ds = read_xc(root)
    n_test, L = ds.Y["test"].shape
    f = root / "filter_labels_test.txt"
    good = f.read_text()
    for bad, words in ((f"{n_test} 0", f"({n_test}, 0) lies outside the split's {n_test} points x {L} labels"),
                       (f"0 {L}", f"(0, {L}) lies outside"), ("3 -1", "expected `row col` (two whole numbers"),
                       ("1 2 3", "expected `row col`")):
        f.write_text(good + bad + "\n")
        with pytest.raises(XCFormatError, match=rf"filter_labels_test.txt: line {len(good.splitlines()) + 1}: .*{__import__('re').escape(words)}"):
            read_xc(root)
    shutil.rmtree(root)
