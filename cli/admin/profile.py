"""Who `tessera admin` signs as and where it connects, found the way aws-cli finds them: the AWS_*
variables, then a profile of ~/.aws/credentials and ~/.aws/config (--profile, else AWS_PROFILE, else
"default"). A profile named with --profile wins over the key variables, as in aws-cli."""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass
from pathlib import Path


class ProfileError(Exception):
    """A named profile that no file has, or a file that cannot be read."""


@dataclass(frozen=True)
class Identity:
    access_key: str
    secret_key: str
    region: str
    endpoint: str | None  # the profile's endpoint_url, if it has one


def _read(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path)
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ProfileError(f"cannot read {path}: {exc}") from None
    return parser


def _files() -> tuple[Path, Path]:
    creds = os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"
    config = os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"
    return Path(creds).expanduser(), Path(config).expanduser()


def _profile(name: str) -> dict[str, str]:
    """The profile's settings: the config file's [profile NAME] (or [default]) under the credentials
    file's [NAME]."""
    creds_path, config_path = _files()
    creds, config = _read(creds_path), _read(config_path)
    section = name if name == "default" else f"profile {name}"
    found: dict[str, str] = {}
    if config.has_section(section):
        found.update(config[section])
    if creds.has_section(name):
        found.update(creds[name])
    if not found and name != "default":
        raise ProfileError(f"no profile {name!r} in {creds_path} or {config_path}")
    return found


def identity(profile: str | None) -> Identity:
    """Raises ProfileError; missing keys come back empty (the caller says what to set)."""
    env = os.environ
    chosen = profile or env.get("AWS_PROFILE") or "default"
    settings = _profile(chosen)
    ak, sk = env.get("AWS_ACCESS_KEY_ID", ""), env.get("AWS_SECRET_ACCESS_KEY", "")
    if profile or not (ak and sk):  # an explicit --profile wins over the variables
        ak, sk = settings.get("aws_access_key_id", ""), settings.get("aws_secret_access_key", "")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or settings.get("region") or "us-east-1"
    return Identity(ak, sk, region, settings.get("endpoint_url") or None)
