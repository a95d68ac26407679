"""What a device needs free: the smallest MicroPython heap in which firmware/main.py's whole
deep-sleep cycle runs, for `make bench` (section ``device``), on micropython-unix32.

The cycle is the one host_tests/device/test_device_firmware.py::
test_deep_sleep_cycle_fits_the_heap runs, with the same helpers (tools/device.py
``firmware_fs`` and ``boot_firmware``): a board's filesystem (boot.py, main.py, DER
certificate/key/CA, config.json in deep-sleep mode), boot.py then main.py unchanged with
the hardware stand-ins, against the local AWS IoT twin over mutual TLS (2048-bit RSA
client key, SNI required): Wi-Fi, NTP, connect as a new thing (no session yet), shadow
get (404) / report / delta subscription, the job runner's start-next, telemetry at QoS 1,
disconnect, deep sleep. A run fits when it ends in deep sleep (exit 0) and the twin holds
the reported state; it does not once main.py says "fatal error" or a TLS handshake fails
with ENOMEM (main.py would retry it, or reset, for ever). Each probe is a fresh thing (the
first boot is the larger case).

Binary search over ``-X heapsize`` in 1 KiB steps, the library frozen into the unix port
(``device.frozen_unix_binary``, built from boards/unix/manifest.py like the boards) and
loaded from ``.mpy`` (as ``make deploy`` copies it). On the unix port mbedTLS allocates
from that heap too, so the figure bounds the client and its TLS session together (on an
ESP32 mbedTLS uses ESP-IDF's heap instead). The README's "What a device needs free" quotes
these figures.

    python tools/bench.py --only device
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT / "host_tests", ROOT / "lib", ROOT / "tools"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import device  # noqa: E402
import mp_unix  # noqa: E402

EXPECTED = {"report_interval_s": 60, "led": "off"}
# The heaps the suite runs the cycle in (test_deep_sleep_cycle_fits_the_heap).
SUITE = {"frozen": 132, ".mpy": 232}


class _Probe:
    """One deep-sleep cycle of a fresh thing at a given heap size."""

    def __init__(self, tw, tmp: Path) -> None:
        self.tw = tw
        self.tmp = tmp
        self.n = 0
        self.runs = 0

    def fits(self, exe: Path, kib: int, frozen: bool) -> bool:
        self.n += 1
        self.runs += 1
        thing = f"bench-sensor-{self.n}"
        creds = self.tw.thing(thing)
        fs = device.firmware_fs(self.tmp / thing, thing, ca=Path(self.tw.ca),
                                port=self.tw.port("mtls"), cert=creds.cert_path,
                                key=creds.key_path, mode="deepsleep", sleep_s=60, awake_s=1,
                                watchdog_s=60, wifi_timeout_s=1, wifi_retry_s=1)
        try:
            proc = device.boot_firmware(exe, fs, mpy_tree=None if frozen else mp_unix.mpy_tree(),
                                        heap=f"{kib}k", timeout=60,
                                        stop_at=("fatal error", "ENOMEM"))
        except device.subprocess.TimeoutExpired:
            return False
        if proc.returncode != 0 or "standin: deepsleep 60000" not in proc.stdout:
            return False
        doc = self.tw.call(self.tw.twin.get_shadow, thing) or {}
        return doc.get("state", {}).get("reported") == EXPECTED


def smallest_heap(probe: _Probe, exe: Path, frozen: bool, lo: int = 32, hi: int = 512) -> int:
    """Smallest heap in KiB the cycle fits in (and again at once): lo fails, hi works."""
    if not probe.fits(exe, hi, frozen):
        raise RuntimeError(f"the deep-sleep cycle fails even with {hi} KiB")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe.fits(exe, mid, frozen):
            hi = mid
        else:
            lo = mid
    while not probe.fits(exe, hi, frozen):  # a lucky run: take the next KiB
        hi += 1
    return hi


def bench_device(results: dict) -> None:
    from twin._server_util import running_twin

    exe = mp_unix.binary("unix32")
    if exe is None:
        raise RuntimeError(mp_unix.why_missing())
    frozen = device.frozen_unix_binary()
    with tempfile.TemporaryDirectory() as d, running_twin(Path(d), require_sni=True) as tw:
        probe = _Probe(tw, Path(d))
        rows = {}
        for library, binary, is_frozen in (("frozen", frozen, True), (".mpy", exe, False)):
            kib = smallest_heap(probe, binary, is_frozen)
            rows[library] = {"smallest heap KiB": kib, "suite runs it at KiB": SUITE[library],
                             "margin %": round(100 * (SUITE[library] - kib) / kib)}
        results["deep-sleep cycle"] = rows
        results["runs"] = probe.runs


def _table(results: dict) -> str:
    lines = ["firmware/main.py deep-sleep cycle (mTLS, shadow, jobs), micropython-unix32:"]
    for library, r in results.get("deep-sleep cycle", {}).items():
        lines.append(f"  library {library:<7} smallest heap {r['smallest heap KiB']:>4} KiB"
                     f"   (the suite runs it at {r['suite runs it at KiB']} KiB,"
                     f" {r['margin %']} % in hand)")
    return "\n".join(lines)


bench_device.table = _table  # type: ignore[attr-defined]


if __name__ == "__main__":
    out: dict = {}
    bench_device(out)
    print(json.dumps(out, indent=2) if "--json" in sys.argv else _table(out))
