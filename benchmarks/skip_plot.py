"""The skip benchmark's picture: speed-up over dense against density, one panel per backend
and case, one line per batch size, on log axes (1x, the break-even, drawn across)."""

from __future__ import annotations

from pathlib import Path


def plot_speedups(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    panels = sorted({(r["device"], r["backend"], r["case"]) for r in rows})
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 3.6),
                             squeeze=False)
    for ax, (device, backend, case) in zip(axes[0], panels, strict=False):
        mine = [r for r in rows if (r["device"], r["backend"], r["case"]) == (device, backend,
                                                                               case)]
        for batch in sorted({r["batch"] for r in mine}):
            line = sorted((r["density"], r["speedup"]) for r in mine if r["batch"] == batch)
            ax.plot([d for d, _ in line], [s for _, s in line], marker="o",
                    label=f"batch {batch}")
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        speeds = [r["speedup"] for r in mine]
        ax.set_yticks([t for t in (0.25, 0.5, 1, 2, 3, 5, 10, 20, 50)
                       if min(speeds) / 1.5 <= t <= max(speeds) * 1.5])
        ax.yaxis.set_major_formatter(FormatStrFormatter("%gx"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.set_xlabel("density (fraction of blocks on)")
        ax.set_ylabel("speed-up over dense")
        ax.set_title(f"{device} {backend}\n{case}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
