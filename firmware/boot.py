# boot.py: runs before main.py at every reset. Keep it small and unable to fail: an error
# here leaves the board at the REPL without running main.py.
import gc

import machine

try:
    import esp

    esp.osdebug(None)  # ESP-IDF's log lines off the REPL's serial port
except ImportError:
    pass

_CAUSES = {machine.PWRON_RESET: "power on", machine.HARD_RESET: "hard reset",
           machine.WDT_RESET: "watchdog", machine.DEEPSLEEP_RESET: "deep sleep wake",
           machine.SOFT_RESET: "soft reset"}
print("boot: %s, %d bytes free" % (_CAUSES.get(machine.reset_cause(), "reset"), gc.mem_free()))
del _CAUSES
gc.collect()
