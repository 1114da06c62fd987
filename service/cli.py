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
from .config import Settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparsegate-serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                argument_default=argparse.SUPPRESS)
    fields = Settings.model_fields
    p.add_argument("--model-repository", help=fields["model_repository"].description)
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help=fields["device"].description)
    p.add_argument("--models", nargs="+", help=fields["models"].description)
    p.add_argument("--batching", action=argparse.BooleanOptionalAction,
                   help="dynamic batching (default on)")
    p.add_argument("--max-batch-size", type=int, help="examples per forward (default 64)")
    p.add_argument("--max-batch-delay-ms", type=float,
                   help="how long a request that finds the model idle waits for others (default 0: "
                        "batches form from what queues during a forward)")
    p.add_argument("--max-queue-examples", type=int,
                   help="examples waiting per model before 503 (default 4096)")
    p.add_argument("--max-body-bytes", type=int, help="request body limit (default 8 MiB)")
    p.add_argument("--max-instances", type=int, help="examples per request (default 1024)")
    p.add_argument("--api-key", help="admin endpoints need it (better: SPARSEGATE_API_KEY)")
    p.add_argument("--cors-origins", nargs="+", help=fields["cors_origins"].description)
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
            where = ".".join(str(p) for p in item["loc"])
            print(f"sparsegate-serve: {where}: {item['msg']}", file=sys.stderr)
        return 2
    if not settings.model_repository.is_dir():
        print(f"sparsegate-serve: model repository {settings.model_repository} is not a "
              "folder (train one with scripts/main, or pass --model-repository)",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level,
                timeout_graceful_shutdown=settings.graceful_shutdown_s or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
