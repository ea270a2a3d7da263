"""`tessera dev`: a whole cluster on this machine, each service its own process on a loopback port."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import click

from cli.addresses import StartupError, parse_listen
from cli.launch import launch, stop
from cli.tls import make_local_pki
from cluster.client import CA_ENV
from gateway.accounts.credentials import CredentialsError, root_credentials

ZONES = 3  # dev nodes are spread over this many zones, so zone-aware placement is exercised


@dataclass
class Service:
    name: str
    args: list[str]
    log: Path
    endpoint: str = ""
    banner_end: str = "Endpoint:"
    proc: object = None  # subprocess.Popen[bytes] while running

    @property
    def pid(self) -> int:
        return self.proc.pid  # type: ignore[attr-defined]

    @property
    def hostport(self) -> str:
        return self.endpoint.partition("://")[2]


@dataclass
class DevCluster:
    data: Path
    nodes: int = 6
    metas: int = 3
    gateways: int = 1
    ec: str = "4+2"
    anti_entropy_interval: float = 30.0
    node_args: list[str] = field(default_factory=list)  # extra arguments for every `tessera node`
    gateway_args: list[str] = field(default_factory=list)  # extra arguments for every `tessera gateway`
    tls: bool = False  # metadata services and nodes serve HTTPS with certificates of a CA made in data/tls
    listen: str = "127.0.0.1:0"  # the first gateway's HOST:PORT; gateway i listens on PORT+i-1 (0: any free ports)
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    services: dict[str, Service] = field(default_factory=dict)
    _tls_args: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self.env.setdefault("TESSERA_CLUSTER_SECRET", self._cluster_secret())
        creds = root_credentials(self.data / "credentials.json", self.env)
        self.env["TESSERA_ACCESS_KEY"], self.env["TESSERA_SECRET_KEY"] = creds.access_key, creds.secret_key
        tls_args: list[str] = []
        if self.tls:
            ca, cert, key = make_local_pki(self.data / "tls")
            self.env[CA_ENV] = str(ca)  # every service trusts it for its https peers
            tls_args = ["--tls-cert", str(cert), "--tls-key", str(key)]
        scheme = "https://" if self.tls else ""
        try:
            # A replica set's members name each other, so their ports are chosen before any starts.
            ports = _free_ports(self.metas) if self.metas > 1 else [0]
            peers = ",".join(f"{scheme}127.0.0.1:{p}" for p in ports) if self.metas > 1 else ""
            for i, port in enumerate(ports):
                d = self.data / f"meta{i + 1}"
                args = ["meta", "--data", str(d), "--listen", f"127.0.0.1:{port}", *tls_args]
                if peers:
                    args += ["--peers", peers, "--anti-entropy-interval", str(self.anti_entropy_interval)]
                self._start(Service(f"meta{i + 1}", args, d / "log"))
            self._tls_args = tls_args
            self._start_together([self._node(i + 1) for i in range(self.nodes)])
            meta = self._meta()
            host, port = parse_listen(self.listen)
            for i in range(self.gateways):
                d = self.data / f"gateway{i + 1}"
                at = f"{host}:{port + i if port else 0}"
                args = ["gateway", "--listen", at, "--meta", meta, "--ec", self.ec, *self.gateway_args]
                self._start(Service(f"gateway{i + 1}", args, d / "log", banner_end="export "))
        except BaseException:
            self.stop()
            raise

    def _meta(self) -> str:
        return ",".join(s.endpoint for s in self.services.values() if s.name.startswith("meta"))

    def _node(self, n: int, extra: Sequence[str] = ()) -> Service:
        """Storage node number n (from 1), in zone n modulo ZONES, its drive in data/nodeN/drive1."""
        d = self.data / f"node{n}"
        args = ["node", "--data", str(d / "drive1"), "--listen", "127.0.0.1:0", "--meta", self._meta()]
        args += [*self._tls_args, "--zone", f"zone{(n - 1) % ZONES + 1}", *self.node_args, *extra]
        return Service(f"node{n}", args, d / "log")

    def add_node(self, extra: Sequence[str] = ()) -> Service:
        """Start one more storage node into the running cluster (it registers itself); its service."""
        n = 1 + max((int(s.name[4:]) for s in self.services.values() if s.name.startswith("node")), default=0)
        svc = self._node(n, extra)
        self._start(svc)
        return svc

    def _cluster_secret(self) -> str:
        path = self.data / "cluster-secret"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def _start(self, svc: Service) -> None:
        self._launch(svc)
        self.services[svc.name] = svc

    def _start_together(self, services: list[Service]) -> None:
        """Start independent services at once (most of a start is the interpreter's); registered in order,
        the ones that did start included when another failed, so that stop() ends them."""
        with ThreadPoolExecutor(max_workers=max(1, len(services))) as pool:
            futures = [pool.submit(self._launch, svc) for svc in services]
        for svc in services:
            if svc.proc is not None:
                self.services[svc.name] = svc
        for f in futures:
            f.result()

    def _launch(self, svc: Service) -> None:
        svc.log.parent.mkdir(parents=True, exist_ok=True)
        run = launch(svc.args, self.env, svc.log, banner_end=svc.banner_end)
        svc.proc, svc.endpoint = run.proc, run.endpoint
        if "127.0.0.1:0" in svc.args:  # a restart comes back on the same address
            svc.args[svc.args.index("127.0.0.1:0")] = svc.hostport

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        svc = self.services[name]
        os.kill(svc.pid, sig)
        if sig == signal.SIGKILL:
            svc.proc.wait()  # type: ignore[attr-defined]

    def restart(self, name: str) -> None:
        svc = self.services[name]
        if svc.proc is not None and svc.proc.poll() is None:  # type: ignore[attr-defined]
            stop(svc.proc)  # type: ignore[arg-type]
        self._start(svc)

    def stop(self) -> None:
        for svc in reversed(list(self.services.values())):
            if svc.proc is not None:
                try:
                    os.kill(svc.pid, signal.SIGCONT)  # a paused service must be able to exit
                except ProcessLookupError:
                    pass
                stop(svc.proc)  # type: ignore[arg-type]

    def reap(self) -> list[tuple[Service, int, int]]:
        """The services that have exited since they were started, with their exit codes (negative: the
        signal) and pids; each reaped (no zombie left) and forgotten, so it is reported once."""
        dead = []
        for svc in self.services.values():
            if svc.proc is not None and (code := svc.proc.poll()) is not None:  # type: ignore[attr-defined]
                dead.append((svc, svc.pid, code))
        for svc, _, _ in dead:
            svc.proc = None
        return dead

    def endpoint(self, gateway: int = 1) -> str:
        return self.services[f"gateway{gateway}"].endpoint


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@click.command()
@click.option("--nodes", default=6, show_default=True, help="Storage nodes to run.")
@click.option("--meta", "metas", default=3, show_default=True, help="Metadata replicas to run: 3, or 1 (unreplicated).")
@click.option("--gateways", default=1, show_default=True, help="S3 gateways to run.")
@click.option("--data", default="tessera-dev", show_default=True, help="Directory for every service's data.")
@click.option("--ec", default="4+2", show_default=True, help="Erasure code K+M.")
@click.option("--tls", is_flag=True, help="HTTPS between the services, with a CA and certificate made in DATA/tls.")
@click.option(
    "--listen",
    default="127.0.0.1:9000",
    show_default=True,
    help="HOST:PORT of the first gateway; gateway N listens on PORT+N-1 (PORT 0: free ports).",
)
def dev(nodes: int, metas: int, gateways: int, data: str, ec: str, tls: bool, listen: str) -> None:
    """Run a whole cluster on this machine; Ctrl-C stops it."""
    if metas not in (1, 3):
        click.echo("tessera dev: error: --meta must be 3 (a replica set) or 1 (a single, unreplicated index)", err=True)
        sys.exit(2)
    if nodes < 1 or gateways < 1:
        click.echo("tessera dev: error: --nodes and --gateways must be at least 1", err=True)
        sys.exit(2)
    # Set, not inherited: a shell that starts us in the background with `&` leaves SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the pause below when a service dies
    cluster = DevCluster(Path(data), nodes=nodes, metas=metas, gateways=gateways, ec=ec, tls=tls, listen=listen)
    try:
        cluster.start()
        _announce(cluster)
        while True:
            signal.pause()
            for svc, pid, code in cluster.reap():
                how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
                click.echo(f"tessera dev: {svc.name} (pid {pid}) {how}; see {svc.log}", err=True)
    except KeyboardInterrupt:
        pass
    except (StartupError, CredentialsError, RuntimeError, OSError) as exc:
        click.echo(f"tessera dev: error: {exc}", err=True)
        sys.exit(2)
    finally:
        cluster.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _announce(cluster: DevCluster) -> None:
    for svc in cluster.services.values():
        if not svc.name.startswith("gateway"):
            click.echo(f"{svc.name:<10} {svc.endpoint}  (pid {svc.pid})")
    for i in range(2, cluster.gateways + 1):
        click.echo(f"gateway{i:<3}  {cluster.endpoint(i)}")
    click.echo(f"Endpoint:  {cluster.endpoint(1)}")
    click.echo(
        f"export AWS_ACCESS_KEY_ID={cluster.env['TESSERA_ACCESS_KEY']}  "
        f"AWS_SECRET_ACCESS_KEY={cluster.env['TESSERA_SECRET_KEY']}"
    )
    sys.stdout.flush()
