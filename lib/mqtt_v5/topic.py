"""Topic names and topic filters: validation and matching.

Everything works on bytes-like objects and offsets, so a topic that sits in
the receive buffer can be checked and routed without allocating.
"""

from ._compat import const, heap_collect
from .properties import is_wildcard, utf8_ok  # (is_wildcard: public here too)

heap_collect()  # (before this module defines anything: see _compat's heap_collect)

_SLASH = const(0x2F)
_PLUS = const(0x2B)
_HASH = const(0x23)
_DOLLAR = const(0x24)
_SHARE_PREFIX = const(b"$share/")  # (folded into its users: no global)

# const() is folded at compile time on MicroPython: only CPython calls it (above). Not
# kept as a global (a frozen module's 10 then fit a dict of 10, not 12).
del const


def topic_name_ok(buf, start=0, end=-1):
    """True if ``buf[start:end]`` is a valid PUBLISH Topic Name: UTF-8, no
    wildcards [MQTT-3.3.2-2], no U+0000. The empty name is accepted here:
    only a Topic Alias makes it legal, which the caller checks."""
    if end < 0:
        end = len(buf)
    return end - start <= 0xFFFF and not is_wildcard(buf, start, end) and utf8_ok(buf, start, end)


def share_prefix_len(buf, start=0, end=-1):
    """Length of a ``$share/<group>/`` prefix at ``start`` (0 if not shared).
    Returns -1 for a malformed shared filter [MQTT-4.8.2-1] [MQTT-4.8.2-2]."""
    if end < 0:
        end = len(buf)
    n = len(_SHARE_PREFIX)
    if end - start < n:
        return 0
    for k in range(n):
        if buf[start + k] != _SHARE_PREFIX[k]:
            return 0
    i = start + n
    while i < end:
        c = buf[i]
        if c == _SLASH:
            break
        if c == _PLUS or c == _HASH:
            return -1
        i += 1
    if i == start + n or i >= end - 1:
        # empty share name, or nothing after "$share/<group>/"
        return -1
    return i + 1 - start


def filter_ok(buf, start=0, end=-1):
    """True if ``buf[start:end]`` is a valid Topic Filter, shared or not."""
    if end < 0:
        end = len(buf)
    if end <= start or end - start > 0xFFFF:  # [MQTT-4.7.3-1] at least one character
        return False
    skip = share_prefix_len(buf, start, end)
    if skip < 0:
        return False
    i = start + skip
    while i < end:
        c = buf[i]
        if c == _HASH:
            # [MQTT-4.7.1-1] '#' is alone in the last level
            if i + 1 != end or (i > start + skip and buf[i - 1] != _SLASH):
                return False
        elif c == _PLUS:
            # [MQTT-4.7.1-2] '+' fills a whole level
            if ((i > start + skip and buf[i - 1] != _SLASH)
                    or (i + 1 < end and buf[i + 1] != _SLASH)):
                return False
        i += 1
    return utf8_ok(buf, start, end)


def matches(filt, fstart, fend, topic, tstart, tend):
    """True if the (non-shared part of a) filter ``filt[fstart:fend]`` matches
    the topic name ``topic[tstart:tend]``. Standard MQTT semantics: ``a/#``
    also matches ``a``; a leading wildcard does not match a topic starting
    with '$' [MQTT-4.7.2-1]. Allocates nothing."""
    fi = fstart
    ti = tstart
    if tend > tstart and topic[tstart] == _DOLLAR and fend > fstart:
        c = filt[fstart]
        if c == _PLUS or c == _HASH:
            return False
    while fi < fend:
        c = filt[fi]
        if c == _HASH:
            return True
        if c == _PLUS:
            while ti < tend and topic[ti] != _SLASH:
                ti += 1
            fi += 1
        else:
            while fi < fend and filt[fi] != _SLASH:
                if ti >= tend or topic[ti] != filt[fi]:
                    return False
                fi += 1
                ti += 1
            if ti < tend and topic[ti] != _SLASH:
                return False
        if fi == fend:
            return ti == tend
        # the filter is at a '/'
        if ti == tend:
            # "a/#" matches "a" [MQTT-4.7.1-2 note]
            return fend - fi == 2 and filt[fi + 1] == _HASH
        fi += 1
        ti += 1
    return ti == tend


def match(filt, topic):
    """Convenience form of ``matches`` for two whole bytes-like or str values;
    a ``$share/<group>/`` prefix on the filter is skipped."""
    if isinstance(filt, str):
        filt = filt.encode()
    if isinstance(topic, str):
        topic = topic.encode()
    skip = share_prefix_len(filt)
    return matches(filt, max(skip, 0), len(filt), topic, 0, len(topic))
