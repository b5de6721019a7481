"""Padded, masked bags of pre-embeddings for batches of products (title row + up to k image rows)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .encoders import Embeddings
from .paths import atomic_path


def image_dim(emb: Embeddings) -> int:
    """Width of the image pre-embeddings (EfficientNet-Lite0's 1280 when there are no images)."""
    return emb.image.shape[1] if np.ndim(emb.image) == 2 and emb.image.shape[0] else 1280


class BagTable:
    """All products' pre-embeddings as tensors; `batch(rows)` gives the model's inputs for those products.
    `modalities` drops a modality for the text-only / image-only variants."""

    def __init__(self, emb: Embeddings, keep_top_k: int = 15, modalities: str = "text+image"):
        if modalities not in ("text", "image", "text+image"):
            raise ValueError(f"modalities '{modalities}': expected text, image or text+image")
        self.uids = emb.uids
        self.row = emb.row()
        self.text = torch.from_numpy(np.array(emb.text, dtype=np.float32))  # a copy: the cache is a read-only memmap
        img = np.asarray(emb.image, dtype=np.float32)
        self.image_dim = image_dim(emb)
        # one zero row at the end stands for padding
        self.image = torch.from_numpy(np.vstack([img.reshape(-1, self.image_dim), np.zeros((1, self.image_dim), np.float32)]))
        self.offsets = np.asarray(emb.img_offsets)
        self.counts = np.minimum(np.diff(self.offsets), keep_top_k)
        self.has_text = (self.text.abs().sum(1) > 0).numpy()
        if modalities == "text":
            self.counts = np.zeros_like(self.counts)
        elif modalities == "image":
            self.has_text = np.zeros_like(self.has_text)
        self.keep_top_k = keep_top_k

    def rows_of(self, uids) -> np.ndarray:
        return np.array([self.row[u] for u in uids], np.int64)

    def subset(self, uids) -> "BagTable":
        """The bags of `uids` alone (e.g. the labels: what a carried model keeps), the same values bit for bit."""
        rows = self.rows_of(uids)
        img_rows = [np.arange(self.offsets[r], self.offsets[r] + self.counts[r]) for r in rows]
        flat = np.concatenate(img_rows) if img_rows else np.zeros(0, np.int64)
        counts = self.counts[rows].copy()
        return BagTable.from_arrays(list(uids), self.text[torch.from_numpy(rows)].numpy(),
                                    self.image[torch.from_numpy(flat)].numpy().reshape(-1, self.image_dim),
                                    np.concatenate([[0], np.cumsum(counts)]), counts, self.has_text[rows].copy(),
                                    self.keep_top_k)

    @classmethod
    def from_arrays(cls, uids, text, image, offsets, counts, has_text, keep_top_k: int) -> "BagTable":
        self = cls.__new__(cls)
        self.uids, self.row = list(uids), {u: i for i, u in enumerate(uids)}
        self.text = torch.from_numpy(np.array(text, dtype=np.float32))
        self.image_dim = int(image.shape[1])
        self.image = torch.from_numpy(np.vstack([np.asarray(image, np.float32), np.zeros((1, self.image_dim), np.float32)]))
        self.offsets, self.counts = np.asarray(offsets, np.int64), np.asarray(counts, np.int64)
        self.has_text, self.keep_top_k = np.asarray(has_text, bool), int(keep_top_k)
        return self

    def save(self, path: Path) -> None:
        with atomic_path(Path(path)) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, uids=np.array(self.uids), text=self.text.numpy(), image=self.image[:-1].numpy(),
                         offsets=self.offsets, counts=self.counts, has_text=self.has_text, keep_top_k=self.keep_top_k)

    @classmethod
    def load(cls, path: Path) -> "BagTable":
        z = np.load(path)
        return cls.from_arrays(z["uids"].tolist(), z["text"], z["image"], z["offsets"], z["counts"], z["has_text"],
                               int(z["keep_top_k"]))

    def batch(self, rows: np.ndarray):
        rows = np.asarray(rows)
        cnt = self.counts[rows]
        k = int(cnt.max()) if len(rows) else 0
        pad = self.image.shape[0] - 1
        idx = np.full((len(rows), k), pad, np.int64)
        mask = np.zeros((len(rows), k), bool)
        for j in range(k):
            has = cnt > j
            idx[has, j] = self.offsets[rows[has]] + j
            mask[has, j] = True
        has_text = self.has_text[rows].copy()
        # a bag must hold one valid descriptor (attention over an empty bag is undefined): the zero title
        empty = ~has_text & (cnt == 0)
        has_text[empty] = True
        return (self.text[torch.from_numpy(rows)], torch.from_numpy(has_text),
                self.image[torch.from_numpy(idx)], torch.from_numpy(mask))


def to_device(inputs, dev):
    """A batch of model inputs (tensors, or a dict of tensors for a tokenizer's output) moved to `dev`."""
    return [{k: v.to(dev) for k, v in x.items()} if isinstance(x, dict) else x.to(dev) for x in inputs]


def bag_source(model, ds, emb: Embeddings | None, params):
    """What a trained Module I model reads (params: its parameters, any object with freeze_encoders, keep_top_k,
    modalities and image_encoder): cached pre-embeddings (frozen encoders) or raw titles and images through its
    fine-tuned encoders."""
    if params.freeze_encoders:
        return BagTable(emb, params.keep_top_k, params.modalities)
    from .encoders import load_image_encoder
    from .finetune import RawBags
    enc = None
    if params.modalities != "text" and model.image_model is not None:
        enc = load_image_encoder(params.image_encoder)
        enc.model = model.image_model  # the fine-tuned weights, the encoder's preprocessing
    return RawBags(ds, model.text_model, enc, params.keep_top_k, params.modalities)


@torch.no_grad()
def embed_rows(model, table, rows: np.ndarray, batch: int = 1024) -> np.ndarray:
    """x^1 (or z^1) of the products at `rows` of a bag source."""
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for s in range(0, len(rows), batch):
        out.append(model(*to_device(table.batch(rows[s:s + batch]), dev))[0].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.p.D), np.float32)


@torch.no_grad()
def embed_bags(model, table, rows: np.ndarray, batch: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x^1 per product, and every descriptor row of X^1 (unit-normalised) with the product it belongs to:
    what P-I-bag indexes."""
    import torch.nn.functional as F

    model.eval()
    dev = next(model.parameters()).device
    vecs, descs, owners = [], [], []
    for s in range(0, len(rows), batch):
        x1, X1, mask = model(*to_device(table.batch(rows[s:s + batch]), dev))
        vecs.append(x1.float().cpu().numpy())
        m = mask.cpu().numpy()
        descs.append(F.normalize(X1, dim=-1).float().cpu().numpy()[m])
        owners.append(np.nonzero(m)[0] + s)
    if not vecs:
        return np.zeros((0, model.p.D), np.float32), np.zeros((0, model.p.D), np.float32), np.zeros(0, np.int64)
    return np.concatenate(vecs), np.concatenate(descs), np.concatenate(owners)
