"""`sparsegate-export`: write model.onnx, the block-skipping ONNX graph, into a model artifact.

Examples:
    sparsegate-export --model-repository model-repository --name blocks-st
    sparsegate-export --model-repository model-repository --name paper-st --version 3 --opset 20
    sparsegate-export --model-repository model-repository --name blocks-st --custom-ops

The graph is verified against torch with onnxruntime before anything is written (see
training/onnx_export.py); the version is then rewritten atomically with model.onnx beside the
weights and the export's metadata under "onnx" in config.json. `--dense-baseline FILE` also
writes the same network run densely (every block, no gater) to FILE, outside the artifact: the
baseline the ONNX benchmark times the skipping graph against. `--custom-ops` computes the
grouped (example, block) products with sparsegate's onnxruntime operators
(`models.skip.onnx_ops`), which a server registers from the metadata's "operators".

Exit status: 0 on success, 1 when the model or artifact is missing or broken or the graph fails
verification, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.artifact import ArtifactError, artifact_path, validate_name, validate_version
from models.skip.onnx_export import DEFAULT_OPSET, ExportError, check_opset, export_dense_onnx

from .onnx_export import export_to_artifact, resolve_version


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sparsegate-export", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-repository", type=Path, required=True,
                   help="the model repository holding <name>/<version>/")
    p.add_argument("--name", required=True, help="model name in the repository")
    p.add_argument("--version", help="version to export (default: the latest)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help="ONNX opset of the graph (default: %(default)s)")
    p.add_argument("--serve-with", choices=["onnxruntime", "torch"],
                   help="record the backend a server left on --backend auto serves this "
                        "version with (default: the server's own choice)")
    p.add_argument("--custom-ops", action="store_true",
                   help="compute the grouped (example, block) products with sparsegate's "
                        "onnxruntime operators (models.skip.onnx_ops): faster, and the graph "
                        "then runs only in an onnxruntime that has them registered")
    p.add_argument("--dense-baseline", type=Path, metavar="FILE",
                   help="also write the dense baseline graph (no gater, every block) here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        name = validate_name(args.name)
        if args.version is not None:
            validate_version(args.version)
        check_opset(args.opset)
    except (ArtifactError, ExportError) as err:
        print(f"sparsegate-export: {err}", file=sys.stderr)
        return 2
    try:
        if not args.model_repository.is_dir():
            raise ArtifactError(f"{args.model_repository}: model repository does not exist")
        version = resolve_version(args.model_repository, name, args.version)
        folder, meta = export_to_artifact(args.model_repository, name, version, args.opset,
                                          args.serve_with, custom_ops=args.custom_ops)
        if args.dense_baseline is not None:
            from models.gated_artifact import load_gated_network

            model, _ = load_gated_network(artifact_path(args.model_repository, name, version))
            data = export_dense_onnx(model, args.opset).SerializeToString()
            args.dense_baseline.parent.mkdir(parents=True, exist_ok=True)
            args.dense_baseline.write_bytes(data)
    except (ExportError, ArtifactError, OSError) as err:
        print(f"sparsegate-export: {err}", file=sys.stderr)
        return 1
    check = meta["verification"]
    print(f"wrote {folder / meta['file']} (opset {meta['opset']}; onnxruntime "
          f"{meta['onnxruntime_version']} matches torch on {check['examples']} examples, max "
          f"|diff| {check['max_abs_diff']:.2g} <= {check['tolerance']:.2g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
