# Stand-in for MicroPython's `machine` (ESP32): reset causes, a watchdog that checks it is fed
# in time, deep sleep that ends the process (and makes the next run a wake-up), reset.
import os
import sys
import time

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_WAKE = ".standin_deepsleep"
try:
    os.remove(_WAKE)
    _cause = DEEPSLEEP_RESET
except OSError:
    _cause = PWRON_RESET


def reset_cause():
    return _cause


def unique_id():
    return b"\x24\x0a\xc4\x12\x34\x56"


def freq(*args):
    return 240_000_000


class WDT:
    """Exits the process with status 3 (a watchdog reset) when fed late."""

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.last = time.ticks_ms()
        self.feeds = 0
        print("standin: WDT", timeout, "ms")

    def feed(self):
        late = time.ticks_diff(time.ticks_ms(), self.last)
        if late > self.timeout:
            print("standin: watchdog reset (fed after", late, "ms)")
            sys.exit(3)
        self.last = time.ticks_ms()
        self.feeds += 1


def deepsleep(ms=0):
    with open(_WAKE, "w") as f:
        f.write(str(ms))
    print("standin: deepsleep", ms)
    sys.exit(0)


def lightsleep(ms=0):
    time.sleep_ms(ms)


def reset():
    print("standin: machine.reset")
    sys.exit(90)


def soft_reset():
    reset()
