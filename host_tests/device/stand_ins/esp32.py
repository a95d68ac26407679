# Stand-in for MicroPython's `esp32`: the on-chip temperature sensor.
def mcu_temperature():
    return 41


def raw_temperature():
    return 106
