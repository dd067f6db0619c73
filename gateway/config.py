"""The gateway's own settings: security and limits. Read from ``SIMTRAIN_*`` variables like the rest."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    """What only the gateway reads; the shared :class:`~simtrain.settings.Settings` has the rest."""

    model_config = SettingsConfigDict(env_prefix="SIMTRAIN_", extra="ignore")

    # When set, every request but /healthz (and the web page's static shell) needs this bearer token.
    api_token: SecretStr | None = None
    # JSON bodies larger than this are refused with 413 before they are read whole.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Uploads stream to the data service in chunks; this bounds the total, not the gateway's memory.
    # The data service reads the same variable, with the same default, for its own check.
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    upload_chunk_bytes: int = Field(default=1024 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Comma-separated origins allowed to call the API from a browser; empty (the default) turns CORS off.
    cors_origins: str = ""
    # How long an Idempotency-Key keeps answering with the job it made.
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=1)
    # Deadline for data-service calls other than uploads (preparing a large source can take a while).
    data_service_timeout_s: float = Field(default=120.0, gt=0)
    # How long `POST /v1/jobs/{id}/generate` waits for a generate server's answer before a 503.
    generate_timeout_s: float = Field(default=30.0, gt=0, le=600)

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]
