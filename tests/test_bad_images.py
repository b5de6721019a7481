"""Bad input, images: every img.bin line accounted for; the statistics count what decodes."""



def test_corrupt_and_unknown_images_are_accounted_for_and_not_counted_as_images(tmp_path):
    from mufin_lib.data.prepare import prepare_dataset
    from mufin_lib.stages.dataset import DatasetParams
    from mufin_lib.data.synthetic import SyntheticParams, generate
    from mufin_lib.data.xc import read_xc

    root = tmp_path / "syn"
    generate(root, SyntheticParams(n_products=80, seed=4))
    _, clean = prepare_dataset(DatasetParams(source="xc-dir", input_path=str(root)), tmp_path / "clean")
    ds = read_xc(root)
    no_image = [u for u in ds.uids["label"]
                if not any(l.startswith(u.encode() + b"\t") for l in (root / "images" / "label.img.bin").read_bytes().splitlines())]
    assert len(no_image) >= 2
    with open(root / "images" / "label.img.bin", "ab") as f:
        f.write(f"{no_image[0]}\t!!!not base64!!!\n".encode())
        f.write(f"{no_image[1]}\taGVsbG8gd29ybGQ=\n".encode())  # base64 of text, not an image
        f.write(b"SOMEONE-ELSE\taGVsbG8gd29ybGQ=\n")  # not a product of this dataset
        f.write(b"no tab on this line\n")
    _, info = prepare_dataset(DatasetParams(source="xc-dir", input_path=str(root)), tmp_path / "dirty")
    assert info["stats"]["products_without_image"] == clean["stats"]["products_without_image"]
    assert info["stats"]["avg_images_per_product"] == clean["stats"]["avg_images_per_product"]
    rep, before = info["image_read_report"], clean["image_read_report"]
    assert rep["lines"] == before["lines"] + 4 and rep["accounted_for"] == rep["lines"]
    assert rep["kept"] == before["kept"] and rep["unknown_uid"] == 1 and rep["corrupt"] == 3
    whys = sorted(why for _, why in rep["corrupt_lines"])
    assert whys[0] == "no `UID<TAB>` prefix" and whys[1].startswith("not an image") and whys[2].startswith("not base64")
    n = len((root / "images" / "label.img.bin").read_bytes().splitlines())
    assert {where for where, _ in rep["corrupt_lines"]} == {f"label.img.bin:{n - k}" for k in (3, 2, 0)}
