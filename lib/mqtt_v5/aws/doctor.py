"""The connection doctor: why does this device not talk to AWS IoT Core?

    from mqtt_v5.aws.doctor import diagnose
    report = await diagnose(endpoint, "weather-sensor-001", cert="cert.der",
                            key="key.der", ca="AmazonRootCA1.der")
    print(report)            # each step, and for the first failure the likely fix
    report.ok                # True when every step passed

Host side: ``python tools/aws_doctor.py ENDPOINT THING --cert .. --key .. --ca ..``.

Steps, in order; the first failure ends the run:

dns        the endpoint's name resolves (else: wrong endpoint)
tcp        something listens on the port (else: wrong port, firewall)
clock      the device clock lies inside the client certificate's validity (else: clock
           not set -- no NTP yet -- or certificate expired / not yet valid)
connect    TLS handshake and CONNECT (TLS: CA file wrong, server name, client certificate
           refused; CONNACK 0x87: certificate not ACTIVE / not registered, or the policy
           lacks iot:Connect for this client id)
subscribe  SUBSCRIBE to the test topic (SUBACK 0x87: policy lacks iot:Subscribe)
publish    a QoS 1 PUBLISH of ``payload_size`` bytes (payload over 128 KiB; PUBACK 0x87:
           policy lacks iot:Publish)
receive    our own message comes back (else: policy lacks iot:Receive for that topic)
"""

import asyncio
import time

from mqtt_v5.errors import (
    ConnectRefused,
    MqttError,
    NetworkError,
    PublishFailed,
    SubscribeFailed,
    UsageError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any  # noqa: F401


class Step:
    def __init__(self, name, ok, detail, fix=None):
        self.name = name
        self.ok = ok
        self.detail = detail
        self.fix = fix

    def __repr__(self):
        return "Step(%r, %r, %r)" % (self.name, self.ok, self.detail)


class Report:
    """``steps`` (each ``name``, ``ok``, ``detail``, ``fix``); ``ok``; ``failed`` (the
    failing step or None); ``str(report)`` says it in plain words."""

    def __init__(self):
        self.steps = []

    @property
    def ok(self):
        return bool(self.steps) and all(s.ok for s in self.steps)

    @property
    def failed(self):
        for s in self.steps:
            if not s.ok:
                return s
        return None

    def __str__(self):
        lines = []
        for s in self.steps:
            lines.append("%-9s %s  %s" % (s.name, "ok  " if s.ok else "FAIL", s.detail))
            if s.fix:
                lines.append("          likely fix: " + s.fix)
        if self.ok:
            lines.append("all steps passed: the device can use AWS IoT Core")
        return "\n".join(lines)


# --------------------------------------------------------------- certificates --

def _tlv(der, pos):
    """(tag, start of value, end of value) of the DER element at ``pos``."""
    tag = der[pos]
    n = der[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = 0
        for _ in range(k):
            n = (n << 8) | der[pos]
            pos += 1
    return tag, pos, pos + n


def _asn1_time(der, tag, a, b):
    """UTCTime (0x17) or GeneralizedTime (0x18) -> seconds since 1970 (UTC)."""
    s = bytes(der[a:b]).decode()
    if tag == 0x17:
        y = int(s[0:2])
        s = ("19" if y >= 50 else "20") + s
    y, mo, d = int(s[0:4]), int(s[4:6]), int(s[6:8])
    hh, mm, ss = int(s[8:10]), int(s[10:12]), int(s[12:14])
    # days from civil (proleptic Gregorian), no time module needed
    y2 = y - (mo <= 2)
    era = y2 // 400
    yoe = y2 - era * 400
    doy = (153 * (mo + (-3 if mo > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return days * 86400 + hh * 3600 + mm * 60 + ss


def certificate_validity(cert):
    """(not_before, not_after) in seconds since 1970 of a certificate (path or bytes,
    PEM or DER)."""
    from mqtt_v5.tls import read_pem_or_der

    der = read_pem_or_der(cert, "client certificate")[0][1]
    _, a, _ = _tlv(der, 0)          # Certificate
    _, a, _ = _tlv(der, a)          # tbsCertificate
    if der[a] == 0xA0:              # [0] version
        a = _tlv(der, a)[2]
    for _ in range(3):              # serialNumber, signature, issuer
        a = _tlv(der, a)[2]
    tag, s, _ = _tlv(der, a)        # validity
    if tag != 0x30:
        raise ValueError("no validity in the certificate")
    t1, a1, b1 = _tlv(der, s)
    t2, a2, b2 = _tlv(der, b1)
    return _asn1_time(der, t1, a1, b1), _asn1_time(der, t2, a2, b2)


def _now():
    t = time.time()
    if time.gmtime(0)[0] == 2000:  # MicroPython ports with the 2000 epoch
        t += 946684800
    return t


def _date(t):
    g = time.gmtime(int(t) - (946684800 if time.gmtime(0)[0] == 2000 else 0))
    return "%04d-%02d-%02d %02d:%02d UTC" % g[:5]


# ---------------------------------------------------------------------- run --

async def diagnose(endpoint, thing_name, cert, key, ca, port=8883, client_id=None,
                   server_hostname=None, topic=None, payload_size=64, timeout_s=10.0,
                   now=None, **options):
    """Run the steps (module docstring) against ``endpoint`` as thing ``thing_name``
    and return a ``Report``. ``topic``: the topic to test (default
    ``<thing>/doctor``). ``now``: the device clock to judge (default: read it)."""
    import socket

    from mqtt_v5.aws.connect import aws_client

    r = Report()
    cid = client_id or thing_name
    topic = topic or thing_name + "/doctor"
    add = r.steps.append
    # dns
    try:
        socket.getaddrinfo(endpoint, port)
        add(Step("dns", True, "%s resolves" % endpoint))
    except (OSError, ValueError, IndexError) as e:  # ValueError: a malformed name
        add(Step("dns", False, "%s does not resolve (%s)" % (endpoint, e),
                 "wrong endpoint: use your account's ATS data endpoint, "
                 "'aws iot describe-endpoint --endpoint-type iot:Data-ATS' "
                 "(<prefix>-ats.iot.<region>.amazonaws.com); check the network and DNS"))
        return r
    # tcp
    try:
        link = await asyncio.wait_for(asyncio.open_connection(endpoint, port),
                                      timeout_s)  # type: Any
        writer = link[1]
        writer.close()
        add(Step("tcp", True, "port %d answers" % port))
    except (OSError, asyncio.TimeoutError) as e:
        add(Step("tcp", False, "nothing answers on %s port %d (%r)" % (endpoint, port, e),
                 "wrong endpoint or port (AWS IoT: 8883 for X.509, 443 with ALPN or "
                 "WebSocket); a firewall may block 8883: try 443"))
        return r
    # clock
    try:
        nb, na = certificate_validity(cert)
        t = _now() if now is None else now
        if t < nb:
            add(Step("clock", False, "the device clock says %s, before the certificate's "
                     "start %s" % (_date(t), _date(nb)),
                     "clock not set: set it before TLS (e.g. ntptime.settime() on "
                     "MicroPython); TLS needs the date to check certificates"))
            return r
        if t > na:
            add(Step("clock", False, "the client certificate expired on %s (clock: %s)"
                     % (_date(na), _date(t)),
                     "renew the device certificate (or fix the clock if it is wrong)"))
            return r
        add(Step("clock", True, "%s is within the certificate's validity" % _date(t)))
    except (ValueError, IndexError, UsageError) as e:
        add(Step("clock", False, "cannot read the client certificate: %s" % e,
                 "give the device certificate (PEM or DER) issued by AWS IoT"))
        return r
    # connect
    try:
        client = aws_client(endpoint, thing_name, cert=cert, key=key, ca=ca, port=port,
                            client_id=cid, server_hostname=server_hostname,
                            clean_start=True, session_expiry_interval=0,
                            maximum_packet_size=min(max(2048, payload_size + 512), 132096),
                            **options)
        client.options.reconnect_config.enabled = False
        await asyncio.wait_for(client.connect(), timeout_s)
        add(Step("connect", True, "TLS and CONNECT accepted as client id %r" % cid))
    except ConnectRefused as e:
        rc = e.reason_code
        if rc == 0x87 or rc == 0x86:
            fix = ("the certificate is not ACTIVE or not registered in AWS IoT (activate "
                   "it: 'aws iot update-certificate --new-status ACTIVE'), or its policy "
                   "lacks iot:Connect for client id %r (resource ...:client/%s; with "
                   "${iot:Connection.Thing.ThingName} the certificate must be attached to "
                   "thing %r and the client id must be that name)" % (cid, cid, cid))
        elif rc == 0x85:
            fix = "the client id is not valid: use the thing name"
        else:
            fix = "AWS refused CONNECT with reason code 0x%02X" % (rc or 0)
        add(Step("connect", False, "CONNECT refused: %s" % e, fix))
        return r
    except (NetworkError, asyncio.TimeoutError, OSError) as e:
        add(Step("connect", False, "TLS or CONNECT failed: %s" % (e or "timeout"),
                 _tls_fix(str(e), endpoint)))
        return r
    except UsageError as e:
        add(Step("connect", False, str(e), "fix the settings named above"))
        return r
    try:
        await _pubsub(client, r, topic, payload_size, timeout_s)
    finally:
        try:
            await client.disconnect()
        except MqttError:
            pass
    return r


def _tls_fix(msg, endpoint):
    m = msg.lower()
    if "hostname" in m or "host name" in m or "mismatch" in m:
        return ("the server's name does not match: connect to (or set server_hostname to) "
                "the endpoint %r itself" % endpoint)
    # before the CA test: this message also says "not signed by a CA it trusts"
    if "client certificate" in m or "closed the connection" in m:
        return ("AWS closed the connection during or right after TLS: the client "
                "certificate is not registered or not ACTIVE, or the key does not match "
                "the certificate")
    if "verif" in m or "unknown ca" in m:
        return ("the server's certificate is not trusted by the CA given: use Amazon Root "
                "CA 1 (AmazonRootCA1.pem) for the ATS endpoint")
    return "check the endpoint, port, CA and the device certificate and key"


async def _pubsub(client, r, topic, payload_size, timeout_s):
    add = r.steps.append
    got = asyncio.Event()
    try:
        await client.subscribe(topic, lambda m: got.set(), qos=1)
        add(Step("subscribe", True, "subscribed to %r" % topic))
    except SubscribeFailed as e:
        add(Step("subscribe", False, "SUBSCRIBE to %r refused: %s" % (topic, e),
                 "the policy lacks iot:Subscribe on topicfilter/%s" % topic))
        return
    except UsageError as e:
        add(Step("subscribe", False, str(e), "AWS IoT refuses that topic filter"))
        return
    try:
        await asyncio.wait_for(client.publish_qos1(topic, b"d" * payload_size), timeout_s)
        add(Step("publish", True, "published %d bytes to %r" % (payload_size, topic)))
    except UsageError as e:
        add(Step("publish", False, str(e), "payload too large: AWS IoT takes at most "
                 "131072 bytes (128 KiB) per message; split it" if payload_size > 131072
                 else "AWS IoT refuses that topic"))
        return
    except PublishFailed as e:
        add(Step("publish", False, "PUBLISH to %r refused: %s" % (topic, e),
                 "the policy lacks iot:Publish on topic/%s" % topic))
        return
    try:
        await asyncio.wait_for(got.wait(), timeout_s)
        add(Step("receive", True, "our message came back on %r" % topic))
    except asyncio.TimeoutError:
        add(Step("receive", False, "nothing came back on %r within %s s" % (topic, timeout_s),
                 "the policy lacks iot:Receive on topic/%s (subscribing is allowed but "
                 "delivery is not)" % topic))
