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

from models.artifact import ArtifactError, artifact_path, list_versions, validate_name

from .batching import Batcher
from .config import Settings
from .engine import ModelEngine
from .metrics import Metrics

log = logging.getLogger("sparsegate.service")


class ModelNotFound(LookupError):
    """No such model or version is loaded (404)."""


class LoadError(Exception):
    """An artifact was refused; the message says why (the version already loaded, if any, keeps
    serving)."""


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
        self._locks: dict[str, asyncio.Lock] = {}

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
        its newest version. A model that fails to load is logged and left out."""
        names = self.settings.models or [e["name"] for e in self.available()]
        for name in dict.fromkeys(names):
            try:
                await self.load(name)
            except (LoadError, ModelNotFound) as error:
                log.error("not serving %s: %s", name, error)

    async def load(self, name: str, version: str | None = None) -> ModelEngine:
        """Load (or reload) a version, default the newest on disk; returns its engine."""
        try:
            name = validate_name(name)
        except ArtifactError as error:
            raise ModelNotFound(str(error)) from None
        async with self._locks.setdefault(name, asyncio.Lock()):
            if version is None:
                versions = list_versions(self.root, name)
                if not versions:
                    raise ModelNotFound(f"no published version of model {name!r} in "
                                        f"{self.root}")
                version = versions[-1]
            try:
                folder = artifact_path(self.root, name, version)
            except ArtifactError as error:
                raise ModelNotFound(str(error)) from None
            if not folder.is_dir():
                raise ModelNotFound(f"version {version!r} of model {name!r} is not in "
                                    f"{self.root}")
            engine = await asyncio.to_thread(self._build, folder)
            if engine.name != name or engine.version != version:
                raise LoadError(f"{folder}: its config.json says it is {engine.name!r} version "
                                f"{engine.version!r}, not {name!r} version {version!r}")
            settings = self.settings
            batcher = Batcher(engine.infer,
                              max_batch_size=settings.max_batch_size if settings.batching else 1,
                              max_delay_s=(settings.max_batch_delay_ms / 1e3
                                           if settings.batching else 0.0),
                              max_queue_examples=settings.max_queue_examples,
                              on_batch=self.metrics.batch_observer(name))
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
        async with self._locks.setdefault(name, asyncio.Lock()):
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
        try:
            engine = ModelEngine(folder, self.settings.device)
            engine.warm_up(self.settings.warmup_batches)
        except (ArtifactError, ValueError, KeyError, TypeError, RuntimeError, OSError) as error:
            raise LoadError(str(error)) from error
        return engine
