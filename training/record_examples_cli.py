"""`python -m training.record_examples_cli`: record labelled test examples into an artifact that
has none (one written before `sparsegate-train` recorded them), so the gate-map page and
`GET /v1/models/{name}/examples` can offer them.

    python -m training.record_examples_cli --model-repository model-repository \\
        --name blocks-digits-st [--version N] [--data digits] [--if-missing]

The examples come from the test split of `--data` (default: the data set the artifact says it
was trained on, where it can be loaded here), chosen as the trainer chooses them
(`training.recorded_examples`); the version is rewritten atomically with everything else it
holds kept. `--if-missing` leaves a version that already records examples as it is
(scripts/main runs it where no version of its model records them).

Exit status: 0 on success, 1 when the model, the artifact or the data is missing or does not
fit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.artifact import ArtifactError, add_extra_files, artifact_path, read_config
from models.labelled_examples import EXAMPLES_FILE

from .data import DatasetError, load_data
from .onnx_export import resolve_version
from .recorded_examples import examples_file


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.record_examples_cli",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-repository", type=Path, default=Path("model-repository"))
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", help="default: the newest")
    parser.add_argument("--data", help="the data set whose test split the examples come from "
                                       "(default: the one config.json names)")
    parser.add_argument("--if-missing", action="store_true",
                        help="do nothing where the version records examples already")
    return parser.parse_args(argv)


def data_spec(config: dict, given: str | None) -> str:
    """What `load_data` reads for the artifact's data set: `given`, else the embedded digits
    or the folder config.json says it was trained on."""
    data = config.get("data") or {}
    spec = given or ("digits" if data.get("name") == "digits" else data.get("source"))
    if not isinstance(spec, str):
        raise ArtifactError("config.json names no data set that can be loaded here: pass --data")
    return spec


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        version = resolve_version(args.model_repository, args.name, args.version)
        folder = artifact_path(args.model_repository, args.name, version)
        config = read_config(folder)
        if args.if_missing and EXAMPLES_FILE in (config.get("extra_files") or {}):
            return 0
        spec = data_spec(config, args.data)
        try:
            data = load_data(spec)
        except DatasetError as error:
            raise ArtifactError(f"--data {spec}: {error}") from None
        architecture = config.get("architecture") or {}
        if (architecture.get("input_size"), architecture.get("num_classes")) != (
                data.input_size, data.num_classes):
            raise ArtifactError(f"{spec} has {data.input_size} inputs and {data.num_classes} "
                                f"classes; {args.name} version {version} takes "
                                f"{architecture.get('input_size')} and "
                                f"{architecture.get('num_classes')}")
        add_extra_files(args.model_repository, args.name, version, examples_file(data.test))
    except ArtifactError as error:
        print(f"record examples: {error}", file=sys.stderr)
        return 1
    print(f"recorded labelled examples of {spec}'s test split into {args.name} version "
          f"{version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
