"""Bad input, data sets that were silently wrong: each is now a clear error naming file and line, or a counted record."""
import gzip
import json

import pytest


def _meta(path, records):
    with gzip.open(path, "wt") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path


def _ring(n, **extra):
    return [{"asin": f"P{i:02d}", "title": f"product {i}", "also_buy": [f"P{(i + 1) % n:02d}"], **extra} for i in range(n)]


def test_an_empty_first_copy_of_an_asin_does_not_hide_the_good_second(tmp_path):
    from mufin_lib.data.curate import curate_amazon

    recs = _ring(10)
    recs.insert(3, {"asin": "P05", "title": "", "also_buy": []})  # an empty copy before the good P05
    ds, rep = curate_amazon([_meta(tmp_path / "m.json.gz", recs)])
    titles = dict(zip(ds.uids["label"], ds.titles["label"]))
    assert titles["P05"] == "product 5"
    assert {k: v for k, v in rep.dropped.items() if v} == {"no_title_no_image": 1} and rep.input_lines == rep.kept_labels + 1


@pytest.mark.parametrize("value", ["0", "nan", "inf", "-1"])
def test_xc_label_values_must_be_positive_and_finite(tmp_path, value):
    from mufin_lib.data.xc import XCFormatError, read_xy

    f = tmp_path / "trn_X_Y.txt"
    f.write_text(f"2 3\n0:1 2:1\n1:{value}\n")
    with pytest.raises(XCFormatError, match=r"trn_X_Y.txt: line 3: label 1 has value .*expected a positive finite"):
        read_xy(f, 3)


def test_a_uid_repeated_in_a_raw_file_is_refused_naming_both_lines(tmp_path):
    from mufin_lib.data.synthetic import SyntheticParams, generate
    from mufin_lib.data.xc import XCFormatError, read_xc

    generate(tmp_path / "syn", SyntheticParams(n_products=30, seed=1, with_images=False))
    raw = tmp_path / "syn" / "raw_data" / "label.raw.txt"
    lines = raw.read_text().splitlines()
    raw.write_text("\n".join(lines[:5] + [lines[2]] + lines[6:]) + "\n")  # line 6 repeats line 3's UID
    with pytest.raises(XCFormatError, match=r"label.raw.txt: line 6: UID .* repeats line 3"):
        read_xc(tmp_path / "syn")


def test_too_few_points_to_split_is_refused_with_the_counts(tmp_path):
    from mufin_lib.data.curate import curate_amazon

    recs = [{"asin": "A", "title": "a", "also_buy": ["B"]}, {"asin": "B", "title": "b", "also_buy": []}]
    with pytest.raises(ValueError, match=r"1 product\(s\) with co-purchases .* leaves 1 train and 0 test points"):
        curate_amazon([_meta(tmp_path / "one.json.gz", recs)])
