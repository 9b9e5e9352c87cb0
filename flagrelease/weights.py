"""Weights step: a host directory holding the model, mounted into the container at run time.

Sources: `generate` (the tiny offline model), `local` (a directory on the host)
and `modelscope` (a hub id, downloaded with `snapshot_download` into the cache).
"""

from __future__ import annotations

from pathlib import Path

from flagrelease.errors import ConfigError, ServiceError
from flagrelease.schema import Cell


def ensure_weights(cell: Cell, target: Path) -> Path:
    """Return the host directory with the cell's weights, producing them in `target` when needed."""
    weights = cell.model.weights
    if weights.source == "generate":
        from flagrelease.weights_tiny import make_tiny_llama

        if not any(target.glob("*.gguf")):
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
    return download_from_modelscope(cell, target)


def download_from_modelscope(cell: Cell, cache_dir: Path) -> Path:
    weights = cell.model.weights
    try:
        from modelscope import snapshot_download

        return Path(
            snapshot_download(weights.modelscope_id, revision=weights.revision, cache_dir=str(cache_dir))
        )
    except Exception as err:  # modelscope raises bare requests/HTTP errors
        raise ServiceError(
            f"cannot download {weights.modelscope_id} from ModelScope: {type(err).__name__}: {err}",
            where=f"models.{cell.model_id}.weights",
            fix="make modelscope.cn reachable, or download the weights elsewhere and set "
            "weights.source: local with weights.path",
        ) from None
