# MqttClient over plain TCP, TLS and mutual TLS, one connection per case, in one process.
# argv[1]: JSON (or a JSON file) {
#   "cases": [{"name", "url", "client_id", "topic", "tls": null | {"ca", "cert", "key",
#       "server_hostname"}, "as_bytes": bool, "burst": null | [n, size], "username",
#       "password"}]: each connects,
#       publishes its name (QoS 1) to its topic, then n QoS 1 messages of size bytes to
#       topic + "/burst" one after the other if given, then given "echo": size, sends
#       itself one message of size bytes through topic + "/echo" (reports whether it came
#       back intact), and disconnects; the material is
#       read into bytes first when as_bytes;
#   "pem": [[pem path, der path]]: each PEM file, read into bytes, is decoded by
#       tls.read_pem_or_der and compared with the DER file, counting the bytes allocated.}
# Prints {"cases": [{"name", "ok", "pid", "burst_ms", "echo", "error": {type, msg, rc} | null}],
#   "pem": [{"pem", "der_len", "same", "alloc"}]}.
import asyncio
import gc
import time

from mp_kit import error_info, params, report, run

from mqtt_v5 import ConnectOptions, MqttClient, ReconnectConfig, TlsConfig
from mqtt_v5.tls import read_pem_or_der


def material(src, as_bytes):
    if src is None or not as_bytes:
        return src
    with open(src, "rb") as f:
        return f.read()


async def one(case):
    tls = None
    t = case.get("tls")
    if t is not None:
        b = case.get("as_bytes", False)
        tls = TlsConfig(ca=material(t.get("ca"), b), cert=material(t.get("cert"), b),
                        key=material(t.get("key"), b), server_hostname=t.get("server_hostname"))
    c = MqttClient(ConnectOptions(case["client_id"], tls=tls, connect_timeout=5,
                                  reconnect_config=ReconnectConfig(enabled=False),
                                  username=case.get("username"),
                                  password=case.get("password"),
                                  maximum_packet_size=(case.get("echo") or 1024) + 1024))
    out = {"name": case["name"], "ok": False, "pid": None, "error": None}
    try:
        await c.connect(case["url"])
        out["pid"] = await c.publish(case["topic"], case["name"].encode(), qos=1)
        burst = case.get("burst")
        if burst:  # [n, size]: n QoS 1 publishes of size bytes, one after the other
            data = b"x" * burst[1]
            t0 = time.ticks_ms()
            for _ in range(burst[0]):
                await c.publish(case["topic"] + "/burst", data, qos=1)
            out["burst_ms"] = time.ticks_diff(time.ticks_ms(), t0)
        size = case.get("echo")
        if size:  # one big message to ourselves, through the broker
            got = []
            await c.subscribe(case["topic"] + "/echo",
                              lambda m: got.append(bytes(m.payload)), qos=1)
            data = bytes(i * 7 & 0xFF for i in range(size))
            await c.publish(case["topic"] + "/echo", data, qos=1)
            for _ in range(1000):
                if got:
                    break
                await asyncio.sleep(0.01)
            out["echo"] = len(got) == 1 and got[0] == data
        await c.disconnect()
        out["ok"] = True
    except Exception as e:
        out["error"] = error_info(e)
        out["connected_after"] = c.is_connected
    return out


def pem_cost(pem_path, der_path):
    with open(pem_path, "rb") as f:
        pem = f.read()
    with open(der_path, "rb") as f:
        der = f.read()
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    blocks = read_pem_or_der(pem)
    alloc = gc.mem_alloc() - before
    gc.enable()
    return {"pem": pem_path, "der_len": len(der), "same": [b[1] for b in blocks] == [der],
            "alloc": alloc}


async def main():
    p = params()
    pem = [pem_cost(a, b) for a, b in p.get("pem", [])]
    results = []
    for case in p["cases"]:
        results.append(await one(case))
        gc.collect()
    report({"cases": results, "pem": pem})


run(main)
