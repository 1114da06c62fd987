"""Fuzz a running sparsegate-serve from its own OpenAPI schema with schemathesis.

    python -m loadtest.fuzz --model-repository model-repository --model blocks-digits-st \\
        --max-examples 40 --out docs/reliability
    python -m loadtest.fuzz --url http://127.0.0.1:8000 --max-examples 40

Starts `sparsegate-serve` on the repository (model control on, with an admin API key) or
targets --url (started with `--model-control explicit`, or the admin pass only meets the 403 of
model control being off), then runs `schemathesis run <url>/openapi.json` twice, with every
check except `positive_data_acceptance` (why: below), a fixed seed, and a HAR recording of
every request:
- "served": every `{name}` in a path is the served model (a schemathesis config file), so
  metadata and inference are fuzzed past the 404 of an unknown model; no API key, so the
  repository endpoints answer 401 and the model stays loaded.
- "admin": any `{name}`, with the API key, so the repository endpoints (load, unload, index)
  are fuzzed past authentication; generated names never match a served model.
Counts the requests and their status codes from the recordings, reads the server's log for
tracebacks, and writes fuzz.json (and the HARs) into --out. Exit 0 when schemathesis found
nothing, no response was a 5xx and the server logged no unexpected error.

`positive_data_acceptance` asserts that every request the schema allows is accepted. The
inference bodies' validity depends on what JSON Schema cannot state: the length of `data`
is the product of `shape`, `shape[1]` is the model's input size (which differs between
models behind one schema), values are finite float32. Such requests are refused with a 400
naming the problem, as they must be, so that check would only report the schema's limits.
Everything else is checked: no 5xx, responses (status, headers, body) conform to the
schema, negative data is refused, and so on.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from . import soak
from .sweep import start_server

EXCLUDED_CHECKS = ("positive_data_acceptance",)


def schemathesis_command(url: str, max_examples: int, seed: int, har: Path,
                         api_key: str | None, config: Path | None) -> list[str]:
    tool = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    command = [tool, *(["--config-file", str(config)] if config else []), "run",
               f"{url}/openapi.json", "--checks", "all",
               "--exclude-checks", ",".join(EXCLUDED_CHECKS),
               "--max-examples", str(max_examples), "--seed", str(seed),
               "--report", "har", "--report-har-path", str(har), "--no-color",
               "--request-timeout", "30"]
    if api_key:
        command += ["--header", f"X-API-Key: {api_key}"]
    return command


def summarise_har(har: Path) -> dict:
    """Requests, by status and by operation, from schemathesis' HAR recording."""
    entries = json.loads(har.read_text())["log"]["entries"]
    statuses = Counter(entry["response"]["status"] for entry in entries)
    operations = Counter(f"{entry['request']['method']} {_path(entry['request']['url'])}"
                         for entry in entries)
    return {"requests": len(entries),
            "status_counts": {str(k): v for k, v in sorted(statuses.items())},
            "server_errors": sum(v for k, v in statuses.items() if k >= 500),
            "operations": len(operations),
            "requests_per_operation": dict(sorted(operations.items()))}


def _path(url: str) -> str:
    """The request's path with its model name and version folded, so operations group."""
    path = url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
    parts = path.split("/")
    for i, part in enumerate(parts[:-1]):
        if part in ("models", "versions") and i + 1 < len(parts):
            name = parts[i + 1]
            suffix = name[name.index(":"):] if ":" in name else ""
            parts[i + 1] = "{" + ("name" if part == "models" else "version") + "}" + suffix
    return "/" + "/".join(parts)


def run(url: str, model: str, max_examples: int, seed: int, out: Path, api_key: str | None,
        server_log: Callable[[], str] = lambda: "") -> dict:
    """Both passes (module docstring) against the server at `url`; the summary, as written to
    fuzz.json."""
    out.mkdir(parents=True, exist_ok=True)
    config = out / "served.toml"
    config.write_text(f'[parameters]\n"path.name" = {json.dumps(model)}\n')
    passes = {"served": (None, config), "admin": (api_key, None)}
    started = time.monotonic()
    summary: dict = {"url": url, "model": model, "max_examples": max_examples, "seed": seed,
                     "excluded_checks": list(EXCLUDED_CHECKS), "passes": {}}
    for name, (key, config_file) in passes.items():
        har = out / f"fuzz-{name}.har"
        done = subprocess.run(schemathesis_command(url, max_examples, seed, har, key,
                                                   config_file), capture_output=True, text=True)
        (out / f"schemathesis-{name}.log").write_text(done.stdout + done.stderr)
        result = summarise_har(har) if har.exists() else {"requests": 0, "server_errors": None}
        result |= {"schemathesis_exit_code": done.returncode,
                   "schemathesis_summary": _summary_lines(done.stdout)}
        summary["passes"][name] = result
    results = summary["passes"].values()
    summary["requests"] = sum(r["requests"] for r in results)
    summary["server_errors"] = sum(r["server_errors"] or 0 for r in results)
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["server_tracebacks"] = server_log().count("Traceback")
    summary["passed"] = (all(r["schemathesis_exit_code"] == 0 and r["server_errors"] == 0
                             and r["requests"] > 0 for r in results)
                         and summary["server_tracebacks"] == 0)
    (out / "fuzz.json").write_text(json.dumps(summary, indent=1))
    return summary


def _summary_lines(stdout: str) -> list[str]:
    """Schemathesis' closing summary (its last lines), for the report."""
    lines = [line.rstrip() for line in stdout.splitlines() if line.strip()]
    return lines[-12:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--model-repository", type=Path, help="start a server on this")
    where.add_argument("--url", help="fuzz this running server")
    parser.add_argument("--model", action="append", default=[],
                        help="models to serve (repeatable; the first is fuzzed by name; "
                             "default: the repository's first)")
    parser.add_argument("--max-examples", type=int, default=40,
                        help="generated examples per operation and phase (default 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-key", help="the server's admin key (with --url)")
    parser.add_argument("--out", type=Path, default=None, help="default runs/fuzz/<time>")
    args = parser.parse_args(argv)
    out = args.out or Path("runs/fuzz") / time.strftime("%Y%m%d-%H%M%S")
    if args.url:
        model = soak.server_model(args.url.rstrip("/"), args.model[0] if args.model else None)
        summary = run(args.url.rstrip("/"), model, args.max_examples, args.seed, out,
                      args.api_key)
    else:
        api_key = secrets.token_hex(16)
        models = ([soak.repository_model(args.model_repository, m) for m in args.model]
                  or [soak.repository_model(args.model_repository, None)])
        process, url = start_server(args.model_repository, models,
                                    ["--model-control", "explicit"],
                                    env={"SPARSEGATE_API_KEY": api_key})
        try:
            summary = run(url, models[0], args.max_examples, args.seed, out, api_key,
                          server_log=lambda: _stop(process))
        finally:
            if process.poll() is None:
                _stop(process)
    for name, result in summary["passes"].items():
        print(f"{name}: {result['requests']} requests, statuses {result['status_counts']}, "
              f"schemathesis exit {result['schemathesis_exit_code']}")
        print("\n".join(result["schemathesis_summary"]))
    print(f"total {summary['requests']} requests, {summary['server_errors']} 5xx, "
          f"{summary['server_tracebacks']} server tracebacks: "
          f"{'passed' if summary['passed'] else 'FAILED'}; wrote {out / 'fuzz.json'}")
    return 0 if summary["passed"] else 1


def _stop(process: subprocess.Popen) -> str:
    """Stop the server and return what it logged."""
    process.terminate()
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output or ""


if __name__ == "__main__":
    sys.exit(main())
