"""Names on disk that several floors share, on the ground floor: the dataset's splits (the data stage writes
them, the scan reads them) and a model bundle's folders (deploy writes them, the sequence pipeline opens them)."""

from __future__ import annotations

SPLITS = ("train", "val", "test")
LLM_DIR, BACKBONE_DIR, STAGE2_DIR = "llm", "backbone", "stage2"  # a bundle's Stage-I model, backbone, heads
