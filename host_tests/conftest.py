"""Shared test infrastructure for host_tests (CPython).

What is here:
  * `lib`, `tools` and `host_tests` on sys.path (also set in pyproject.toml);
  * hypothesis profiles: `ci` (default, 200 examples) and `fuzz` (20,000), chosen with
    HYPOTHESIS_PROFILE=...; test files named test_*fuzz*.py / test_*property*.py are marked
    `fuzzable` so `make fuzz` can select them;
  * `async def test_*` functions run with asyncio.run() (no plugin needed), so the plain-assert
    files in host_tests/portable/ can hold async tests that also run under MicroPython;
  * `pki`: a throw-away PKI made with `cryptography` (no openssl CLI);
  * `mosquitto` (session), `mosquitto_persistent` (function, with restart()) and
    `mosquitto_factory(**options)` (function): real Mosquitto brokers on free loopback ports;
    a failing test gets the log of every broker it used appended to its report;
  * `free_port()`.

Mosquitto facts this relies on (shared/reference/brokers-and-peers.md): started as root it drops
to user `mosquitto` before it opens certificates or ports, so every file it reads lives in a
world-readable directory under /tmp (pytest's own tmp dirs are mode 0700), and it logs to
stderr (a log file in a root-owned directory would fail to open).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import inspect
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT / "lib", ROOT / "tools", ROOT / "host_tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

HOST = "127.0.0.1"

# ---------------------------------------------------------------------------------------------
# hypothesis

settings.register_profile("ci", max_examples=200, deadline=None, print_blob=True)
settings.register_profile(
    "fuzz",
    max_examples=20_000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _is_fuzz_file(name: str) -> bool:
    return name.startswith("test_") and ("fuzz" in name or "property" in name)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _is_fuzz_file(item.path.name):
            item.add_marker(pytest.mark.fuzzable)


# ---------------------------------------------------------------------------------------------
# async def tests without a plugin


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(fn(**kwargs))
    return True


# ---------------------------------------------------------------------------------------------
# helpers


def free_port(host: str = HOST) -> int:
    """A TCP port on `host` that nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _world_readable_dir(prefix: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


def _write(path: Path, data: bytes | str, mode: int = 0o644) -> str:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)
    return str(path)


# ---------------------------------------------------------------------------------------------
# PKI


class PKI:
    """Paths (str) of a throw-away PKI, PEM plus DER copies of every cert and key.

    ca, ca_key, ca_der                     test CA (CN mqtt-v5-test-ca)
    server_cert, server_key                DNS:localhost + IP:127.0.0.1, serverAuth
    wrong_host_cert, wrong_host_key        DNS:wrong.example only, same CA
    client_cert, client_key                CN t1 (client_cn), RSA 2048, clientAuth
    client_ec_cert, client_ec_key          CN t2 (client_ec_cn), EC P-256, clientAuth
    rogue_ca, rogue_ca_key                 an unrelated CA
    rogue_client_cert, rogue_client_key    CN t1, signed by the rogue CA
    <any of the above>_der                 DER copy: X_cert_der, X_key_der (keys are
                                           PKCS#1 for RSA / SEC1 for EC, as PEM)
    dir                                    the directory holding all of them
    """

    client_cn = "t1"
    client_ec_cn = "t2"

    def __init__(self, directory: Path):
        self.dir = str(directory)
        self._directory = directory

    def client_context(self, cert: str | None = None, *, ca: str | None = None) -> ssl.SSLContext:
        """An ssl client context trusting our CA (or `ca`), presenting `cert` if given.

        cert is a name prefix: "client", "client_ec" or "rogue_client".
        """
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca or self.ca)
        if cert:
            ctx.load_cert_chain(getattr(self, cert + "_cert"), getattr(self, cert + "_key"))
        return ctx

    def read(self, attr: str) -> bytes:
        return Path(getattr(self, attr)).read_bytes()


def _make_pki(directory: Path, ec_only: bool = False) -> PKI:
    """The suite's CA, server and client certificates (RSA 2048; with ``ec_only`` every key
    is EC P-256 instead, which mbedTLS handles in less RAM: the bench measures both)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki = PKI(directory)
    now = datetime.datetime.now(datetime.UTC)

    def rsa_key():
        if ec_only:
            return ec.generate_private_key(ec.SECP256R1())
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def save(name, cert, key):
        enc = serialization.NoEncryption()
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
        pem, der = serialization.Encoding.PEM, serialization.Encoding.DER
        attr = "" if name in ("ca", "rogue_ca") else "_cert"
        setattr(pki, name + attr, _write(directory / f"{name}.crt", cert.public_bytes(pem)))
        setattr(
            pki, name + "_key", _write(directory / f"{name}.key", key.private_bytes(pem, fmt, enc))
        )
        setattr(
            pki,
            name + attr + "_der",
            _write(directory / f"{name}.crt.der", cert.public_bytes(der)),
        )
        setattr(
            pki,
            name + "_key_der",
            _write(directory / f"{name}.key.der", key.private_bytes(der, fmt, enc)),
        )
        return cert, key

    def build(cn, key, issuer=None, *, ca=False, san=None, eku=None):
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        issuer_cert, issuer_key = issuer if issuer else (None, key)
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_cert.subject if issuer_cert else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False,
            )
        )
        is_rsa = isinstance(key, rsa.RSAPrivateKey)
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=(not ca) and is_rsa,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        return b.sign(issuer_key, hashes.SHA256()), key

    server_auth, client_auth = [ExtendedKeyUsageOID.SERVER_AUTH], [ExtendedKeyUsageOID.CLIENT_AUTH]
    ca = save("ca", *build("mqtt-v5-test-ca", rsa_key(), ca=True))
    save(
        "server",
        *build(
            "localhost",
            rsa_key(),
            ca,
            san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))],
            eku=server_auth,
        ),
    )
    save(
        "wrong_host",
        *build(
            "wrong.example", rsa_key(), ca, san=[x509.DNSName("wrong.example")], eku=server_auth
        ),
    )
    save("client", *build(PKI.client_cn, rsa_key(), ca, eku=client_auth))
    save(
        "client_ec",
        *build(PKI.client_ec_cn, ec.generate_private_key(ec.SECP256R1()), ca, eku=client_auth),
    )
    rogue = save("rogue_ca", *build("mqtt-v5-rogue-ca", rsa_key(), ca=True))
    save("rogue_client", *build(PKI.client_cn, rsa_key(), rogue, eku=client_auth))
    return pki


@pytest.fixture(scope="session")
def pki():
    directory = _world_readable_dir("mqtt_v5-pki-")
    try:
        yield _make_pki(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Mosquitto

# Username -> password accepted on the `auth` listener of the `mosquitto` fixture.
AUTH_USERS = {"user": "secret", "authuser": "token-123"}

_LOG_LINES = [
    "log_dest stderr",
    "log_type error",
    "log_type warning",
    "log_type notice",
    "log_type information",
    "log_type subscribe",
    "log_type unsubscribe",
    "connection_messages true",
    "log_timestamp_format %H:%M:%S",
]

# Options that belong to a listener block; everything else passed to mosquitto_factory is global.
_LISTENER_OPTIONS = {
    "max_qos",
    "max_topic_alias",
    "max_connections",
    "mount_point",
    "protocol",
    "use_username_as_clientid",
    "socket_domain",
    "bind_interface",
    "http_dir",
}


def _mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if not found:
        pytest.fail("mosquitto is not installed: run `make setup`")
    return found


def _password_line(user: str, password: str) -> str:
    # Mosquitto 2.0 password file format ($7$ = PBKDF2-SHA512), as mosquitto_passwd writes it.
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    return f"{user}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}\n"


class Mosquitto:
    """One mosquitto process on loopback.

    host                      "127.0.0.1"
    ports                     {listener name: port}; also as attributes <name>_port:
                              plain_port, tls_port, mtls_port, wrong_host_port, auth_port
                              (those the instance has); `port` is the first listener's port
    ca, pki                   CA path and the PKI (when the broker has TLS listeners)
    users                     {username: password} for the `auth` listener
    conf_path, log_path, dir  where things are
    log(since=0) / log_size() the broker's log text / its current size in bytes
    start() / stop() / restart(graceful=True)   restart keeps the ports; graceful=False kills
                              it (SIGKILL), losing what a persistent broker had not saved
    """

    host = HOST

    def __init__(self, name, directory: Path, global_lines, listeners, pki=None, users=None):
        self.name = name
        self.dir = directory
        self.global_lines = list(global_lines)
        self.listeners = dict(listeners)  # name -> option lines
        self.pki = pki
        self.ca = pki.ca if pki else None
        self.users = dict(users or {})
        self.ports: dict[str, int] = {}
        self.conf_path = directory / f"{name}.conf"
        self.log_path = directory / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def __getattr__(self, attr):
        if attr.endswith("_port") and attr[:-5] in self.__dict__.get("ports", {}):
            return self.ports[attr[:-5]]
        raise AttributeError(attr)

    @property
    def port(self) -> int:
        return next(iter(self.ports.values()))

    def _write_conf(self):
        lines = list(self.global_lines)
        for lname, opts in self.listeners.items():
            lines += ["", f"# {lname}", f"listener {self.ports[lname]} {HOST}", *opts]
        self.conf_path.write_text("\n".join(lines) + "\n")
        self.conf_path.chmod(0o644)

    def start(self, timeout: float = 10.0):
        for attempt in range(3):
            if not self.ports or attempt:
                self.ports = {lname: free_port() for lname in self.listeners}
            self._write_conf()
            mark = self.log_size()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [_mosquitto_binary(), "-c", str(self.conf_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.dir,
                )
            if self._wait_ready(timeout):
                return self
            self._terminate()
            if "Address already in use" not in self.log(since=mark):
                break
        raise RuntimeError(f"mosquitto {self.name} did not start; its log:\n{self.log()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        waiting = set(self.ports.values())
        while waiting and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            for port in list(waiting):
                try:
                    socket.create_connection((HOST, port), timeout=0.5).close()
                    waiting.discard(port)
                except OSError:
                    pass
            if waiting:
                time.sleep(0.02)
        return not waiting

    def _terminate(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def stop(self):
        self._terminate()

    def restart(self, graceful: bool = True):
        self._terminate(signal.SIGTERM if graceful else signal.SIGKILL)
        old = dict(self.ports)
        self.start()
        if self.ports != old:
            raise RuntimeError(f"mosquitto {self.name} could not get its ports back: {old}")
        return self

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log(self, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def __repr__(self):
        return f"<Mosquitto {self.name} {self.ports}>"


def _tls_lines(pki: PKI, cert="server", *, mutual=False):
    lines = [
        f"certfile {getattr(pki, cert + '_cert')}",
        f"keyfile {getattr(pki, cert + '_key')}",
    ]
    if mutual:
        lines += [f"cafile {pki.ca}", "require_certificate true", "use_identity_as_username true"]
    return lines


@pytest.fixture(scope="session")
def mosquitto(pki):
    """The shared broker. Listeners (all 127.0.0.1, anonymous unless said):
    plain (max_topic_alias 10), tls (server-only TLS), mtls (client cert required, its CN
    becomes the username), wrong_host (TLS with a cert for wrong.example only), auth (plain TCP,
    username/password from AUTH_USERS, no anonymous). No persistence, unlimited queues."""
    directory = _world_readable_dir("mqtt_v5-mosquitto-")
    passwd = _write(
        directory / "passwd", "".join(_password_line(u, p) for u, p in AUTH_USERS.items())
    )
    broker = Mosquitto(
        "shared",
        directory,
        [
            "per_listener_settings true",
            "persistence false",
            "max_queued_messages 0",  # 0 = no maximum
            *_LOG_LINES,
        ],
        {
            "plain": ["allow_anonymous true", "max_topic_alias 10"],
            "tls": ["allow_anonymous true", "max_topic_alias 10", *_tls_lines(pki)],
            "mtls": ["allow_anonymous true", "max_topic_alias 10", *_tls_lines(pki, mutual=True)],
            "wrong_host": ["allow_anonymous true", *_tls_lines(pki, "wrong_host")],
            "auth": ["allow_anonymous false", f"password_file {passwd}"],
        },
        pki=pki,
        users=AUTH_USERS,
    )
    try:
        yield broker.start()
    finally:
        broker.stop()
        shutil.rmtree(directory, ignore_errors=True)


class MosquittoFactory:
    """mosquitto_factory(extra_lines=(), tls=False, persistent=False, **options) -> Mosquitto

    Starts a private broker with a `plain` listener (and a server-only `tls` one if tls=True).
    options are mosquitto.conf options: max_packet_size=1024, max_qos=1, retain_available=False,
    max_keepalive=60, max_inflight_messages=3, max_topic_alias=2 ... (booleans become
    true/false; listener options go into each listener block, the rest are global).
    persistent=True keeps state in a private directory across restart().
    """

    def __init__(self, pki):
        self.pki = pki
        self.instances: list[Mosquitto] = []
        self._dirs: list[Path] = []

    def __call__(self, extra_lines=(), *, tls=False, persistent=False, **options):
        directory = _world_readable_dir("mqtt_v5-mosquitto-")
        self._dirs.append(directory)
        glob, listener = [], []
        for key, value in options.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            (listener if key in _LISTENER_OPTIONS else glob).append(f"{key} {value}")
        global_lines = ["per_listener_settings false", "allow_anonymous true", *_LOG_LINES]
        if persistent:
            store = directory / "store"
            store.mkdir()
            store.chmod(0o777)  # written by user mosquitto
            global_lines += ["persistence true", f"persistence_location {store}/"]
        else:
            global_lines.append("persistence false")
        global_lines += [*glob, *extra_lines]
        listeners = {"plain": list(listener)}
        if tls:
            listeners["tls"] = [*listener, *_tls_lines(self.pki)]
        broker = Mosquitto(
            f"private{len(self.instances)}",
            directory,
            global_lines,
            listeners,
            pki=self.pki,
        )
        self.instances.append(broker)
        return broker.start()

    def close(self):
        for b in self.instances:
            b.stop()
        for d in self._dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mosquitto_factory(pki):
    factory = MosquittoFactory(pki)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def mosquitto_persistent(mosquitto_factory):
    """A private broker with persistence on (plain listener); restart() keeps its ports and,
    when graceful (SIGTERM), its sessions and queued messages."""
    return mosquitto_factory(persistent=True, max_queued_messages=0)


# Append the logs of the brokers a failing test used to its report.
_LOG_MARKS = pytest.StashKey[dict]()


def _brokers_of(item) -> list[Mosquitto]:
    found = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, Mosquitto):
            found.append(value)
        elif isinstance(value, MosquittoFactory):
            found.extend(value.instances)
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    item.stash[_LOG_MARKS] = {id(b): b.log_size() for b in _brokers_of(item)}
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and call.when == "call":
        marks = item.stash.get(_LOG_MARKS, {})
        for broker in _brokers_of(item):
            lines = broker.log(since=marks.get(id(broker), 0)).splitlines()
            text = "\n".join(lines[-300:])
            report.sections.append((f"mosquitto {broker.name} log (this test)", text))
    return report


# ---------------------------------------------------------------------------------------------
# MicroPython's unix port (real sockets and mbedTLS): host_tests/mp_unix.py

import mp_unix  # noqa: E402


@pytest.fixture(params=mp_unix.UNIX_PORTS)
def mp_unix_port(request) -> str:
    """"unix32" / "unix64": each test taking it runs once per binary; skipped (with the reason
    mp_unix.SKIP_REASON) when the binary is missing, which fails the session under CI=true."""
    if mp_unix.binary(request.param) is None:
        pytest.skip(mp_unix.why_missing())
    return request.param


def pytest_sessionfinish(session, exitstatus):
    """CI always has the unix port: a run there that skipped its tests has not tested them."""
    if os.environ.get("CI") != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    missing = [r for r in skipped if mp_unix.SKIP_REASON in str(r.longrepr)]
    if missing:
        reporter.write_line(
            f"CI=true: {len(missing)} tests skipped because the {mp_unix.why_missing()}; "
            "failing the run",
            red=True,
        )
        session.exitstatus = 1
