"""TlsConfig's work at connect (cold path, loaded at the first TLS connect, not at
import): read the certificate material, tell a DER private key's kind, build the
runtime's SSL context. What DER material (what a device usually stores) needs is all
here; ``_pem`` holds the PEM decoding and the texts of the errors, and is loaded only
for PEM input or to explain a failure."""

from ._compat import const, heap_collect, tls_context

# What went wrong, as an index into _pem's texts (folded at compile time: no name, no
# string in RAM until an error is raised).
_E_CA_LABEL = const(0)
_E_NO_CA = const(1)
_E_NO_CERT = const(2)
_E_ENCRYPTED = const(3)
_E_NO_KEY = const(4)
_E_REFUSED = const(5)
_E_READ = const(6)
_E_TYPE = const(7)
_E_NOT_PEM_OR_DER = const(8)
_E_NOT_KEY = const(9)
_E_KEY_LAYOUT = const(10)


def pair_error():
    """TlsConfig(): a client certificate without its key, or a key without its
    certificate."""
    from .errors import UsageError

    return UsageError("TLS: a client certificate needs its key, and a key its certificate")


def _fail(n, *args):
    """The UsageError for ``_E_*`` number ``n`` (its text formatted with ``args``)."""
    from ._pem import usage_error

    return usage_error(n, args)


def context(self):
    """The runtime's SSL context for TlsConfig ``self``: built at its first connect, then
    the same context again while its settings and certificate material are unchanged
    (the same or equal values; each file the same size and modification time). Not for
    time but for heap: at a reconnect the old context may still be reachable (objects of
    the closed connection linger), and a new one built then takes fresh blocks, often in
    the hole the old session's 16 KiB input buffer left, which the new session needs
    again. Unix port, 32-bit, RSA 2048, .mpy: connect, disconnect, connect again needed
    144 KiB, 16 more than one connect; with the context kept, 132. Anything changed
    builds a new context, the old one dropped first."""
    try:
        kept = getattr(self, "_ctx", None)
        if kept is not None:
            if kept[0] == _material(self):
                return kept[1]
            self._ctx = None
        ctx = _build(self)
        self._ctx = (_material(self), ctx)
        return ctx
    finally:
        _drop()
        # (its heap free now, before the TLS session's buffers take theirs: left to a
        # failed allocation to collect, it became holes in which a reconnect's session
        # ran short: .mpy, disconnect + connect failed with 110 KiB, passed with 108)
        heap_collect()


def _drop():
    """Unload this module once the context is made (the next connect loads it again), and
    MicroPython's ``_compat_micropython_tls`` (tls_context) with it: the TLS handshake,
    which on MicroPython runs in the connection's first write, then has their code's heap
    (unix port, 32-bit, .mpy: about 1.4 + 0.5 KB) for its own buffers. The smallest heap
    for a mutual-TLS connect + publish: 109 -> 108 KiB (this module)."""
    import sys

    package = sys.modules["mqtt_v5"]
    for name in ("_tls_ctx", "_compat_micropython_tls"):
        sys.modules.pop("mqtt_v5." + name, None)
        try:
            delattr(package, name)  # as the import set it on the package
        except AttributeError:
            pass


def _material(self):
    """What the context is made of, to compare: the settings as given, and for each file
    path its size and modification time (-1 if it cannot be read: _build says why)."""
    m = [self.ca, self.cert, self.key, self.alpn, self.insecure_skip_verify]
    for src in (self.ca, self.cert, self.key):
        m.extend(_stat(src) if isinstance(src, str) else (-1, -1))
    return m


def _stat(path):
    try:
        import os

        st = os.stat(path)
        return st[6], st[8]
    except OSError:
        return -1, -1


def _build(self):
    """Build the runtime's SSL context (cold path; raises UsageError for bad material)."""
    verify = not self.insecure_skip_verify
    if not verify:
        from . import tls  # (the flag lives there: this module is unloaded after use)

        if not getattr(tls, "_warned", False):
            tls._warned = True  # type: ignore[attr-defined]
            from ._pem import INSECURE_WARNING

            print(INSECURE_WARNING)
    cas = []
    if self.ca is not None:
        for label, der in read_pem_or_der(self.ca, "CA certificate"):
            if label != "CERTIFICATE" and label != "":
                raise _fail(_E_CA_LABEL, label)
            cas.append(der)
        if not cas:
            raise _fail(_E_NO_CA)
    certs = None
    key = None
    if self.cert is not None:
        certs = []
        for label, der in read_pem_or_der(self.cert, "client certificate"):
            if label == "CERTIFICATE" or label == "":
                certs.append(der)
        if not certs:
            raise _fail(_E_NO_CERT)
        for label, der in read_pem_or_der(self.key, "client key"):
            if "ENCRYPTED" in label:
                raise _fail(_E_ENCRYPTED)
            if label == "" or label.endswith("PRIVATE KEY"):
                key = (label or key_label(der), der)
                break
        else:
            raise _fail(_E_NO_KEY)
    try:
        return tls_context(cas, certs, key, verify, self.alpn)
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        raise _fail(_E_REFUSED, e)


def read_pem_or_der(src, what="certificate"):
    """``src`` (path or bytes, PEM or DER) -> list of (label, der). A DER blob
    comes back with label "" (unknown): the caller knows what it expects."""
    if isinstance(src, str):
        try:
            with open(src, "rb") as f:
                data = f.read()
        except OSError as e:
            raise _fail(_E_READ, what, src, e)
    elif isinstance(src, (bytes, bytearray)):
        data = src
    elif isinstance(src, memoryview):
        data = bytes(src)
    else:
        raise _fail(_E_TYPE, what)
    if b"-----BEGIN " in data:
        from ._pem import pem_to_der  # PEM only: DER material never loads it

        return pem_to_der(data, what)
    if not data or data[0] != 0x30:
        raise _fail(_E_NOT_PEM_OR_DER, what)
    return [("", data)]


def key_label(der):
    """PEM label for a DER private key: PKCS#8 ("PRIVATE KEY"), PKCS#1
    ("RSA PRIVATE KEY") or SEC1 ("EC PRIVATE KEY"), told apart by the element
    after the version INTEGER (one short-form TLV in all three): AlgorithmIdentifier
    SEQUENCE, modulus INTEGER, or private-key OCTET STRING."""
    try:
        if der[0] != 0x30:
            raise IndexError
        pos = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)  # inside the outer SEQUENCE
        if der[pos] == 0x30:
            raise _fail(_E_ENCRYPTED)  # PKCS#8 EncryptedPrivateKeyInfo
        n = der[pos + 1]
        if der[pos] != 0x02 or n & 0x80:
            raise IndexError
        tag = der[pos + 2 + n]
    except IndexError:
        raise _fail(_E_NOT_KEY)
    if tag == 0x30:
        return "PRIVATE KEY"
    if tag == 0x02:
        return "RSA PRIVATE KEY"
    if tag == 0x04:
        return "EC PRIVATE KEY"
    raise _fail(_E_KEY_LAYOUT)
