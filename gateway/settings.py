"""Typed settings, read from ``ZORGBRUG_*`` environment variables with CLI flags on top."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All configuration of one gateway process."""

    model_config = SettingsConfigDict(env_prefix="ZORGBRUG_", extra="ignore")

    data_dir: Path = Field(default=Path("./var"), description="Where the embedded store lives.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is SQLite zorgbrug.db in the data dir."
    )
    base_url: str | None = Field(
        default=None, description="Public base URL of the server, e.g. https://zorgbrug.example.nl"
    )
    master_key_file: Path | None = Field(
        default=None, description="Master key file; default master.key in the data dir (0600)."
    )
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    db_threads: int | None = Field(
        default=None,
        ge=1,
        description="Database threads per process; default 4 on SQLite, 8 on PostgreSQL.",
    )
    tls_cert: Path | None = Field(default=None, description="PEM server certificate (chain).")
    tls_key: Path | None = Field(default=None, description="PEM private key of the certificate.")
    client_ca: Path | None = Field(
        default=None, description="PEM CA bundle; when set, clients must present a certificate."
    )
    max_body_bytes: int = Field(default=64 * 1024 * 1024, description="Largest accepted body.")
    default_page_size: int = 20
    max_page_size: int = 1000
    consent_policy: Literal["opt-in", "opt-out"] = Field(
        default="opt-in",
        description="When a patient recorded no consent: opt-in (deny, the Dutch rule) or opt-out.",
    )
    delivery_worker: bool = Field(
        default=True, description="Whether `zorgbrug serve` runs a delivery worker in-process."
    )
    delivery_max_attempts: int = Field(default=10, description="Attempts before a dead letter.")
    delivery_backoff_s: float = Field(default=2.0, description="Delay after the first failure.")
    delivery_backoff_cap_s: float = Field(default=900.0, description="Longest delay.")
    delivery_poll_s: float = Field(default=1.0, description="Outbox poll interval when idle.")
    delivery_timeout_s: float = Field(default=15.0, description="HTTP timeout of a delivery.")
    delivery_lease_s: float = Field(
        default=60.0,
        description="How long a worker holds a delivery; after a crash another retries it then.",
    )

    node_name: str = Field(
        default_factory=socket.gethostname,
        description="This gateway node's name in audit records (default: the host name).",
    )
    audit_key_file: Path | None = Field(
        default=None,
        description="Ed25519 key that signs audit checkpoints; default audit.key in the data dir.",
    )
    audit_checkpoint_records: int = Field(
        default=1000, description="Sign an audit checkpoint after this many records."
    )
    audit_checkpoint_s: float = Field(
        default=60.0, description="... or this many seconds after the last checkpoint."
    )
    audit_retention_years: int = Field(
        default=5, description="Audit records younger than this are never purged (NEN 7513)."
    )
    audit_flag_patients: int = Field(
        default=20, description="Flag a person who opens this many distinct patients ..."
    )
    audit_flag_window_s: int = Field(default=3600, description="... within this many seconds.")
    audit_flag_denials: int = Field(
        default=3, description="Flag an agent refused access this many times."
    )

    ui_idle_timeout_s: float = Field(
        default=900.0, description="A web UI session ends after this long without a request."
    )
    ui_session_max_s: float = Field(
        default=10 * 3600.0, description="... and after this long in all (one working day)."
    )

    @model_validator(mode="after")
    def _lease_outlasts_timeout(self) -> Settings:
        if self.delivery_lease_s <= self.delivery_timeout_s:
            raise ValueError("ZORGBRUG_DELIVERY_LEASE_S must exceed ZORGBRUG_DELIVERY_TIMEOUT_S")
        return self

    def token_issuer(self) -> str:
        """The ``iss`` of access tokens: the same in every process of one deployment."""
        return (self.base_url or "urn:zorgbrug:gateway").rstrip("/")

    def resolved_master_key_file(self) -> Path:
        """Where the master keys that wrap document data keys live."""
        return self.master_key_file or self.data_dir / "master.key"

    def resolved_audit_key_file(self) -> Path:
        """Where the key that signs the audit chain's checkpoints lives."""
        return self.audit_key_file or self.data_dir / "audit.key"

    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL of the store this process talks to."""
        url = self.database_url or f"sqlite:///{(self.data_dir / 'zorgbrug.db').resolve()}"
        return url
