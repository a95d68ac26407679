# The SSL context built with almost no heap left (test_unix_client.py): MicroPython's tls
# calls a certificate or key it ran out of heap parsing "invalid"; _compat_micropython_tls says
# MemoryError instead. For each room left (bytes freed after filling the heap) prints what
# tls_context did: "ok", "MemoryError: ..." or "refused: ...", and what a key that does not
# match the certificate gets with room to spare.
#   micropython unix_tls_heap.py CA_DER CERT_DER KEY_DER OTHER_KEY_DER
import gc
import json
import sys

from mqtt_v5 import _compat_micropython_tls as cm


def read(path):
    with open(path, "rb") as f:
        return f.read()


CA, CERT, KEY, OTHER = [read(p) for p in sys.argv[1:5]]


RES = [None, None]  # (kind, exception), set without allocating: the heap may be full


def attempt(key):
    RES[1] = None
    try:
        cm.tls_context([CA], [CERT], ("", key), True, None)
        RES[0] = "ok"
    except MemoryError as e:
        RES[0] = "MemoryError"
        RES[1] = e
    except (OSError, ValueError) as e:
        RES[0] = "refused"
        RES[1] = e
    return RES


def text(r):
    return r[0] if r[1] is None else "%s: %s" % (r[0], r[1])


out = {"garbage key": text(attempt(OTHER)), "rooms": {}}
for room in range(256, 12288, 256):
    gc.collect()
    spare = bytearray(room)  # the room left: freed once the heap is full
    hog = [None] * 1024  # filled in place: a list that grows needs room itself
    i = 0
    size = 65536
    while size >= 16 and i < 1024:
        try:
            hog[i] = bytearray(size)
            i += 1
        except MemoryError:
            size //= 2
    spare = None
    attempt(KEY)
    hog = None
    out["rooms"][str(room)] = text(RES)
print(json.dumps(out))
