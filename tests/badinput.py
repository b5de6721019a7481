"""Helpers of the bad-input tests: metadata records and files written byte for byte."""
import gzip
import json


def rec(i, **kw):
    return json.dumps({"asin": f"A{i}", "title": f"product {i}", "also_buy": [f"A{i + 1}", f"A{i - 1}"], **kw})


def lines_file(path, lines: list[bytes], gz=False):
    data = b"".join(l + b"\n" for l in lines)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path
