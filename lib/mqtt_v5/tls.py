"""TLS settings and certificate material (cold path: runs once per connect).

``TlsConfig`` takes the CA, client certificate and key as file paths or bytes,
PEM or DER, and turns them into the form the runtime's ``ssl`` wants: DER on
MicroPython (its unix/rp2/stm32 ports up to v1.28 parse only DER; ESP32 takes
both), PEM files on CPython. The conversion is plain base64 (``binascii``);
nothing here parses X.509 beyond telling PEM from DER and which kind of
private key a DER blob holds.

Server verification is on unless ``insecure_skip_verify=True``.
"""

from ._compat import heap_collect

# MicroPython's heap does not move objects: blocks freed between live ones stay holes,
# and the TLS handshake (mbedTLS allocates from the same heap on many ports) needs
# large ones (16 KiB input buffer, 4 KiB output, 0.5 KiB bignums by the hundred). A
# collection here, as the import line ends (loading .mpy code leaves garbage between
# what it keeps), lets the client's buffers, built next, fill those holes instead of
# taking fresh heap above them; another before each context is built does the same for
# what connecting loaded and left. On the unix port (32-bit, mbedTLS in the GC heap)
# they lower the smallest heap for a mutual-TLS connect + publish from 144 KiB to
# 133 KiB (.mpy). CPython's heap_collect does nothing.
heap_collect()


class TlsConfig:
    """How to secure a connection.

    ``ca``, ``cert``, ``key``: a file path (str) or the bytes of a PEM or DER
    file. ``ca`` may hold several PEM certificates (a bundle); ``cert`` may be
    a PEM chain (leaf first; MicroPython uses only the leaf).
    ``server_hostname``: the name to verify and send as SNI (default: the
    host connected to). ``alpn``: list of protocol names (not on stock
    MicroPython firmware). ``insecure_skip_verify``: do not verify the server
    at all (prints a warning once).
    """

    def __init__(self, ca=None, cert=None, key=None, server_hostname=None, alpn=None,
                 insecure_skip_verify=False):
        if (cert is None) != (key is None):
            from ._tls_ctx import pair_error  # (its text costs no RAM until then)

            raise pair_error()
        self.ca = ca
        self.cert = cert
        self.key = key
        self.server_hostname = server_hostname
        self.alpn = alpn
        self.insecure_skip_verify = insecure_skip_verify

    def context(self):
        """Build the runtime's SSL context (cold path; raises UsageError for bad material)."""
        heap_collect()  # see the top of this module
        from ._tls_ctx import context

        return context(self)


def __getattr__(name):
    # read_pem_or_der, key_label (in _tls_ctx), pem_to_der, der_to_pem (in _pem):
    # loaded when first used
    if name.startswith("__"):
        raise AttributeError(name)
    from . import _pem, _tls_ctx

    return getattr(_tls_ctx if hasattr(_tls_ctx, name) else _pem, name)
