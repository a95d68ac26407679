# mqtt_v5._neterr.error() on the exceptions MicroPython's sockets and mbedTLS raise.
# No argument. Prints {"name": message, ...}.
from mp_kit import report

from mqtt_v5._neterr import error

VERIFY = "\nThe certificate is not correctly signed by the trusted CA\n"
CASES = {
    # name: (exception, tls, before_first_byte, client_cert, op)
    "tls-read-timeout": (OSError(110), True, True, True, "read"),  # ETIMEDOUT
    "tls-write-epipe-with-cert": (OSError(32), True, True, True, "write"),  # EPIPE
    "tls-read-reset-without-cert": (OSError(-104), True, True, False, "read"),  # -ECONNRESET
    "tls-verify": (ValueError(VERIFY), True, True, False, "write"),
    "tls-other-valueerror": (ValueError("buffer too small"), True, False, False, "read"),
    "refused": (OSError(111), False, True, False, "connect"),  # ECONNREFUSED
}

report({name: str(error(e, "h:1", tls, before, cert, op))
        for name, (e, tls, before, cert, op) in CASES.items()})
