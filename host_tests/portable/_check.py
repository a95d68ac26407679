"""Tiny assertion helpers for portable tests (CPython under pytest AND MicroPython).

pytest.raises does not exist on MicroPython, so portable test modules use these instead.
"""


def raises(exc_type, fn, *args, **kw):
    """Call fn(*args, **kw); return the exception it raised, which must be an exc_type.

    Fails (AssertionError) if fn returns normally; any other exception propagates.
    """
    try:
        fn(*args, **kw)
    except exc_type as e:
        return e
    raise AssertionError("did not raise " + exc_type.__name__)
