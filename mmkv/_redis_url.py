"""Parsing of the Redis URLs that mmkv.open() accepts, checked before any connection is made.

    redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?namespace=NAME&OPTION=VALUE...]
    rediss://...                  the same over TLS
    redis+cluster://HOST[:PORT][?...]   a Redis Cluster, HOST:PORT being any one of its nodes

A bad URL is a ValueError naming the part that is wrong (scheme, host, port, db, namespace,
an option's name or value).  Nothing here touches the network.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

SCHEMES = ("redis://", "rediss://", "redis+cluster://")
_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
# option name -> (default, lowest allowed); all are seconds except watch_backlog (entries)
_FLOAT_OPTIONS = {"connect_timeout": (5.0, 0.001), "socket_timeout": (5.0, 0.001),
                  "lock_lease": (10.0, 0.05)}
_INT_OPTIONS = {"watch_backlog": (100_000, 1)}


def is_redis_url(target: object) -> bool:
    """Whether target (anything open() accepts) is a URL this module handles."""
    return isinstance(target, str) and target.startswith(SCHEMES)


@dataclass(frozen=True)
class RedisURL:
    """A parsed URL: where to connect, the namespace, and the tuning options."""

    url: str               # the URL as given, password removed: used in every error message
    cluster: bool
    tls: bool
    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    namespace: str
    connect_timeout: float
    socket_timeout: float
    lock_lease: float
    watch_backlog: int


def _redacted(url: str, parts: SplitResult) -> str:
    if parts.password is None:
        return url
    return url.replace(":" + parts.password + "@", ":***@", 1)


def _port(parts: SplitResult) -> int:
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in Redis URL: {parts.netloc!r}") from None
    if port == 0:
        raise ValueError(f"bad port in Redis URL: {parts.netloc!r}")
    return 6379 if port is None else port


def _db(path: str, cluster: bool) -> int:
    text = path.strip("/")
    if not text:
        return 0
    if cluster:
        raise ValueError(f"bad db in Redis URL: a cluster has only db 0, not {path!r}")
    if not text.isdigit() or int(text) > 1 << 31:
        raise ValueError(f"bad db in Redis URL: want a number, not {text!r}")
    return int(text)


def _option(name: str, text: str) -> float | int:
    if name in _FLOAT_OPTIONS:
        low = _FLOAT_OPTIONS[name][1]
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not low <= value < 1e9:
            raise ValueError(f"bad {name} in Redis URL: want seconds >= {low}, not {text!r}")
        return value
    if name in _INT_OPTIONS:
        if not text.isdigit() or int(text) < _INT_OPTIONS[name][1]:
            raise ValueError(f"bad {name} in Redis URL: want a positive integer, not {text!r}")
        return int(text)
    raise ValueError(f"unknown option {name!r} in Redis URL (known: namespace, "
                     f"{', '.join(sorted([*_FLOAT_OPTIONS, *_INT_OPTIONS]))})")


def _options(query: str, overrides: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The namespace and the options from the query string, then from keyword overrides."""
    values: dict[str, Any] = {name: default for name, (default, _) in
                              {**_FLOAT_OPTIONS, **_INT_OPTIONS}.items()}
    namespace = None
    seen: set[str] = set()
    for name, text in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if name in seen:
            raise ValueError(f"bad query in Redis URL: {name!r} given twice")
        seen.add(name)
        if name == "namespace":
            namespace = text
        else:
            values[name] = _option(name, text)
    for name, value in overrides.items():
        if name not in values:
            raise TypeError(f"open() got an unexpected keyword argument {name!r}")
        values[name] = _option(name, str(value))
    if namespace is None:
        raise ValueError("bad namespace in Redis URL: ?namespace=NAME is required")
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError(f"bad namespace in Redis URL: want 1-100 of A-Z a-z 0-9 _ . -, "
                         f"not {namespace!r}")
    return namespace, values


def parse(url: str, **overrides: Any) -> RedisURL:
    """The RedisURL for url; keyword overrides (connect_timeout=, socket_timeout=,
    lock_lease=, watch_backlog=) win over the query string.  ValueError names the bad part."""
    if not is_redis_url(url):
        raise ValueError(f"bad scheme in Redis URL {url!r}: want one of {', '.join(SCHEMES)}")
    parts = urlsplit(url)
    cluster = parts.scheme == "redis+cluster"
    if parts.fragment:
        raise ValueError(f"bad Redis URL {url!r}: a fragment ('#...') has no meaning here")
    host = parts.hostname
    if not host:
        raise ValueError(f"bad host in Redis URL {_redacted(url, parts)!r}: none given")
    namespace, values = _options(parts.query, overrides)
    return RedisURL(
        url=_redacted(url, parts), cluster=cluster, tls=parts.scheme == "rediss", host=host,
        port=_port(parts), db=_db(parts.path, cluster),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        namespace=namespace, **values)
