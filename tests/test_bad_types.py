"""Bad input, wrong types: each named per record, with the field and what was expected."""
import json

from mufin_lib.data.amazon import iter_products
from mufin_lib.data.curate import curate_amazon
from tests.badinput import lines_file, rec


def test_wrong_types_are_named_per_record(tmp_path):
    # the three good records buy each other (curation needs train and test points)
    lines = [rec(1, also_buy=["A3"]), rec(2, title=["a", "list"]), json.dumps({"asin": 12345, "title": "numeric asin"}),
             rec(3, image="http://x/one.jpg", also_buy=["A6"]), rec(4, also_buy=7), rec(5, image={"url": "x"}),
             rec(6, also_buy=["A1"])]
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
