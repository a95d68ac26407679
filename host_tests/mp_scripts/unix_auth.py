# MqttClient's enhanced authentication (AUTH) and server redirection against the test's two
# scripted brokers (test_client_auth_redirect.py plays their side), one case after the other.
# argv[1]: JSON (or a JSON file) {"a": URL, "b": URL, "cases": [{"name", "opts": {ConnectOptions
#   keywords; auth_data as str}, "on_auth": "sync" | "async" | "raise" | None, "action"}]};
#   every case connects to "a". Actions:
#   "connect"      connect, then disconnect: the Connected event's CONNACK fields, or the error
#   "reauth"       connect, reauthenticate(b"again") (the server agrees after a challenge),
#                  reauthenticate(b"bad") (the server refuses): each one's error or None,
#                  "finals": what the successful ones returned
#   "redirected"   connect, wait for a Disconnected and the next Connected (reconnecting fast)
#   "disconnected" connect, wait for a Disconnected (the server misbehaves)
# Prints {"cases": [{"name", "connected", "error", "errors", "conn", "server", "events",
#   "unexpected": an error the case did not expect}]}.
import asyncio

from mp_kit import Events, error_info, params, report, run

from mqtt_v5 import properties as P
from mqtt_v5.client import Connected, ConnectOptions, Disconnected, MqttClient, ReconnectConfig


def answer(data):
    return b"answer:" + (data or b"")


async def answer_later(data):
    await asyncio.sleep(0.02)  # the reader waits for us; nothing else stalls
    return b"async:" + (data or b"")


def refuse(data):
    raise ValueError("the server's proof is wrong")


ON_AUTH = {"sync": answer, "async": answer_later, "raise": refuse}


def text(data):
    return data.decode() if data is not None else None


def fields(ev, c):
    """The CONNACK's properties as the Connected event gives them (JSON)."""
    up = ev.user_properties
    return {"client_id": c.client_id,
            "auth_data": text(ev.properties.get(P.PROP_AUTHENTICATION_DATA)),
            "assigned_client_id": ev.assigned_client_id,
            "response_information": ev.response_information,
            "server_reference": ev.server_reference, "reason_string": ev.reason_string,
            "user_properties": [list(p) for p in up] if up else None}


async def one(url, case):
    opts = {"connect_timeout": 2.0, "reconnect_config": ReconnectConfig(enabled=False)}
    for k, v in case.get("opts", {}).items():
        opts[k] = v.encode() if k == "auth_data" else v
    if case["action"] == "redirected":
        opts["reconnect_config"] = ReconnectConfig(initial_delay=0.05, max_delay=0.2, jitter=0)
    if case.get("on_auth"):
        opts["on_auth"] = ON_AUTH[case["on_auth"]]
    c = MqttClient(ConnectOptions("auth-" + case["name"], **opts))
    ev = Events(c)
    out = {"name": case["name"], "error": None, "errors": [], "finals": [], "conn": None}
    action = case["action"]
    try:
        try:
            conn = await c.connect(url)
            out["conn"] = fields(conn, c)
        except Exception as e:
            out["error"] = error_info(e)
            out["server_reference"] = getattr(e, "server_reference", None)
        out["connected"] = c.is_connected
        if out["error"] is None:
            if action == "reauth":
                for data in (b"again", b"bad"):
                    try:
                        out["finals"].append(text(await c.reauthenticate(data)))
                        out["errors"].append(None)
                    except Exception as e:
                        out["errors"].append(error_info(e))
            elif action == "redirected":
                await ev.wait(Disconnected, timeout_s=5)
                out["conn"] = fields(await ev.wait(Connected, 2, timeout_s=5), c)
            elif action == "disconnected":
                await ev.wait(Disconnected, timeout_s=5)
            out["server"] = c.status()["server"]
            await c.disconnect()
    except Exception as e:  # not what the case expects: the test says so
        out["unexpected"] = error_info(e)
    out["events"] = ev.summary()
    out["refs"] = [e.server_reference for e in ev.of(Disconnected)]
    return out


async def main():
    p = params()
    results = []
    for case in p["cases"]:
        results.append(await one(p["a"], case))
    report({"cases": results})


run(main)
