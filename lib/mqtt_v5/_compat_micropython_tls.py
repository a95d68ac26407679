"""MicroPython's SSL context from DER material, and whether ALPN can be offered: used
while ``_tls_ctx`` builds a context (at the first TLS connect, and when the material
changed), which unloads this module with itself once the context is made (the TLS
handshake that follows has its heap: unix port, 32-bit, .mpy, about 0.5 KB). ``_compat``
hands its names out. CPython's: ``_compat_cpython``."""


def has_alpn():
    """True if this firmware's ``tls`` can offer ALPN (stock 1.28 builds cannot)."""
    import tls  # type: ignore[import-not-found]

    try:  # (an attribute, not a hasattr string: a str object in RAM from .mpy)
        tls.SSLContext.set_alpn_protocols  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError:
        return False
    return True


def tls_context(cas, certs, key, verify, alpn):
    """SSLContext from DER material, made by the built-in ``tls`` module (1.22 and
    later) rather than ``ssl``, micropython-lib's pure-Python wrapper over it: not
    loading that saves its module, class and per-context wrapper (about 0.6 KB of heap
    while connected). Verification is switched on explicitly (the wrapper defaulted to
    CERT_NONE)."""
    import tls as ssl  # type: ignore[import-not-found]

    if verify and not cas:
        from ._neterr import usage_error  # (the texts: no heap while connected)

        raise usage_error(7, None)  # transport's _E_NO_CA
    try:
        # (short of heap, even this fails as "52": its random generator's seeding)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE  # type: ignore
        if verify:
            for der in cas:  # each call appends to mbedTLS's CA chain
                ctx.load_verify_locations(der)
        if certs:
            ctx.load_cert_chain(certs[0], key[1])  # DER leaf only
    except (OSError, ValueError):
        # tls reports every certificate or key it could not parse as invalid ("invalid
        # key", "invalid cert", a bare number), running out of heap on the way included.
        # If 16 KiB cannot be had now (after the collection a failed allocation makes),
        # no TLS session could be made anyway (its input buffer alone is larger): say so
        # with a MemoryError rather than blame the material.
        try:
            bytearray(16384)
        except MemoryError:
            # (this text here: loading a module for it would fail for want of heap)
            raise MemoryError("memory allocation failed, allocating the TLS certificates "
                              "and key (MicroPython's tls reports it as an invalid cert or "
                              "key); a TLS session needs more than 16 KiB free in one block")
        raise
    if alpn:
        try:
            set_alpn = ctx.set_alpn_protocols  # type: ignore[attr-defined]
        except AttributeError:
            from ._neterr import usage_error

            raise usage_error(8, None) from None  # transport's _E_NO_ALPN
        set_alpn(alpn)
    return ctx
