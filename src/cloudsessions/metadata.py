"""Session metadata: where a signed-in session is used, for "where you're signed in" pages.

A front door tells the request's SessionState who is asking (`Client`: the peer address and
the User-Agent header); a write of a signed-in session then records, beside its user id,
when it was created, when it was last written ("last seen"), the address (truncated to its
/24 or /48 network by default) and the user agent. Anonymous sessions record nothing: no
listing can show them, and their bytes would be paid on every write.

Nothing here adds a write: the metadata rides on writes the session makes anyway (a change,
a due expiry refresh), so "last seen" is as precise as the refresh interval.

The metadata is one short JSON text per record (`encode`/`decode`), so a store keeps it as
one more attribute, like the user id.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from .errors import ConfigurationError
from .record import Metadata

logger = logging.getLogger("cloudsessions")

# A browser's User-Agent is about 150 characters; anything much longer is not one.
MAX_USER_AGENT = 512


@dataclass(frozen=True, slots=True)
class Client:
    """Who made the request, as the front door saw it (None where it could not tell)."""

    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class MetadataSettings:
    """Which metadata a front door records: the `METADATA` setting of each front door.

    `truncate_ip` keeps only the network of an address (IPv4 /24, IPv6 /48), enough to tell
    a user "Paris, home network" from "somewhere else" without storing who they are.
    """

    created_at: bool = True
    last_seen: bool = True
    ip: bool = True
    user_agent: bool = True
    truncate_ip: bool = True

    @property
    def enabled(self) -> bool:
        return self.created_at or self.last_seen or self.ip or self.user_agent

    @classmethod
    def parse(cls, value: object, setting: str) -> MetadataSettings | None:
        """The settings `value` (True, False/None, or a mapping of the fields above) gives;
        None records nothing. `setting` names what to fix in errors."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if not isinstance(value, Mapping):
            raise ConfigurationError(
                f"{setting} must be True, False or a mapping of"
                f" {', '.join(f.name for f in fields(cls))}, got {value!r}"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigurationError(
                f"{setting} has unknown key(s) {', '.join(map(str, unknown))};"
                f" known: {', '.join(sorted(known))}"
            )
        wrong = sorted(k for k, v in value.items() if not isinstance(v, bool))
        if wrong:
            raise ConfigurationError(f"{setting}: {', '.join(wrong)} must be True or False")
        settings = replace(cls(), **value)
        return settings if settings.enabled else None

    def observe(self, client: Client | None, created_at: float | None, now: float) -> Metadata:
        """The metadata a write at `now` records (`created_at` as the record has it)."""
        client = client or Client()
        agent = client.user_agent
        return Metadata(
            created_at=(now if created_at is None else created_at) if self.created_at else None,
            last_seen=now if self.last_seen else None,
            ip=_address(client.ip, self.truncate_ip) if self.ip else None,
            user_agent=agent[:MAX_USER_AGENT] if self.user_agent and agent else None,
        )


def _address(ip: str | None, truncate: bool) -> str | None:
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None  # a proxy's placeholder ("unknown"), a Unix socket: not an address
    if not truncate:
        return str(address)
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


# --------------------------------------------------------------------------- storage

_KEYS = (("c", "created_at"), ("s", "last_seen"), ("ip", "ip"), ("ua", "user_agent"))


def encode(meta: Metadata) -> str:
    """The JSON text a store keeps (short keys: it is paid for in every signed-in write)."""
    short = {k: getattr(meta, name) for k, name in _KEYS if getattr(meta, name) is not None}
    return json.dumps(short, separators=(",", ":"), ensure_ascii=False)


def decode(text: str | None) -> Metadata:
    """The metadata of a stored text; an absent or unreadable one is empty, never an error
    (it only decorates a listing)."""
    if not text:
        return Metadata()
    try:
        short: Any = json.loads(text)
        if not isinstance(short, dict):
            raise ValueError("not an object")
        values = {name: short.get(k) for k, name in _KEYS}
        for name in ("created_at", "last_seen"):
            if not isinstance(values[name], int | float) or isinstance(values[name], bool):
                values[name] = None
        for name in ("ip", "user_agent"):
            if not isinstance(values[name], str):
                values[name] = None
        return Metadata(**values)
    except ValueError:
        logger.warning("a session's metadata could not be decoded and was ignored")
        return Metadata()


# --------------------------------------------------------------------------- display


@dataclass(frozen=True, slots=True)
class Device:
    """A user agent as a person reads it: "Firefox 133 on Windows 10", "Safari on iPhone"."""

    browser: str | None
    os: str | None
    device: str | None

    @property
    def label(self) -> str:
        browser = self.browser or "Unknown browser"
        where = self.device if self.device and self.device != "Other" else self.os
        return f"{browser} on {where}" if where else browser


@functools.lru_cache(maxsize=1024)
def device(user_agent: str | None) -> Device:
    """Parsed by ua-parser (the maintained uap-core rules); cached, as a listing repeats few
    distinct agents."""
    if not user_agent:
        return Device(None, None, None)
    import ua_parser  # lazily: its rules take a moment to load, and only listings need them

    parsed = ua_parser.parse(user_agent)
    ua, os_, dev = parsed.user_agent, parsed.os, parsed.device
    browser = _named(ua.family, ua.major) if ua else None
    # Browsers on macOS freeze its version at 10.15 in the User-Agent: it says nothing.
    system = (
        "macOS"
        if os_ and os_.family == "Mac OS X"
        else _named(os_.family, os_.major)
        if os_
        else None
    )
    model = dev.family if dev and dev.family not in ("Other", "Mac", "Generic Smartphone") else None
    return Device(browser, system, model)


def _named(family: str | None, major: str | None) -> str | None:
    if not family or family == "Other":
        return None
    return f"{family} {major}" if major else family
