"""The service's settings: environment (prefix ``TRIAGE_``) over an optional YAML file over defaults.

Built once by the entry point and passed down; nothing reads the environment anywhere else.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from triage.evidence_settings import EvidenceSettings
from triage.outbound_settings import OutboundSettings
from triage.values import check_ae_title, mask_credentials, parse_bindings


def bundled(name: str) -> Path:
    """``configs/`` or ``models/`` as shipped: beside the packages in a source tree, else where the
    wheel installed them (``<prefix>/share/triage/``)."""
    source_tree = Path(__file__).resolve().parent.parent / name
    return source_tree if source_tree.is_dir() else Path(sys.prefix) / "share" / "triage" / name


class Settings(EvidenceSettings, OutboundSettings):
    """Every setting of the service (the evidence and outbound ones inherited);
    ``configs/service.example.yaml`` documents each one."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_", extra="forbid", frozen=True)

    home: Path = Path("var")
    # Hosts that share storage between accounts name the group that may read TRIAGE_HOME; unset,
    # only the service's own user may.
    home_group: str | None = None
    ae_title: str = "TRIAGE"
    dicom_host: str = "127.0.0.1"
    dicom_port: int = Field(default=11112, ge=0, le=65535)
    allowed_calling_aes: Annotated[tuple[str, ...], NoDecode] = ()
    # Optional bindings of a calling AE to where it sits (networks) and, with DICOM TLS, to the
    # certificate it presents (subject CN or a DNS/URI subjectAltName). Env: AE=a;b,AE2=c.
    calling_ae_addresses: Annotated[dict[str, tuple[str, ...]], NoDecode] = Field(default_factory=dict)
    calling_ae_certificates: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # Secrets: they may hold passwords, and are shown masked wherever settings are shown.
    database_url: SecretStr | None = None
    broker_url: SecretStr | None = None
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    # HTTPS for the web API (both or neither); without it, put the API behind a TLS proxy off loopback.
    api_tls_certificate: Path | None = None
    api_tls_private_key: Path | None = None
    api_session_hours: float = Field(default=12.0, gt=0, le=168)
    # Refused sign-ins per account in the window before sign-in answers 429 (per source: 4x).
    sign_in_max_failures: int = Field(default=5, ge=1)
    sign_in_window_seconds: float = Field(default=900.0, gt=0)
    # Largest request body the API reads (a sign-in, a reading, a retraction are small).
    api_max_body_bytes: int = Field(default=1 << 20, ge=1024)
    # Rendered images (PNG) the API keeps in memory for the study page; 0: none.
    api_image_cache_bytes: int = Field(default=128 << 20, ge=0)
    # A Prometheus scrape is answered from this recent a reading of the database.
    metrics_cache_seconds: float = Field(default=10.0, ge=0)
    # OIDC bearer tokens (issuer and audience both, or neither); local accounts keep working beside it.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_roles_claim: str = "roles"  # a dotted path for nested claims, e.g. realm_access.roles
    oidc_jwks_url: str | None = None  # unset: read from the issuer's /.well-known/openid-configuration
    # Sign-in from the page (authorization code flow with PKCE): the client registered at the
    # provider (default: oidc_audience), its secret for a confidential client, and the public URL of
    # /api/oidc/callback that the provider redirects to. Unset redirect: the page signs in locally.
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_redirect_url: str | None = None
    # The CA bundle the identity provider's https certificate is checked against (unset: the system's).
    oidc_ca_bundle: Path | None = None
    # A token with an unknown key id fetches the JWKS again at most this often (failed fetches too).
    oidc_key_refresh_seconds: float = Field(default=60.0, ge=0)
    # The label export takes an image only when its BurnedInAnnotation says NO; CR may leave it out
    # (Type 3). A site that knows its CR units never burn names into pixels allows those here.
    labels_export_unflagged_images: bool = False
    routing_file: Path = Field(default_factory=lambda: bundled("configs") / "routing.yaml")
    models_dir: Path = Field(default_factory=lambda: bundled("models"))
    worker_threads: int = Field(default=0, ge=0)
    # How the CPU runs the networks: ONNX Runtime (exported from the checked weights at first load,
    # cached under home; 4.7x eager torch on a 2-core EPYC, outputs within 6e-6) or torch. A GPU
    # always runs torch.
    cpu_serving: Literal["onnx", "torch"] = "onnx"
    onnx_cache: Path | None = None  # where the exports are kept; default: home/cache/onnx

    max_associations: int = Field(default=16, ge=1)
    acse_timeout_seconds: float = Field(default=30.0, gt=0)
    dimse_timeout_seconds: float = Field(default=60.0, gt=0)
    network_timeout_seconds: float = Field(default=60.0, gt=0)
    maximum_pdu_bytes: int = Field(default=131072, ge=0)

    # Below this much free space on storage the listener refuses new instances (transient), so that
    # what it acknowledges can always be made durable; quarantine may use at most its quota.
    storage_min_free_bytes: int = Field(default=2 << 30, ge=0)
    max_instance_bytes: int = Field(default=2 << 30, ge=1)  # larger instances: 0xA700, never read whole
    quarantine_quota_bytes: int = Field(default=10 << 30, ge=0)
    # Remove an original from storage this many days after its study was REPORTED (the PACS holds
    # the images; rows, hashes and results stay). Unset: keep every original.
    retain_originals_days: float | None = Field(default=None, gt=0)

    tls_certificate: Path | None = None
    tls_private_key: Path | None = None
    tls_client_ca: Path | None = None

    # MLflow: runs, the model registry and the promoted models. Unset: a local store under home
    # (no server). MLFLOW_TRACKING_URI, MLflow's own variable, is read too.
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "mlflow_tracking_uri", "TRIAGE_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"
        ),
    )
    # How often a worker asks the registry whether another model was promoted (hot reload).
    model_check_seconds: float = Field(default=30.0, gt=0)

    monitor_interval_seconds: float = Field(default=0.5, gt=0)
    # Shorter than the result deadlines (fracture 900 s), so that a lost worker's study gets another try.
    analysis_lease_seconds: float = Field(default=240.0, gt=0)
    analysis_max_attempts: int = Field(default=3, ge=1)  # claims before "analysis failed"
    # A version queued this long that no worker took is queued again (checked every minute): a broker
    # may lose messages (Redis restarted without persistence). Shorter than the result deadlines.
    queued_republish_seconds: float = Field(default=300.0, gt=0)
    # Fault injection for the acceptance and crash tests: a worker waits this long after claiming a
    # study, so that a test can kill it mid-analysis. Never set it in production (0: off).
    fault_hold_after_claim_seconds: float = Field(default=0.0, ge=0)
    # Fault injection for the acceptance suite: the listener SIGKILLs itself at this step of storing
    # an instance ("received": in its file, before it is made durable; "synced": after the fsync,
    # before the rename; "stored": durable, before the commit; "committed": before the answer).
    # Never set it in production ("": off).
    fault_kill_listener_at: Literal["", "received", "synced", "stored", "committed"] = ""
    # Leftovers of a crash (see dicom_node/reconcile.py): how old a loose file must be before it is
    # settled (longer than any reception or write may pause), and how often storage is walked.
    leftover_grace_seconds: float = Field(default=3600.0, gt=0)
    reconcile_interval_seconds: float = Field(default=3600.0, gt=0)
    # triage serve: the wait before a child that stopped is started again, doubled with each stop
    # in ten minutes (at most five minutes); five stops in ten minutes show it as degraded.
    serve_restart_backoff_seconds: float = Field(default=1.0, gt=0)

    @field_validator("oidc_issuer", "oidc_jwks_url")
    @classmethod
    def _https(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError(f"{info.field_name} must be an https:// URL (tokens and keys travel over it)")
        return value

    @field_validator("ae_title")
    @classmethod
    def _ae_title(cls, value: str) -> str:
        return check_ae_title(value)

    @field_validator("allowed_calling_aes", mode="before")
    @classmethod
    def _split_aes(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            return tuple(part if part == "*" else check_ae_title(str(part)) for part in value)
        return value

    @field_validator("calling_ae_addresses", "calling_ae_certificates", mode="before")
    @classmethod
    def _bindings(cls, value: object, info: ValidationInfo) -> object:
        return parse_bindings(value, networks=info.field_name == "calling_ae_addresses")

    @model_validator(mode="after")
    def _tls_pair(self) -> Self:
        if (self.tls_certificate is None) != (self.tls_private_key is None):
            raise ValueError("DICOM TLS needs both TRIAGE_TLS_CERTIFICATE and TRIAGE_TLS_PRIVATE_KEY")
        if self.tls_client_ca is not None and self.tls_certificate is None:
            raise ValueError("TRIAGE_TLS_CLIENT_CA needs TRIAGE_TLS_CERTIFICATE and TRIAGE_TLS_PRIVATE_KEY")
        if (self.api_tls_certificate is None) != (self.api_tls_private_key is None):
            raise ValueError("HTTPS needs both TRIAGE_API_TLS_CERTIFICATE and TRIAGE_API_TLS_PRIVATE_KEY")
        if (self.oidc_issuer is None) != (self.oidc_audience is None):
            raise ValueError("OIDC needs both TRIAGE_OIDC_ISSUER and TRIAGE_OIDC_AUDIENCE")
        if not self.routing_file.is_file():
            raise ValueError(f"the routing file {self.routing_file} does not exist: set TRIAGE_ROUTING_FILE")
        return self

    def shown(self) -> dict[str, object]:
        """The settings as operators may see them: secrets masked, and any URL's password or
        credential-like query parameter masked too (an MLflow or OIDC URL can carry them)."""
        values: dict[str, object] = self.model_dump(mode="json")
        return {name: mask_credentials(v) if isinstance(v, str) else v for name, v in values.items()}

    @property
    def accepts_any_calling_ae(self) -> bool:
        """Whether the allow-list was opened to every calling AE with ``*``."""
        return "*" in self.allowed_calling_aes

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite under ``home``."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.home / 'triage.db').resolve()}"

    @property
    def oidc_enabled(self) -> bool:
        return self.oidc_issuer is not None

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def resolved_mlflow_tracking_uri(self) -> str:
        """The MLflow store: the configured URI, or SQLite under ``home`` with artifacts beside it."""
        return self.mlflow_tracking_uri or f"sqlite:///{(self.mlflow_dir / 'mlflow.db').resolve()}"

    @property
    def storage_dir(self) -> Path:
        return self.home / "storage"

    @property
    def incoming_dir(self) -> Path:
        """Where instances are received, on the same filesystem as storage so a rename is atomic."""
        return self.home / "incoming"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def results_dir(self) -> Path:
        """Structured reports and summary images waiting for, or delivered to, the PACS."""
        return self.home / "results"

    @property
    def onnx_cache_dir(self) -> Path | None:
        """Where ONNX exports of the models are cached (None: the CPU serves with torch)."""
        if self.cpu_serving != "onnx":
            return None
        return self.onnx_cache or self.home / "cache" / "onnx"

    @property
    def queue_dir(self) -> Path:
        """The embedded broker's folder, used when ``broker_url`` is unset."""
        return self.home / "queue"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        yaml_file = settings_cls.model_config.get("yaml_file")
        if yaml_file is not None:
            sources += (YamlConfigSettingsSource(settings_cls),)
        return sources


def load_settings(config_file: Path | None = None, **overrides: object) -> Settings:
    """Build the settings once: keyword overrides, then ``TRIAGE_*`` variables, then the YAML file.

    Raises:
        pydantic.ValidationError: a setting is invalid; the message names it.
        FileNotFoundError: ``config_file`` was given but does not exist.
    """
    if config_file is None:
        return Settings(**overrides)  # type: ignore[arg-type]
    if not config_file.is_file():
        raise FileNotFoundError(f"the configuration file {config_file} does not exist")

    class FileSettings(Settings):
        model_config = SettingsConfigDict(yaml_file=config_file)

    return FileSettings(**overrides)  # type: ignore[arg-type]
