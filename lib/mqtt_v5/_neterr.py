"""Naming network failures (cold path), shared by the asyncio and the
blocking transports: turns OSError / ssl.SSLError / MicroPython's mbedTLS
errors into a NetworkError whose message says what went wrong. Each function unloads
this module once its error is made (the next failure loads it again), as ``_tls_ctx``
does: a reconnect attempt that failed leaves the next attempt's TLS handshake its heap
(unix port, 32-bit, .mpy: a dropped link's failed attempt kept 4.7 KB more, now 1.1)."""

from .errors import NetworkError, UsageError


def _errno(e):
    # MicroPython answers ``.errno`` on any exception with its first argument,
    # a message string for a ValueError.
    code = getattr(e, "errno", None)
    if not isinstance(code, int):
        code = e.args[0] if e.args and isinstance(e.args[0], int) else None
    if code is not None and -256 < code < 0:
        code = -code  # MicroPython's TLS layer passes socket errno negated
    return code


def _errno_name(code):
    import errno

    for name in ("ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH",
                 "ENETUNREACH", "EPIPE", "ECONNABORTED", "ENOTCONN"):
        if getattr(errno, name, None) == code:
            return name
    # MicroPython's errno module has no EPIPE; Linux, lwIP and newlib (ESP32) say 32.
    return "EPIPE" if code == 32 else None


_WHY = {
    "ECONNREFUSED": "connection refused (is the broker running and listening on that port?)",
    "ECONNRESET": "connection reset by the peer",
    "ECONNABORTED": "connection aborted",
    "EPIPE": "connection closed by the peer",
    "ENOTCONN": "not connected",
    "ETIMEDOUT": "timed out",
    "EHOSTUNREACH": "host unreachable",
    "ENETUNREACH": "network unreachable",
}


def _verify_hint(text):
    t = text.lower()
    if "expired" in t or "future" in t or "not yet valid" in t:
        return "the certificate is expired or not yet valid (is the clock set?)"
    if "mismatch" in t or "does not match" in t or "not valid for" in t:
        return ("host name mismatch: the certificate is not valid for the name connected to "
                "(set TlsConfig(server_hostname=...) if the broker is reached by another name)")
    if ("issuer" in t or "trusted ca" in t or "self-signed" in t or "self signed" in t
            or "unknown ca" in t or "not correctly signed" in t):
        return ("unknown CA: the server certificate is not signed by TlsConfig(ca=...) "
                "(or by the system CAs when none is given)")
    return None


def _unloaded(e):
    """``e``, this module unloaded (the lines of ``_tls_ctx._drop``, kept per module:
    see ``_clienterr._drop``)."""
    import sys

    sys.modules.pop(__name__, None)  # "mqtt_v5._neterr"
    try:
        delattr(sys.modules["mqtt_v5"], "_neterr")  # as the import set it on the package
    except (AttributeError, KeyError):
        pass
    return e


def error(e, peer, tls, before_first_byte, client_cert, op):
    """A NetworkError naming the cause of ``e`` (None = EOF) during ``op``
    ("connect", "read" or "write"); ``e`` itself if it is one."""
    return _unloaded(e if isinstance(e, NetworkError)
                     else _named(e, peer, tls, before_first_byte, client_cert, op))


def _named(e, peer, tls, before_first_byte, client_cert, op):
    # mbedTLS's verify text comes as lines ("\nThe certificate is ...\n"): make it one.
    text = "EOF" if e is None else " ".join((str(e) or type(e).__name__).split())
    low = text.lower()
    if tls and e is not None:
        verify_msg = getattr(e, "verify_message", None)  # CPython SSLCertVerificationError
        # MicroPython raises ValueError with mbedTLS's verify text ("The certificate
        # ...", "The CRL ...", "Usage does not match ...") from the first I/O; any other
        # ValueError is no verdict on a certificate.
        if verify_msg or "verif" in low or (
                isinstance(e, ValueError) and op != "connect"
                and ("certificate" in low or "crl" in low or "usage" in low)):
            hint = _verify_hint(verify_msg or text)
            return NetworkError("TLS: server certificate verification failed for %s: %s%s"
                                % (peer, verify_msg or text, "; " + hint if hint else ""))
    code = None if e is None else _errno(e)
    name = _errno_name(code) if code is not None else None
    if name is None and "timed out" in low:  # CPython's socket.timeout has no errno
        name = "ETIMEDOUT"
    if name == "ECONNREFUSED" or name == "EHOSTUNREACH" or name == "ENETUNREACH":
        return NetworkError("%s: %s" % (peer, _WHY[name]))
    # A timeout is no refusal: the server said nothing, it did not close.
    if tls and before_first_byte and name != "ETIMEDOUT":
        alert = "alert" in low
        # EOF, a reset or an alert right after the handshake: the server said no.
        if alert or (op != "connect" and (e is None or name is not None or "eof" in low)):
            if client_cert:
                why = ("it probably rejected the client certificate (not signed by a CA it "
                       "trusts, revoked, or not registered)")
            else:
                why = "it probably requires a client certificate (mutual TLS) and none was given"
            return NetworkError("TLS: the server %s closed the connection during/after the "
                                "handshake — %s [%s]" % (peer, why, text))
        return NetworkError("TLS handshake with %s failed: %s" % (peer, text))
    if name is not None:
        return NetworkError("%s on %s: %s" % (op, peer, _WHY[name]))
    return NetworkError("%s%s on %s failed: %s" % ("TLS " if tls else "", op, peer, text))


def dns_error(host, e):
    return _unloaded(NetworkError("DNS: cannot resolve host %r: %s" % (host, e)))


# transport's usage errors, by its _E_* number (each formatted with one argument, but the last
# three; the last two are _compat_micropython's).
_USAGE = (
    "unsupported URL scheme %r (use mqtt:// or mqtts://)",
    "an MQTT URL has no path: %r",
    "unclosed [ in %r",
    "bad host in %r",
    "bad port in %r",
    "no host in %r",
    "mqtt:// is plain TCP: use mqtts:// with a TlsConfig",
    "TLS: MicroPython has no system CA store: pass TlsConfig(ca=...) or "
    "insecure_skip_verify=True",
    "TLS: this MicroPython firmware has no ALPN",
)


def usage_error(n, arg):
    text = _USAGE[n]
    return _unloaded(UsageError(text if arg is None else text % (arg,)))


def timeout_error(timeout_s, where, tls):
    return _unloaded(NetworkError("timed out after %s s connecting to %s%s" % (
        timeout_s, where, " (TCP connect or TLS handshake)" if tls else "")))
