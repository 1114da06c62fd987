#!/bin/sh
# The compose trainer: train and export the default model into $SPARSEGATE_MODEL_REPOSITORY
# unless a version of it is already there (a restarted stack keeps its trained model).
set -eu
repository="${SPARSEGATE_MODEL_REPOSITORY:-/models}"
name="${SPARSEGATE_DEFAULT_MODEL:-blocks-digits-st}"
if python -c 'import sys; from models.artifact import list_versions
sys.exit(0 if list_versions(sys.argv[1], sys.argv[2]) else 1)' "$repository" "$name"; then
    echo "train-default: $repository already holds $name"
    exit 0
fi
sparsegate-train --preset blocks-digits --data digits \
    --run-dir /tmp/train-run --repository "$repository" --name "$name"
sparsegate-export --model-repository "$repository" --name "$name"
