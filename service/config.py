"""The server's settings: command-line flags of `sparsegate-serve` or SPARSEGATE_* environment
variables (pydantic-settings), validated once at start-up.

    SPARSEGATE_MODEL_REPOSITORY=model-repository SPARSEGATE_MAX_BATCH_SIZE=32 sparsegate-serve
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .backends import BACKENDS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPARSEGATE_", extra="forbid",
                                      protected_namespaces=())

    model_repository: Path = Field(Path("model-repository"),
                                   description="folder of <name>/<version>/ model artifacts")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    device: Literal["auto", "cpu", "cuda"] = Field(
        "cpu", description="cpu (default); cuda runs the Triton path; auto picks cuda if present")
    backend: Literal[BACKENDS] = Field(
        "auto", description="the engine that runs the models: torch (the CPU skipping engine: "
        "numpy and C kernels), triton (the GPU one, needs cuda), onnxruntime (the artifact's "
        "model.onnx, from sparsegate-export), or auto: triton on cuda, else torch")
    models: list[str] = Field(default_factory=list,
                              description="model names to load at start-up (default: all)")

    # Dynamic batching: the requests for one model version that queued while its previous
    # forward ran go into the next forward together, up to max_batch_size examples. A request
    # that finds the model idle runs at once unless max_batch_delay_ms > 0, which makes it
    # wait that long for company: bigger batches under light load, for that much latency.
    batching: bool = True
    max_batch_size: int = Field(64, ge=1, le=65536)
    max_batch_delay_ms: float = Field(0.0, ge=0.0, le=10_000.0)
    inline_forward_examples: int = Field(
        1, ge=0, le=65536, description="a forward of at most this many examples, with no "
        "other request waiting for the model, runs on the event loop's thread rather than "
        "handed to the forward thread and back, which costs more than a lone example's "
        "forward (0: every forward on the forward thread)")
    alone_forward_examples: int = Field(
        64, ge=0, le=65536, description="a request alone on the server (no other request "
        "read, queued or answering) with at most this many examples runs its forward on the "
        "event loop's thread, at any model size: with nothing else in progress the loop has "
        "nothing to do meanwhile, and the hand-off to the forward thread and back costs "
        "more than a tenth of a millisecond (0: only as --inline-forward-examples allows)")
    max_forward_examples: int = Field(
        256, ge=1, le=65536, description="the most examples one forward runs: a larger "
        "request runs as several forwards, with the requests that arrived meanwhile run "
        "between them, so a client's large requests cannot hold the model for everyone else")
    # Examples waiting per model version beyond which requests are refused with 503.
    max_queue_examples: int = Field(4096, ge=1)
    retry_after_s: int = Field(1, ge=1, description="Retry-After on a 503")

    # Request limits.
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_instances: int = Field(1024, ge=1, description="examples per request")

    # Connection limits (service/http_protocol.py): every connection, header and wait bounded,
    # so idle, half-open or stalled clients cannot hold memory or file descriptors for long.
    max_connections: int = Field(
        512, ge=1, le=1_000_000, description="open connections; past it a new one closes "
                                             "the one idle longest, or where every one is "
                                             "being served, is answered 503 with "
                                             "Retry-After and closed")
    max_header_bytes: int = Field(32 * 1024, ge=1024, le=16 * 1024 * 1024,
                                  description="request line and headers (431 past it)")
    header_timeout_s: float = Field(
        10.0, gt=0.0, le=3600.0, description="for a request's headers, from the connection "
                                             "or the request's first byte (408)")
    body_timeout_s: float = Field(
        60.0, gt=0.0, le=3600.0, description="for a request's body, from the end of its "
                                             "headers; a total, not an idle time (408)")
    keep_alive_timeout_s: float = Field(
        5.0, gt=0.0, le=3600.0, description="an idle kept-alive connection is closed after it")
    max_receiving_body_bytes: int = Field(
        256 * 1024 * 1024, ge=1024, description="bytes of inference request bodies being "
                                                "received at once, all connections together "
                                                "(503 past it; service/body_memory.py)")

    # Model control, as Triton's --model-control-mode: "none" serves the models loaded at
    # start-up and answers 403 to load, unload and the repository index; "explicit" serves
    # those routes to callers with the API key (service/admin_access.py).
    model_control: Literal["none", "explicit"] = Field(
        "none", description="explicit: enable load, unload and the repository index (keyed)")
    api_key: SecretStr | None = Field(
        None, description="what model control needs (X-API-Key or Bearer); never empty")
    admin_open: bool = Field(
        False, description="UNSAFE: explicit model control without an API key, so anyone who "
                           "can reach the port may load and unload models")
    cors_origins: list[str] = Field(default_factory=list,
                                    description="CORS is off unless origins are listed; "
                                                "browser requests from other origins are refused")
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host names served besides IP addresses and "
                                          "localhost ('*.example.com': its subdomains; '*': any, "
                                          "which gives up the DNS-rebinding defence)")
    docs: bool = Field(True, description="Swagger UI at /docs and ReDoc at /redoc, from files "
                                         "the server ships (no CDN)")
    ui: bool = Field(True, description="the gate-map page at /ui/ (draw an input, see the "
                                       "blocks it ran), from files the server ships")
    warmup_batches: tuple[int, ...] = (1, 8)
    threads: int | None = Field(None, ge=1, description="CPU threads of a forward, torch's or "
                                "onnxruntime's (default: theirs)")
    graceful_shutdown_s: float = Field(30.0, ge=0.0)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    @field_validator("api_key")
    @classmethod
    def _usable_key(cls, key: SecretStr | None) -> SecretStr | None:
        # `SPARSEGATE_API_KEY=` (docker-compose passes that for an unset variable) must not
        # become a key that an empty header matches.
        value = None if key is None else key.get_secret_value()
        if value is not None and not value.strip():
            raise ValueError("the API key is empty: unset SPARSEGATE_API_KEY (and --api-key) "
                             "to run without one, or set a real one, e.g. the output of "
                             "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        if value is not None and (value != value.strip() or not value.isprintable()):
            raise ValueError("the API key starts or ends with whitespace or holds a character "
                             "that is not printable: no HTTP header can carry it as it is")
        return key

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            name = host[2:] if host.startswith("*.") else host
            if host != "*" and (not name or any(c in name for c in ":/[] *")):
                raise ValueError(f"{host!r} is not a host name: list names without scheme or "
                                 "port ('api', '*.example.com', or '*' for any)")
        return hosts

    @model_validator(mode="after")
    def _keyed_model_control(self) -> Settings:
        if self.admin_open and self.api_key is not None:
            raise ValueError("admin_open (--allow-open-admin) and an API key contradict each "
                             "other: drop one")
        if self.model_control == "explicit" and self.api_key is None and not self.admin_open:
            raise ValueError("model_control=explicit needs an API key (SPARSEGATE_API_KEY) for "
                             "load, unload and the repository index, or admin_open=true "
                             "(--allow-open-admin, unsafe: anyone who reaches the port may "
                             "unload every model)")
        return self

    @model_validator(mode="after")
    def _room_for_one_body(self) -> Settings:
        if self.max_receiving_body_bytes < self.max_body_bytes:
            raise ValueError(f"max_receiving_body_bytes ({self.max_receiving_body_bytes}) is "
                             f"below max_body_bytes ({self.max_body_bytes}): no body of the "
                             "largest size allowed could ever be received")
        return self

    @model_validator(mode="after")
    def _batches_fit_a_forward(self) -> Settings:
        if self.batching and self.max_batch_size > self.max_forward_examples:
            raise ValueError(f"max_batch_size ({self.max_batch_size}) is above "
                             f"max_forward_examples ({self.max_forward_examples}): no forward "
                             "runs more than max_forward_examples examples, so no batch could "
                             "reach that size; raise max_forward_examples too")
        return self
