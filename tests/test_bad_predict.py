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
