"""Storage options (`--storage-option k=v`) and the fsspec filesystem for a URL.

Secrets are refused as options: params are shown in the Prefect UI and stored with flow runs, so
credentials come from the standard AWS environment variables (or an instance role) only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from schemas.errors import StorageOptionError

SECRET_KEYS = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_access_key_id",
        "session_token",
        "access_key",
        "secret_key",
    }
)


def _coerce(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def parse_storage_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``["anon=false", "client_kwargs.endpoint_url=http://…"]`` → nested dict with JSON-typed values."""
    options: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise StorageOptionError(f"--storage-option {pair!r}: expected KEY=VALUE")
        keys = name.strip().split(".")
        check_no_secrets({keys[-1]: raw})
        node = options
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise StorageOptionError(f"--storage-option {pair!r}: {key!r} is not a mapping")
        node[keys[-1]] = _coerce(raw)
    return options


def check_no_secrets(options: Mapping[str, Any]) -> None:
    """Raise if a credential is passed as an option (it would show in logs and the Prefect UI)."""
    for key, value in options.items():
        if key.lower() in SECRET_KEYS:
            raise StorageOptionError(
                f"storage option {key!r} looks like a credential; set AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment instead"
            )
        if isinstance(value, Mapping):
            check_no_secrets(value)


def redact(text: str) -> str:
    """Remove credential values found in the environment from ``text`` (logs, reports, artifacts)."""
    for var in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"):
        value = os.environ.get(var)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def filesystem(
    url: str, options: Mapping[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and in-filesystem path for ``url`` (local paths, s3://, memory://, …)."""
    fs, path = url_to_fs(url, **dict(options or {}))
    return fs, path


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def is_object_store(fs: fsspec.AbstractFileSystem) -> bool:
    """Object stores publish an object only when its upload completes: a write there is atomic."""
    protos = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    return bool(protos & {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
