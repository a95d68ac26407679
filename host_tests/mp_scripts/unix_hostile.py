# MqttClient against the test's scripted (hostile) broker, one connection per case, in order.
# argv[1]: JSON (or a JSON file) {"url", "cases": [{"name", "opts": {ConnectOptions
#   keywords}, "action", "tls_ca": CA path to connect with TLS}]}; actions:
#   "wait_disconnect"  connect, wait for the Disconnected event (the broker misbehaves),
#                      "ms" after connect() returned;
#                      "measure" also counts the bytes allocated meanwhile (gc off)
#   "connect_error"    connect must fail: report the error
#   "publish_twice"    connect, publish QoS 1 twice (the first is refused), disconnect
#   "subscribe"        connect, subscribe "secret/#" QoS 1, disconnect
#   "receive"          connect, collect n messages' packet ids, disconnect
# Reconnecting is off. Prints {"cases": [{"name", "events", "error", "errors", "pids",
#   "got", "alloc", "ms", "connected", "unexpected": error the case did not expect}]}.
import asyncio
import gc
import time

from mp_kit import Events, error_info, params, report, run

from mqtt_v5.client import ConnectOptions, Disconnected, MqttClient, ReconnectConfig
from mqtt_v5.tls import TlsConfig


async def one(url, case):
    opts = {"connect_timeout": 2.0, "reconnect_config": ReconnectConfig(enabled=False)}
    opts.update(case.get("opts", {}))
    if case.get("tls_ca"):  # TLS to the scripted broker (which never answers the hello)
        opts["tls"] = TlsConfig(ca=case["tls_ca"])
        url = "mqtts://" + url.split("://")[1]
    c = MqttClient(ConnectOptions("hostile-" + case["name"], **opts))
    ev = Events(c)
    out = {"name": case["name"], "error": None, "errors": [], "pids": [], "got": []}
    action = case["action"]
    try:
        if action == "connect_error":
            try:
                await c.connect(url)
            except Exception as e:
                out["error"] = error_info(e)
            out["connected"] = c.is_connected
            out["events"] = ev.summary()
            return out
        await c.connect(url)
        if action == "wait_disconnect":
            t0 = time.ticks_ms()
            if case.get("measure"):
                gc.collect()
                gc.disable()
                before = gc.mem_alloc()
                await ev.wait(Disconnected, timeout_s=5)
                out["alloc"] = gc.mem_alloc() - before
                gc.enable()
            else:
                await ev.wait(Disconnected, timeout_s=5)
            out["ms"] = time.ticks_diff(time.ticks_ms(), t0)
        elif action == "publish_twice":
            for payload in (b"1", b"2"):
                try:
                    out["pids"].append(await c.publish("t", payload, qos=1))
                except Exception as e:
                    out["errors"].append(error_info(e))
        elif action == "subscribe":
            try:
                out["pids"].append(await c.subscribe("secret/#", qos=1))
            except Exception as e:
                out["errors"].append(error_info(e))
        elif action == "receive":
            c.on_message(lambda m: out["got"].append(m.packet_id))
            for _ in range(500):
                if len(out["got"]) >= case["n"]:
                    break
                await asyncio.sleep(0.01)
        out["connected"] = c.is_connected
        await c.disconnect()
    except Exception as e:  # not what the case expects: the test says so
        out["unexpected"] = error_info(e)
    out["events"] = ev.summary()
    return out


async def main():
    p = params()
    results = []
    for case in p["cases"]:
        results.append(await one(p["url"], case))
        gc.collect()
    report({"cases": results})


run(main)
