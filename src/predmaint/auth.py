"""Shared secrets read from files: bearer tokens for HTTP endpoints, the MQTT password.

Secrets never travel on command lines (any local user can read `/proc/*/cmdline`); they come
from files, in a cluster from a Secret mounted as a file. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import os
import stat
from pathlib import Path

MIN_TOKEN_LENGTH = 16
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class SecretError(ValueError):
    """A secret file cannot be used; the message says why and what to do."""


def read_secret(path: str | Path, what: str, *, min_length: int = 1) -> str:
    """The secret in `path` without its trailing newline; a clear error when it cannot serve."""
    path = Path(path)
    try:
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except FileNotFoundError:
        raise SecretError(f"{what} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(
            f"{what} {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    if len(value) < min_length:
        raise SecretError(f"{what} {path}: holds {len(value)} characters, need at least {min_length}")
    if any(not 0x21 <= ord(char) <= 0x7E for char in value):
        raise SecretError(f"{what} {path}: only printable ASCII without blanks can be a secret")
    return value


def read_token(path: str | Path, what: str = "token file") -> str:
    """A bearer token of at least MIN_TOKEN_LENGTH characters, e.g. `openssl rand -hex 32`."""
    return read_secret(path, what, min_length=MIN_TOKEN_LENGTH)


def group_or_world_readable(path: str | Path) -> bool:
    """True when users other than the owner can read the file (a hint worth a warning)."""
    return bool(os.stat(path).st_mode & (stat.S_IRGRP | stat.S_IROTH))


def bearer_matches(header: str | None, token: str) -> bool:
    """True when an `Authorization` header carries exactly `Bearer <token>` (constant-time)."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return secret_matches(given.strip(), token)


def secret_matches(given: str | None, token: str) -> bool:
    """True when `given` is exactly `token`, compared in constant time (None never matches)."""
    return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")
