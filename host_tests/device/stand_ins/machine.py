# Stand-in for MicroPython's `machine` (ESP32): reset causes, a watchdog that resets the
# "board" when it is not fed in time, deep sleep that ends the process (and makes the next
# run a wake-up), reset.
import _thread
import os
import sys
import time

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_WAKE = ".standin_deepsleep"
_WDT = ".standin_watchdog"
_cause = PWRON_RESET
for _file, _why in ((_WAKE, DEEPSLEEP_RESET), (_WDT, WDT_RESET)):
    try:
        os.remove(_file)
        _cause = _why
    except OSError:
        pass


def reset_cause():
    return _cause


def unique_id():
    return b"\x24\x0a\xc4\x12\x34\x56"


def freq(*args):
    return 240_000_000


class WDT:
    """A watchdog that resets the "board" when it is not fed within ``timeout`` ms, as the
    ESP32's does: a thread checks every 50 ms (so a program stuck in a blocking call is
    caught too, not only a late feed), prints ``standin: watchdog reset ...`` and kills
    the process (SIGKILL: nothing of the program runs after it, as on a board); the next
    run's ``reset_cause()`` is ``WDT_RESET``. Each new longest gap between feeds (from
    the start to the first feed included) is printed as ``standin: WDT longest gap N ms``
    so a test can check how close the program comes to the limit."""

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.last = time.ticks_ms()
        self.longest = 0
        self.feeds = 0
        self.running = True
        print("standin: WDT", timeout, "ms")
        _thread.start_new_thread(self._check, ())
        # A process that ends with this thread alive races the unix port's teardown (its
        # collector signals every thread; one half torn down aborts the process: SIGABRT
        # after the program's last line, about 1 boot in 100 here): stop it first.
        sys.atexit(self._stop)

    def _gap(self):
        return time.ticks_diff(time.ticks_ms(), self.last)

    def _check(self):
        while self.running:
            time.sleep_ms(50)
            late = self._gap()
            if late > self.timeout and self.running:
                self._reset(late)
        self.running = None  # (the thread is done)

    def _stop(self):
        self.running = False
        for _ in range(100):
            if self.running is None:
                return
            time.sleep_ms(5)

    def _reset(self, late):
        print("standin: watchdog reset (not fed for", late, "ms, timeout", self.timeout, "ms)")
        with open(_WDT, "w") as f:
            f.write(str(late))
        os.system("kill -9 $PPID")  # the shell's parent: this MicroPython process
        time.sleep(10)  # never reached

    def feed(self):
        gap = self._gap()
        if gap > self.timeout:
            self._reset(gap)
        if gap > self.longest:
            self.longest = gap
            print("standin: WDT longest gap", gap, "ms")
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
