"""The client's drivers on MicroPython's unix port (real sockets, mbedTLS) against the suite's
Mosquitto, and the same cases on CPython where they involve sockets or time.

Each MicroPython case runs a script from host_tests/mp_scripts/ (driver_*.py) or one built here,
and reads the JSON object it prints last.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import mp_unix
import pytest

ROOT = Path(__file__).resolve().parent.parent
SYNC = ROOT / "lib" / "mqtt_v5" / "sync.py"


# ------------------------------------------------------------------------------------------
# Item 0: the REPL session in sync.py's docstring, as written, on the unix port


def repl_session() -> list[tuple[str, list[str]]]:
    """(statement, expected output lines) for each ``>>>`` line of sync.py's docstring."""
    doc = ast.get_docstring(ast.parse(SYNC.read_text()))
    steps: list[tuple[str, list[str]]] = []
    for line in doc.splitlines():
        s = line.strip()
        if s.startswith(">>> "):
            steps.append((s[4:], []))
        elif steps and s and not s.startswith("$") and not steps[-1][1] and line.startswith(" "):
            steps[-1][1].append(s)
        elif not s and steps:
            steps.append(("", []))  # a blank line ends the session's output
    return [(stmt, out) for stmt, out in steps if stmt]


def repl_script(url: str, tls_expr: str | None) -> tuple[str, list[str | None]]:
    """A script that runs the REPL session against ``url`` (the docstring's broker address
    replaced), printing the repr of each expression's value (None when it has none) as a JSON
    list. Returns (script, expected reprs)."""
    lines = ["import json", "_seen = []", "def _show(v):", "    _seen.append(None if v is None else repr(v))"]
    if tls_expr:
        lines.append("from mqtt_v5.tls import TlsConfig")
    expected: list[str | None] = []
    for stmt, out in repl_session():
        node = ast.parse(stmt).body[0]
        code = ast.unparse(node)
        if "connect(" in code and "disconnect" not in code:
            code = re.sub(r"'mqtts?://[^']*'", repr(url), code)
            if tls_expr:
                code = code[:-1] + ", tls=" + tls_expr + ")"
        if isinstance(node, ast.Expr):
            lines.append("_show(" + code + ")")
            expected.append(out[0] if out else None)
        else:
            lines.append(code)
    lines.append("print(json.dumps(_seen))")
    return "\n".join(lines) + "\n", expected


def test_repl_session_is_in_the_docstring():
    steps = repl_session()
    stmts = [s for s, _ in steps]
    assert any(s.startswith("c.connect(") for s in stmts)
    assert any(s.startswith("c.wait_msg(") for s in stmts)
    assert stmts[-1] == "c.disconnect()"


def _repl_case(mosquitto, pki, mode):
    if mode == "plain":
        return f"mqtt://127.0.0.1:{mosquitto.plain_port}", None
    if mode == "tls":
        return f"mqtts://127.0.0.1:{mosquitto.tls_port}", f"TlsConfig(ca={pki.ca_der!r})"
    return (
        f"mqtts://127.0.0.1:{mosquitto.mtls_port}",
        f"TlsConfig(ca={pki.ca_der!r}, cert={pki.client_cert_der!r}, key={pki.client_key_der!r})",
    )


@pytest.mark.parametrize("mode", ["plain", "tls", "mtls"])
def test_sync_repl_session_unix_port(mp_unix_port, mosquitto, pki, mode):
    url, tls = _repl_case(mosquitto, pki, mode)
    script, expected = repl_script(url, tls)
    proc = mp_unix.run_script(mp_unix_port, script, heapsize="1m", timeout=60)
    assert mp_unix.last_json(proc) == expected, proc.stdout + proc.stderr


@pytest.mark.parametrize("mode", ["plain", "mtls"])
def test_sync_repl_session_cpython(mosquitto, pki, mode):
    url, tls = _repl_case(mosquitto, pki, mode)
    script, expected = repl_script(url, tls)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT / "lib")},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == expected


# ------------------------------------------------------------------------------------------
# Item 3 (blocking client) and item 0's "a timeout is not a certificate problem": a server
# that accepts TCP and then says nothing


@pytest.fixture
def silent_server():
    """A listening socket nobody accepts from: TCP connects (the kernel completes it), then
    nothing is ever said, in TLS or MQTT."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()


SILENT_SYNC = """
import json, sys
from mqtt_v5.sync import SyncClient
from mqtt_v5.tls import TlsConfig
from mqtt_v5._compat import ticks_ms, ticks_diff
port, mode, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = SyncClient("silent", connect_timeout=1)
t0 = ticks_ms()
try:
    if mode == "tls":
        c.connect("mqtts://127.0.0.1:%d" % port, tls=TlsConfig(ca=ca))
    else:
        c.connect("mqtt://127.0.0.1:%d" % port)
    out = {"error": None}
except Exception as e:
    out = {"error": type(e).__name__, "text": str(e)}
out["ms"] = ticks_diff(ticks_ms(), t0)
print(json.dumps(out))
"""


def _check_silent(out):
    assert out["error"] in ("NetworkError", "MqttTimeout"), out
    assert out["ms"] < 5000, out
    assert "certificate" not in out["text"], out


@pytest.mark.parametrize("mode", ["plain", "tls"])
def test_sync_connect_to_a_silent_server_times_out_unix_port(
    mp_unix_port, silent_server, pki, mode
):
    proc = mp_unix.run_script(
        mp_unix_port, SILENT_SYNC, args=[silent_server, mode, pki.ca_der], timeout=30
    )
    _check_silent(mp_unix.last_json(proc))


@pytest.mark.parametrize("mode", ["plain", "tls"])
def test_sync_connect_to_a_silent_server_times_out_cpython(silent_server, pki, mode):
    proc = subprocess.run(
        [sys.executable, "-c", SILENT_SYNC, str(silent_server), mode, pki.ca],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PYTHONPATH": str(ROOT / "lib")},
    )
    _check_silent(json.loads(proc.stdout.strip().splitlines()[-1]))
