"""The models a server holds: which name and versions are loaded from the model repository,
each with its engine and batcher, and safe load, unload and reload.

A (re)load reads and checks the artifact, builds and warms the engine on a worker thread, and
only then swaps it in: while it runs, and if it fails, the version already loaded keeps serving.
Loads of one model are serialised by a lock per model; requests never wait for a load.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from models.artifact import (
    ArtifactError,
    artifact_path,
    list_versions,
    shown_path,
    validate_name,
    validate_version,
)

from .batching import Batcher
from .config import Settings
from .engine import ModelEngine
from .keyed_locks import KeyedLocks
from .metrics import Metrics

log = logging.getLogger("sparsegate.service")


class ModelNotFound(LookupError):
    """No such model or version is loaded (404)."""


class LoadError(Exception):
    """An artifact was refused; the message says why (the version already loaded, if any, keeps
    serving)."""


class InvalidName(LoadError):
    """A model name or version that no model can have (400), refused before any work."""


def check_reference(name: str, version: str | None) -> None:
    """Refuse a name or version that is not one a model folder can have. A version must be
    written as its folder is ("1", not "0001" or "+1"): the folder "1" would otherwise be read,
    built and warmed up only to be refused because it says it is version 1."""
    try:
        validate_name(name)
        if version is not None and validate_version(version) != version:
            raise ArtifactError(f"model version {version!r} is not written as a version "
                                f"folder is: write {validate_version(version)!r}")
    except ArtifactError as error:
        raise InvalidName(str(error)) from None


def _is_model_name(name: str) -> bool:
    try:
        validate_name(name)
    except ArtifactError:
        return False
    return True


@dataclass
class LoadedVersion:
    engine: ModelEngine
    batcher: Batcher


class ModelRepository:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.root = Path(settings.model_repository)
        self.metrics = metrics
        self._models: dict[str, dict[str, LoadedVersion]] = {}
        self._locks = KeyedLocks()  # one per model name being loaded or unloaded

    # --- queries ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._models)

    def versions(self, name: str) -> list[str]:
        return sorted(self._models.get(name, {}), key=int)

    def get(self, name: str, version: str | None = None) -> LoadedVersion:
        """The version asked for, or the newest loaded one."""
        versions = self._models.get(name)
        if not versions:
            raise ModelNotFound(f"model {name!r} is not loaded (loaded: "
                                f"{', '.join(self.names()) or 'none'})")
        if version is None:
            return versions[max(versions, key=int)]
        if version not in versions:
            raise ModelNotFound(f"version {version!r} of model {name!r} is not loaded "
                                f"(loaded: {', '.join(self.versions(name))})")
        return versions[version]

    def available(self) -> list[dict[str, object]]:
        """Every model and version on disk, and whether it is loaded (the repository index)."""
        out = []
        names = {p.name for p in self.root.iterdir() if p.is_dir()} if self.root.is_dir() else set()
        for name in sorted(names | set(self._models)):
            try:
                on_disk = list_versions(self.root, name)
            except ArtifactError:
                continue  # not a valid model name: not a model folder
            for version in sorted(set(on_disk) | set(self._models.get(name, {})), key=int):
                loaded = version in self._models.get(name, {})
                out.append({"name": name, "version": version,
                            "state": "READY" if loaded else "UNAVAILABLE"})
        return out

    # --- management --------------------------------------------------------------------------

    async def load_all(self) -> None:
        """At start-up: every model named in the settings (default: every model folder), each at
        its newest version. A model that fails to load is logged and left out, and so is a
        model folder without a version that can be read (its config.json is not a regular
        file, say), so that the log says what is not served."""
        names = self.settings.models or self._model_folders()
        for name in dict.fromkeys(names):
            try:
                await self.load(name)
            except (LoadError, ModelNotFound) as error:
                log.error("not serving %s: %s", name, error)
            except Exception:  # one bad model must never stop the others from serving
                log.exception("not serving %s: unexpected error while loading it", name)

    def _model_folders(self) -> list[str]:
        """The folders of the repository that a model may be named after."""
        if not self.root.is_dir():
            return []
        return sorted(entry.name for entry in self.root.iterdir()
                      if entry.is_dir() and not entry.name.startswith(".")
                      and _is_model_name(entry.name))

    async def load(self, name: str, version: str | None = None) -> ModelEngine:
        """Load (or reload) a version, default the newest on disk; returns its engine."""
        check_reference(name, version)
        async with self._locks.hold(name):
            if version is None:
                try:
                    versions = list_versions(self.root, name)
                except ArtifactError as error:  # its folder cannot be listed
                    raise LoadError(str(error)) from None
                if not versions:
                    # Messages never name the repository's path: clients need not know it.
                    raise ModelNotFound(f"no published version of model {name!r} in the "
                                        "model repository")
                version = versions[-1]
            try:
                folder = artifact_path(self.root, name, version)
            except ArtifactError as error:
                raise ModelNotFound(str(error)) from None
            if not folder.is_dir():
                raise ModelNotFound(f"version {version!r} of model {name!r} is not in the "
                                    "model repository")
            engine = await asyncio.to_thread(self._build, folder)
            if engine.name != name or engine.version != version:
                raise LoadError(f"{engine.shown}: its config.json says it is {engine.name!r} "
                                f"version {engine.version!r}, not {name!r} version "
                                f"{version!r}")
            settings = self.settings
            batcher = Batcher(engine.infer,
                              max_batch_size=settings.max_batch_size if settings.batching else 1,
                              max_delay_s=(settings.max_batch_delay_ms / 1e3
                                           if settings.batching else 0.0),
                              max_queue_examples=settings.max_queue_examples,
                              on_batch=self.metrics.batch_observer(name),
                              inline_max_examples=settings.inline_forward_examples,
                              alone_max_examples=settings.alone_forward_examples,
                              max_forward_examples=settings.max_forward_examples)
            old = self._models.setdefault(name, {}).get(version)
            self._models[name][version] = LoadedVersion(engine, batcher)
            if old is not None:
                await old.batcher.close()  # its accepted requests finish on the old engine
            log.info("serving %s version %s on %s (expected density %s)", name, version,
                     engine.device, engine.expected_density)
            return engine

    async def unload(self, name: str, version: str | None = None) -> list[str]:
        """Unload one version, or every version of the model; returns the versions unloaded.
        Requests already accepted finish first."""
        check_reference(name, version)
        async with self._locks.hold(name):
            versions = self._models.get(name)
            if not versions or (version is not None and version not in versions):
                raise ModelNotFound(f"model {name!r}" + (f" version {version!r}" if version
                                                         else "") + " is not loaded")
            chosen = [version] if version is not None else list(versions)
            for v in chosen:
                loaded = versions.pop(v)
                await loaded.batcher.close()
            if not versions:
                del self._models[name]
            return chosen

    async def close(self) -> None:
        """Drain every model (server shutdown)."""
        for name in list(self._models):
            await self.unload(name)

    def _build(self, folder: Path) -> ModelEngine:
        """Read, build and warm up an artifact. Every failure is a LoadError (answered 400), so
        no artifact, however it is broken, gives a 500 or stops the server starting; messages
        name files relative to the repository (an OSError's own text names absolute paths)."""
        try:
            engine = ModelEngine(folder, self.settings.device, repository=self.root,
                                 backend=self.settings.backend, threads=self.settings.threads)
            engine.warm_up(self.settings.warmup_batches)
        except ArtifactError as error:
            raise LoadError(str(error)) from error
        except OSError as error:
            raise LoadError(f"{shown_path(folder, self.root)}: "
                            f"{error.strerror or type(error).__name__}") from error
        except Exception as error:  # a bug, a setting or an exhausted resource
            # Its text may name server paths (a kernel build's, say): the log has it.
            log.exception("loading %s failed", shown_path(folder, self.root))
            raise LoadError(f"{shown_path(folder, self.root)}: could not be loaded "
                            f"({type(error).__name__}; the server log says why)") from error
        return engine
