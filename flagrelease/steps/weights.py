"""Weights step: a host directory holding the model, mounted into the container at run time.

Sources: `generate` (the tiny offline model), `local` (a directory on the host),
`s3` (every object under an s3:// URI) and `modelscope` (a hub id, downloaded with
`snapshot_download` into the cache, revision pinned when given).
"""

from __future__ import annotations

from pathlib import Path

from flagrelease.adapters import modelscope_hub
from flagrelease.errors import ConfigError
from flagrelease.schema import Cell


def ensure_weights(cell: Cell, target: Path, s3_endpoint_url: str | None = None) -> Path:
    """Return the host directory with the cell's weights, producing them in `target` when needed."""
    weights = cell.model.weights
    if weights.source == "generate":
        if not any(target.glob("*.gguf")):
            from flagrelease.weights_tiny import make_tiny_llama  # gguf and tokenizers: only to make them

            make_tiny_llama(target)
        return target
    if weights.source == "local":
        path = Path(weights.path or "")
        if not path.is_dir() or not any(path.iterdir()):
            raise ConfigError(
                f"weights directory {path} for {cell.model_id} is missing or empty",
                where=f"models.{cell.model_id}.weights.path",
                fix="download the weights there or point weights.path at them",
            )
        return path
    if weights.source == "s3":
        return download_from_s3(cell, target, s3_endpoint_url)
    assert weights.modelscope_id is not None  # the schema requires it for this source
    return modelscope_hub.download(
        weights.modelscope_id, weights.revision, target, where=f"models.{cell.model_id}.weights"
    )


def download_from_s3(cell: Cell, target: Path, endpoint_url: str | None) -> Path:
    """Every object under the weights URI, into `target`."""
    from flagrelease.adapters.artifact_store import download_prefix

    assert cell.model.weights.uri is not None  # the schema requires it for this source
    return download_prefix(
        cell.model.weights.uri, target, where=f"models.{cell.model_id}.weights.uri", endpoint_url=endpoint_url
    )
