"""MQTT over WebSocket (mqtt_v5.ws): against an independent server (the `websockets`
library bridging to Mosquitto), against scripted misbehaving servers, and against the
twin's WSS listener with a custom authorizer."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct

import pytest

from mqtt_v5 import ConnectOptions, MqttClient, NetworkError, ProtocolError, UsageError
from mqtt_v5.ws import accept_key, handshake_request, open_ws, parse_ws_url

from .conftest import run
from .ws_bridge import Bridge


def test_accept_key_rfc6455_example():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_parse_urls():
    assert parse_ws_url("wss://h.example/mqtt") == (True, "h.example", 443, "/mqtt")
    assert parse_ws_url("ws://h:8080") == (False, "h", 8080, "/mqtt")
    assert parse_ws_url("ws://h?x=1") == (False, "h", 80, "/mqtt?x=1")
    assert parse_ws_url("wss://[::1]:9001/a/b?c=d") == (True, "::1", 9001, "/a/b?c=d")
    for bad in ("http://h/", "ws://:80/", "ws://h:0/", "ws://h:x/"):
        with pytest.raises(UsageError):
            parse_ws_url(bad)


def test_handshake_request_headers_and_query():
    req = handshake_request("h", 443, "/mqtt", "KEY", True, {"x-a": "1"},
                            [("q", "a b&c"), ("r", "é")]).decode()
    lines = req.split("\r\n")
    assert lines[0] == "GET /mqtt?q=a%20b%26c&r=%C3%A9 HTTP/1.1"
    assert "Host: h" in lines
    assert "Sec-WebSocket-Protocol: mqtt" in lines
    assert "x-a: 1" in lines
    assert req.endswith("\r\n\r\n")
    with pytest.raises(UsageError):
        handshake_request("h", 80, "/", "K", False, {"x": "a\r\nInjected: 1"})


def test_pubsub_through_an_independent_websocket_server(mosquitto):
    async def main():
        async with Bridge(mosquitto.plain_port) as bridge:
            c = MqttClient(ConnectOptions("ws-indep", keep_alive=30, maximum_packet_size=80000))
            await c.connect(f"ws://127.0.0.1:{bridge.port}/mqtt")
            got = []
            done = asyncio.Event()

            def on_msg(m):
                got.append(m.payload)
                if len(got) == 3:
                    done.set()

            await c.subscribe("ws/indep/#", on_msg, qos=1)
            big = bytes(range(256)) * 40          # 10 KiB: 16-bit length, many fragments
            for p in (b"one", big, b"x" * 70000):  # 64-bit length frame up
                await c.publish_qos1("ws/indep/t", p)
            await asyncio.wait_for(done.wait(), 10)
            assert got == [b"one", big, b"x" * 70000]
            await asyncio.sleep(0.5)              # the server pings every 0.2 s: we pong
            assert c.is_connected
            await c.publish_qos1("ws/indep/t", b"after pings")
            await c.disconnect()
            path, headers = bridge.requests[0]
            assert path == "/mqtt"
            assert headers["Sec-WebSocket-Protocol"] == "mqtt"

    run(main())


def test_headers_and_query_reach_the_server(mosquitto):
    async def main():
        async with Bridge(mosquitto.plain_port, fragment=0) as bridge:
            url = f"ws://127.0.0.1:{bridge.port}/mqtt"
            c = MqttClient(ConnectOptions("ws-hdr"))
            await c.connect(lambda: open_ws(url, headers={"X-Device": "d1"},
                                            query={"token": "a/b c"}))
            await c.disconnect()
            path, headers = bridge.requests[0]
            assert path == "/mqtt?token=a%2Fb%20c"
            assert headers["X-Device"] == "d1"

    run(main())


class ScriptedWsServer:
    """Answers the upgrade as told, then sends the given raw bytes."""

    def __init__(self, answer: str = "good", frames: bytes = b""):
        self.answer = answer
        self.frames = frames
        self.received = bytearray()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _client(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(ln.split(b": ", 1)[1] for ln in head.split(b"\r\n")
               if ln.lower().startswith(b"sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                                  .digest()).decode()
        proto = "Sec-WebSocket-Protocol: mqtt\r\n"
        if self.answer == "403":
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        else:
            if self.answer == "bad-accept":
                accept = "AAAA" + accept[4:]
            if self.answer == "no-protocol":
                proto = ""
            writer.write((f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
                          f"{proto}\r\n").encode() + self.frames)
        await writer.drain()
        try:
            while data := await reader.read(4096):
                self.received += data
        except ConnectionError:
            pass
        writer.close()


@pytest.mark.parametrize(("answer", "words"), [
    ("403", "refused: HTTP/1.1 403"),
    ("bad-accept", "Sec-WebSocket-Accept"),
    ("no-protocol", "subprotocol"),
])
def test_bad_upgrade_answers(answer, words):
    async def main():
        async with ScriptedWsServer(answer) as srv:
            with pytest.raises(NetworkError, match=words):
                await open_ws(f"ws://127.0.0.1:{srv.port}/mqtt")

    run(main())


def frame(op, payload, fin=True, mask=None):
    b0 = (0x80 if fin else 0) | op
    n = len(payload)
    head = bytes([b0, (0x80 if mask else 0) | n]) if n < 126 else struct.pack(
        ">BBH", b0, (0x80 if mask else 0) | 126, n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def unmask_frames(data):
    out = []
    i = 0
    while i < len(data):
        op = data[i] & 0x0F
        n = data[i + 1] & 0x7F
        assert data[i + 1] & 0x80, "client frames are masked"
        j = i + 2
        if n == 126:
            n = struct.unpack_from(">H", data, j)[0]
            j += 2
        key = data[j:j + 4]
        j += 4
        out.append((op, bytes(b ^ key[k % 4] for k, b in enumerate(data[j:j + n]))))
        i = j + n
    return out


def test_fragments_ping_and_close_from_a_scripted_server():
    frames = (frame(2, b"hel", fin=False) + frame(9, b"pp") + frame(0, b"lo ", fin=False)
              + frame(0, b"world") + frame(2, b"!") + frame(8, struct.pack(">H", 1000)))

    async def main():
        async with ScriptedWsServer(frames=frames) as srv:
            ws = await open_ws(f"ws://127.0.0.1:{srv.port}/mqtt")
            await ws.write(b"abc")
            buf = bytearray(4)
            got = bytearray()
            while n := await ws.readinto(buf):
                got += buf[:n]
            assert bytes(got) == b"hello world!"
            await asyncio.sleep(0.1)
            sent = unmask_frames(bytes(srv.received))
            assert sent[0] == (2, b"abc")
            assert (10, b"pp") in sent                       # the pong
            assert sent[-1] == (8, struct.pack(">H", 1000))  # the close answered
            await ws.close()

    run(main())


@pytest.mark.parametrize("bad", [
    frame(1, b"text"),                    # text frame
    frame(2, b"abc", mask=b"\1\2\3\4"),   # a masked server frame
    frame(0, b"abc"),                     # continuation with no message open
    frame(5, b""),                        # unknown opcode
    frame(9, b"x" * 126),                 # control frame over 125 bytes
])
def test_protocol_violations_are_errors(bad):
    async def main():
        async with ScriptedWsServer(frames=bad) as srv:
            ws = await open_ws(f"ws://127.0.0.1:{srv.port}/mqtt")
            with pytest.raises(ProtocolError):
                await ws.readinto(bytearray(16))
            await asyncio.sleep(0.1)
            assert unmask_frames(bytes(srv.received))[-1] == (8, struct.pack(">H", 1002))

    run(main())
