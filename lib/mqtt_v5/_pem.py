"""PEM <-> DER (plain base64 through ``binascii``), loaded only when certificate
material comes as PEM (``_tls_ctx`` reads DER without it) or a PEM is written
(CPython's ssl takes a client key only as PEM), or to word a TLS usage error.
``mqtt_v5.tls`` gives pem_to_der and der_to_pem by name."""

import binascii

from .errors import UsageError

# _tls_ctx's errors, by its _E_* number.
_TEXTS = (
    "the CA file holds a %s, not a CERTIFICATE",
    "no certificate found in the CA data",
    "no certificate found in the client certificate data",
    "encrypted private keys are not supported; store the key unencrypted",
    "no PRIVATE KEY found in the client key data",
    "the certificate or key was refused: %s",
    "cannot read the %s file %r: %s",
    "the %s must be a file path (str) or bytes",
    "the %s is neither PEM nor DER",
    "the client key is not a DER private key",
    "unknown DER private key layout",
)

INSECURE_WARNING = ("mqtt_v5: WARNING: TLS server verification is OFF (insecure_skip_verify):"
                    " anyone on the network path can pose as the broker")


def usage_error(n, args):
    """UsageError("TLS: " + text ``n`` % ``args``)."""
    return UsageError("TLS: " + _TEXTS[n] % args)


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
