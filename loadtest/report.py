"""The sweep's outputs: rows as CSV and JSON, a PNG of latency and throughput against density,
and a Markdown report (what `docs/loadtest.md` holds)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

COLUMNS = ("density", "model", "mode", "users", "offered_rate", "requests", "failures",
           "requests_per_s", "p50_ms", "p95_ms", "p99_ms", "server_total_ms_p50",
           "server_total_ms_p95", "server_total_ms_p99", "server_compute_ms_p50",
           "server_mean_batch_size", "server_saved_fraction")


def write_tables(rows: list[dict], out: Path, meta: dict) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "sweep.csv", out / "sweep.json"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps({**meta, "rows": rows}, indent=1))
    return csv_path, json_path


def plot(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (latency, throughput) = plt.subplots(1, 2, figsize=(12, 4.5))
    for (mode, users), group in _groups(rows).items():
        group.sort(key=lambda r: r["density"])
        x = [100 * r["density"] for r in group]
        label = f"{users} users" if mode == "users" else f"{group[0]['offered_rate']:g} req/s"
        line, = latency.plot(x, [r.get("p50_ms") for r in group], "o-", label=f"{label} p50")
        latency.plot(x, [r.get("p99_ms") for r in group], "o--", color=line.get_color(),
                     alpha=0.6, label=f"{label} p99")
        throughput.plot(x, [r.get("requests_per_s") for r in group], "o-",
                        color=line.get_color(), label=label)
    for ax, title in ((latency, "client-side latency (ms)"), (throughput, "requests / s")):
        ax.set_xscale("log")
        ax.set_xticks([5, 10, 25, 50, 100], ["5", "10", "25", "50", "100"])
        ax.set_xlabel("blocks on (%)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    latency.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(rows: list[dict], meta: dict, png_name: str) -> str:
    lines = [f"Machine: {meta.get('machine', '?')}. Server: {meta.get('server', '?')}. "
             f"Each cell: locust headless for {meta.get('seconds', '?'):g} s, "
             f"{meta.get('protocol', 'v1')} requests of one example each "
             f"({meta.get('inputs', 'real data')}).", "",
             f"![latency and throughput against density]({png_name})", "",
             "| blocks on | load | req/s | failures | p50 ms | p95 ms | p99 ms | server p50 ms "
             "| server p99 ms | forward p50 ms | mean batch | saved |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in sorted(rows, key=lambda r: (r["mode"], r["users"], -r["density"])):
        load = (f"{row['users']} users" if row["mode"] == "users"
                else f"{row['offered_rate']:g} req/s ({row['users']} users)")
        lines.append(
            f"| {100 * row['density']:g} % | {load} | {row.get('requests_per_s', 0):.1f} | "
            f"{row.get('failures', 0)} | {_f(row.get('p50_ms'))} | {_f(row.get('p95_ms'))} | "
            f"{_f(row.get('p99_ms'))} | {_f(row.get('server_total_ms_p50'))} | "
            f"{_f(row.get('server_total_ms_p99'))} | {_f(row.get('server_compute_ms_p50'))} | "
            f"{_f(row.get('server_mean_batch_size'), 1)} | "
            f"{_pct(row.get('server_saved_fraction'))} |")
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- loadtest-sweep:begin -->", "<!-- loadtest-sweep:end -->"


def update_file(path: Path, section: str) -> None:
    """Put `section` between the markers in `path` (keeping the prose around them), or write
    the file with just the markers and the section."""
    block = f"{BEGIN}\n{section}{END}\n"
    text = path.read_text() if path.is_file() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        text = (text + "\n" if text else "") + block
    path.write_text(text)


def _groups(rows: list[dict]) -> dict[tuple[str, int], list[dict]]:
    groups: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["mode"], row["users"]), []).append(row)
    return groups


def _f(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"
