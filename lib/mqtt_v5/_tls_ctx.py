"""TlsConfig's work at connect (cold path, loaded at the first TLS connect, not at
import): read the certificate material, tell a DER private key's kind, build the
runtime's SSL context. PEM input is decoded by ``_pem``, loaded only for PEM:
DER material (what a device usually stores) never loads it."""

from ._compat import tls_context
from .errors import UsageError

_warned = False

_ENCRYPTED_KEY = "TLS: encrypted private keys are not supported; store the key unencrypted"


def context(self):
    """Build the runtime's SSL context (cold path; raises UsageError for bad material)."""
    verify = not self.insecure_skip_verify
    if not verify:
        global _warned
        if not _warned:
            _warned = True
            print("mqtt_v5: WARNING: TLS server verification is OFF (insecure_skip_verify):"
                  " anyone on the network path can pose as the broker")
    cas = []
    if self.ca is not None:
        for label, der in read_pem_or_der(self.ca, "CA certificate"):
            if label != "CERTIFICATE" and label != "":
                raise UsageError("TLS: the CA file holds a %s, not a CERTIFICATE" % label)
            cas.append(der)
        if not cas:
            raise UsageError("TLS: no certificate found in the CA data")
    certs = None
    key = None
    if self.cert is not None:
        certs = [der for label, der in read_pem_or_der(self.cert, "client certificate")
                 if label == "CERTIFICATE" or label == ""]
        if not certs:
            raise UsageError("TLS: no certificate found in the client certificate data")
        for label, der in read_pem_or_der(self.key, "client key"):
            if "ENCRYPTED" in label:
                raise UsageError(_ENCRYPTED_KEY)
            if label == "" or label.endswith("PRIVATE KEY"):
                key = (label or key_label(der), der)
                break
        else:
            raise UsageError("TLS: no PRIVATE KEY found in the client key data")
    try:
        return tls_context(cas, certs, key, verify, self.alpn)
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        raise UsageError("TLS: the certificate or key was refused: %s" % (e,))


def read_pem_or_der(src, what="certificate"):
    """``src`` (path or bytes, PEM or DER) -> list of (label, der). A DER blob
    comes back with label "" (unknown): the caller knows what it expects."""
    if isinstance(src, str):
        try:
            with open(src, "rb") as f:
                data = f.read()
        except OSError as e:
            raise UsageError("TLS: cannot read the %s file %r: %s" % (what, src, e))
    elif isinstance(src, (bytes, bytearray)):
        data = src
    elif isinstance(src, memoryview):
        data = bytes(src)
    else:
        raise UsageError("TLS: the %s must be a file path (str) or bytes" % what)
    if b"-----BEGIN " in data:
        from ._pem import pem_to_der  # PEM only: DER material never loads it

        return pem_to_der(data, what)
    if not data or data[0] != 0x30:
        raise UsageError("TLS: the %s is neither PEM nor DER" % what)
    return [("", data)]


def key_label(der):
    """PEM label for a DER private key: PKCS#8 ("PRIVATE KEY"), PKCS#1
    ("RSA PRIVATE KEY") or SEC1 ("EC PRIVATE KEY"), told apart by the element
    after the version INTEGER: AlgorithmIdentifier SEQUENCE, modulus INTEGER,
    or private-key OCTET STRING."""
    try:
        if der[0] != 0x30:
            raise IndexError
        pos = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)  # inside the outer SEQUENCE
        if der[pos] == 0x30:
            raise UsageError(_ENCRYPTED_KEY)
        if der[pos] != 0x02:
            raise IndexError
        # Past the version INTEGER (its DER length: short or long form).
        n = der[pos + 1]
        pos += 2
        if n & 0x80:
            k = n & 0x7F
            n = 0
            for _ in range(k):
                n = (n << 8) | der[pos]
                pos += 1
        tag = der[pos + n]
    except IndexError:
        raise UsageError("TLS: the client key is not a DER private key")
    if tag == 0x30:
        return "PRIVATE KEY"
    if tag == 0x02:
        return "RSA PRIVATE KEY"
    if tag == 0x04:
        return "EC PRIVATE KEY"
    raise UsageError("TLS: unknown DER private key layout")
