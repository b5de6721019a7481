"""The kit's input side: Amazon metadata readers, curation, the Extreme Classification Repository
layout, images (img.bin, folders, URLs), the synthetic multimodal catalogue and the dataset manifest."""
from .xc import XCDataset, read_xc, write_xc  # noqa: F401
