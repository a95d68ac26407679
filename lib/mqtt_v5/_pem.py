"""TlsConfig's work, loaded at the first TLS connect (not at import): the runtime's SSL
context from the certificate material, and the PEM / DER helpers (``mqtt_v5.tls``
gives them under their old names)."""

import binascii

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
    if b"-----BEGIN " not in data:
        if not data or data[0] != 0x30:
            raise UsageError("TLS: the %s is neither PEM nor DER" % what)
        return [("", data)]
    return pem_to_der(data, what)


def pem_to_der(data, what="certificate"):
    """Every PEM block in ``data`` -> list of (label, der). Decoded in place:
    base64 through a memoryview of ``data`` (``a2b_base64`` skips the line
    breaks on both runtimes), so a block costs about its DER size and nothing
    else is copied."""
    out = []
    view = memoryview(data)
    pos = 0
    while True:
        start = data.find(b"-----BEGIN ", pos)
        if start < 0:
            break
        eol = data.find(b"-----", start + 11)
        if eol < 0:
            break
        label = bytes(view[start + 11:eol])
        body_start = eol + 5
        end = data.find(b"-----END ", body_start)
        if end < 0 or data.find(label + b"-----", end + 9) != end + 9:
            raise UsageError("TLS: the %s has a PEM block with no END line" % what)
        pos = end + 14 + len(label)  # past "-----END " label "-----"
        # Header lines ("Proc-Type: ...") mark an encrypted legacy key.
        if data.find(b":", body_start, end) >= 0:
            label = b"ENCRYPTED " + label
            der = b""
        else:
            try:
                der = binascii.a2b_base64(view[body_start:end])  # type: ignore[arg-type]
            except ValueError as e:  # binascii.Error is a ValueError
                raise UsageError("TLS: the %s has bad base64 in its PEM block: %s" % (what, e))
        out.append((label.decode(), der))
    if not out:
        raise UsageError("TLS: no PEM block found in the %s" % what)
    return out


def der_to_pem(der, label="CERTIFICATE"):
    """DER bytes -> PEM bytes with 64-column base64 lines."""
    b64 = binascii.b2a_base64(der).replace(b"\n", b"")
    lines = [b"-----BEGIN " + label.encode() + b"-----"]
    for i in range(0, len(b64), 64):
        lines.append(b64[i:i + 64])
    lines.append(b"-----END " + label.encode() + b"-----")
    return b"\n".join(lines) + b"\n"


def _skip_tlv(der, pos):
    """Position just past the DER TLV at ``pos``."""
    n = der[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = 0
        for _ in range(k):
            n = (n << 8) | der[pos]
            pos += 1
    return pos + n


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
        tag = der[_skip_tlv(der, pos)]
    except IndexError:
        raise UsageError("TLS: the client key is not a DER private key")
    if tag == 0x30:
        return "PRIVATE KEY"
    if tag == 0x02:
        return "RSA PRIVATE KEY"
    if tag == 0x04:
        return "EC PRIVATE KEY"
    raise UsageError("TLS: unknown DER private key layout")
