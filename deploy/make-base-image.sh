#!/usr/bin/env bash
# For machines that reach no image registry: make a Debian bookworm base image from Debian's
# own packages (debootstrap, ~30 s) and import it as sparsegate-base:bookworm, then a
# wheelhouse of every Python package the images install (deploy/wheelhouse, ~340 MB), so the
# image builds need neither Docker Hub nor TLS to PyPI from inside a container. Use them with
#   export SPARSEGATE_BASE_IMAGE=sparsegate-base:bookworm \
#          SPARSEGATE_PIP_ARGS="--no-index --find-links /wheels" \
#          SPARSEGATE_TORCH_SPEC="torch==2.13.0"
# Needs root, debootstrap and a running Docker engine. Arguments: a mirror (default
# http://deb.debian.org/debian).
set -euo pipefail
cd "$(dirname "$0")/.."
mirror="${1:-http://deb.debian.org/debian}"
image=sparsegate-base:bookworm
if ! docker image inspect "$image" >/dev/null 2>&1; then
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' EXIT
    echo "[base] debootstrap bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
    tar -C "$rootfs" -c . | docker import - "$image" >/dev/null
fi
echo "[base] $image ready"
python="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
echo "[base] wheelhouse into deploy/wheelhouse with $python"
"$python" -m pip download --quiet -d deploy/wheelhouse "torch==${SPARSEGATE_TORCH_VERSION:-2.13.0}" \
    ".[train,serve,loadtest]" scikit-learn "setuptools>=68" wheel
echo "[base] done: $(du -sh deploy/wheelhouse | cut -f1) of wheels"
