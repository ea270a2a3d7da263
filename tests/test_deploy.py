"""deploy/: the systemd units, the container image definition, the compose file and the Grafana dashboard.

Containers cannot run here, so what can be tested is: the files parse and say what they must (a non-root
user, hardening, a healthcheck), and the commands and settings they give start a working three-host
cluster as plain processes, one loopback address per host (127.0.0.2, .3, .4)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import yaml

from cli.launch import Launched, launch, stop, tessera_command

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
MiB = 1 << 20
HOSTS = (1, 2, 3)
PORTS = (7000, 7100, 7101, 9000)  # meta, node a, node b, gateway: the ports the files use


def ip(host: int) -> str:
    return f"127.0.0.{host + 1}"


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit's sections; a key may repeat."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None and "=" in line, f"{path.name}: {raw!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def env_file(path: Path) -> dict[str, str]:
    pairs = (ln.split("=", 1) for ln in path.read_text().splitlines() if ln and not ln.startswith("#"))
    return {k: v for k, v in pairs}


@dataclass
class Layout:
    """What the test rewrites in the files' settings: host names, ports and directories."""

    base: Path
    ports: dict[int, int]  # the files' port -> a free one here

    def text(self, text: str, host: int, root: Path) -> str:
        text = text.replace("0.0.0.0:", f"{ip(host)}:")
        text = re.sub(r"tessera-(\d)", lambda m: ip(int(m.group(1))), text)
        text = re.sub(r":(\d{4})\b", lambda m: f":{self.ports.get(int(m.group(1)), int(m.group(1)))}", text)
        return text.replace("/srv/tessera", str(root / "srv")).replace("/var/lib/tessera", str(root / "var"))


def _free_ports() -> dict[int, int]:
    socks = []
    try:
        for _ in PORTS:
            s = socket.socket()
            s.bind((ip(1), 0))
            socks.append(s)
        return {p: s.getsockname()[1] for p, s in zip(PORTS, socks, strict=True)}
    finally:
        for s in socks:
            s.close()


def _start_all(groups: list[list[tuple[list[str], dict[str, str], Path, str]]]) -> list[Launched]:
    """Start each group's services together, the groups in order (metas, nodes, gateways)."""
    started: list[Launched] = []
    try:
        for group in groups:
            with ThreadPoolExecutor(len(group)) as pool:
                futures = [pool.submit(launch, args, env, log, None, end) for args, env, log, end in group]
            for f in futures:
                started.append(f.result())
    except BaseException:
        for run in started:
            stop(run.proc)
        raise
    return started


def _check_cluster(gateways: list[str], env: dict[str, str]) -> None:
    clients = [
        boto3.client(
            "s3",
            endpoint_url=g,
            aws_access_key_id=env["TESSERA_ACCESS_KEY"],
            aws_secret_access_key=env["TESSERA_SECRET_KEY"],
            region_name="us-east-1",
        )
        for g in gateways
    ]
    clients[0].create_bucket(Bucket="deployed")
    data = os.urandom(3 * MiB + 7)
    clients[0].put_object(Bucket="deployed", Key="k", Body=data)
    for c in clients:  # any gateway answers for the whole cluster
        assert c.get_object(Bucket="deployed", Key="k")["Body"].read() == data


def _cluster_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    return {**env, **env_file(DEPLOY / "cluster.env.example")}


# -- systemd ---------------------------------------------------------------------------------------------


UNITS = {
    "tessera-meta.service": "meta",
    "tessera-node@.service": "node",
    "tessera-gateway.service": "gateway",
    "tessera-server.service": "server",
}


@pytest.mark.parametrize("name", list(UNITS))
def test_units_run_hardened_as_their_own_user(name: str) -> None:
    u = unit(DEPLOY / "systemd" / name)
    svc = u["Service"]
    assert svc["User"] == ["tessera"] and svc["Restart"] == ["on-failure"]
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes")]:
        assert svc[key] == [value], key
    assert svc["CapabilityBoundingSet"] == [""]
    assert u["Install"]["WantedBy"] == ["multi-user.target"]
    (cmd,) = svc["ExecStart"]
    exe, role, flag, config = cmd.split()
    assert (exe, role, flag) == ("/usr/local/bin/tessera", UNITS[name], "--config")
    for instance in ("a", "b") if "%i" in config else ("",):
        path = DEPLOY / "config" / Path(config.replace("%i", instance)).name
        r = subprocess.run([*tessera_command(), "config", "check", str(path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def systemd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Launched], dict[str, str]]]:
    """The three hosts as the units and config files would run them."""
    base = tmp_path_factory.mktemp("hosts")
    layout = Layout(base, _free_ports())
    env = _cluster_env()
    groups: list[list[tuple[list[str], dict[str, str], Path, str]]] = [[], [], []]
    for host in HOSTS:
        root = base / f"host{host}"
        (root / "etc").mkdir(parents=True)
        for name, instances in [("meta", [""]), ("node", ["a", "b"]), ("gateway", [""])]:
            unit_name = "tessera-node@.service" if name == "node" else f"tessera-{name}.service"
            (cmd,) = unit(DEPLOY / "systemd" / unit_name)["Service"]["ExecStart"]
            for inst in instances:
                config = Path(cmd.split()[-1].replace("%i", inst)).name
                # The files are host 1's: on host N its own name where host 1's stands for itself.
                text = (DEPLOY / "config" / config).read_text()
                text = re.sub(r'(listen|zone) = "tessera-1', rf'\1 = "tessera-{host}', text)
                path = root / "etc" / config
                path.write_text(layout.text(text, host, root))
                args = [cmd.split()[1], "--config", str(path)]
                end = "export " if name == "gateway" else "Endpoint:"
                groups[["meta", "node", "gateway"].index(name)].append((args, env, root / f"{config}.log", end))
    runs = _start_all(groups)
    yield runs, env
    for run in reversed(runs):
        stop(run.proc)


def test_systemd_layout_serves_and_survives_a_host(systemd_cluster: tuple[list[Launched], dict[str, str]]) -> None:
    runs, env = systemd_cluster
    gateways = [r.endpoint for r in runs[-3:]]
    assert [g.split("//")[1].split(":")[0] for g in gateways] == [ip(h) for h in HOSTS]
    _check_cluster(gateways, env)
    # Host 3's two nodes go away: with a zone per host, at most m=2 fragments of an object were there.
    for run in runs[3 + 4 : 3 + 6]:
        stop(run.proc)
    s3 = boto3.client(
        "s3",
        endpoint_url=gateways[0],
        aws_access_key_id=env["TESSERA_ACCESS_KEY"],
        aws_secret_access_key=env["TESSERA_SECRET_KEY"],
        region_name="us-east-1",
    )
    assert len(s3.get_object(Bucket="deployed", Key="k")["Body"].read()) == 3 * MiB + 7


def test_grafana_dashboard_uses_metrics_that_exist(systemd_cluster: tuple[list[Launched], dict[str, str]]) -> None:
    import urllib.request

    runs, _ = systemd_cluster
    names: set[str] = set()
    for run in (runs[0], runs[3], runs[-1]):  # a meta service, a node, a gateway
        with urllib.request.urlopen(run.endpoint + "/metrics", timeout=10) as resp:
            names |= {ln.split()[2] for ln in resp.read().decode().splitlines() if ln.startswith("# TYPE")}
    board = json.loads((DEPLOY / "grafana" / "tessera.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(tessera_[a-z0-9_]+)", e)}
    assert used
    for metric in used:
        family = re.sub(r"_(total|bucket|sum|count)$", "", metric)
        assert metric in names or family in names, metric


def test_container_healthcheck_command(systemd_cluster: tuple[list[Launched], dict[str, str]]) -> None:
    text = (DEPLOY / "Containerfile").read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    user = next(ln.split()[1] for ln in lines if ln.startswith("USER "))
    assert user not in ("root", "0")
    assert json.loads(next(ln for ln in lines if ln.startswith("ENTRYPOINT "))[len("ENTRYPOINT ") :]) == ["tessera"]
    check = next(ln for ln in lines if ln.startswith("HEALTHCHECK "))
    cmd = json.loads(check[check.index("CMD ") + 4 :])
    runs, env = systemd_cluster
    gateway = runs[-1].endpoint.split("//")[1]
    ok = subprocess.run(cmd, env={**env, "TESSERA_LISTEN": gateway}, capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    bad = subprocess.run(cmd, env={**env, "TESSERA_LISTEN": dead}, capture_output=True, timeout=30)
    assert bad.returncode != 0


# -- compose ---------------------------------------------------------------------------------------------


def test_compose_layout_runs_as_processes(tmp_path: Path) -> None:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = doc["services"]
    assert len(services) == 12 and set(doc["volumes"]) == {s for s in services if not s.endswith("gateway")}
    layout = Layout(tmp_path, _free_ports())
    env = _cluster_env()
    groups: list[list[tuple[list[str], dict[str, str], Path, str]]] = [[], [], []]
    for name, svc in services.items():
        host = int(name[1])
        if name.endswith("-meta"):
            assert f"tessera-{host}" in svc["networks"]["default"]["aliases"]
        else:  # the host's other services share its network, as processes on one machine do
            assert svc["network_mode"] == f"service:h{host}-meta"
        assert svc["image"] and svc["env_file"] == "cluster.env"
        root = tmp_path / name
        settings = {k: layout.text(str(v), host, root) for k, v in svc["environment"].items()}
        role = svc["command"][0]
        end = "export " if role == "gateway" else "Endpoint:"
        group = ["meta", "node", "gateway"].index(role)
        groups[group].append(([*svc["command"]], {**env, **settings}, tmp_path / f"{name}.log", end))
    runs = _start_all(groups)
    try:
        _check_cluster([r.endpoint for r in runs[-3:]], env)
    finally:
        for run in reversed(runs):
            stop(run.proc)
