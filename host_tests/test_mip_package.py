"""The mip package of precompiled .mpy (mpy/, made by tools/gen_package_json.py): its
package.json files and the files on disk agree, and MicroPython's own mip installs it over
HTTP on the unix port, byte for byte, and the installed library connects to Mosquitto."""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import threading
from pathlib import Path

import gen_package_json
import mp_unix
import pytest
from client_kit import Paho, unique

ROOT = Path(__file__).resolve().parent.parent
MPY = ROOT / "mpy"


def _packages() -> dict[str, dict]:
    """{package.json path relative to mpy/: its content}"""
    return {p.relative_to(MPY).as_posix(): json.loads(p.read_text())
            for p in sorted(MPY.rglob("package.json"))}


def _installs(pkg_rel: str, pkg: dict) -> dict[str, str]:
    """{device path: file relative to mpy/} of one package.json (urls are relative to it)."""
    base = Path(pkg_rel).parent
    return {dst: (base / src).as_posix() for dst, src in pkg["urls"]}


def test_mpy_package_lists_exactly_the_files_on_disk():
    pkgs = _packages()
    assert set(pkgs) == {"package.json", "mqtt_v5/aws/package.json"}
    every: dict[str, str] = {}
    for rel, pkg in pkgs.items():
        installs = _installs(rel, pkg)
        assert not set(installs) & set(every), f"{rel} lists a file another package lists"
        every.update(installs)
        assert pkg["deps"] == []
        assert pkg["version"] == json.loads((ROOT / "lib/package.json").read_text())["version"]
    # every url is a file; it lands where it sits under mpy/ (so MICROPYPATH=mpy/ is what
    # a device gets), and every file under mpy/ is a package.json or listed once
    assert all(dst == src for dst, src in every.items())
    on_disk = {p.relative_to(MPY).as_posix() for p in MPY.rglob("*") if p.is_file()}
    assert on_disk == set(every) | set(pkgs)
    # the device modules of lib/, as .mpy: the core's from mpy/package.json, like
    # lib/package.json's .py list; mqtt_v5.aws's from its own package.json, like lib's
    want = {Path(f).with_suffix(".mpy").as_posix() for f in gen_package_json.device_files()}
    assert set(every) == want
    core = {Path(d).with_suffix(".mpy").as_posix()
            for d, _ in json.loads((ROOT / "lib/package.json").read_text())["urls"]}
    assert set(_installs("package.json", pkgs["package.json"])) == core
    assert "mqtt_v5/_compat_cpython.mpy" not in every
    assert "mqtt_v5/_cpython_stream.mpy" not in every
    for f in every:
        head = (MPY / f).read_bytes()[:4]
        # .mpy version 6; feature byte 0: bytecode only, no native arch (loads on any port);
        # 31-bit small ints, as mpy-cross's default and the ESP32 (a port with more loads it)
        assert head == b"M\x06\x00\x1f", (f, head)


def test_each_mpy_records_its_module_name_as_its_source():
    """Not its path: "mqtt_v5/client.py" would be one more name a device interns per module
    loaded (see gen_package_json.source_name)."""
    files = sorted(MPY.rglob("*.mpy"))
    assert files
    for p in files:
        rel = p.relative_to(MPY).with_suffix(".py").as_posix()
        assert rel.encode() not in p.read_bytes(), rel
    assert gen_package_json.source_name("mqtt_v5/client.py") == "client"
    assert gen_package_json.source_name("mqtt_v5/__init__.py") == "mqtt_v5"
    assert gen_package_json.source_name("mqtt_v5/aws/shadow.py") == "shadow"


def test_mpy_package_is_compiled_as_the_tests_and_the_bench_run_it():
    """mp_unix.mpy_tree() (what the unix-port tests and the bench load) is the committed
    package's .mpy, byte for byte, once `make package-json` ran (test_infra checks that).
    The tree may hold more: modules git does not track yet, which the package leaves out."""
    tree = mp_unix.mpy_tree()
    built = {p.relative_to(tree).as_posix(): p.read_bytes() for p in tree.rglob("*.mpy")}
    shipped = {p.relative_to(MPY).as_posix(): p.read_bytes() for p in MPY.rglob("*.mpy")}
    assert shipped
    assert [k for k in shipped if built.get(k) != shipped[k]] == []
    untracked = {Path(f).with_suffix(".mpy").as_posix()
                 for f in gen_package_json.device_files(tracked_only=False)} - {
        Path(f).with_suffix(".mpy").as_posix() for f in gen_package_json.device_files()}
    assert set(built) - set(shipped) == untracked


class _Quiet(http.server.SimpleHTTPRequestHandler):
    requested: list[str]

    def log_message(self, *args):  # keep pytest's output clean
        pass

    def do_GET(self):
        self.requested.append(self.path)
        super().do_GET()


@pytest.fixture
def repo_over_http():
    """The repository root served on 127.0.0.1 (a free port), as a host serving the
    repository would; yields (base URL, the list of paths requested)."""
    requested: list[str] = []
    handler = functools.partial(type("H", (_Quiet,), {"requested": requested}),
                                directory=str(ROOT))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


_INSTALL = """\
import json, mip
mip.install({url!r}, target={target!r})
mip.install({aws!r}, target={target!r})
print(json.dumps({{"ok": True}}))
"""

_USE = """\
import asyncio, json, sys
from mqtt_v5 import MqttClient, ConnectOptions, TlsConfig
from mqtt_v5.aws.shadow import Shadow

def rd(p):
    with open(p, "rb") as f:
        return f.read()

async def main():
    c = MqttClient(ConnectOptions({cid!r}, connect_timeout=5,
                                  tls=TlsConfig(ca=rd({ca!r}), cert=rd({cert!r}),
                                                key=rd({key!r}))))
    await c.connect({url!r})
    await c.publish({topic!r}, b"installed by mip", qos=1)
    await c.disconnect()

asyncio.run(main())
files = sorted(m.__file__ for n, m in sys.modules.items() if n.startswith("mqtt_v5"))
print(json.dumps({{"ok": True, "files": files}}))
"""


@pytest.mark.broker
def test_mip_installs_the_mpy_package_over_http_and_it_connects(
        mp_unix_port, repo_over_http, mosquitto, pki, tmp_path):
    """MicroPython's own mip (frozen into the unix port), given the package.json's URL as a
    user gives a hosted one, fetches every listed .mpy from the server and writes it
    unchanged; with only that folder (and the port's frozen modules) on the path, the import
    line of the README, a mutual-TLS connect, a QoS 1 publish (paho receives it) and a
    disconnect work, and every mqtt_v5 module came from an installed .mpy."""
    base, requested = repo_over_http
    target = tmp_path / "lib"
    proc = mp_unix.run_script(
        mp_unix_port,
        _INSTALL.format(url=f"{base}/mpy/package.json", target=str(target),
                        aws=f"{base}/mpy/mqtt_v5/aws/package.json"),
        path=[], timeout=60)
    assert mp_unix.last_json(proc) == {"ok": True}, proc.stdout + proc.stderr
    assert proc.stdout.count("Done") == 2, proc.stdout  # mip prints it per whole package
    assert "partially" not in proc.stdout

    listed = {}
    for rel, pkg in _packages().items():
        listed.update(_installs(rel, pkg))
    assert sorted(requested) == sorted(
        ["/mpy/package.json", "/mpy/mqtt_v5/aws/package.json"]
        + [f"/mpy/{src}" for src in listed.values()])
    got = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    assert got == set(listed)
    for dst, src in listed.items():
        assert (target / dst).read_bytes() == (MPY / src).read_bytes(), dst

    topic = unique("mip") + "/t"
    paho = Paho(mosquitto.plain_port).connect()
    paho.subscribe(topic, qos=1)
    try:
        proc = mp_unix.run_script(
            mp_unix_port,
            _USE.format(cid=unique("mip"), ca=pki.ca_der, cert=pki.client_cert_der,
                        key=pki.client_key_der, topic=topic,
                        url=f"mqtts://{mosquitto.host}:{mosquitto.mtls_port}"),
            path=[target], heapsize="1m", timeout=60)
        report = mp_unix.last_json(proc)
        assert report["ok"], proc.stdout + proc.stderr
        msgs = asyncio.run(paho.wait_messages(1, topic=topic))
    finally:
        paho.disconnect()
    assert [m.payload for m in msgs] == [b"installed by mip"]
    assert report["files"]
    for f in report["files"]:
        assert f.startswith(str(target) + "/mqtt_v5/"), f
        assert f.endswith(".mpy"), f
