# Stand-in for MicroPython's `ntptime`: the unix clock is already right, so settime() only
# checks that it is called with the network up, and fails STANDIN_NTP_FAILS times first.
import os

import network

host = "ntp.invalid"
timeout = 1
_fails = int(os.getenv("STANDIN_NTP_FAILS") or 0)
_calls = [0]


def time():
    import time as _t

    return _t.time()


def settime():
    _calls[0] += 1
    if not network.is_up():
        print("standin: ntptime.settime without network")
        raise OSError(118)  # EHOSTUNREACH, as on the board
    if _calls[0] <= _fails:
        print("standin: ntptime.settime timed out")
        raise OSError(110)  # ETIMEDOUT
    print("standin: ntptime.settime")
