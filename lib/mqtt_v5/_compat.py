"""The only module that knows MicroPython from CPython.

Everything else imports runtime-specific names from here, so the rest of the
library is one source tree for both runtimes. The choice is made here alone; the
code of a runtime that is not hot lives in a module of its own, so a device does
not hold it in RAM: ``_compat_cpython`` (CPython's half: never installed on a
device) and ``_compat_micropython`` (MicroPython's connect-time code, loaded at the
first connect).
"""

import sys

if 0:  # (the type checker's alone: MicroPython compiles no code for it)
    from typing import Any  # noqa: F401 (type comments)

IS_MICROPYTHON = sys.implementation.name == "micropython"
# Names used only while this module runs are deleted after use (``sys``): each
# global is a slot of the module's dict (a dict grows when full, in steps).
del sys


class Done:
    """An awaitable already complete with ``value``, which can be awaited again and
    again: its one StopIteration is raised at each await (0 B on MicroPython, where
    calling an ``async def`` allocates its generator, 48 B or more, and a raise of a
    preallocated exception allocates nothing once its traceback is cleared; on CPython
    about 0.9 us). ``READY`` is ``Done(None)``: for a method that usually has nothing to
    wait for, return READY then, a coroutine otherwise. ``send``/``throw`` (and on
    CPython ``close``) let ``asyncio.create_task`` and ``gather`` take it as a coroutine
    on both runtimes (MicroPython's ``Waiter`` inherits ``wait`` and ``throw`` from
    here)."""

    def __init__(self, value):
        self._stop = StopIteration(value)

    def __iter__(self):
        return self

    # (one function object for these names: each def costs a device RAM; what close()
    # returns goes unread. MicroPython's await is a yield from, which asks for __iter__,
    # and its asyncio never closes a coroutine: __await__ and close are CPython's alone,
    # two names fewer in the class's dict on a device.)
    wait = __iter__
    if not IS_MICROPYTHON:
        __await__ = close = __iter__

    def __next__(self):
        e = self._stop
        e.__traceback__ = None
        raise e

    def send(self, value):
        return self.__next__()

    def throw(self, exc_type, *val_tb):
        # (a Waiter: cancelled while parked; ``*``, not defaults: a def with defaults
        # takes 32 B of a device's RAM, 16 without)
        raise val_tb[0] if val_tb and val_tb[0] is not None else exc_type


READY = Done(None)


if IS_MICROPYTHON:
    # Names a device keeps in no slot of this module's dict (one each, and the dict grows
    # in steps), handed out by __getattr__ below: IS_MICROPYTHON; PENDING, what
    # Waiter.poll() returns while there is nothing to return yet (``...``, a constant of
    # the firmware, found by identity); BATCH_WRITES_DEFAULT False (ConnectOptions(
    # batch_writes=None): on a device each publish leaves in a write of its own: batching
    # costs a buffer, a flush task and allocations per lone publish); and the builtin
    # modules' const, ticks_ms, ticks_diff, asyncio's sleep_ms and gc's collect as
    # heap_collect (a full collection before what needs large blocks of a small,
    # non-moving heap: tls.py calls it, see there; CPython's does nothing).
    del IS_MICROPYTHON

    def is_awaitable(value):
        """True for what a callback may return to be awaited (a coroutine: a generator on
        MicroPython, its type's name compared rather than kept as a global)."""
        return (type(value).__name__ == "generator" or isinstance(value, Done)
                or hasattr(value, "__await__"))

    # ------------------------------------------------ awaiting, no coroutine --
    # ``await obj`` on an object whose __next__ raises StopIteration(value) ends
    # with ``value``: the VM takes it at once, in the awaiting frame. Raising a
    # StopIteration made once allocates nothing (its traceback cleared first),
    # but one made per value allocates (the exception, its args tuple, its
    # traceback). So the ints a Waiter returns (packet ids, byte counts) leave
    # in ONE preallocated StopIteration whose args[0] is rewritten in place
    # through uctypes -- done only after checking, on that very object, that the
    # word read is the one assumed (items[0] of the args tuple, holding 0) and
    # that args[0] reads back what was written. Otherwise (no uctypes, another
    # object layout) each value gets a StopIteration of its own.

    # When its value can be rewritten: the reusable StopIteration, its args[0] as a
    # writable word, struct's pack_into (one global for the three).
    _stop = None

    def _setup():
        global _stop, _setup
        from asyncio import core  # type: ignore[attr-defined]

        Waiter._core = core
        del _setup  # run once (see Waiter.__init__): its code is heap no more
        try:
            from struct import calcsize, pack, pack_into

            import uctypes  # type: ignore[import-not-found]

            e = StopIteration(0)
            a = id(e.args)  # the tuple itself: exceptions hand out their args tuple
            if a < 0:
                return  # an address id() does not give as is
            w = calcsize("P")
            word = uctypes.bytearray_at(a + 2 * w, w)  # mp_obj_tuple_t: base, len, items
            if bytes(word) != pack("P", id(0)):  # id() of a small int is its raw word
                return
            pack_into("P", word, 0, id(4660))
            if e.args[0] != 4660:
                pack_into("P", word, 0, id(0))
                return
            _stop = (e, word, pack_into)
        except Exception:
            pass

    class Waiter(Done):
        """A reusable awaitable that waits without a coroutine: ``await w.wait()``
        returns ``w.poll()``'s value (a subclass defines ``poll``); while poll() returns
        ``PENDING`` the current task is parked on ``w.event`` (an asyncio.Event) exactly
        as asyncio's Event.wait parks it, and polls again once the event is set. ``poll``
        must leave the event clear when it says PENDING (else the task would
        never wake: it is then queued to run again at once). What ``poll``
        raises reaches the awaiting caller.

        On MicroPython ``wait()`` returns the object itself: no coroutine, no
        allocation (see ``__next__``). Like a coroutine it is awaited once
        per ``wait()``, and one task at a time awaits it. Driven by a Task of
        its own (``create_task``, ``gather``, ``wait_for``) it works too; that
        Task keeps its result, so that result is a StopIteration of its own.
        Cancelling the parked task unlinks it from the event (asyncio's
        ``cancel`` follows ``task.data``), then ``throw`` raises in it."""

        # asyncio.core, once the first Waiter is made (the class's: one global less)
        _core = None  # type: Any

        def __init__(self, event):
            if self._core is None:
                _setup()
            self.event = event

        def __next__(self):
            # Awaited inside a coroutine: the VM takes the value from the shared
            # StopIteration as it is raised.
            v = self.poll()  # type: ignore[attr-defined]
            if v is not ...:  # (PENDING)
                # Its value in the shared StopIteration when it can carry it (see above;
                # here, not in a function of its own: a def less, a call less per await)
                if _stop is None or type(v) is not int or not 0 <= v < 0x10000000:
                    raise StopIteration(v)
                e, word, pack_into = _stop
                pack_into("P", word, 0, id(v))
                e.__traceback__ = None
                raise e
            # Parked as asyncio's Event.wait parks the task: to the scheduler, until
            # event.set() queues it.
            core = self._core
            t = core.cur_task
            ev = self.event
            if ev.state:  # type: ignore[attr-defined]
                core._task_queue.push(t)  # poll broke its word
            else:
                ev.waiting.push(t)  # type: ignore[attr-defined]
                t.data = ev.waiting  # type: ignore[attr-defined]  # (cancel() unlinks it)
            return None

        def send(self, value):
            # Run as a Task's own coroutine: the Task keeps the exception as its result,
            # so one of its own rather than the shared one.
            try:
                return self.__next__()
            except StopIteration as e:
                raise StopIteration(e.value) from None

    # ------------------------------------------------------------ network ----
    # Used at connect only; socket, ssl and asyncio are imported inside the functions so
    # the sans-IO modules that import _compat never load them. set_nodelay, stream_socket
    # (transport, imported at connect), within and random_ms (reconnect jitter) live in
    # _compat_micropython, loaded when first asked for (at connect): used at connect or
    # later, they cost the import nothing there. open_stream lives in
    # _compat_micropython_open, which unloads itself once the connection is open, and
    # tls_context and has_alpn in _compat_micropython_tls, which _tls_ctx unloads once
    # the SSL context is made.

    def __getattr__(name):
        # (any public name of it: testing for its six by name kept their six strings in
        # RAM, from .mpy; the names above are compared here as qstrs, which a device
        # has in firmware)
        if name[0] == "_":
            raise AttributeError(name)
        if name == "PENDING":
            return ...
        if name == "const":
            from micropython import const

            return const
        if name.startswith("ticks"):
            import time

            return getattr(time, name)
        if name == "sleep_ms":
            from asyncio import sleep_ms

            return sleep_ms
        if name == "heap_collect":
            # (A full collection. Each module of the import line calls it before it
            # defines anything, and _compat_micropython does the same: loaded from .mpy,
            # an import leaves garbage (import paths, what module bodies made) among
            # what it keeps; collected at once, its room takes the next module's code,
            # where collected later it leaves holes of a block or two between code, too
            # small for the TLS handshake's allocations (mbedTLS' have 8 B of header
            # each). Unix port, 32-bit, tools/bench_unix.py's scenario from .mpy: its
            # smallest heap 87,872 -> 84,496 B. Not in the cold modules a reconnect
            # loads: collections there left a dropped link needing more heap.)
            from gc import collect

            return collect
        if name == "BATCH_WRITES_DEFAULT":
            return False
        if name == "IS_MICROPYTHON":
            return True
        if name == "tls_context" or name == "has_alpn":
            from . import _compat_micropython_tls

            return getattr(_compat_micropython_tls, name)
        if name == "open_stream":
            from ._compat_micropython_open import open_stream

            return open_stream
        from . import _compat_micropython

        return getattr(_compat_micropython, name)

else:
    # What Waiter.poll() returns while there is nothing to return yet.
    PENDING = ...

    # CPython's half lives in a module of its own, which a device never loads (nor
    # installs: the manifest and package.json leave it out): .mpy code of a branch not
    # taken would still be loaded into RAM, its names interned -- hence ``*``: a list of
    # them would intern at import the names _compat_micropython has (connect-time) only.
    # What it gives: BATCH_WRITES_DEFAULT, Waiter, const, has_alpn, heap_collect,
    # is_awaitable, open_stream, random_ms, set_nodelay, sleep_ms, stream_socket,
    # ticks_add, ticks_diff, ticks_ms, tls_context, within.
    from ._compat_cpython import *  # type: ignore[assignment, no-redef]  # noqa: F403
