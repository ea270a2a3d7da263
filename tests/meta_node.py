"""A real `tessera meta` and a real `tessera node` beside it, as processes on loopback ports."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cli.launch import Launched, launch, stop


@dataclass
class MetaAndNode:
    meta: Launched
    node: Launched
    drives: list[Path]
    secret: bytes


@contextlib.contextmanager
def meta_and_node(base: Path, drives: int, node_args: Sequence[str] = ()) -> Iterator[MetaAndNode]:
    """Both running under a fresh cluster secret until the block ends; the node serves `drives` drives."""
    secret = secrets.token_urlsafe(32)
    env = {**os.environ, "TESSERA_CLUSTER_SECRET": secret, "PYTHONUNBUFFERED": "1"}
    meta = launch(
        ["meta", "--data", str(base / "meta"), "--listen", "127.0.0.1:0"],
        env,
        base / "meta.log",
        banner_end="Endpoint:",
    )
    try:
        paths = [base / f"d{i + 1}" for i in range(drives)]
        args = ["node", *(a for d in paths for a in ("--data", str(d))), "--listen", "127.0.0.1:0"]
        args += ["--meta", meta.endpoint.removeprefix("http://"), *node_args]
        node = launch(args, env, base / "node.log", banner_end="Endpoint:")
    except BaseException:
        stop(meta.proc)
        raise
    try:
        yield MetaAndNode(meta, node, paths, secret.encode())
    finally:
        stop(node.proc)
        stop(meta.proc)
