"""The one typed settings object, read from ``BOTFILTER_*`` environment variables.

Build it at entry points with :func:`get_settings` (never at import time) and pass it down.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from .errors import BotfilterError

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")  # what redis-py accepts
# local, local[N], local[*], local[N,F]; or a cluster manager's URL
_SPARK_MASTER = re.compile(r"local(\[(\*|[1-9]\d*)(,\d+)?\])?|(spark|k8s|mesos)://\S+|yarn")


def check_spark_master(value: str) -> None:
    """A Spark master Spark can start: checked before any work (``local[x]`` was an internal
    error, ``local[0]`` a Java stack trace: an audit)."""
    if not _SPARK_MASTER.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a Spark master: local[N], local[*], spark://HOST:PORT, yarn or "
            "k8s://URL"
        )


class Settings(BaseSettings):
    """Runtime configuration. Every field maps to ``BOTFILTER_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="BOTFILTER_", extra="ignore")

    home: Path = Field(Path(".botfilter"), description="Data home: stores, models, demo data.")
    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI; defaults to MLFLOW_TRACKING_URI, else sqlite under home.",
    )
    model_name: str = Field("botfilter", description="Registered model name in MLflow.")
    champion_alias: str = Field("champion", description="Registry alias that serving resolves.")
    database_url: str | None = Field(
        None, description="Metrics store SQLAlchemy URL; defaults to sqlite under home."
    )
    redis_url: str | None = Field(None, description="Redis URL for shared online window state.")
    api_token: SecretStr | None = Field(
        None, description="An admin bearer token for the API (besides `botfilter tokens`)."
    )
    target_precision: float = Field(0.99, gt=0, lt=1, description="Threshold precision target.")
    window_days: int = Field(30, gt=0, description="Days recomputed when a setting changes.")
    max_batch_events: int = Field(10_000, gt=0, description="Largest /score request, in events.")
    header_timeout_s: float = Field(
        10.0, gt=0, le=300, description="API: seconds a client has to send a request's headers."
    )
    body_timeout_s: float = Field(
        30.0, gt=0, le=600, description="API: seconds a client has to send a request's body."
    )
    threads: int = Field(2, gt=0, description="Threads for LightGBM and numba kernels.")
    score_workers: int = Field(
        2, gt=0, description="Processes that score tenant parts side by side in `botfilter score`."
    )
    recompute_workers: int = Field(
        2,
        gt=0,
        description="Processes that recompute tenant parts side by side in `botfilter recompute "
        "--data DIR` (1: part after part in the command's own process).",
    )
    validate_workers: int = Field(
        2,
        gt=0,
        description="Processes that validate tenant parts side by side in `botfilter validate` "
        "of a Parquet directory (1: part after part in the command's own process).",
    )
    spark_master: str = Field("local[2]", description="Spark master URL for --engine spark.")
    record_scores: bool = Field(
        True,
        description="The API records its answers in the score store (off the request path), "
        "so recomputes reuse them instead of scoring those events again.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO",
        description="Level of botfilter's own log lines in API workers (model loads, reloads, "
        "state replay).",
    )

    debug: bool = Field(
        False, description="Show the Python traceback of a failed command (else one line)."
    )

    @field_validator("home")
    @classmethod
    def _home_is_a_folder(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError("is a file, not a directory")
        return value

    @field_validator("tracking_uri")
    @classmethod
    def _tracking_scheme(cls, value: str | None) -> str | None:
        # MLflow 3 refuses a folder or file: URI (its file store is in maintenance mode), in an
        # internal error at the first use; said here in one line
        if value and (":" not in value or value.lower().startswith("file:")):
            raise ValueError("use a database URI (sqlite:///PATH/mlflow.db) or a server URL")
        return value

    @field_validator("spark_master")
    @classmethod
    def _spark_master(cls, value: str) -> str:
        check_spark_master(value)
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        # checked here, in one line, not by the first worker that connects (an internal error)
        if value and not value.lower().startswith(_REDIS_SCHEMES):
            raise ValueError(f"must start with {', '.join(_REDIS_SCHEMES)}")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def mlflow_uri(self) -> str:
        """Resolved MLflow tracking URI (an embedded sqlite store by default)."""
        if self.tracking_uri:
            return self.tracking_uri
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        """Where MLflow stores artifacts for the embedded store."""
        return (self.home / "mlartifacts").resolve()

    @property
    def metrics_db_url(self) -> str:
        """Resolved metrics store URL (sqlite under home by default)."""
        return self.database_url or f"sqlite:///{(self.home / 'metrics.db').resolve()}"

    @property
    def models_dir(self) -> Path:
        """Cache for compiled models, keyed by model version."""
        return self.home / "models"

    def ensure_home(self) -> Path:
        """Create the data home if it does not exist and return it."""
        self.home.mkdir(parents=True, exist_ok=True)
        return self.home


def get_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, with explicit overrides from CLI options.

    An invalid value is a :class:`BotfilterError` naming the variable (or the option) and what
    is wrong, in one line; secret values are never repeated."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        raise BotfilterError(_invalid(exc, set(clean))) from None
    except SettingsError as exc:  # a value pydantic-settings could not even decode
        raise BotfilterError(f"invalid setting: {exc}") from None


_SECRET_FIELDS = ("api_token", "database_url", "redis_url", "tracking_uri")


def _invalid(exc: ValidationError, overridden: set[str]) -> str:
    """One line for every invalid setting: ``BOTFILTER_X='value': why``."""
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        if field in overridden:
            name = "--" + field.replace("_", "-")
        else:
            name = f"{Settings.model_config.get('env_prefix', '')}{field}".upper()
        value = error.get("input")
        shown = "" if field in _SECRET_FIELDS or isinstance(value, dict) else f"={value!r}"
        problems.append(f"{name}{shown}: {error['msg']}")
    return "invalid setting " + "; ".join(problems)
