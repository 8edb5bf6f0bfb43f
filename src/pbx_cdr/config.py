"""Settings: one object, read from ``PBX_CDR_*`` environment variables, passed into the app factory.

Nothing else in the package reads the environment, so a test builds an app with exactly the settings
it needs.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name, not a secret


class Settings(BaseSettings):
    """Everything the service can be told. Derived defaults are resolved by :meth:`resolved`."""

    model_config = SettingsConfigDict(env_prefix="PBX_CDR_", extra="ignore")

    data_dir: Path = Path("./pbx-cdr-data")
    database_url: str = ""
    storage_url: str = ""
    secret_key: str = ""
    previous_keys: str = ""
    public_url: str = ""
    default_timezone: str = "UTC"
    default_country: str = "VN"
    host: str = "127.0.0.1"
    port: int = 8000

    # Recordings
    max_recording_bytes: int = 200 * 1024 * 1024
    recording_links: str = Field(default="app", pattern="^(app|s3)$")
    s3_endpoint_url: str = ""
    s3_region: str = ""

    # Durability: FULL survives power loss as well as crashes; NORMAL survives crashes only.
    sqlite_synchronous: str = Field(default="FULL", pattern="^(FULL|NORMAL|EXTRA)$")
    db_pool_size: int = 10
    list_cache_mb: int = Field(default=16, ge=0)  # list pages kept per process (api/list_cache.py)
    # PostgreSQL: token lookups kept per process while no change is heard (api/token_cache.py); 0: none
    token_cache_seconds: float = Field(default=10.0, ge=0)
    # PostgreSQL: where that process listens for the changes, if not database_url (past a pooler)
    database_listen_url: str = ""

    # Operations
    log_json: bool = False
    log_level: str = "INFO"
    metrics_enabled: bool = True  # GET /metrics (Prometheus text format)

    # Resource limits (see docs/security.md): each refusal has its own 4xx in the error shape.
    max_url_bytes: int = Field(default=4096, ge=256)  # path + query string -> 414
    max_header_bytes: int = Field(default=16384, ge=1024)  # all header names and values -> 431
    max_header_count: int = Field(default=100, ge=10)  # -> 431
    header_timeout: float = Field(default=10.0, gt=0)  # seconds to send the request line and headers -> 408
    body_idle_timeout: float = Field(default=30.0, gt=0)  # seconds of silence inside a body -> 408

    @field_validator("default_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    def resolved(self) -> Settings:
        """Fill the defaults that depend on other settings (data dir, host and port)."""
        data_dir = self.data_dir.expanduser().resolve()
        database_url = self.database_url or f"sqlite:///{data_dir / 'pbx-cdr.sqlite3'}"
        storage_url = self.storage_url or f"file://{data_dir / 'recordings'}"
        public_url = (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
        return self.model_copy(
            update={
                "data_dir": data_dir,
                "database_url": normalize_database_url(database_url),
                "database_listen_url": normalize_database_url(self.database_listen_url),
                "storage_url": storage_url,
                "public_url": public_url,
            }
        )

    def signing_keys(self) -> list[bytes]:
        """The current key first, then the retired keys that still verify during a rotation."""
        keys = [self.secret_key] + [k.strip() for k in self.previous_keys.split(",") if k.strip()]
        return [k.encode() for k in keys if k]


def normalize_database_url(url: str) -> str:
    """Map the URLs operators write to the SQLAlchemy drivers we ship."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def ensure_secret_key(settings: Settings) -> Settings:
    """Use the configured key, else the one generated once into the data dir (mode 0600)."""
    if settings.secret_key:
        return settings
    path = settings.data_dir / SECRET_KEY_FILE
    if not path.exists():
        # Written whole under a temporary name, then linked into place: several processes starting
        # at once agree on one key and none reads a half-written file.
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{SECRET_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return settings.model_copy(update={"secret_key": path.read_text().strip()})


def load_settings(**overrides: object) -> Settings:
    """Environment first, CLI flags (``overrides``) on top, derived defaults filled, key ensured."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    settings = Settings(**clean)  # type: ignore[arg-type]
    return ensure_secret_key(settings.resolved())
