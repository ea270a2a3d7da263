"""Root credentials: from TESSERA_ACCESS_KEY / TESSERA_SECRET_KEY, or generated once and kept with the data."""

from __future__ import annotations

import json
import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str


class CredentialsError(Exception):
    pass


def generate() -> Credentials:
    return Credentials(
        "TS" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(18)),
        "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40)),
    )


def credentials_from_env(env: dict[str, str] | None = None) -> Credentials | None:
    env = dict(os.environ) if env is None else env
    access, secret = env.get("TESSERA_ACCESS_KEY", ""), env.get("TESSERA_SECRET_KEY", "")
    if not (access or secret):
        return None
    if not (access and secret):
        raise CredentialsError("set both TESSERA_ACCESS_KEY and TESSERA_SECRET_KEY, or neither")
    if len(access) < 3 or len(secret) < 8:
        raise CredentialsError("TESSERA_ACCESS_KEY needs 3+ characters and TESSERA_SECRET_KEY 8+")
    return Credentials(access, secret)


def root_credentials(path: Path, env: dict[str, str] | None = None) -> Credentials:
    """The environment wins when both variables are set; else the stored pair; else a new one, stored."""
    from_env = credentials_from_env(env)
    if from_env is not None:
        return from_env
    try:
        data = json.loads(path.read_text())
        return Credentials(data["access_key"], data["secret_key"])
    except FileNotFoundError:
        pass
    except (ValueError, KeyError, TypeError) as exc:
        raise CredentialsError(f"{path} is damaged ({exc}); remove it to generate new credentials") from None
    creds = generate()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"access_key": creds.access_key, "secret_key": creds.secret_key}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return creds
