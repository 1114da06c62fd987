"""`sparsegate-train`: train a gated network and export it as a model artifact.

Examples:
    sparsegate-train --preset paper --estimator st --data fashion-mnist --epochs 10 \\
        --repository model-repo --name paper-st
    sparsegate-train --config my-net.json --data digits --density 0.25 --resume
    torchrun --nproc-per-node 2 -m training.train_cli --preset blocks --data digits ...

A config file is JSON: {"model": {...GatedNetworkConfig...}, "training": {...TrainSettings...}}
(either part optional); command-line options override it.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from models.artifact import ArtifactError, list_versions, validate_name
from models.estimators import ESTIMATORS
from models.gated_artifact import save_gated_network
from models.gated_config import PRESETS, ConfigError, GatedNetworkConfig, preset

from .data import DatasetError, load_data
from .recipes import recipe
from .recorded_examples import examples_file
from .settings import TrainSettings
from .trainer import Trainer, TrainingError, close_distributed, init_distributed_from_env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sparsegate-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("model")
    source = what.add_mutually_exclusive_group()
    source.add_argument("--preset", choices=sorted(PRESETS), help="a built-in architecture")
    source.add_argument("--config", type=Path, help="a JSON config file (model and training)")
    what.add_argument("--estimator", help=f"gradient estimator: {', '.join(ESTIMATORS)}")
    what.add_argument("--estimator-setting", action="append", default=[], metavar="KEY=VALUE",
                      help="an estimator setting, VALUE in JSON (repeatable), e.g. sigma=0.5")
    what.add_argument("--density", type=float, help="target fraction of gates on (0, 1]")
    data = p.add_argument_group("data")
    data.add_argument("--data", default="digits",
                      help="'digits' (embedded), 'fashion-mnist', or an MNIST IDX directory")
    data.add_argument("--limit", type=int, help="use at most this many examples per split")
    data.add_argument("--valid-fraction", type=float, default=1 / 12)
    train = p.add_argument_group("training (overrides the config file)")
    for flag, kind, helptext in [
        ("--epochs", int, "passes over the training set"),
        ("--batch-size", int, "examples per step and process"),
        ("--optimizer", str, "sgd or adam"),
        ("--lr", float, "learning rate"),
        ("--gater-lr", float, "learning rate of the gaters (default: --lr)"),
        ("--momentum", float, "SGD momentum"),
        ("--weight-decay", float, "L2 weight decay"),
        ("--lr-schedule", str, "constant, or cosine (decayed to zero over the whole run)"),
        ("--max-norm", float, "max norm of each unit's incoming weights; 0 disables"),
        ("--sparsity-weight", float, "weight of the KL sparsity penalty"),
        ("--l1-initial", float, "starting weight of the rectifier gaters' adaptive L1 penalty"),
        ("--l1-rate", float, "that weight's relative step per update, up or down"),
        ("--l1-tolerance", float, "distance from the target density within which it holds"),
        ("--gater-bias-init", float, "the gaters' output bias at the start (default: the "
         "logit at which a gate is on with the target density's probability)"),
        ("--seed", int, "random seed"),
        ("--max-seconds", float, "stop after the epoch that passes this wall time"),
        ("--deterministic-epochs", int, "epochs after --epochs training with the served "
         "gates (thresholded forward, straight-through to the gaters, moving thresholds); "
         "with --epochs 0, from the start"),
        ("--density-warmup-epochs", int, "deterministic epochs over which the served density "
         "falls from every block on to the target (fewer than --deterministic-epochs)"),
        ("--threshold-momentum", float, "the deterministic epochs' threshold step toward each "
         "batch's target-density quantile"),
        ("--balance-weight", float, "the deterministic epochs' penalty on each example's "
         "count of blocks on away from the target"),
        ("--usage-balance-weight", float, "the deterministic epochs' penalty on blocks on "
         "for more of the batch's examples than the others (0: off)"),
        ("--finetune-epochs", int, "extra epochs training the main path under the calibrated "
         "deterministic gates, gaters frozen"),
        ("--distill-from", str, "a finished run directory whose network's predictions are "
         "learned from as well as the labels (e.g. the same network with every block on)"),
        ("--distill-weight", float, "share of the loss given to the teacher's predictions"),
        ("--distill-temperature", float, "temperature softening the teacher's and the "
         "network's probabilities"),
    ]:
        train.add_argument(flag, type=kind, help=helptext)
    train.add_argument("--nesterov", action="store_true", default=None)
    train.add_argument("--best-epoch-per-phase", action="store_true", default=None,
                       help="report each phase (training, fine-tuning) at its epoch of lowest "
                       "validation error, scoring the test set once for each")
    train.add_argument("--device", help="cpu, cuda or cuda:N (default: cpu)")
    out = p.add_argument_group("output")
    out.add_argument("--run-dir", type=Path, help="checkpoints and metrics (default: "
                     "runs/train/<name>)")
    out.add_argument("--resume", action="store_true",
                     help="continue the run in --run-dir from its last checkpoint")
    out.add_argument("--repository", type=Path, default=Path("model-repository"),
                     help="model repository the artifact goes to (default: %(default)s)")
    out.add_argument("--name", help="model name in the repository (default: from preset and "
                     "estimator)")
    out.add_argument("--version", help="artifact version (default: the next free one)")
    out.add_argument("--no-export", action="store_true", help="train only, write no artifact")
    out.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p.parse_args(argv)


def _setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--estimator-setting expects KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_configs(args: argparse.Namespace, input_size: int, num_classes: int
                  ) -> tuple[GatedNetworkConfig, TrainSettings]:
    """The model and training settings from preset/config file plus overrides; validated."""
    file: dict[str, Any] = {}
    if args.config is not None:
        try:
            file = json.loads(args.config.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read config file {args.config}: {err}") from None
        if not isinstance(file, dict) or set(file) - {"model", "training"}:
            raise ConfigError(f"{args.config}: expected an object with 'model' and/or "
                              "'training'")
    overrides: dict[str, Any] = {}
    if args.estimator is not None:
        overrides["estimator"] = args.estimator
    if args.estimator_setting:
        overrides["estimator_settings"] = dict(map(_setting, args.estimator_setting))
    if args.density is not None:
        overrides["target_density"] = args.density
    if "model" in file:
        model = GatedNetworkConfig.from_dict(file["model"])
        model = model.replace(**overrides) if overrides else model
    else:
        model = preset(args.preset or "paper", input_size=input_size, num_classes=num_classes,
                       **overrides)
    if model.input_size != input_size or model.num_classes != num_classes:
        raise ConfigError(f"input_size/num_classes ({model.input_size}, {model.num_classes}) do "
                          f"not match the data ({input_size}, {num_classes})")
    # The preset's recipe, then the config file's training part, then the options.
    training = {**(recipe(args.preset) if args.config is None else {}),
                **file.get("training", {})}
    # Every setting that has an option: a new setting's flag cannot be parsed and then dropped.
    for key in TrainSettings.__dataclass_fields__:
        value = getattr(args, key, None)
        if value is not None:
            training[key] = value
    if training.get("max_norm") == 0:
        training["max_norm"] = None
    return model, TrainSettings.from_dict(training)


def default_name(args: argparse.Namespace, model: GatedNetworkConfig) -> str:
    base = args.preset or (args.config.stem if args.config else "paper")
    gated = bool(model.gated_layers)
    return f"{base}-{model.estimator}" if gated else base


def next_version(repository: Path, name: str) -> str:
    versions = list_versions(repository, name) if (repository / name).exists() else []
    return str(int(versions[-1]) + 1 if versions else 1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["sparsegate-train", *(sys.argv[1:] if argv is None else argv)])
    try:
        data = load_data(args.data, valid_fraction=args.valid_fraction, seed=args.seed or 0,
                         limit=args.limit)
        model_config, settings = build_configs(args, data.input_size, data.num_classes)
        try:
            name = validate_name(args.name or default_name(args, model_config))
        except ArtifactError as err:
            raise ConfigError(f"--name: {err}") from None
        if settings.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("device: CUDA was asked for but is not available")
        rank, world, device = init_distributed_from_env(settings.device)
        if device != settings.device:
            settings = TrainSettings.from_dict({**settings.to_dict(), "device": device})
        run_dir = args.run_dir or Path("runs/train") / name
        log = print if rank == 0 else (lambda *a, **k: None)
        log(f"training {name}: {model_config.estimator} at density "
            f"{model_config.target_density} on {data.name} ({len(data.train)} train, "
            f"{len(data.valid)} valid, {len(data.test)} test), {world} process(es), "
            f"{settings.device}")
        started = time.time()
        trainer = Trainer(model_config, settings, data, run_dir,
                          progress=not args.no_progress, log=log)
        result = trainer.fit(resume=args.resume)
        final = result.final
        log(f"test error {final['test_error']:.4f} at density "
            f"{', '.join(f'{d:.3f}' for d in final['test_density']) or '1 (dense)'}; "
            f"{final['seconds_per_epoch']:.1f} s per epoch")
        if rank == 0:
            (run_dir / "final.json").write_text(json.dumps(final, indent=1))
        if rank == 0 and not args.no_export:
            version = args.version or next_version(args.repository, name)
            metadata = {
                "training": {"settings": settings.to_dict(), "command": command,
                             "processes": world, "started": started,
                             "seconds": time.time() - started, "torch": torch.__version__,
                             "python": platform.python_version()},
                "data": data.describe(),
                "metrics": final,
            }
            folder = save_gated_network(result.model, args.repository, name, version, metadata,
                                        extra_files=examples_file(data.test))
            log(f"wrote artifact {folder}")
    except (ConfigError, DatasetError, ArtifactError, TrainingError) as err:
        close_distributed(wait=False)
        print(f"sparsegate-train: {err}", file=sys.stderr)
        return 2 if isinstance(err, (ConfigError, DatasetError)) else 1
    except BaseException:
        close_distributed(wait=False)
        raise
    close_distributed(wait=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
