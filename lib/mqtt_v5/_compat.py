"""The only module that knows MicroPython from CPython.

Everything else imports runtime-specific names from here, so the rest of the
library is one source tree for both runtimes.
"""

import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"

if IS_MICROPYTHON:
    from micropython import const  # noqa: F401
    import time as _time

    ticks_ms = _time.ticks_ms
    ticks_add = _time.ticks_add
    ticks_diff = _time.ticks_diff

else:
    import time as _time

    def const(value):  # type: ignore[no-redef]
        """MicroPython folds const() at compile time; CPython just returns the value."""
        return value

    _TICKS_PERIOD = 1 << 30
    _TICKS_MAX = _TICKS_PERIOD - 1
    _TICKS_HALF = _TICKS_PERIOD // 2

    def ticks_ms():
        """Milliseconds on a wrapping 30-bit counter, as MicroPython's time.ticks_ms()."""
        return int(_time.monotonic() * 1000) & _TICKS_MAX

    def ticks_add(ticks, delta):
        return (ticks + delta) & _TICKS_MAX

    def ticks_diff(end, start):
        """Signed difference end - start, correct across one wrap-around."""
        return ((end - start + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF
