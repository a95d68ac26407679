# Helpers for the scripts in host_tests/mp_scripts/ that drive MqttClient on MicroPython's
# unix port (they also run on CPython, which keeps them honest). A script takes its
# parameters as one JSON argument, or the path of a JSON file (the unix port dies with
# "FATAL: uncaught NLR" on an argument longer than about 255 bytes), and prints one JSON
# object as its last line.
import asyncio
import json
import sys

from mqtt_v5.client import Connected, Disconnected, Reconnecting


def params():
    arg = sys.argv[1]
    if arg.startswith("{"):
        return json.loads(arg)
    with open(arg) as f:
        return json.load(f)


def report(obj):
    print(json.dumps(obj))


def error_info(e):
    """An exception as JSON: its class name, text and reason code (None if none)."""
    if e is None:
        return None
    return {"type": type(e).__name__, "msg": str(e), "rc": getattr(e, "reason_code", None)}


class Events:
    """Records a client's connection events; ``await ev.wait(Kind, n)`` until there are n."""

    def __init__(self, client=None):
        self.events = []
        if client is not None:
            client.on_connection_event(self)

    def __call__(self, event):
        self.events.append(event)

    def of(self, kind):
        return [e for e in self.events if isinstance(e, kind)]

    async def wait(self, kind, n=1, timeout_s=10):
        for _ in range(int(timeout_s * 100)):
            if len(self.of(kind)) >= n:
                return self.of(kind)[n - 1]
            await asyncio.sleep(0.01)
        raise AssertionError(f"timed out waiting for {kind.__name__} #{n}; got {self.events}")

    def summary(self):
        out = []
        for e in self.events:
            if isinstance(e, Connected):
                out.append({"kind": "Connected", "session_present": e.session_present})
            elif isinstance(e, Disconnected):
                out.append({"kind": "Disconnected", "rc": e.reason_code,
                            "by_server": e.by_server, "reason_string": e.reason_string,
                            "error": error_info(e.error)})
            elif isinstance(e, Reconnecting):
                out.append({"kind": "Reconnecting", "attempt": e.attempt})
        return out


async def until(test, timeout_s=5):
    """Poll ``test()`` every 10 ms until it is true (True) or ``timeout_s`` passed (False)."""
    for _ in range(int(timeout_s * 100)):
        if test():
            return True
        await asyncio.sleep(0.01)
    return False


def run(main):
    """asyncio.run(main()), reporting an escaped exception as {"crash": ...}."""
    try:
        asyncio.run(main())
    except BaseException as e:  # the JSON line must come, whatever happened
        report({"crash": error_info(e)})
        raise
