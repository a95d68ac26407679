"""The README's troubleshooting table is built from what the library really prints: each
scenario below goes wrong on MicroPython's unix port against the local AWS IoT twin (SNI
required, as on AWS), and the message it raised must contain the text the table quotes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import device
import mp_unix
import pytest
from conftest import free_port
from twin._server_util import running_twin

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCRIPT = HERE / "mp_scripts" / "troubles.py"

pytestmark = pytest.mark.micropython


def readme_table() -> dict[str, str]:
    """scenario id -> the message text the README quotes, from the table rows that end
    with a `<!-- id -->` marker."""
    text = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \|.*<!-- (\w+) -->\s*\|?$", text, re.M)
    return {sid: msg for msg, sid in rows}


@pytest.fixture(scope="module")
def report(tmp_path_factory, pki):
    exe = mp_unix.binary("unix32")
    if exe is None:
        pytest.skip(mp_unix.why_missing())
    tmp = tmp_path_factory.mktemp("troubles")
    with running_twin(tmp, require_sni=True) as tw:
        creds = tw.thing("t1")
        fs = tmp / "fs"
        device.prepare_certs("t1", "127.0.0.1", cert=creds.cert_path, key=creds.key_path,
                             ca=Path(tw.ca), out=fs, env={})
        good = {"client_id": "t1", "ca": str(fs / "ca.der"), "cert": str(fs / "cert.der"),
                "key": str(fs / "key.der"), "server_hostname": "localhost",
                "url": f"mqtts://127.0.0.1:{tw.port('mtls')}"}
        scenarios = [
            dict(good, name="ok"),
            dict(good, name="no_file", cert="cert.pem.crt", key="private.pem.key"),
            dict(good, name="wrong_ca", ca=pki.rogue_ca_der),
            dict(good, name="wrong_name", server_hostname="wrong.example"),
            dict(good, name="not_authorized", client_id="someone-else"),
            dict(good, name="refused", url=f"mqtts://127.0.0.1:{free_port()}"),
            dict(good, name="dns", url="mqtts://no-such-endpoint.invalid:8883"),
            # a receive buffer (made after the handshake) larger than the heap has left
            dict(good, name="no_memory", maximum_packet_size=400_000),
        ]
        spec = tmp / "scenarios.json"
        spec.write_text(json.dumps(scenarios))
        proc = mp_unix.run_script(exe, SCRIPT, args=[spec], heapsize="512k", cwd=fs,
                                  timeout=120)
        got = mp_unix.last_json(proc)
        # Heaps too small: for the library and client, then for the TLS handshake. Where
        # one turns into the other moves as the code changes: try a range upwards (below
        # the import's own need the script cannot report: skip those), keep the first of
        # each kind (the handshake's is what a heap too small gives now; the plain
        # MemoryError came from the scenario above).
        spec.write_text(json.dumps([dict(good, name="memory")]))
        for kib in range(60, 200, 2):
            proc = mp_unix.run_script(exe, SCRIPT, args=[spec], heapsize=f"{kib}k", cwd=fs,
                                      mpy=True, timeout=120)
            try:
                kind, message = mp_unix.last_json(proc)["memory"]
            except AssertionError:  # the import line itself did not fit
                continue
            sid = "no_memory" if kind == "MemoryError" else "tls_memory"
            if kind != "ok":
                got.setdefault(sid, [kind, message])
            if "no_memory" in got and "tls_memory" in got:
                break
        return got


def test_the_good_case_connects(report):
    assert report["ok"] == ["ok", ""]


@pytest.mark.parametrize("sid", ["no_file", "wrong_ca", "wrong_name", "not_authorized",
                                 "refused", "dns", "no_memory", "tls_memory"])
def test_the_readme_quotes_what_the_library_prints(sid, report):
    table = readme_table()
    assert sid in table, f"README troubleshooting table has no row marked <!-- {sid} -->"
    assert sid in report, f"no scenario produced {sid}"
    kind, message = report[sid]
    assert kind != "ok", f"{sid} connected"
    pattern = re.escape(table[sid]).replace(r"\.\.\.", ".*")
    assert re.search(pattern, message), f"{sid}: README quotes {table[sid]!r}, got {message!r}"

