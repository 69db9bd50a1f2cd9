"""Resolving and loading models from the MLflow registry (by alias, never "latest").

A model is known by two names. ``version`` (``botfilter/3``) is the human label that output rows
carry. ``model_id`` (``sha256:<hex>`` of the model's files) is what every cache and the score
store are keyed by: a rebuilt MLflow store or another registry can hand out a different
``botfilter/3``, and must never be served the old one's download, compiled library or scores.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from core.errors import BotfilterError
from core.redact import redact
from scoring.files import METADATA_FILE, MODEL_FILE, content_id

if TYPE_CHECKING:  # annotations only: the workers' fork server never imports pydantic (0.15 s)
    from core.settings import Settings
    from scoring.model import BotModel

_COMPLETE = ".complete"


def champion_uri(settings: Settings) -> str:
    """``models:/<name>@champion``."""
    return f"models:/{settings.model_name}@{settings.champion_alias}"


def configure_mlflow(settings: Settings) -> None:
    """Point MLflow at the configured tracking/registry store."""
    # mlflow (about 4 s to import) is imported only where a registry is asked: the `botfilter
    # score` worker processes load a resolved ModelRef (load_ref) and never import it.
    import mlflow

    if settings.mlflow_uri.startswith("sqlite:///"):
        settings.ensure_home()
    check_reachable(settings.mlflow_uri)
    mlflow.set_tracking_uri(settings.mlflow_uri)
    mlflow.set_registry_uri(settings.mlflow_uri)


# What a registry answers for a name, alias or version it does not hold.
_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")
# Default ports of the registries that live behind a server.
_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "http": 80, "https": 443}


def check_reachable(uri: str, timeout_s: float = 3.0) -> None:
    """Fail in one line when a registry server does not answer: MLflow retried for about two
    minutes (a database: ten attempts, each logged as a warning; a tracking server: seven), then
    said "no model, train one" or failed as an internal error (an audit)."""
    scheme = urlsplit(uri).scheme.split("+", 1)[0].lower()
    if scheme not in _PORTS or "://" not in uri:
        return
    # The host follows the last "@" of a database URL: its password may hold "/" (which
    # urlsplit takes for the end of the host)
    tail = uri.split("://", 1)[1]
    if scheme not in ("http", "https"):
        tail = tail[tail.rfind("@") + 1 :]
    parsed = urlsplit("//" + re.split(r"[/?#]", tail, maxsplit=1)[0].rsplit("@", 1)[-1])
    if not parsed.hostname:
        return  # an embedded store, or a form MLflow resolves itself (databricks, a socket)
    try:
        port = parsed.port or _PORTS[scheme]
    except ValueError:  # a port that is not a number
        raise BotfilterError(f"the model registry {redact(uri)}: bad port") from None
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout_s).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise BotfilterError(
            f"the model registry {redact(uri)} cannot be reached ({reason})"
        ) from None


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: its label, its content id and its local copy."""

    uri: str
    version: str  # human label, e.g. botfilter/3
    model_id: str  # sha256:<hex> of the model files: the key of caches and stored scores
    path: Path  # the downloaded artifacts


def _registered(settings: Settings, uri: str) -> tuple[str, str]:
    """(label, identity) of a model URI: identity names the registry and the exact registered
    artifact (run id, creation time, source), so a rebuilt store gives a new identity."""
    # mlflow is imported on use: see configure_mlflow.
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if uri.startswith("runs:/"):
        # The run names the model (the path in it alone, "model", named every run's alike).
        return uri.rstrip("/"), uri
    if not uri.startswith("models:/"):
        return uri.rstrip("/").rsplit("/", 1)[-1][:40], uri
    ref = uri[len("models:/") :]
    configure_mlflow(settings)
    client = MlflowClient()
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        else:
            if "/" not in ref:  # models:/NAME alone (or a logged model's id): no version named
                raise BotfilterError(
                    f"model URI {uri!r}: name a registered version, models:/NAME@ALIAS or "
                    "models:/NAME/NUMBER"
                )
            name, version = ref.split("/", 1)
            if not version.isdigit():
                raise BotfilterError(f"model URI {uri!r}: use an alias (@champion) or a number")
            mv = client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code not in _MISSING:  # not an answer "there is none": say what it was
            raise BotfilterError(
                f"the model registry {redact(settings.mlflow_uri)} failed: {exc.message}"
            ) from exc
        raise BotfilterError(
            f"no model at {uri} in {settings.mlflow_uri}: train one with `botfilter train`"
        ) from exc
    identity = f"{mv.name}/{mv.version} run={mv.run_id} created={mv.creation_timestamp} {mv.source}"
    return f"{mv.name}/{mv.version}", identity


def _check_uri(uri: str) -> str:
    """``uri``, refused in one line when spaces surround it: `` models:/botfilter/1`` was
    taken for a path and fetched anew on every run, with the label ``1``."""
    if uri != uri.strip():
        raise BotfilterError(f"model URI {uri!r}: remove the spaces around it")
    return uri


def resolve_version(settings: Settings, uri: str) -> str:
    """A stable version label for a model URI: ``name/version`` for registry URIs."""
    return _registered(settings, _check_uri(uri))[0]


def champion_version(settings: Settings) -> str | None:
    """The champion's version label (``botfilter/3``; None: no champion, or no registry to
    ask). A model loaded by another URI is the champion when its label is this one."""
    try:
        return _registered_memo(settings, champion_uri(settings))[0]
    except BotfilterError:
        return None


def _store_fingerprint(mlflow_uri: str) -> str | None:
    """sha256 of an embedded (sqlite) registry's bytes; None for other stores, or while a
    write is under way (a rollback journal is present)."""
    if not mlflow_uri.startswith("sqlite:///") or "?" in mlflow_uri:
        return None
    db = Path(mlflow_uri[len("sqlite:///") :])
    if Path(f"{db}-journal").exists():
        return None
    wal = Path(f"{db}-wal")  # WAL mode keeps recent writes beside the file: content too
    try:
        digest = hashlib.sha256(db.read_bytes())
        if wal.exists():
            digest.update(wal.read_bytes())
    except OSError:
        return None
    return digest.hexdigest()


def _registered_memo(settings: Settings, uri: str) -> tuple[str, str]:
    """:func:`_registered`, remembered for an embedded registry whose bytes have not changed.

    An alias can only move by writing the store, so identical bytes give the same answer:
    hashing the file (milliseconds) spares importing MLflow and opening its store (1.5-3 s of
    every ``botfilter score``). Remote stores are always asked.
    """
    fingerprint = _store_fingerprint(settings.mlflow_uri) if uri.startswith("models:/") else None
    if fingerprint is None:
        return _registered(settings, uri)
    slot = _digest(f"{settings.mlflow_uri}\n{uri}")[:20]
    memo = settings.models_dir / "registry" / "aliases" / f"{slot}.json"
    try:
        saved = json.loads(memo.read_text())
        if saved["store"] == fingerprint:
            return str(saved["version"]), str(saved["identity"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # absent or unreadable: ask the registry
    version, identity = _registered(settings, uri)
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_name(f"{memo.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"store": fingerprint, "version": version, "identity": identity}))
    os.replace(tmp, memo)  # atomic: a concurrent reader sees the old answer or the new one
    return version, identity


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def resolve_model(settings: Settings, uri: str | None = None) -> ModelRef:
    """Resolve ``uri`` (default: the champion alias) and make sure its files are here.

    The download is cached under a key of the registry's URI and the registered version's
    identity; its content id is computed once, from the files, when it is downloaded.
    """
    uri = _check_uri(uri or champion_uri(settings))
    version, identity = _registered_memo(settings, uri)
    where = _digest(f"{settings.mlflow_uri}\n{identity}")[:20]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in version)
    local = settings.models_dir / "registry" / f"{safe}-{where}"
    # Only registry versions are immutable: anything else (a run's path, a directory) is
    # fetched again, so a changed file is never served from the cache.
    if not uri.startswith("models:/") or not (local / _COMPLETE).exists():
        _fetch(settings, uri, local)
    return ModelRef(uri, version, (local / _COMPLETE).read_text().strip(), local)


def _fetch(settings: Settings, uri: str, local: Path) -> None:
    """Download ``uri`` to a temporary directory beside ``local``, check it is a model, mark it
    complete and move it to ``local``. On any failure (not a model, a download error, Ctrl-C)
    the temporary copy goes: a directory that was no model stayed in the cache, copied whole."""
    tmp = local.with_name(f"{local.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        # mlflow is imported on use: see configure_mlflow.
        import mlflow

        configure_mlflow(settings)
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp))
        except Exception as exc:  # MLflow's own errors, OSError for a path that is not there
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BotfilterError(f"cannot fetch the model at {uri}: {why}") from exc
        model_file, meta_file = _model_files(tmp, uri)
        (tmp / _COMPLETE).write_text(content_id(model_file.read_bytes(), meta_file.read_bytes()))
        shutil.rmtree(local, ignore_errors=True)
        tmp.rename(local)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _model_files(path: Path, uri: str) -> tuple[Path, Path]:
    model_files = sorted(path.rglob(MODEL_FILE))
    meta_files = sorted(path.rglob(METADATA_FILE))
    if not model_files or not meta_files:
        raise BotfilterError(f"{uri} is not a botfilter model (no {MODEL_FILE} / {METADATA_FILE})")
    return model_files[0], meta_files[0]


def model_files(ref: ModelRef) -> tuple[Path, Path]:
    """The LightGBM model file and the metadata file of a resolved reference."""
    return _model_files(ref.path, ref.uri)


def load_ref(settings: Settings, ref: ModelRef, compile: bool = True) -> BotModel:
    """The model of a resolved reference, compiled (and cached by content id) when asked."""
    # Imported on use: resolving a model (as `botfilter score`'s main process does for its
    # workers) never imports the scoring stack (numba, pandas, scipy: 0.4 CPU s).
    from scoring.model import BotModel

    model_file, meta_file = model_files(ref)
    model = BotModel.from_files(model_file, meta_file, ref.version, settings.threads)
    model.model_id = ref.model_id
    if compile:
        model.compile(settings.models_dir / "compiled")
    return model


def load_model(settings: Settings, uri: str | None = None, compile: bool = True) -> BotModel:
    """Load ``uri`` (default: the champion alias) with its feature list, calibration, thresholds."""
    return load_ref(settings, resolve_model(settings, uri), compile)


def find_model_dir(path: Path) -> Path:
    """The directory holding a saved model's files."""
    return next(path.rglob(MODEL_FILE)).parent
