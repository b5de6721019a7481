"""Padded, masked bags of pre-embeddings for batches of products (title row + up to k image rows)."""
from __future__ import annotations

import numpy as np
import torch

from .encoders import Embeddings


class BagTable:
    """All products' pre-embeddings as tensors; `batch(rows)` gives the model's inputs for those products.
    `modalities` drops a modality for the text-only / image-only variants."""

    def __init__(self, emb: Embeddings, keep_top_k: int = 15, modalities: str = "text+image"):
        if modalities not in ("text", "image", "text+image"):
            raise ValueError(f"modalities '{modalities}': expected text, image or text+image")
        self.uids = emb.uids
        self.row = emb.row()
        self.text = torch.from_numpy(np.ascontiguousarray(emb.text, dtype=np.float32))
        img = np.asarray(emb.image, dtype=np.float32)
        self.image_dim = img.shape[1] if img.ndim == 2 and img.shape[0] else 1280
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
