"""Bad input, `mufin predict`: problems per line, and image problems on recommended rows too."""
import json

from tests.badinput import lines_file


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


def test_an_id_must_be_a_string_or_a_number(tmp_path):
    from mufin_lib.predict import read_products

    lines = [json.dumps({"id": v, "title": "kettle"}).encode() for v in (["a"], None, {"x": 1}, True, "ok", 7)]
    products, problems = read_products(lines_file(tmp_path / "ids.jsonl", lines))
    assert [q.uid for q in products] == ["ok", "7"]
    assert [(q["line"], q["error"].split(": ", 2)[2]) for q in problems] == [
        (1, 'id: expected a string or a whole number, got list ["a"]'),
        (2, "id: expected a string or a whole number, got NoneType null"),
        (3, 'id: expected a string or a whole number, got dict {"x": 1}'),
        (4, "id: expected a string or a whole number, got bool true")]


def test_ten_thousand_images_decode_only_the_ones_used(tmp_path):
    from PIL import Image

    from mufin_lib.predict import read_products

    img = tmp_path / "ok.png"
    Image.new("RGB", (20, 20), (200, 10, 10)).save(img)
    refs = [str(tmp_path / "gone.png")] + [str(img)] * 9_999
    products, _ = read_products(lines_file(tmp_path / "many.jsonl", [json.dumps({"id": "a", "title": "x", "images": refs}).encode()]),
                                max_images=15)
    (p,) = products
    assert len(p.images) == 15  # the first is missing: the next 15 are read, the rest counted, never decoded
    assert p.image_problems[0].startswith(f"{tmp_path / 'gone.png'}: FileNotFoundError")
    assert p.image_problems[-1] == "9984 more image(s) beyond the 15 used: not read"


def test_an_output_that_is_a_directory_is_refused_before_any_work(tmp_path):
    import pytest

    from mufin_lib.predict import predict_file

    inp = lines_file(tmp_path / "in.jsonl", [json.dumps({"id": "a", "title": "x"}).encode()])
    (tmp_path / "outdir").mkdir()
    # the run does not exist: refused on the output first, so no model is ever loaded
    with pytest.raises(ValueError, match=r"--output .*outdir: a directory; expected a file path"):
        predict_file(inp, tmp_path / "outdir", run=str(tmp_path / "no-such-run"))
