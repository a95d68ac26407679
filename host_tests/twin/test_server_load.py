"""Load correctness: 100 concurrent connections to an in-process twin, each publishing
QoS 1 to its own topic while subscribed to it; every publish gets its PUBACK and every
message is routed back, none lost. (The 500-connection figures come from
``tools/bench_twin.py``, a ``make bench`` section.)"""

from __future__ import annotations

import asyncio

from bench_twin import raise_nofile, run_load, unthrottled_limits

from twin._server_util import running_twin, wait_for


def test_hundred_connections_publishing_qos1_lose_nothing(tmp_path):
    raise_nofile(1024)
    # Bulk load: the per-connection throttles are turned off explicitly.
    with running_twin(tmp_path, listeners=("plain",), limits=unthrottled_limits()) as tw:
        out = asyncio.run(run_load(tw.port("plain"), 100, 50, timeout_s=60))
        assert out["twin_errors"] == []
        assert out["twin_connections_held"] == 100
        assert out["twin_pubacks_lost"] == 0
        assert out["twin_qos1_msgs"] == 100 * 50
        assert out["twin_delivered"] == 100 * 50
        # The clients said DISCONNECT: nothing lingers on the twin.
        wait_for(lambda: tw.call(tw.twin.connections) == [])
