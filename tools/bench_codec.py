"""CPython PUBLISH encode/decode rates: mqtt_v5.codec vs paho-mqtt 2.x, same packets, same run.

The packet: topic "sensors/room1/temper" (20 bytes), 64-byte payload, no properties, QoS 0
and QoS 1 (packet id 77). Before timing, the bytes each side produces are compared: the
section fails if they differ, so both really build the same packet.

Encode
  ours   codec.encode_publish(buf, topic, payload, qos, pid) into a bytearray allocated once
  paho   Client._send_publish(...) -- paho's own packet building (bytearray, struct, property
         block) -- with the socket write replaced by a no-op (``_packet_queue`` patched to
         keep the packet), i.e. everything paho does for a PUBLISH short of I/O
Decode (an incoming QoS 1 PUBLISH)
  paho            paho.mqtt._packet.decode_publish(first_byte, body, MQTTv5): the parser
                  _handle_publish calls; gets the body already framed, checks no UTF-8,
                  leaves the topic as bytes, parses properties into a Properties object
  ours_view       decode_publish_into(view, ...) on a body already in the buffer: no
                  framing, UTF-8 and topic checked, offsets only (the device's hot path)
  ours_framed     PacketReader.feed + next + decode_publish_into: framing included
  ours_objects    ours_framed + view.topic() and view.payload(): str and bytes made, as
                  paho makes them (fairest "same result" comparison)
  ours_decode     codec.decode(packet): the cold path, a Publish object with a property dict
Rates are operations per second, best of ``REPEAT`` runs of ``NUMBER`` calls (timeit
style); ``ratio`` = ours / paho (> 1: ours is faster).
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "lib") not in sys.path:
    sys.path.insert(0, str(ROOT / "lib"))

from mqtt_v5 import _server_codec as codec  # noqa: E402
from mqtt_v5.properties import Reader  # noqa: E402

TOPIC = b"sensors/room1/temper"
PAYLOAD = bytes(range(64))
PID = 77
NUMBER = 20_000
REPEAT = 5


def _rates(fns: dict, number=NUMBER, repeat=REPEAT) -> dict:
    """ops/s of each function: the best of ``repeat`` rounds, the functions interleaved in
    every round so that a noisy neighbour slows them alike."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            best[name] = min(best[name], timeit.Timer(fn).timeit(number))
    return {name: number / t for name, t in best.items()}


class _NoSocket:
    def close(self):
        pass


def _paho_encoder():
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench", protocol=mqtt.MQTTv5)
    c._sock = _NoSocket()  # "connected": _send_publish refuses to build without a socket
    last = {}

    def keep(command, packet, mid, qos, info=None):
        last["packet"] = packet
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    c._packet_queue = keep
    return c, last


def bench_codec(results: dict) -> None:
    import paho.mqtt
    import paho.mqtt._packet as paho_packet
    from paho.mqtt.client import MQTTv5

    results["conditions"] = {
        "topic_bytes": len(TOPIC),
        "payload_bytes": len(PAYLOAD),
        "properties": 0,
        "number": NUMBER,
        "repeat": REPEAT,
        "python": sys.version.split()[0],
        "paho": paho.mqtt.__version__,
    }

    # ---- encode: same bytes first
    buf = bytearray(256)
    client, last = _paho_encoder()
    enc = {}
    for qos in (0, 1):
        pid = PID if qos else 0
        n = codec.encode_publish(buf, TOPIC, PAYLOAD, qos, pid)
        client._send_publish(pid, TOPIC, PAYLOAD, qos)
        if bytes(last["packet"]) != bytes(buf[:n]):
            raise AssertionError(
                f"paho and mqtt_v5 built different QoS {qos} packets:\n"
                f"{bytes(last['packet'])!r}\n{bytes(buf[:n])!r}"
            )

        def ours(qos=qos, pid=pid):
            codec.encode_publish(buf, TOPIC, PAYLOAD, qos, pid)

        def paho(qos=qos, pid=pid):
            client._send_publish(pid, TOPIC, PAYLOAD, qos)

        r = _rates({"ours": ours, "paho": paho})
        o, p = r["ours"], r["paho"]
        enc[f"encode_qos{qos}"] = {"ours": round(o), "paho": round(p), "ratio": round(o / p, 2)}

    # ---- decode: an incoming QoS 1 PUBLISH
    n = codec.encode_publish(buf, TOPIC, PAYLOAD, 1, PID)
    packet = bytes(buf[:n])
    first, body = packet[0], packet[2:]  # Remaining Length fits one byte here
    parsed = paho_packet.decode_publish(first, body, MQTTv5)
    assert (parsed.topic, parsed.payload, parsed.mid) == (TOPIC, PAYLOAD, PID)

    rd = codec.PacketReader(512)
    view = codec.PublishView()
    body_buf = bytearray(packet)
    r = Reader()

    def ours_view():
        codec.decode_publish_into(view, first, r.reset(body_buf, 2, n))

    def ours_framed():
        rd.feed(packet)
        f = rd.next()
        codec.decode_publish_into(view, f, rd.reader.reset(rd.buf, rd.body_start, rd.body_end))
        rd.next()

    def ours_objects():
        ours_framed()
        view.topic()
        view.payload()

    def ours_decode():
        codec.decode(packet)

    def paho_decode():
        paho_packet.decode_publish(first, body, MQTTv5)

    ours_framed()
    assert (view.topic(), view.payload(), view.packet_id) == (TOPIC.decode(), PAYLOAD, PID)
    r = _rates(
        {
            "paho": paho_decode,
            "ours_view": ours_view,
            "ours_framed": ours_framed,
            "ours_objects": ours_objects,
            "ours_decode": ours_decode,
        }
    )
    p = r.pop("paho")
    dec = {
        "decode_" + name: {"ours": round(o), "paho": round(p), "ratio": round(o / p, 2)}
        for name, o in r.items()
    }
    results["publish_ops_per_s"] = {**enc, **dec}
    client._sock = None


def _table(results: dict) -> str:
    rows = results["publish_ops_per_s"]
    out = [f"{'PUBLISH, ops/s (CPython)':<28}{'mqtt_v5':>12}{'paho':>12}{'ours/paho':>11}"]
    for name, r in rows.items():
        out.append(f"{name:<28}{r['ours']:>12,}{r['paho']:>12,}{r['ratio']:>11.2f}")
    c = results["conditions"]
    out.append(
        f"({c['topic_bytes']}-byte topic, {c['payload_bytes']}-byte payload, "
        f"no properties; best of {c['repeat']} x {c['number']:,}; paho {c['paho']}, "
        f"Python {c['python']}. encode: identical bytes checked first. decode: paho's "
        "decode_publish gets the body pre-framed and checks no UTF-8; ours_view is the "
        "same job plus validation, ours_framed adds framing, ours_objects also makes "
        "str/bytes as paho does, ours_decode is the cold path)"
    )
    return "\n".join(out)


bench_codec.table = _table  # type: ignore[attr-defined]

if __name__ == "__main__":
    res: dict = {}
    bench_codec(res)
    print(_table(res))
