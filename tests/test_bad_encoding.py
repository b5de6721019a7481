"""Bad input, encoding and compression: a line that is not UTF-8 is one named record; a cut gzip keeps what
was read and says where it was cut."""
import gzip

import pytest

from mufin_lib.data.amazon import MalformedRecord, iter_products
from mufin_lib.data.curate import CurateParams, curate_amazon
from tests.badinput import lines_file, rec


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
