"""A saved model's file names and its content id (the standard library only: the process that
resolves a model for ``botfilter score``'s workers never imports the scoring stack)."""

from __future__ import annotations

import hashlib

METADATA_FILE = "botfilter_model.json"
MODEL_FILE = "model.lgb"  # the LightGBM text model that mlflow.lightgbm logs


def content_id(model_text: bytes, metadata: bytes) -> str:
    """The id of a model's content (``sha256:<hex>``): trees and metadata, whatever its label."""
    h = hashlib.sha256()
    for part in (model_text, metadata):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return f"sha256:{h.hexdigest()[:32]}"
