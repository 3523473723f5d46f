"""Baseline peers written in C: OpenSSH and stunnel for Portway's TLS paths, nginx for the edge.

Each peer is a path like those of `bench.paths`: a context manager `factory(origins, work)`
that starts its processes on free loopback ports, yields `Endpoints`, and stops everything when
the block ends. `bench.runner` registers them next to socat and ssh:

* `ssh`: ``ssh -N -L`` (or ``-R``) through a throwaway sshd with its own keys; ``-L`` is the
  baseline for ``reach/tls``, ``-R`` for ``public/tls``;
* `stunnel`: a stunnel4 client and server with TLS 1.3 between them, one service per TCP
  service of the origins; the baseline for every Portway ``*/tls`` path (what a tunnel with
  TLS in C costs on this machine);
* `nginx`: nginx as a keep-alive HTTP reverse proxy in front of the HTTP origin; the baseline
  for the edge (``edge/*``, ``share/*``);
* `nginx_tls`: the same nginx terminating TLS, for rows where the edge serves HTTPS; its
  `http` endpoint is a `TlsEndpoint`, whose URL is ``https://`` (wrk then speaks TLS).

The certificate is a throwaway self-signed ECDSA P-256 one (`self_signed`), the key type of
Portway's hub certificate. The stunnel client pins it (``verifyPeer = yes`` with it as the only
CA, as agents pin the hub's certificate; no chain or host name check) and resumes sessions;
clients of `nginx_tls` (wrk, curl ``-k``) do not verify it: these are benchmark baselines on
loopback, not deployments. Both peers speak TLS 1.3 only, with OpenSSL's default suites
(TLS_AES_256_GCM_SHA384 and X25519 negotiated here).

nginx connects to the origin only once a request arrives, so an idle connection that sent
nothing never reaches the origin: the idle-memory scenario does not apply to the nginx peers.
"""

from __future__ import annotations

import contextlib
import datetime
import grp
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.paths import Endpoints, _wait_listening
from bench.procs import Proc, wait_for
from bench.servers import Origins
from bench.tools import Endpoint
from portway.testing.ports import free_port

NGINX_WORKERS = 2
NGINX_CONNECTIONS = 4096  # per worker; a proxied request holds two (client and upstream)


@dataclass(frozen=True)
class TlsEndpoint(Endpoint):
    """An endpoint that speaks TLS (HTTPS for HTTP): its URL is ``https://``."""

    tls: bool = True

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}{self.prefix}"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for ``localhost`` and 127.0.0.1, valid for two
    days, written to `folder` (created if missing); returns (cert_path, key_path)."""
    import ipaddress

    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))  # fmt: skip
    key_path.chmod(0o600)
    return cert_path, key_path


def _binary(*names: str, fallback: str = "") -> str:
    for name in names:
        if found := shutil.which(name):
            return found
    if fallback and Path(fallback).exists():
        return fallback
    raise RuntimeError(f"{names[0]} is not installed (see bench/install-tools.sh)")


def _stunnel_config(role: str, work: Path, sections: dict[str, tuple[int, int]],
                    cert: Path, key: Path) -> Path:  # fmt: skip
    """One stunnel4 configuration: `sections` maps a service to (accept, connect) ports."""
    lines = [
        "foreground = yes", "syslog = no", "debug = warning",  # warnings and errors, to stderr
        f"pid = {work / f'stunnel-{role}.pid'}",
        # No setuid/setgid: stunnel keeps running as the current user.
        "socket = l:TCP_NODELAY=1", "socket = r:TCP_NODELAY=1",
    ]  # fmt: skip
    for name, (accept, connect) in sections.items():
        lines += [f"[{name}]", f"accept = 127.0.0.1:{accept}", f"connect = 127.0.0.1:{connect}",
                  "sslVersionMin = TLSv1.3"]  # fmt: skip
        if role == "server":
            lines += [f"cert = {cert}", f"key = {key}"]
        else:  # pinned: the server's certificate must be this one (as agents pin the hub's)
            lines += ["client = yes", "verifyPeer = yes", f"CAfile = {cert}"]
    config = work / f"stunnel-{role}.conf"
    config.write_text("\n".join(lines) + "\n")
    return config


@contextlib.contextmanager
def stunnel(origins: Origins, work: Path) -> Iterator[Endpoints]:
    """A stunnel4 client (plain TCP in) and server (TLS in, to the origin), TLS 1.3 between
    them, one section per TCP service: the C baseline for Portway's ``*/tls`` paths.

    stunnel runs a thread per connection in each process (about 80 KiB of RSS per idle
    connection in each, measured with 1,000 here): 10,000 idle connections need 20,000
    threads, over a cgroup's ``pids.max`` of 20,000 (this machine's)."""
    binary = _binary("stunnel4", "stunnel")
    cert, key = self_signed(work / "stunnel-certs")
    services = origins.tcp_services()
    inner = {name: free_port() for name in services}
    outer = {name: free_port() for name in services}  # TCP only: no iperf3 UDP
    procs: list[Proc] = []
    try:
        for role, sections in (
            ("server", {name: (inner[name], target) for name, target in services.items()}),
            ("client", {name: (outer[name], inner[name]) for name in services}),
        ):
            config = _stunnel_config(role, work, sections, cert, key)
            proc = Proc([binary, str(config)], work / f"stunnel-{role}.log")
            procs.append(proc)
            for accept, _connect in sections.values():
                _wait_listening(proc, accept, f"stunnel {role}")
        server, client = procs
        yield Endpoints(
            pids={"stunnel_client": (client.pid,), "stunnel_server": (server.pid,)},
            http_origin_port=origins.http_port,
        ).serving(outer)
    finally:
        for proc in reversed(procs):
            proc.stop()


def child_pids(parent: int) -> tuple[int, ...]:
    """The processes whose parent is `parent`, from /proc (nginx's workers under the master)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The command may hold spaces or parentheses: the fields follow the last ")".
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(stat.parent.name))
    return tuple(sorted(found))


def _workers(master: int) -> tuple[int, ...] | None:
    found = child_pids(master)
    return found if len(found) >= NGINX_WORKERS else None


def _nginx_config(work: Path, listen: str, origin_port: int, tls: tuple[Path, Path] | None
                  ) -> Path:  # fmt: skip
    temp = work / "nginx-temp"
    temp.mkdir(exist_ok=True)
    # The master runs as the current user; as root it would hand the workers to "nobody".
    user = ""
    if os.geteuid() == 0:
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
    ssl = ""
    if tls:
        ssl = (f"ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]}; "
               "ssl_protocols TLSv1.3; ssl_session_cache shared:tls:10m;")  # fmt: skip
    config = work / ("nginx-tls.conf" if tls else "nginx.conf")
    text = f"""\
daemon off;
master_process on;
{user}
worker_processes {NGINX_WORKERS};
worker_rlimit_nofile {2 * NGINX_CONNECTIONS + 64};
pid {work / "nginx.pid"};
error_log {work / "nginx-error.log"} warn;
events {{ worker_connections {NGINX_CONNECTIONS}; }}
http {{
    access_log off;
    client_body_temp_path {temp / "body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};
    upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 64; }}
    server {{
        listen {listen} backlog=4096;
        {ssl}
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
    config.write_text("".join(line for line in text.splitlines(keepends=True) if line.strip()))
    return config


@contextlib.contextmanager
def _nginx(origins: Origins, work: Path, tls: bool) -> Iterator[Endpoints]:
    binary = _binary("nginx", fallback="/usr/sbin/nginx")
    port = free_port()
    keys = self_signed(work / "nginx-certs") if tls else None
    listen = f"127.0.0.1:{port}" + (" ssl" if tls else "")
    config = _nginx_config(work, listen, origins.http_port, keys)
    proc = Proc([binary, "-p", f"{work}/", "-c", str(config), "-e", str(work / "nginx-error.log")],
                work / ("nginx-tls.log" if tls else "nginx.log"))  # fmt: skip
    try:
        _wait_listening(proc, port, "nginx")
        workers = wait_for(partial(_workers, proc.pid), timeout=15, what="nginx workers")
        endpoint = TlsEndpoint(port) if tls else Endpoint(port)
        yield Endpoints(http=endpoint, pids={"nginx": (proc.pid, *workers)},
                        http_origin_port=origins.http_port)  # fmt: skip
    finally:
        proc.stop()


@contextlib.contextmanager
def nginx(origins: Origins, work: Path) -> Iterator[Endpoints]:
    """nginx 1.22 as an HTTP/1.1 reverse proxy with a keep-alive upstream pool in front of the
    HTTP origin (two workers): the C baseline for Portway's edge. HTTP only; `pids` holds the
    master and its workers."""
    with _nginx(origins, work, tls=False) as endpoints:
        yield endpoints


@contextlib.contextmanager
def nginx_tls(origins: Origins, work: Path) -> Iterator[Endpoints]:
    """`nginx` terminating TLS 1.3 (self-signed certificate) in front of the HTTP origin, for
    the rows where the edge serves HTTPS: `http` is a `TlsEndpoint` (an ``https://`` URL)."""
    with _nginx(origins, work, tls=True) as endpoints:
        yield endpoints


def _sshd_binary() -> str:
    found = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(found).exists():
        raise RuntimeError("sshd is not installed (apt-get install openssh-server)")
    return str(Path(found).resolve())  # sshd refuses to start from a relative path


@dataclass(frozen=True)
class SshServer:
    port: int
    user_key: Path


@contextlib.contextmanager
def throwaway_sshd(work: Path) -> Iterator[SshServer]:
    """A throwaway sshd on a free loopback port, with its own host key and authorized key."""
    home = work / "ssh"
    home.mkdir(mode=0o700, exist_ok=True)
    host_key, user_key = home / "host_ed25519", home / "user_ed25519"
    for key in (host_key, user_key):
        if not key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
            )
    authorized = home / "authorized_keys"
    authorized.write_text(Path(f"{user_key}.pub").read_text())
    authorized.chmod(0o600)
    port = free_port()
    config = home / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {authorized}\nPidFile {home / 'sshd.pid'}\n"
        "PermitRootLogin yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nAllowTcpForwarding yes\nPrintMotd no\n"
        "MaxStartups 100\nMaxSessions 100\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory (Debian)
    daemon = Proc([_sshd_binary(), "-D", "-e", "-f", str(config)], home / "sshd.log")
    try:
        _wait_listening(daemon, port, "sshd")
        yield SshServer(port, user_key)
    finally:
        daemon.stop()


@contextlib.contextmanager
def ssh(origins: Origins, work: Path, reverse: bool = False) -> Iterator[Endpoints]:
    """`ssh -N -L` (or, `reverse`, `ssh -N -R`: sshd listens and the ssh client dials the
    origin, as `portway expose` does behind a hub port) through a throwaway sshd."""
    flag, tag = ("-R", "ssh -R") if reverse else ("-L", "ssh -L")
    with throwaway_sshd(work) as server:
        listen = {name: free_port() for name in origins.tcp_services()}
        forwards = [arg for name, target in origins.tcp_services().items()
                    for arg in (flag, f"127.0.0.1:{listen[name]}:127.0.0.1:{target}")]  # fmt: skip
        user = os.environ.get("USER") or "root"
        client = Proc(
            ["ssh", "-N", "-i", str(server.user_key), "-p", str(server.port),
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR",
             *forwards, f"{user}@127.0.0.1"],
            work / f"{tag.replace(' ', '')}.log",
        )  # fmt: skip
        try:
            for listening in listen.values():
                _wait_listening(client, listening, tag)
            yield Endpoints(pids={"ssh": (client.pid,)}, http_origin_port=origins.http_port
                            ).serving(listen)  # fmt: skip
        finally:
            client.stop()
