"""Values the settings are made of, each parsed with a full-sentence error: AE titles, DICOM
peers, per-AE bindings; and the masking of credentials in anything settings show."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

_PEER = re.compile(r"^(?P<ae>[^@]{1,16})@(?P<host>[^:@]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")
_HL7_PEER = re.compile(r"^(?P<app>[^@|^~\\&]{1,20})@(?P<host>[^:@]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@?#]*@")
_SECRET_QUERY = re.compile(
    r"(?P<name>[?&;](?:[^=&;#]*(?:password|passwd|pwd|secret|token|key|credential|signature)[^=&;#]*)=)[^&;#]*",
    re.IGNORECASE,
)
MASK = "**********"


def mask_credentials(value: str) -> str:
    """``value`` with a URL's userinfo (a user name can be a token) and secret-looking query values
    masked."""
    unmasked = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", value)
    return _SECRET_QUERY.sub(lambda m: f"{m['name']}{MASK}", unmasked)


def check_ae_title(value: str) -> str:
    """Return an AE title that PS3.5 allows: 1-16 characters, no backslash or control characters."""
    stripped = value.strip()
    if not 1 <= len(stripped) <= 16 or "\\" in stripped or not stripped.isprintable():
        raise ValueError(
            f"{value!r} is not a valid AE title: use 1 to 16 printable characters without a backslash"
        )
    return stripped


class DicomPeer(BaseModel):
    """A remote DICOM application entity, written ``AE@host:port``."""

    model_config = ConfigDict(frozen=True)

    ae_title: str
    host: str
    port: int = Field(ge=1, le=65535)

    @classmethod
    def parse(cls, text: str) -> DicomPeer:
        """Parse ``AE@host:port`` (an IPv6 host in brackets), failing with a full sentence."""
        match = _PEER.match(text.strip())
        if match is None:
            raise ValueError(
                f"{text!r} is not a DICOM peer: write it as AE@host:port, e.g. PACS@10.0.0.5:104"
            )
        return cls(
            ae_title=check_ae_title(match["ae"]),
            host=match["host"].strip("[]"),
            port=int(match["port"]),
        )

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


class Hl7Peer(BaseModel):
    """A remote HL7 v2 application listening for MLLP, written ``APPLICATION@host:port``; the name is
    what messages carry as their receiving application (MSH-5)."""

    model_config = ConfigDict(frozen=True)

    application: str = Field(min_length=1, max_length=20)  # HD's namespace ID holds 20 characters
    host: str
    port: int = Field(ge=1, le=65535)

    @classmethod
    def parse(cls, text: str) -> Hl7Peer:
        """Parse ``APPLICATION@host:port``, failing with a full sentence."""
        match = _HL7_PEER.match(text.strip())
        if match is None:
            raise ValueError(
                f"{text!r} is not an HL7 peer: write it as APPLICATION@host:port, e.g. RIS@10.0.0.7:2575 "
                "(the application name without HL7's delimiters | ^ ~ \\ &)"
            )
        return cls(application=match["app"].strip(), host=match["host"].strip("[]"), port=int(match["port"]))

    def __str__(self) -> str:
        return f"{self.application}@{self.host}:{self.port}"


def parse_bindings(value: object, *, networks: bool) -> object:
    """``AE=a;b,AE2=c`` (the environment's form) or a mapping (YAML) into ``{AE: (a, b), ...}``;
    with ``networks``, each value must be an IP network or address (``10.1.2.0/24``, ``10.1.2.3``)."""
    if isinstance(value, str):
        pairs: dict[str, object] = {}
        for part in filter(str.strip, value.split(",")):
            ae, sep, rest = part.partition("=")
            if not sep:
                raise ValueError(f"{part!r} is not AE=value: e.g. CT1=10.1.2.0/24;10.1.3.4")
            pairs[ae] = [v for v in rest.split(";") if v.strip()]
        value = pairs
    if not isinstance(value, dict):
        return value
    bound: dict[str, object] = {}
    for ae, items in value.items():
        listed = [items] if isinstance(items, str) else list(items)
        cleaned = tuple(str(v).strip() for v in listed)
        if networks:
            for network in cleaned:
                try:
                    ipaddress.ip_network(network, strict=False)
                except ValueError as error:
                    raise ValueError(f"{network!r} (for {ae}) is not an IP network or address") from error
        bound[check_ae_title(str(ae))] = cleaned if networks else cleaned[0]
    return bound


def syslog_address(url: str) -> tuple[str, str, int]:
    """``tcp://host:port`` or ``tls://host:port`` as (scheme, host, port); ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"a syslog collector is tcp://host:port or tls://host:port, not {url!r}")
    try:
        port = parts.port
    except ValueError as error:
        raise ValueError(f"the port of {url!r} is not a port") from error
    if port is None:
        raise ValueError(f"name the collector's port in {url!r} (syslog over TLS is usually 6514)")
    return parts.scheme, parts.hostname, port
