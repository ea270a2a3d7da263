"""Turning the command line's HOST:PORT flags into addresses and clients."""

from __future__ import annotations

from metadata.index import Index
from metadata.remote.client import RemoteIndex
from metadata.replica.client import ReplicaClient
from metadata.replicated.index import ReplicatedIndex


class StartupError(Exception):
    """A problem the user can fix; shown as one line, exit code 2."""


def parse_listen(text: str, flag: str = "--listen") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise StartupError(f"{flag} must be HOST:PORT, not {text!r}")
    return host, int(port)


def url(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def parse_peer(text: str, flag: str, scheme: str = "http") -> tuple[str, int, str]:
    """A service's address, HOST:PORT (plain `scheme`) or http(s)://HOST:PORT: host, port, scheme."""
    for prefix in ("https", "http"):
        if text.startswith(prefix + "://"):
            scheme, text = prefix, text[len(prefix) + 3 :].rstrip("/")
            break
    return (*parse_listen(text, flag), scheme)


def meta_urls(text: str) -> list[str]:
    """--meta [https://]HOST:PORT,... as base URLs (https: TLS, trusting the cluster's CA)."""
    urls = []
    for item in (t.strip() for t in text.split(",")):
        if item:
            urls.append(url(*parse_peer(item, "--meta")))
    if not urls:
        raise StartupError("--meta needs at least one HOST:PORT")
    return urls


def index_client(urls: list[str], secret: bytes) -> Index:
    """One address: that metadata service (a single replica, or one replica coordinating for us).
    Three: the replicated index, coordinating itself over the three replicas (one hop fewer)."""
    if len(set(urls)) == 1:
        return RemoteIndex(urls[0], secret)
    if len(set(urls)) != 3:
        raise StartupError("--meta takes one metadata service address, or all three replicas of a replica set")
    clients = [ReplicaClient(u, secret) for u in dict.fromkeys(urls)]
    return ReplicatedIndex(list(clients), closers=clients)
