# Stand-in for MicroPython's `network` (ESP32): a station that joins after a set number of
# failed attempts (STANDIN_WIFI_FAILS). The unix port's own network stack does the rest.
import os
import time

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201

_fails = int(os.getenv("STANDIN_WIFI_FAILS") or 0)
_state = {"active": False, "connected": False, "attempts": 0}


def is_up():
    """For the other stand-ins: is the station connected?"""
    return _state["connected"]


class WLAN:
    def __init__(self, interface=STA_IF):
        self.interface = interface

    def active(self, on=None):
        if on is None:
            return _state["active"]
        _state["active"] = bool(on)
        print("standin: wlan.active", bool(on))
        return None

    def connect(self, ssid=None, key=None):
        if not _state["active"]:
            raise OSError("Wifi Not Started")
        _state["attempts"] += 1
        ok = _state["attempts"] > _fails
        print("standin: wlan.connect", ssid, "attempt", _state["attempts"],
              "ok" if ok else "no AP", "at", time.ticks_ms(), "ms")
        _state["connected"] = ok

    def disconnect(self):
        _state["connected"] = False

    def isconnected(self):
        return _state["connected"]

    def status(self, param=None):
        if param == "rssi":
            if not _state["connected"]:
                raise OSError("not connected")
            return -61
        if param is not None:
            raise ValueError("unknown status param")
        return STAT_GOT_IP if _state["connected"] else STAT_NO_AP_FOUND

    def ifconfig(self, *args):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, *args, **kwargs):
        if args == ("mac",):
            return b"\x24\x0a\xc4\x12\x34\x56"
        return None
