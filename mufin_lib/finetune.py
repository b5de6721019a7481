"""Fine-tuning the encoders inside Modules I (the paper trains all layers; spec §4). With frozen encoders
(the CPU default) the model reads cached pre-embeddings (mufin_lib.bags.BagTable); here it reads raw
titles and images and runs E_T and E_V in the graph, so their weights train too.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .data.images import ImageStore
from .data.xc import XCDataset
from .encoders import ImageEncoder, load_image_encoder, load_text_encoder
from .model import MufinEncoder


class RawBags:
    """Titles and decoded images of products, batched for the encoders (same interface as BagTable)."""

    def __init__(self, ds: XCDataset, text_model, image_enc: ImageEncoder | None, keep_top_k: int = 15,
                 modalities: str = "text+image", max_len: int = 32):
        self.uids, self.titles, seen = [], [], set()
        for split in ("label", "train", "test"):
            for u, t in zip(ds.uids[split], ds.titles[split]):
                if u not in seen:
                    seen.add(u); self.uids.append(u); self.titles.append(t)
        self.row = {u: i for i, u in enumerate(self.uids)}
        self.store = ImageStore.from_dir(ds.root, keep_top_k=keep_top_k)
        self.text_model, self.image_enc = text_model, image_enc
        self.text_model.max_seq_length = max_len
        self.use_text = modalities in ("text", "text+image")
        self.use_image = modalities in ("image", "text+image") and image_enc is not None
        self.keep_top_k = keep_top_k

    def rows_of(self, uids) -> np.ndarray:
        return np.array([self.row[u] for u in uids], np.int64)

    def batch(self, rows):
        return self.inputs([self.titles[r] for r in rows],
                           [self.store.get(self.uids[r]) if self.use_image else [] for r in rows])

    def inputs(self, titles: list[str], images: list[list]):
        """Model inputs of products given by title and decoded images (dataset rows and new products alike)."""
        titles = [t if self.use_text else "" for t in titles]
        has_text = torch.tensor([bool(t) for t in titles])
        feats = {k: v for k, v in self.text_model.preprocess([t or "." for t in titles]).items() if torch.is_tensor(v)}
        ims = [x[: self.keep_top_k] if self.use_image else [] for x in images]
        k = max((len(x) for x in ims), default=0)
        mask = torch.zeros(len(titles), k, dtype=torch.bool)
        size = self.image_enc.size if self.image_enc else 1
        pix = torch.zeros(len(titles), k, 3, size, size)
        for i, x in enumerate(ims):
            if x:
                pix[i, : len(x)] = self.image_enc.preprocess(x)
                mask[i, : len(x)] = True
        empty = ~has_text & ~mask.any(1)
        has_text[empty] = True  # a bag needs one valid descriptor (see BagTable)
        return feats, has_text, pix, mask


class EncoderTower(nn.Module):
    """E_T and E_V (trainable) in front of the MUFIN encoder: raw bag -> (x^1, X^1, mask)."""

    def __init__(self, mufin: MufinEncoder, text_model, image_enc: ImageEncoder | None):
        super().__init__()
        self.mufin = mufin
        self.text_model = text_model
        self.image_model = image_enc.model if image_enc is not None else None
        self.p = mufin.p

    def encoder_parameters(self):
        ps = list(self.text_model.parameters())
        return ps + (list(self.image_model.parameters()) if self.image_model is not None else [])

    def forward(self, feats, has_text, pix, mask):
        t = F.normalize(self.text_model(dict(feats))["sentence_embedding"], dim=-1)
        t = t * has_text.unsqueeze(1).to(t.dtype)
        img = t.new_zeros(mask.shape[0], mask.shape[1], self.p.image_dim)
        if mask.any() and self.image_model is not None:
            m = self.image_model
            img[mask] = F.normalize(m.forward_head(m.forward_features(pix[mask]), pre_logits=True), dim=-1)
        return self.mufin(t, has_text, img, mask)


def build(ds: XCDataset, mufin: MufinEncoder, text_encoder: str, image_encoder: str, keep_top_k: int,
          modalities: str) -> tuple[EncoderTower, RawBags]:
    text_model = load_text_encoder(text_encoder)
    image_enc = load_image_encoder(image_encoder) if image_encoder and modalities != "text" else None
    return EncoderTower(mufin, text_model, image_enc), RawBags(ds, text_model, image_enc, keep_top_k, modalities)


