"""mqtt_v5.aws installs apart from the core: its own package.json for mip, and the
core's lib/package.json lists none of its files."""

from __future__ import annotations

import json
from pathlib import Path

import mp_unix

LIB = Path(__file__).resolve().parents[2] / "lib"
AWS = LIB / "mqtt_v5" / "aws"


def test_aws_package_json_lists_every_aws_module():
    pkg = json.loads((AWS / "package.json").read_text())
    modules = sorted(p.name for p in AWS.glob("*.py"))
    assert [src for _, src in pkg["urls"]] == modules
    assert all(dst == f"mqtt_v5/aws/{src}" for dst, src in pkg["urls"])
    core = LIB.joinpath("package.json").read_text()
    assert "mqtt_v5/aws/" not in core
    assert '"mqtt_v5/ws.py"' in core     # the WebSocket transport is the core's (any broker)
    version = json.loads(core)["version"]
    assert pkg["version"] == version


def test_shadow_alone_does_not_load_jobs_or_provisioning(mp_unix_port):
    proc = mp_unix.run_script(mp_unix_port, "\n".join([
        "import sys, json",
        "from mqtt_v5.aws.connect import aws_client",
        "from mqtt_v5.aws.shadow import Shadow",
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('mqtt_v5'))))",
        ""]), mpy=True)
    loaded = set(mp_unix.last_json(proc))
    assert {"mqtt_v5.aws", "mqtt_v5.aws.connect", "mqtt_v5.aws.shadow"} <= loaded
    for other in ("jobs", "provisioning", "cbor", "authorizer", "doctor"):
        assert f"mqtt_v5.aws.{other}" not in loaded
    assert "mqtt_v5.ws" not in loaded
