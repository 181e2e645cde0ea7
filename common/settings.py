"""Process settings, read from the environment with the ``WSP_`` prefix.

Built once at an entry point and passed in; nothing reads them at import time.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BUNDLED_MODEL = "bundled"
"""The value of ``WSP_MODEL`` that selects the offline Whisper base model shipped as Python packages."""

MIN_API_KEY_CHARS = 16
"""``WSP_API_KEY`` shorter than this is refused at start-up: it would be guessable."""


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wsp"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "wsp" / "redis"


class Settings(BaseSettings):
    """Everything a process of the pipeline can be told through ``WSP_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="WSP_", extra="ignore")

    model: str = Field(
        default=BUNDLED_MODEL,
        description="faster-whisper model name (downloaded), a local CTranslate2 directory, or 'bundled'.",
    )
    cache_dir: Path = Field(default_factory=_default_cache_dir, description="Where assembled models live.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = Field(
        default="default", description="CTranslate2 compute type; 'default' is int8 on cpu, float16 on cuda."
    )
    cpu_threads: int = Field(default=0, ge=0, description="Inference threads on cpu; 0 uses every core.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text, or JSON lines (time, level, logger, session...)."
    )

    # -- the distributed pipeline --
    redis_url: str | None = Field(
        default=None, description="redis://host:port/db; unset: `wsp up` starts an embedded Redis server."
    )
    host: str = Field(default="127.0.0.1", description="Address the HTTP services listen on.")
    publisher_host: str | None = Field(
        default=None,
        description="Address the publisher listens on (displays connect to it); unset: WSP_HOST. "
        "`wsp up` opens it to the local network by itself (see public_url).",
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL of the publisher as screens, phones and OBS reach it "
        "(http://192.168.1.20:8001, https://captions.example.org): display links, short links and "
        "QR codes are built on it. Unset: the address the request came in on, with the publisher's "
        "port (`wsp up`: this machine's address on the local network).",
    )
    redis_data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where `wsp up`'s embedded Redis keeps its append-only file, so sessions survive a "
        "restart; one `wsp up` at a time may use a folder.",
    )
    ingest_port: int = Field(default=8000, ge=1, le=65535)
    publisher_port: int = Field(default=8001, ge=1, le=65535)
    worker_capacity: int = Field(default=2, ge=1, le=256, description="Sessions one ASR worker runs at once.")
    worker_id: str | None = Field(default=None, description="Stable worker name; default host-pid-random.")
    worker_metrics_port: int = Field(
        default=9100, ge=0, le=65535, description="Port of a worker's /metrics and /healthz; 0 disables them."
    )
    lease_ttl_s: float = Field(default=3.0, gt=0.2, le=120, description="Dead worker's sessions move after.")
    audio_stream_max_s: float = Field(
        default=180.0,
        gt=30,
        description="Audio a session's stream holds that no worker has consumed (older chunks are trimmed): "
        "with WSP_MAX_SESSIONS it bounds the audio in Redis; a worker that falls behind skips ahead anyway.",
    )
    max_frame_bytes: int = Field(default=64_000, ge=3200, description="Largest accepted binary audio frame.")
    max_sessions: int = Field(
        default=100,
        ge=1,
        description="Sessions open at once across the deployment (ended ones do not count).",
    )
    max_session_s: float = Field(
        default=6 * 3600.0,
        gt=0,
        description="Longest audio one session may send; beyond it audio is refused.",
    )
    session_idle_s: float = Field(
        default=7200.0,
        ge=0,
        description="A session whose audio has not moved for this long is ended by its worker, which "
        "frees its place (abandoned test sessions, a closed microphone page); 0 never ends one.",
    )
    session_start_s: float = Field(
        default=600.0,
        ge=0,
        description="A session created and never streamed is ended after this long (or WSP_SESSION_IDLE_S "
        "if that is shorter), which frees its place; 0 never ends one for that.",
    )
    session_park_s: float = Field(
        default=5.0,
        ge=0,
        description="A session whose audio has stopped arriving for this long gives its worker place to a "
        "session waiting for one; it goes on with the next free worker once its audio resumes. 0: never.",
    )
    max_sessions_per_client: int = Field(
        default=10,
        ge=1,
        description="Sessions one client address may have open at once (the API key is exempt).",
    )
    client_sessions_per_minute: float = Field(
        default=10.0,
        gt=0,
        description="Sessions one client address may create per minute, in bursts of as many (the API key "
        "is exempt).",
    )
    audio_max_speed: float = Field(
        default=2.0,
        ge=0,
        description="Audio one session may send, in seconds per second of wall-clock time, beyond its "
        "burst (0: no bound). Connections with the API key, or granted pace fast, are exempt.",
    )
    audio_burst_s: float = Field(
        default=120.0,
        ge=1,
        description="Audio a session may send at once above real time: a microphone page that reconnects "
        "sends up to two minutes of unacknowledged audio again.",
    )
    accept_fast_audio: bool = Field(
        default=False,
        description="Grant senders that ask for it (start message with pace fast) audio faster than "
        "real time without the API key. Workers skip ahead when they fall behind (WSP_MAX_LAG_S).",
    )
    redis_maxmemory: str = Field(
        default="1gb",
        description="maxmemory of the embedded Redis (compose passes the same value to its Redis); "
        "0: no limit. Written like Redis writes it: 1gb, 512mb, bytes.",
    )
    redis_memory_high: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Fraction of Redis maxmemory above which ingest takes no new sessions and no audio "
        "(the alarm metric), keeping the rest for captions.",
    )
    allowed_origins: str = Field(
        default="",
        description="Comma-separated web origins (https://control.example) whose pages may create and end "
        "sessions; the service's own pages always may.",
    )
    trusted_proxies: str = Field(
        default="127.0.0.1",
        description="Addresses of reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are "
        "believed (comma-separated; '*' for any).",
    )
    api_docs: bool = Field(
        default=False,
        description="Serve /docs and /redoc (Swagger and ReDoc load their scripts from a CDN).",
    )
    max_lag_s: float = Field(
        default=8.0, gt=0, description="A worker further behind real time skips ahead to the live audio."
    )
    session_retention_s: float = Field(
        default=24 * 3600.0, gt=0, description="How long an ended session's captions and record are kept."
    )
    display_queue_size: int = Field(
        default=256,
        ge=4,
        le=100_000,
        description="Live caption events queued per display before it is dropped.",
    )
    display_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A display that leaves a ping unanswered this long (it reads nothing) is dropped as "
        "too slow (4408).",
    )
    max_displays_per_session: int = Field(
        default=500,
        ge=1,
        description="Displays one publisher process serves per session; more are refused (4429).",
    )
    engine: Literal["whisper", "scripted"] = Field(
        default="whisper",
        description="ASR engine of a worker: the Whisper model, or a scripted fake for tests (no model).",
    )
    script_file: Path | None = Field(
        default=None, description="With engine=scripted: a JSON list of {start, end, text} words it hears."
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="Deployment-wide key: needed to create sessions (Authorization: Bearer), "
        "accepted wherever a session token is. Unset: anyone may create sessions.",
    )

    # -- wsp send (a venue's audio source into a session) --
    source: str | None = Field(
        default=None,
        description="What `wsp send` sends when given no SOURCE: a stream URL (srt://, rtmp://, "
        "rtsp://, http(s)://...m3u8, Icecast) or a file.",
    )
    ingest_url: str | None = Field(
        default=None, description="The ingest service `wsp send` sends to when given no --url."
    )
    session: str | None = Field(
        default=None, description="The session `wsp send` continues when given no --session."
    )
    audio_token: SecretStr | None = Field(
        default=None, description="That session's audio token (`wsp send` without --token)."
    )

    @field_validator("source", "ingest_url", "session", "audio_token", "publisher_host", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("model")
    @classmethod
    def _model_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a model, a directory, or 'bundled'")
        return value.strip()

    @field_validator("public_url")
    @classmethod
    def _http_base(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        parsed = urlsplit(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.query or parsed.fragment:
            raise ValueError(f"must look like http://HOST:PORT or https://HOST/PATH, got {value!r}")
        return value

    def publisher_listen_host(self) -> str:
        """Where the publisher listens: ``WSP_PUBLISHER_HOST``, else ``WSP_HOST``."""
        return self.publisher_host or self.host

    @field_validator("api_key")
    @classmethod
    def _usable_api_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None  # WSP_API_KEY= (empty) means no key
        key = value.get_secret_value()
        if len(key) < MIN_API_KEY_CHARS or any(c.isspace() or not c.isprintable() for c in key):
            raise ValueError(
                f"must be at least {MIN_API_KEY_CHARS} printable characters without spaces "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @field_validator("redis_maxmemory")
    @classmethod
    def _redis_size(cls, value: str) -> str:
        parse_bytes(value)
        return value.strip().lower()

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in split_list(value):
            if origin != "null" and not ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not a web origin like https://control.example or http://host:8080"
                )
        return value

    def redis_maxmemory_bytes(self) -> int:
        """``redis_maxmemory`` in bytes (0: no limit)."""
        return parse_bytes(self.redis_maxmemory)

    def allowed_origin_list(self) -> list[str]:
        return [origin.rstrip("/") for origin in split_list(self.allowed_origins)]

    def api_key_value(self) -> str | None:
        """The API key in clear, or None when the deployment has none."""
        return self.api_key.get_secret_value() if self.api_key is not None else None

    @field_validator("compute_type")
    @classmethod
    def _known_compute_type(cls, value: str) -> str:
        known = {
            "default",
            "auto",
            "int8",
            "int8_float16",
            "int8_float32",
            "int8_bfloat16",
            "int16",
            "float16",
            "bfloat16",
            "float32",
        }
        if value not in known:
            raise ValueError(f"unknown compute type {value!r}; one of {', '.join(sorted(known))}")
        return value

    def resolved_device(self) -> str:
        """``cpu`` or ``cuda``: ``auto`` picks cuda when CTranslate2 sees a GPU."""
        if self.device != "auto":
            return self.device
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"

    def resolved_compute_type(self, device: str) -> str:
        if self.compute_type != "default":
            return self.compute_type
        return "float16" if device == "cuda" else "int8"

    def resolved_cpu_threads(self) -> int:
        return self.cpu_threads or (os.cpu_count() or 1)


SIZE = re.compile(r"^\s*(\d+)\s*(b|k|kb|m|mb|g|gb)?\s*$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}
"""Redis's memory units: ``k``/``m``/``g`` are powers of 1000, ``kb``/``mb``/``gb`` powers of 1024."""

ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")
"""A web origin: scheme and host, with an optional port, nothing after it."""


def parse_bytes(value: str) -> int:
    """A Redis memory size (``1gb``, ``512mb``, ``1000000``) in bytes; ValueError if it is not one."""
    match = SIZE.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not a size like 1gb, 512mb or a number of bytes")
    return int(match.group(1)) * SIZE_UNITS[(match.group(2) or "").lower()]


def split_list(value: str) -> list[str]:
    """A comma-separated setting as its non-empty items."""
    return [item.strip() for item in value.split(",") if item.strip()]


def describe(exc: ValidationError, prefix: str = "") -> str:
    """One line naming every bad field: ``WSP_INGEST_PORT: Input should be a valid integer; ...``."""
    parts = []
    for error in exc.errors():
        name = ".".join(str(p) for p in error["loc"]) or "value"
        parts.append(f"{prefix}{name.upper() if prefix else name}: {error['msg']}")
    return "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment plus ``overrides``; a bad value is a :class:`ConfigError` naming it."""
    from common.errors import ConfigError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(describe(exc, prefix="WSP_")) from exc
