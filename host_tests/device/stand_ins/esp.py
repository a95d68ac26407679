# Stand-in for MicroPython's `esp`.
def osdebug(level, *args):
    print("standin: esp.osdebug", level)
