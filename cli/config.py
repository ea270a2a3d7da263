"""Every flag of every service also from the environment (TESSERA_<FLAG>) and from a TOML file (--config FILE).

A flag on the command line wins over the environment, which wins over the file (click's own order of
sources: command line, environment, default_map, default). The file holds a service's settings at its
top level, or in a table named after the service, so that one file can serve every role:

    listen = "127.0.0.1:9000"        # any service that has --listen
    [server]
    drives = ["/mnt/d1", "/mnt/d2", "/mnt/d3", "/mnt/d4", "/mnt/d5", "/mnt/d6"]
    gc-grace = 3600
    [node]
    data = ["/mnt/d1", "/mnt/d2"]

Keys are the flags' names without the dashes (`gc-grace` or `gc_grace`). A key that is no flag of the
service, or a value of the wrong kind, stops it with one line and exit code 2; `tessera config check FILE`
says the same before anything starts.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

import click

ENV_PREFIX = "TESSERA_"
ROLES = ("server", "gateway", "node", "meta", "dev")


class ConfigError(Exception):
    """The file cannot be read, or says something no flag means."""


def flag_name(param: click.Parameter) -> str:
    """A parameter's name as users write it: its long flag without dashes, or an argument's name."""
    if isinstance(param, click.Option):
        longs = [o for o in param.opts if o.startswith("--")]
        if longs:
            return longs[0][2:]
    return (param.name or "").replace("_", "-")


def env_name(param: click.Parameter) -> str:
    return ENV_PREFIX + flag_name(param).upper().replace("-", "_")


def _settable(cmd: click.Command) -> dict[str, click.Parameter]:
    return {flag_name(p): p for p in cmd.params if p.expose_value and flag_name(p) not in ("config", "help")}


def read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def settings_for(cmd: click.Command, role: str, doc: dict[str, Any], path: str) -> dict[str, Any]:
    """What `doc` sets for the service `role` (its top level, then its own table), by parameter name;
    values checked against the parameters' types."""
    params = _settable(cmd)
    values: dict[str, Any] = {}
    layers = [{k: v for k, v in doc.items() if not isinstance(v, dict)}]
    own = doc.get(role, {})
    if not isinstance(own, dict):
        raise ConfigError(f"{path}: [{role}] must be a table")
    layers.append(own)
    for table in doc:
        if isinstance(doc[table], dict) and table not in ROLES:
            raise ConfigError(f"{path}: unknown table [{table}] (the tables are {', '.join(ROLES)})")
    ctx = click.Context(cmd)
    for layer in layers:
        for key, value in layer.items():
            name = key.replace("_", "-")
            param = params.get(name)
            if param is None:
                where = f"[{role}]" if layer is own else "the top level"
                # A top-level key may belong to another role only if some role has it.
                if layer is not own and _known_elsewhere(name):
                    continue
                raise ConfigError(f"{path}: {key!r} in {where} is no flag of `tessera {role}`")
            try:
                param.type_cast_value(ctx, value)
            except click.BadParameter as exc:
                raise ConfigError(f"{path}: {key} = {value!r}: {exc.message}") from None
            values[param.name or name] = value
    return values


def _known_elsewhere(name: str) -> bool:
    from cli.main import main

    return any(name in _settable(c) for r in ROLES if (c := main.commands.get(r)) is not None)


def _load(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    try:
        values = settings_for(ctx.command, ctx.info_name or "", read(value), value)
    except ConfigError as exc:
        click.echo(f"tessera {ctx.info_name}: error: {exc}", err=True)
        sys.exit(2)
    ctx.default_map = {**(ctx.default_map or {}), **values}


def configurable(cmd: click.Command) -> click.Command:
    """Give every parameter of cmd an environment variable and add --config FILE (read before the rest)."""
    for p in cmd.params:
        if p.envvar is None:
            p.envvar = env_name(p)
            if isinstance(p, click.Option):
                p.show_envvar = False  # listed once in the docs, not on every line of --help
    cmd.params.insert(
        0,
        click.Option(
            ["--config"],
            metavar="FILE",
            is_eager=True,
            expose_value=False,
            callback=_load,
            help="TOML file of settings (flags win over TESSERA_<FLAG> variables, which win over the file).",
        ),
    )
    return cmd


@click.group("config")
def config_group() -> None:
    """Configuration files."""


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def check(file: Path) -> None:
    """Check FILE for every service it configures; exit 2 on the first problem."""
    from cli.main import main

    try:
        doc = read(str(file))
        roles = [r for r in ROLES if isinstance(doc.get(r), dict)] or ["server"]
        counts = []
        for role in roles:
            cmd = main.commands[role]
            counts.append(f"{role}: {len(settings_for(cmd, role, doc, str(file)))} setting(s)")
    except ConfigError as exc:
        click.echo(f"tessera config: error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"{file}: ok ({'; '.join(counts)})")
