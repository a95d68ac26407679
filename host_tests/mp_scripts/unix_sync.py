# The REPL session of mqtt_v5.sync_client's docstring, as written, with SyncClient on
# the unix port.
# argv[1]: JSON (or a JSON file) {"cases": [{"name", "url", "client_id", "topic",
#   "tls": null | {"ca", "cert", "key"}, "timeout_s"}]}: connect, subscribe topic/#, publish to
#   topic/hello (QoS 1), wait_msg(5), check_msg(), ping(), disconnect().
# Prints {"cases": [{"name", "ok", "error", "steps": [what each call returned, as repr]}]}.
from mp_kit import error_info, params, report

from mqtt_v5.sync_client import SyncClient
from mqtt_v5.tls import TlsConfig


def one(case):
    out = {"name": case["name"], "ok": False, "error": None, "steps": []}
    steps = out["steps"]
    t = case.get("tls")
    tls = None if t is None else TlsConfig(ca=t["ca"], cert=t.get("cert"), key=t.get("key"))
    c = SyncClient(case["client_id"], keep_alive=60)
    try:
        steps.append(repr(c.connect(case["url"], tls=tls, timeout_s=case.get("timeout_s"))))
        steps.append(repr(c.subscribe(case["topic"] + "/#", qos=1)))
        steps.append(repr(c.publish(case["topic"] + "/hello", b"hi", qos=1)))
        m = c.wait_msg(5)
        steps.append(None if m is None else [m.topic, bytes(m.payload).decode(), m.qos])
        steps.append(repr(c.check_msg()))
        steps.append(repr(c.ping()))
        c.disconnect()
        out["ok"] = True
    except Exception as e:
        out["error"] = error_info(e)
    return out


report({"cases": [one(case) for case in params()["cases"]]})
