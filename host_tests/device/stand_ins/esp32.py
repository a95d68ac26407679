# Stand-in for MicroPython's `esp32`: the on-chip temperature sensor. With
# STANDIN_SENSOR_HANG_AFTER=N, the reading after the first N never returns (a blocking call
# that hangs, as a driver on a stuck bus does): only the watchdog gets the board out.
import os
import time

_hang_after = os.getenv("STANDIN_SENSOR_HANG_AFTER")
_reads = [0]


def mcu_temperature():
    _reads[0] += 1
    if _hang_after is not None and _reads[0] > int(_hang_after):
        print("standin: esp32.mcu_temperature hangs (read", _reads[0], ")")
        while True:
            time.sleep_ms(1000)
    return 41


def raw_temperature():
    return 106
