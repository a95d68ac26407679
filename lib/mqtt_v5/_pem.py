"""PEM <-> DER (plain base64 through ``binascii``), loaded only when certificate
material comes as PEM (``_tls_ctx`` reads DER without it) or a PEM is written
(CPython's ssl takes a client key only as PEM). ``mqtt_v5.tls`` gives these names."""

import binascii

from .errors import UsageError


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
