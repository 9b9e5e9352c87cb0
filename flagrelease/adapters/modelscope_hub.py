"""The one place that talks to ModelScope: weights downloads and model-card uploads.

ModelScope may be unreachable (as on CI machines here): both calls keep their real
code path and turn any failure into one error that says what to do instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from flagrelease.errors import ConfigError, ServiceError

TOKEN_ENV = "MODELSCOPE_API_TOKEN"


def download(model_id: str, revision: str | None, cache_dir: Path, where: str) -> Path:
    try:
        from modelscope import snapshot_download

        return Path(snapshot_download(model_id, revision=revision, cache_dir=str(cache_dir)))
    except Exception as err:  # modelscope raises bare requests/HTTP errors
        raise ServiceError(
            f"cannot download {model_id} from ModelScope: {type(err).__name__}: {err}",
            where=where,
            fix="make modelscope.cn reachable, or download the weights elsewhere and set "
            "weights.source: local with weights.path (or s3 with weights.uri)",
        ) from None


def publish_card(card: Path, repo_id: str) -> None:
    """Upload the card as README.md of a ModelScope model repo (token from MODELSCOPE_API_TOKEN)."""
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise ConfigError(
            f"publishing to ModelScope needs {TOKEN_ENV}",
            where=TOKEN_ENV,
            fix="create an access token at modelscope.cn and export it",
        )
    try:
        from modelscope.hub.api import HubApi

        api = HubApi()
        api.login(token)
        api.upload_file(
            repo_id=repo_id,
            path_or_fileobj=str(card),
            path_in_repo="README.md",
            commit_message="FlagRelease model card",
        )
    except Exception as err:  # noqa: BLE001 - same reason as above; the token never appears in err
        raise ServiceError(
            f"cannot publish the card to ModelScope repo {repo_id}: {type(err).__name__}: {err}",
            where="--publish-modelscope",
            fix=f"check that modelscope.cn is reachable and the token may write to the repo; the card stays at {card}",
        ) from None
