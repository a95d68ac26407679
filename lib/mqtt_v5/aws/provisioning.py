"""AWS IoT Fleet Provisioning by claim: a device's first boot.

    from mqtt_v5.aws.provisioning import first_boot
    client, thing = await first_boot(endpoint, "claim.pem.crt", "claim.pem.key",
                                     "AmazonRootCA1.pem", template="fleet",
                                     parameters={"SerialNumber": serial},
                                     cert_path="device.crt", key_path="device.key")

The device connects with the claim certificate, asks for a certificate
(CreateKeysAndCertificate, or CreateCertificateFromCsr with a CSR made on the device),
registers itself (RegisterThing with the template and its parameters), writes the new
certificate and key to flash atomically and reconnects with them. Topics and
payloads: aws-iot-spec section 5. The API has no clientToken, so a ``Provisioner``
keeps one request in flight at a time and takes the answer on that operation's
``/accepted`` or ``/rejected`` topic (subscribed before the request), with a timeout.
A ``/rejected`` raises ``AwsRejected`` (``status`` 400/403/..., ``code`` such as
"InvalidCertificateOwnershipToken"). ``fmt="cbor"`` uses the CBOR topics, through
``mqtt_v5.aws.cbor``.

JSON is the default on every runtime because CBOR does not save a device memory here
(`make bench`, section aws, micropython-unix32 with .mpy, against the twin over mutual
TLS): a CreateKeysAndCertificate answer is only ~2% smaller in CBOR (2841 vs 2900 bytes:
the PEM texts need no escaping, that is all), but decoding it with our pure-Python CBOR
allocates 3488 bytes against 3040 for MicroPython's C ``json``; a whole round allocates
about 370 bytes more (11008 vs 10640), a CreateCertificateFromCsr round about 830 more
(5840 vs 5008: the request is encoded in Python too); and importing ``mqtt_v5.aws.cbor``
keeps 1.8 KB of heap. Use CBOR where a fleet's tooling wants it, not to save RAM.
"""

import asyncio
import json
import os

from mqtt_v5.aws import AwsRejected, _bounded, _send_wait
from mqtt_v5.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Callable, Optional, Union  # noqa: F401

MAX_TEMPLATE_NAME = 36
# The answer to CreateKeysAndCertificate carries a PEM certificate, a PEM private key
# and the ownership token (about 3.5 KB in JSON for RSA 2048): the receive buffer of a
# provisioning connection must hold it.
PROVISIONING_PACKET_SIZE = 8192


def create_keys_topic(fmt="json"):
    return "$aws/certificates/create/" + fmt


def create_from_csr_topic(fmt="json"):
    return "$aws/certificates/create-from-csr/" + fmt


def register_thing_topic(template, fmt="json"):
    if not template or len(template) > MAX_TEMPLATE_NAME or "/" in template \
            or "+" in template or "#" in template:
        raise UsageError("invalid provisioning template name %r (1..36 characters)" % (template,))
    return "$aws/provisioning-templates/%s/provision/%s" % (template, fmt)


class Provisioner:
    """The Fleet Provisioning MQTT API on a (claim) connection."""

    def __init__(self, client, template=None, timeout_s=10.0, fmt="json"):
        if fmt not in ("json", "cbor"):
            raise UsageError("fmt is 'json' or 'cbor'")
        self.client = client
        self.template = template
        self.timeout_s = timeout_s
        self.fmt = fmt
        self._lock = asyncio.Lock()
        self._subscribed = []
        self._event = asyncio.Event()
        self._answer = None  # type: Any
        self._topic = "\0"

    def _encode(self, body):
        if self.fmt == "cbor":
            from mqtt_v5.aws.cbor import dumps

            return dumps(body)
        return json.dumps(body).encode()

    def _decode(self, payload):
        if self.fmt == "cbor":
            from mqtt_v5.aws.cbor import loads

            return loads(payload)
        return json.loads(payload)

    async def create_keys_and_certificate(self):
        # type: () -> dict
        """A new key pair and certificate made by AWS: ``{"certificateId",
        "certificatePem", "privateKey", "certificateOwnershipToken"}``."""
        return await self._request(create_keys_topic(self.fmt), None)

    async def create_certificate_from_csr(self, csr_pem):
        # type: (Union[str, bytes]) -> dict
        """A certificate for the device's own key: ``{"certificateId", "certificatePem",
        "certificateOwnershipToken"}``."""
        if isinstance(csr_pem, bytes):
            csr_pem = csr_pem.decode()
        return await self._request(create_from_csr_topic(self.fmt),
                                   {"certificateSigningRequest": csr_pem})

    async def register_thing(self, ownership_token, parameters=None, template=None):
        # type: (str, Optional[dict], Optional[str]) -> dict
        """RegisterThing: ``{"thingName", "deviceConfiguration"}``. The token is the one
        returned with the certificate (valid for one hour)."""
        template = template or self.template
        if not template:
            raise UsageError("RegisterThing needs a provisioning template name")
        body = {"certificateOwnershipToken": ownership_token}  # type: dict
        if parameters:
            body["parameters"] = parameters
        return await self._request(register_thing_topic(template, self.fmt), body)

    async def _subscribe_answers(self, topic):
        for suffix in ("/accepted", "/rejected"):
            if topic + suffix not in self._subscribed:
                await self.client.subscribe(topic + suffix, self._on_answer, qos=1)
                self._subscribed.append(topic + suffix)

    async def _request(self, topic, body):
        async with self._lock:  # no clientToken in this API: one request at a time
            if topic + "/rejected" not in self._subscribed:
                await _bounded(self._subscribe_answers(topic), self.timeout_s, "SUBACK")
            self._event.clear()
            self._answer = None
            self._topic = topic
            payload = b"" if body is None else self._encode(body)
            await _bounded(_send_wait(self.client, topic, payload, self._event),
                           self.timeout_s, "fleet provisioning " + topic)
            rejected, doc = self._answer  # type: bool, dict
            self._answer = None  # the caller holds it now (it may carry a private key)
            if rejected:
                raise AwsRejected("fleet provisioning " + topic, doc)
            return doc

    def _on_answer(self, msg):
        topic = msg.topic
        if self._event.is_set() or not topic.startswith(self._topic):
            return
        try:
            doc = self._decode(msg.payload)
        except ValueError:
            doc = {"errorMessage": "undecodable answer"}
        if not isinstance(doc, dict):
            doc = {"errorMessage": "unexpected answer %r" % (doc,)}
        self._answer = (topic.endswith("/rejected"), doc)
        self._event.set()


# ----------------------------------------------------------------- flash --

def write_atomic(path, data):
    # type: (str, bytes) -> None
    """Write ``data`` to ``path`` so that ``path`` holds either its old content or all
    of ``data``, never a part: a temporary file, flushed, then renamed over it."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if hasattr(os, "fsync"):
            os.fsync(f.fileno())
    try:
        os.rename(tmp, path)
    except OSError:  # a filesystem whose rename does not replace (FAT)
        try:
            os.remove(path)
        except OSError:
            pass
        os.rename(tmp, path)


def save_identity(cert_pem, key_pem, cert_path, key_path, der=None):
    """Store the new certificate and key: the key first, the certificate last, each
    atomically, so a present certificate file means a complete identity (a device that
    loses power in between provisions again). ``der``: store DER (default on MicroPython,
    whose ssl parses DER only on several ports; ``TlsConfig`` reads either)."""
    if der is None:
        from mqtt_v5._compat import IS_MICROPYTHON as der
    if isinstance(cert_pem, str):
        cert_pem = cert_pem.encode()
    if isinstance(key_pem, str):
        key_pem = key_pem.encode()
    if der:
        from mqtt_v5.tls import pem_to_der

        cert_pem = pem_to_der(cert_pem, "certificate")[0][1]
        key_pem = pem_to_der(key_pem, "private key")[0][1]
    write_atomic(key_path, key_pem)
    write_atomic(cert_path, cert_pem)


def is_provisioned(cert_path, key_path):
    # type: (str, str) -> bool
    """True if both identity files exist (the certificate is written last)."""
    for p in (cert_path, key_path):
        try:
            os.stat(p)
        except OSError:
            return False
    return True


async def provision(claim_client, template, parameters, cert_path, key_path, csr=None,
                    private_key=None, der=None, timeout_s=10.0, fmt="json", name_path=None):
    """Run the provisioning exchange on a connected claim client and store the
    identity; returns RegisterThing's answer (``thingName``, ``deviceConfiguration``).
    With ``csr`` (PEM) the device keeps its own ``private_key`` (PEM, stored as the
    key); otherwise AWS makes the key pair. ``name_path``: where to keep the thing name
    (written before the identity, whose certificate file is written last)."""
    p = Provisioner(claim_client, template, timeout_s, fmt)
    if csr is not None:
        if private_key is None:
            raise UsageError("with a CSR, pass the device's private_key to store")
        created = await p.create_certificate_from_csr(csr)
        key = private_key
    else:
        created = await p.create_keys_and_certificate()
        key = created["privateKey"]
    registered = await p.register_thing(created["certificateOwnershipToken"], parameters)
    if name_path is not None:
        write_atomic(name_path, registered["thingName"].encode())
    save_identity(created["certificatePem"], key, cert_path, key_path, der)
    return registered


async def first_boot(endpoint, claim_cert, claim_key, ca, template, parameters, cert_path,
                     key_path, claim_client_id=None, csr=None, private_key=None, der=None,
                     **options):
    """The whole first boot: if ``cert_path``/``key_path`` are missing, connect with the
    claim certificate (client id ``claim_client_id``, default a serial-like parameter or
    "provisioning"), provision, store the identity and disconnect; then connect with
    the device identity. Returns ``(client, thing_name)`` with the client connected.
    ``options`` go to ``aws_client`` (``port``, ``server_hostname``, ...). The thing
    name is kept next to the certificate (``cert_path + ".thing"``)."""
    from mqtt_v5.aws.connect import aws_client

    name_path = cert_path + ".thing"
    if not is_provisioned(cert_path, key_path):
        cid = claim_client_id or str((parameters or {}).get("SerialNumber", "provisioning"))
        claim = aws_client(endpoint, cid, cert=claim_cert, key=claim_key, ca=ca,
                           clean_start=True, session_expiry_interval=0,
                           maximum_packet_size=PROVISIONING_PACKET_SIZE, **options)
        await claim.connect()
        try:
            await provision(claim, template, parameters, cert_path, key_path, csr,
                            private_key, der, name_path=name_path)
        finally:
            try:
                await claim.disconnect()
            except Exception:
                pass
    with open(name_path) as f:
        thing = f.read().strip()
    client = aws_client(endpoint, thing, cert=cert_path, key=key_path, ca=ca, **options)
    await client.connect()
    return client, thing
