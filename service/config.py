"""The server's settings: command-line flags of `sparsegate-serve` or SPARSEGATE_* environment
variables (pydantic-settings), validated once at start-up.

    SPARSEGATE_MODEL_REPOSITORY=model-repository SPARSEGATE_MAX_BATCH_SIZE=32 sparsegate-serve
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPARSEGATE_", extra="forbid",
                                      protected_namespaces=())

    model_repository: Path = Field(Path("model-repository"),
                                   description="folder of <name>/<version>/ model artifacts")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    device: Literal["auto", "cpu", "cuda"] = Field(
        "cpu", description="cpu (default); cuda runs the Triton path; auto picks cuda if present")
    models: list[str] = Field(default_factory=list,
                              description="model names to load at start-up (default: all)")

    # Dynamic batching: the requests for one model version that queued while its previous
    # forward ran go into the next forward together, up to max_batch_size examples. A request
    # that finds the model idle runs at once unless max_batch_delay_ms > 0, which makes it
    # wait that long for company: bigger batches under light load, for that much latency.
    batching: bool = True
    max_batch_size: int = Field(64, ge=1, le=65536)
    max_batch_delay_ms: float = Field(0.0, ge=0.0, le=10_000.0)
    # Examples waiting per model version beyond which requests are refused with 503.
    max_queue_examples: int = Field(4096, ge=1)
    retry_after_s: int = Field(1, ge=1, description="Retry-After on a 503")

    # Request limits.
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_instances: int = Field(1024, ge=1, description="examples per request")

    api_key: SecretStr | None = Field(
        None, description="admin endpoints need it (X-API-Key or Bearer) when set")
    cors_origins: list[str] = Field(default_factory=list,
                                    description="CORS is off unless origins are listed")
    warmup_batches: tuple[int, ...] = (1, 8)
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's)")
    graceful_shutdown_s: float = Field(30.0, ge=0.0)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
