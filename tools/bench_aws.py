"""Heap kept by importing the mqtt_v5.aws modules on micropython-unix32 (modules from .mpy,
as ``mip`` installs them), for `make bench` (section ``aws``).

Each figure is ``gc.mem_alloc()`` after a collection, before and after the import, in one
interpreter, in the order a device would load them. The baseline already holds what any
device talking TLS to AWS has loaded anyway: ``mqtt_v5.client`` and ``mqtt_v5.tls``
(``TlsConfig``, which the client's transport imports for every TLS connection); their cost
is reported apart (``core``). Budgets (issue 9): the connection preset plus Shadow
<= 10 KB; Jobs and Provisioning each <= 8 KB more. The objects a device makes are measured
too: an ``AwsClient`` less a plain ``MqttClient`` with the same options, a ``Shadow``
with its answer topics registered (no I/O), a ``Jobs``.

    python tools/bench_aws.py            # table
    python tools/bench_aws.py --json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT / "host_tests", ROOT / "lib"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

BUDGET_PRESET_SHADOW = 10 * 1024
BUDGET_EACH_MORE = 8 * 1024

_SCRIPT = r"""
import gc, json
def m():
    gc.collect()
    gc.collect()
    return gc.mem_alloc()
r = []
a = m()
import mqtt_v5.client
b = m()
import mqtt_v5.tls
c = m()
r.append(("core: mqtt_v5.client", b - a))
r.append(("core: mqtt_v5.tls", c - b))
def imp(label, name):
    x = m()
    try:
        __import__(name)
    except ImportError:
        return
    r.append((label, m() - x))
imp("aws preset (mqtt_v5.aws.connect)", "mqtt_v5.aws.connect")
imp("shadow", "mqtt_v5.aws.shadow")
imp("jobs", "mqtt_v5.aws.jobs")
imp("provisioning", "mqtt_v5.aws.provisioning")
imp("cbor", "mqtt_v5.aws.cbor")
imp("ws (WebSocket transport)", "mqtt_v5.ws")
imp("authorizer", "mqtt_v5.aws.authorizer")
imp("doctor", "mqtt_v5.aws.doctor")
from mqtt_v5.client import ConnectOptions, MqttClient
from mqtt_v5.aws.connect import AwsClient
from mqtt_v5.aws.shadow import Shadow
from mqtt_v5.aws.jobs import Jobs
warm = MqttClient(ConnectOptions("warm-up"))
x = m()
plain = MqttClient(ConnectOptions("weather-sensor-001"))
y = m()
client = AwsClient(ConnectOptions("weather-sensor-001", keep_alive=300))
z = m()
r.append(("object: AwsClient over MqttClient", (z - y) - (y - x)))
x = m()
s = Shadow(client)
s._subscribed = ["get/accepted", "get/rejected", "update/accepted", "update/rejected",
                 "update/delta"]
r.append(("object: Shadow", m() - x))
x = m()
j = Jobs(client)
r.append(("object: Jobs", m() - x))
print(json.dumps(r))
"""


def measure(port: str = "unix32") -> dict:
    import mp_unix

    if mp_unix.binary(port) is None:
        raise RuntimeError(mp_unix.why_missing())
    proc = mp_unix.run_script(port, _SCRIPT, mpy=True, heapsize="1m")
    return dict(mp_unix.last_json(proc))


def bench_aws(results: dict) -> None:
    """Fill ``results`` with the heap figures and the budget checks."""
    r = measure()
    preset_shadow = r["aws preset (mqtt_v5.aws.connect)"] + r["shadow"]
    results["heap_bytes"] = r
    results["budget"] = {
        "preset + shadow": {"bytes": preset_shadow, "budget": BUDGET_PRESET_SHADOW,
                            "ok": preset_shadow <= BUDGET_PRESET_SHADOW},
        "jobs": {"bytes": r["jobs"], "budget": BUDGET_EACH_MORE,
                 "ok": r["jobs"] <= BUDGET_EACH_MORE},
        "provisioning": {"bytes": r["provisioning"], "budget": BUDGET_EACH_MORE,
                         "ok": r["provisioning"] <= BUDGET_EACH_MORE},
    }


def _table(results: dict) -> str:
    lines = ["heap kept after import, micropython-unix32, .mpy (bytes):"]
    for k, v in results["heap_bytes"].items():
        lines.append(f"  {k:<40} {v:>8,}")
    lines.append("budgets:")
    for k, v in results["budget"].items():
        lines.append(f"  {k:<40} {v['bytes']:>8,} / {v['budget']:,}  "
                     f"{'ok' if v['ok'] else 'OVER'}")
    return "\n".join(lines)


bench_aws.table = _table  # type: ignore[attr-defined]


if __name__ == "__main__":
    out: dict = {}
    bench_aws(out)
    print(json.dumps(out, indent=2) if "--json" in sys.argv else _table(out))
