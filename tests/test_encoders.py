"""Encoders: the packaged EfficientNet-Lite0 in timm equals the reference model; hub models load from a
local weights file and fail with a clear message when weights are missing; titles encode offline."""
import numpy as np
import pytest
import torch
from PIL import Image

from mufin_lib.encoders import (WeightsMissing, encode_images, encode_texts, lite0_reference_weights,
                                load_image_encoder, load_text_encoder)


def _images(n=6):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)) for _ in range(n)]


def test_timm_lite0_matches_the_reference_implementation():
    from efficientnet_lite_pytorch import EfficientNet

    enc = load_image_encoder("efficientnet-lite0")
    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(lite0_reference_weights())).eval()
    for size in (128, 224):
        enc.size = size
        x = enc.preprocess(_images(4))
        with torch.inference_mode():
            a = enc(x)
            b = torch.nn.functional.adaptive_avg_pool2d(ref.extract_features(x), 1).flatten(1)
        assert a.shape == (4, 1280)
        assert torch.allclose(a, b, atol=1e-5), float((a - b).abs().max())
        assert a.std() > 0.01  # real features, not zeros


def test_encode_images_unit_norm():
    enc = load_image_encoder("efficientnet-lite0")
    e = encode_images(enc, iter(_images(5)), batch_size=2)
    assert e.shape == (5, 1280) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)


def test_hub_image_model_from_a_local_weights_file(tmp_path):
    import timm
    src = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    torch.save(src.state_dict(), tmp_path / "vit.pth")
    enc = load_image_encoder("vit_tiny_patch16_224", weights=str(tmp_path / "vit.pth"), size=128)
    assert torch.equal(enc.model.patch_embed.proj.weight, src.patch_embed.proj.weight)
    assert enc.model.pos_embed.shape[1] == (128 // 16) ** 2 + 1  # position embeddings interpolated to 128 px
    e = encode_images(enc, iter(_images(2)))
    assert e.shape == (2, 192)


def test_missing_weights_give_a_clear_error(tmp_path):
    with pytest.raises(WeightsMissing, match=r"image_weights=PATH"):
        load_image_encoder("vit_tiny_patch16_224")
    with pytest.raises(WeightsMissing, match=r"does not exist"):
        load_image_encoder("vit_tiny_patch16_224", weights=str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsMissing, match=r"text_encoder=DIR"):
        load_text_encoder("sentence-transformers/msmarco-distilbert-base-v4")


def test_text_encoder_offline_and_from_a_local_path(tmp_path):
    m = load_text_encoder()
    e = encode_texts(m, ["stainless kettle", "", "stainless steel kettle", "dog leash"])
    assert e.shape == (4, 384) and not e[1].any()
    assert e[0] @ e[2] > e[0] @ e[3]  # meaning, not noise
    m.save(str(tmp_path / "minilm"))
    e2 = encode_texts(load_text_encoder(str(tmp_path / "minilm")), ["stainless kettle"])
    assert np.allclose(e2[0], e[0], atol=1e-5)


def test_precomputed_embeddings_are_read_where_stage01_caches_and_a_wrong_shape_is_refused(tmp_path):
    """store_precomputed puts title embeddings where embed_dataset looks (no encoder runs: its name loads nothing),
    in the cache's row order; a row count that is not one per product names the dataset and what was expected."""
    import scipy.sparse as sp

    from mufin_lib.data.xc import XCDataset, write_xc
    from mufin_lib.encoders import embed_dataset, store_precomputed

    uids = {"label": ["a", "b", "c"], "train": ["p", "a"], "test": ["t"]}  # "a" is a label and a train point
    ds = XCDataset(tmp_path, uids, {k: [f"title {u}" for u in v] for k, v in uids.items()},
                   {"train": sp.csr_matrix(np.eye(2, 3)), "test": sp.csr_matrix(np.ones((1, 3)))})
    write_xc(ds, tmp_path / "ds")
    text = np.arange(5 * 4, dtype=np.float32).reshape(5, 4)  # a, b, c, p, t
    store_precomputed(tmp_path / "ds", text, "a test", text_encoder="no-such-encoder", cache_dir=tmp_path / "cache")
    emb = embed_dataset(tmp_path / "ds", "no-such-encoder", "", cache_dir=tmp_path / "cache")
    assert emb.uids == ["a", "b", "c", "p", "t"]
    np.testing.assert_array_equal(emb.text, text)
    assert emb.img_offsets.tolist() == [0] * 6
    with pytest.raises(ValueError, match=r"ds: precomputed embeddings of shape \(4, 4\): expected \(5, D\)"):
        store_precomputed(tmp_path / "ds", text[:4], "a test", cache_dir=tmp_path / "cache")
