"""The unix-port benchmark's machinery (tools/bench_unix.py), not its figures: the heap
scenario succeeds for every library with room to spare and fails cleanly without it, so a
binary search over it measures something; the table and the chart render from results."""

import sys
from pathlib import Path

import mp_unix
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import bench_unix


class _Bench:
    def __init__(self, mosquitto, pki):
        self.broker = mosquitto
        self.pki = pki


@pytest.mark.parametrize("lib", bench_unix.LIBS)
def test_heap_scenario_runs_with_room_and_fails_cleanly_without(lib, mosquitto, pki):
    exe = mp_unix.binary("unix32")
    if exe is None:
        pytest.skip(mp_unix.why_missing())
    b = _Bench(mosquitto, pki)
    ok, err = bench_unix._scenario_ok(exe, lib, 512, b, False)
    assert ok, err
    ok, err = bench_unix._scenario_ok(exe, lib, 24, b, False)
    assert not ok
    assert err  # a reason, reported as JSON by the script itself


def test_reconnect_scenario_and_heap_steps_run(mosquitto, pki):
    """scenario_more.py: the reconnect succeeds with room and fails cleanly without; the
    steps come in order, each a heap figure, the import line the largest step up."""
    exe = mp_unix.binary("unix32")
    if exe is None:
        pytest.skip(mp_unix.why_missing())
    b = _Bench(mosquitto, pki)
    ok, err = bench_unix._scenario_ok(exe, "again", 512, b, False)
    assert ok, err
    ok, err = bench_unix._scenario_ok(exe, "again", 24, b, False)
    assert not ok
    assert err
    ok, err = bench_unix._scenario_ok(exe, "lost", 512, b, False)  # reconnected by itself
    assert ok, err
    steps, interned = bench_unix.heap_steps(exe, b)
    names = [n for n, _ in steps]
    assert names == ["start", "import asyncio", "import line", "MqttClient()", "connected",
                     "subscribed, published, received", "disconnected"]
    kept = dict(steps)
    ups = {n: kept[n] - steps[i - 1][1] for i, (n, _) in enumerate(steps) if i}
    assert max(ups, key=ups.get) in ("import line", "connected")
    assert kept["connected"] > kept["disconnected"] > kept["MqttClient()"]
    # qstr_info's count: the library's names, interned from .mpy, are hundreds
    assert 200 < interned < 5000


def test_table_and_chart_render_from_results(tmp_path):
    heap = {lib: {"scenario .mpy KiB": 100 + i} for i, lib in enumerate(bench_unix.LIBS)}
    heap["ours"].update({"scenario frozen KiB": 70, "import .mpy B": 70_000,
                         "import frozen B": 15_000, "scenario .mpy KiB, EC": 93,
                         "scenario frozen KiB, EC": 61, "scenario reconnect .mpy KiB": 129,
                         "scenario reconnect frozen KiB": 75,
                         "scenario reconnect .mpy KiB, EC": 97,
                         "scenario reconnect frozen KiB, EC": 63,
                         "interned names .mpy": 611, "interned names frozen": 31})
    heap["bare"]["scenario .mpy KiB, EC"] = 37
    heap["umqtt"]["scenario .mpy KiB, EC"] = 42
    ops = {"ours": {"publish qos0": 288, "publish qos1": 688, "wakeup": 288, "idle B/s": 0,
                    "qos0 publishes/s": 7000, "qos1 stop-and-wait/s": 9000,
                    "qos1 pipelined 20/s": 8000, "receive qos1": 576,
                    "qos0 then qos1 pairs/s": 9500},
           "umqtt": {"publish qos0": 64, "qos0 publishes/s": 150_000,
                     "qos0 then qos1 pairs/s": 23},
           "mqtt_as": {"publish qos0": 1314, "idle B/s": 26_000}}
    steps = {".mpy": [["start", 2976], ["import line", 59_744]],
             "frozen": [["start", 2960], ["import line", 15_100]]}
    results = {"heap": heap, "ops": ops, "targets": bench_unix.TARGETS, "heap steps": steps}
    text = bench_unix.table(results)
    assert "scenario .mpy KiB" in text
    assert "59,744" in text
    assert "15,100" in text
    assert "150,000" in text
    readme = bench_unix.readme_table(results)
    assert "| 611 / 31 |" in readme
    rows = readme.splitlines()
    ec_row = next(line for line in rows if "EC P-256" in line)  # the targets' setup: first
    assert ec_row.endswith("| **93 KiB** | 42 KiB | - | 37 KiB |")
    assert rows[3].endswith("| **61 KiB** | - | - | 37 KiB |")  # frozen: beside bare TLS
    rsa_row = next(line for line in rows if "RSA 2048 keys" in line)
    assert rsa_row.endswith("| **100 / 70 KiB** | 101 KiB | 102 KiB | 103 KiB |")
    pairs_row = next(line for line in rows if "pairs per second" in line)
    assert pairs_row.endswith("| 9,500 | 23 | - | - |")
    again_row = next(line for line in rows if "with RSA, reconnect" in line)
    assert "**129 / 75 / - / - KiB**" in again_row
    again_ec = next(line for line in rows if "connect again" in line)
    assert "**97 / 63 KiB**" in again_ec
    svg = tmp_path / "chart.svg"
    bench_unix.write_chart(results, svg)
    body = svg.read_text()
    assert body.startswith("<svg")
    assert body.rstrip().endswith("</svg>")
    for shown in ("70,000", "61", "EC keys, frozen", "target 80", "umqtt.simple",
                  "asyncio's own cost"):
        assert shown in body


def test_smallest_heap_is_past_every_failure_just_above_it(monkeypatch):
    # A scenario that works from 50 KiB except at 53 (the heap's layout at that size):
    # the figure is 54, not the 50 a binary search alone finds.
    fails = {53}
    monkeypatch.setattr(bench_unix, "_scenario_ok",
                        lambda exe, lib, kib, b, frozen, pad=0: (kib >= 50 and kib not in fails,
                                                                 ""))
    assert bench_unix.smallest_heap(None, "ours", None) == 54
    fails.clear()
    assert bench_unix.smallest_heap(None, "ours", None) == 50
    fails.add(50 + bench_unix.ABOVE)  # beyond the window checked: not seen
    assert bench_unix.smallest_heap(None, "ours", None) == 50


def test_the_dropped_link_figure_is_the_worst_of_its_layouts(monkeypatch):
    """The outage scenario is measured with the program keeping each of LOST_PADS bytes
    before its imports, and its figure is the worst (a reconnect's 16 KiB block found or
    not depended on a few bytes); the other scenarios run once, as they are."""
    seen = []

    def smallest(exe, mode, b, frozen=False, pad=0):
        seen.append((mode, pad))
        return 90 + pad // 16

    monkeypatch.setattr(bench_unix, "smallest_heap", smallest)
    assert bench_unix.worst_heap(None, "lost", None) == 90 + max(bench_unix.LOST_PADS) // 16
    assert seen == [("lost", pad) for pad in bench_unix.LOST_PADS]
    assert len(bench_unix.LOST_PADS) > 1
    seen.clear()
    assert bench_unix.worst_heap(None, "again", None) == 90
    assert seen == [("again", 0)]
