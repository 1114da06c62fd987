"""`sparsegate-serve`: serve a model repository over HTTP with uvicorn.

    sparsegate-serve --model-repository model-repository --port 8000

Every flag can also come from the environment as SPARSEGATE_<FLAG> (e.g.
SPARSEGATE_MAX_BATCH_SIZE=32); a flag given on the command line wins. SIGTERM (or Ctrl-C) stops
accepting connections, lets requests in flight finish (up to --graceful-shutdown-s), drains the
batch queues, then exits.
"""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn
from pydantic import ValidationError

from .app import create_app
from .backends import BACKENDS
from .config import Settings
from .http_protocol import ConnectionLimits, bounded_protocol, reserve_file_descriptors


def _readable(value: float) -> str:
    """A default as a person reads it: byte counts in KiB or MiB when they divide evenly."""
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if isinstance(value, int) and value >= size and value % size == 0:
            return f"{value // size} {unit}"
    return f"{value:g}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparsegate-serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                argument_default=argparse.SUPPRESS)
    fields = Settings.model_fields
    p.add_argument("--model-repository", help=fields["model_repository"].description)
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help=fields["device"].description)
    p.add_argument("--backend", choices=BACKENDS,
                   help=fields["backend"].description)
    p.add_argument("--models", nargs="+", help=fields["models"].description)
    p.add_argument("--batching", action=argparse.BooleanOptionalAction,
                   help="dynamic batching (default on)")
    p.add_argument("--max-batch-size", type=int, help="examples per forward (default 64)")
    p.add_argument("--max-batch-delay-ms", type=float,
                   help="how long a request that finds the model idle waits for others (default 0: "
                        "batches form from what queues during a forward)")
    p.add_argument("--inline-forward-examples", type=int,
                   help=fields["inline_forward_examples"].description + " (default 1)")
    p.add_argument("--alone-forward-examples", type=int,
                   help=fields["alone_forward_examples"].description + " (default 64)")
    p.add_argument("--max-forward-examples", type=int,
                   help=fields["max_forward_examples"].description + " (default 256)")
    p.add_argument("--max-queue-examples", type=int,
                   help="examples waiting per model before 503 (default 4096)")
    p.add_argument("--max-body-bytes", type=int, help="request body limit (default 8 MiB)")
    p.add_argument("--max-instances", type=int, help="examples per request (default 1024)")
    # The connection limits' help shows the default from Settings, so the two cannot disagree.
    for name in ("max_connections", "max_header_bytes", "header_timeout_s", "body_timeout_s",
                 "keep_alive_timeout_s", "max_receiving_body_bytes"):
        field = fields[name]
        p.add_argument("--" + name.replace("_", "-"), type=field.annotation,
                       help=f"{field.description} (default {_readable(field.default)})")
    p.add_argument("--model-control", choices=["none", "explicit"],
                   help="explicit: enable load, unload and the repository index, with the API "
                        "key (default none: they answer 403)")
    p.add_argument("--api-key", help="model control needs it (better: SPARSEGATE_API_KEY, "
                                     "which `ps` does not show)")
    p.add_argument("--allow-open-admin", dest="admin_open", action="store_true",
                   help=fields["admin_open"].description)
    p.add_argument("--cors-origins", nargs="+", help=fields["cors_origins"].description)
    p.add_argument("--allowed-hosts", nargs="+", help=fields["allowed_hosts"].description)
    p.add_argument("--docs", action=argparse.BooleanOptionalAction,
                   help=fields["docs"].description + " (default on)")
    p.add_argument("--ui", action=argparse.BooleanOptionalAction,
                   help=fields["ui"].description + " (default on)")
    p.add_argument("--threads", type=int, help=fields["threads"].description)
    p.add_argument("--graceful-shutdown-s", type=float,
                   help="how long SIGTERM waits for requests in flight (default 30)")
    p.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    return p


def main(argv: list[str] | None = None) -> int:
    given = vars(_parser().parse_args(argv))
    try:
        settings = Settings(**given)
    except ValidationError as error:
        for item in error.errors(include_url=False):
            where = ".".join(str(p) for p in item["loc"]) or "settings"
            print(f"sparsegate-serve: {where}: {item['msg']}", file=sys.stderr)
        return 2
    if not settings.model_repository.is_dir():
        print(f"sparsegate-serve: model repository {settings.model_repository} is not a "
              "folder (train one with scripts/main, or pass --model-repository)",
              file=sys.stderr)
        return 2
    problem = reserve_file_descriptors(settings.max_connections)
    if problem:
        print(f"sparsegate-serve: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level,
                timeout_graceful_shutdown=settings.graceful_shutdown_s or None,
                # uvicorn's own protocol lacks most connection limits (see http_protocol).
                http=bounded_protocol(ConnectionLimits.from_settings(settings)),
                timeout_keep_alive=settings.keep_alive_timeout_s)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
