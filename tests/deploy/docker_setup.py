"""What the image tests share: whether a Docker engine answers, and the build settings for this
machine (Docker Hub's Python image and PyPI where they are reachable; else a debootstrapped
base image and a host wheelhouse, made by deploy/make-base-image.sh)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def engine_answers() -> bool:
    if not shutil.which("docker") or not (shutil.which("docker-compose")
                                          or shutil.which("debootstrap")):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def offline_build_settings() -> dict[str, str]:
    """The SPARSEGATE_* build variables docker-compose.yml reads; empty where Docker Hub
    answers. Makes the base image and the wheelhouse where it does not."""
    if subprocess.run(["docker", "pull", "--quiet", "python:3.11-slim-bookworm"],
                      capture_output=True, timeout=120).returncode == 0:
        return {}
    base = subprocess.run(["bash", "deploy/make-base-image.sh"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert base.returncode == 0, base.stdout[-3000:] + base.stderr[-3000:]
    return {"SPARSEGATE_BASE_IMAGE": "sparsegate-base:bookworm",
            "SPARSEGATE_PIP_ARGS": "--no-index --find-links /wheels",
            "SPARSEGATE_TORCH_SPEC": "torch==2.13.0"}
