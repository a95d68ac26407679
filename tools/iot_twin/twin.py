"""The whole twin in one object: state directory, CA, registry, services, broker, listeners,
and the admin endpoint the CLI talks to while ``serve`` runs.

    twin = Twin("/tmp/twin-data", mtls_port=0, plain_port=0)   # port 0: any free port
    await twin.start()            # CA ($TWIN_DATA/ca.pem) exists before a listener opens
    creds = twin.add_thing("t1")  # things/t1/cert.pem + key.pem, ACTIVE, default policy
    ... paho / the AWS SDK connect to twin.ports["mtls"] with twin.ca_path ...
    await twin.stop()

Identity (aws-iot-spec §1.2): on ``mtls`` and ALPN ``x-amzn-mqtt-ca`` the client
certificate's SHA-256 (its certificateId) is looked up in the registry: only an ACTIVE
certificate may connect (otherwise CONNACK 0x87, see :data:`deviations.DEVIATIONS`), and the
policies attached to it decide ``iot:Connect/Publish/Subscribe/Receive/RetainPublish``
(``policy.py``), with ``${iot:Connection.Thing.ThingName}`` bound when the certificate is
attached to a thing named like the client id. On ALPN ``mqtt`` and on WebSocket the
custom authorizers decide (``authorizer.py``; §2). On the plain listener, which has no
AWS equivalent, the client id is the thing name and the default thing policy applies.

The state directory keeps everything a restart needs: ``ca.pem``/``ca.key``,
``server.pem``/``server.key``, ``registry.json``, ``shadows.json``, ``jobs.json``,
``retained.json``, ``sessions.json`` (persistent sessions, written at stop), and
``admin.json`` (the admin endpoint's port and token, while ``serve`` runs).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mqtt_v5._server_codec import Connect

from . import persist, policy, sigv4, topics
from .authorizer import AuthorizerError, CustomAuthorizer, HttpRequest
from .broker import Broker
from .ca import SERVER_HOSTS
from .identity import ConnInfo, Principal
from .limits import SESSION_EXPIRY_HARD_MAX_S, Limits
from .listeners import DEFAULT_PORTS, PORT_ENV, Listener, TlsFiles, is_loopback, start_listener
from .provisioning import register_device
from .registry import ACTIVE
from .services import ServiceLayer

log = logging.getLogger("iot_twin")

ADMIN_FILE = "admin.json"
LISTENERS = ("mtls", "alpn", "wss", "plain")


@dataclass
class ThingCredentials:
    """What ``add_thing`` made: the certificate and key files a device connects with."""

    name: str
    certificate_id: str
    cert_path: Path
    key_path: Path
    cert_pem: str
    key_pem: str


def _port(name: str, explicit: int | None) -> int:
    if explicit is not None:
        return explicit
    env = os.environ.get(PORT_ENV[name])
    return int(env) if env else DEFAULT_PORTS[name]


class Twin:
    """A local AWS IoT Core endpoint (see the module docstring).

    Ports: an explicit argument wins, then ``$TWIN_*_PORT``, then the defaults of
    ``listeners.DEFAULT_PORTS``; ``0`` picks a free port (read ``ports`` after
    ``start``). ``listeners`` chooses which front ends open. ``host`` defaults to
    ``$TWIN_HOST`` or 127.0.0.1 and must be a loopback address unless
    ``allow_remote=True``.

    ``keepalive_floor_s`` is for tests only: AWS raises keep-alives below 30 s to 30 s
    (§1.5), which would make a keep-alive timeout test take 45 s; a lower floor lets it
    take a second or two. ``max_session_expiry_s`` is the account's session expiry
    maximum (AWS default 1 h, at most 7 days; §1.6). ``require_sni=True`` closes TLS
    connections whose SNI is not one of the twin's server names (``localhost``; §1.3:
    AWS refuses a connection without SNI). It is on by default, so that a device library
    that forgets SNI fails here before it fails in the field; ``require_sni=False`` (CLI:
    ``--no-sni-check``) accepts any server name or none.

    Methods are not thread-safe: call them on the loop the twin runs on (from another
    thread, through ``asyncio.run_coroutine_threadsafe``), or before ``start``.
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        host: str | None = None,
        mtls_port: int | None = None,
        alpn_port: int | None = None,
        wss_port: int | None = None,
        plain_port: int | None = None,
        listeners: tuple[str, ...] = LISTENERS,
        allow_remote: bool = False,
        keepalive_floor_s: float | None = None,
        max_session_expiry_s: int | None = None,
        connect_timeout_s: float | None = None,
        limits: Limits | None = None,
        admin: bool = True,
        require_sni: bool = True,
        revocation_delay_s: float = 0.0,
        authorizer_time_scale: float = 1.0,
        job_events: bool = False,
    ) -> None:
        self.data_dir = persist.data_dir(data_dir)
        self.host = host or os.environ.get("TWIN_HOST") or "127.0.0.1"
        if not allow_remote and not is_loopback(self.host):
            raise ValueError(
                f"{self.host} is not a loopback address; pass allow_remote=True "
                "(CLI: --allow-remote) to bind it"
            )
        wanted = {"mtls": mtls_port, "alpn": alpn_port, "wss": wss_port, "plain": plain_port}
        unknown = set(listeners) - set(LISTENERS)
        if unknown:
            raise ValueError(f"unknown listeners: {sorted(unknown)}")
        self.requested_ports = {name: _port(name, wanted[name]) for name in listeners}
        self.limits = limits or Limits()
        if keepalive_floor_s is not None:
            self.limits.keepalive_min_s = keepalive_floor_s
        if max_session_expiry_s is not None:
            if not 0 <= max_session_expiry_s <= SESSION_EXPIRY_HARD_MAX_S:
                raise ValueError("max_session_expiry_s is at most 604800 (7 days, §1.6)")
            self.limits.max_session_expiry_s = max_session_expiry_s
        if connect_timeout_s is not None:
            self.limits.connect_timeout_s = connect_timeout_s
        self.admin_enabled = admin
        # Static IAM-like credentials for SigV4 WebSocket: key id -> (secret, policies).
        self.iam_credentials: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        self.require_sni = require_sni
        self.revocation_delay_s = revocation_delay_s
        # Test-only, like keepalive_floor_s: custom authorizers' refresh and disconnect
        # timers (300 s at least, §2.3) are multiplied by this, so that a test of them
        # at the endpoint takes seconds.
        self.authorizer_time_scale = authorizer_time_scale
        # The username of each client id's last CONNECT, as sent (AWS reads its SDK-metrics
        # query, ``?SDK=..&Version=..``): for tests; bounded.
        self.connect_usernames: dict[str, str | None] = {}
        self.services = ServiceLayer(self.data_dir)
        # Jobs events ($aws/events/job..., $aws/events/jobExecution...): off unless enabled,
        # as on AWS.
        self.services.jobs.events = job_events
        self.services.jobs.thing_arn_prefix = (
            f"arn:aws:iot:{self.services.region}:{self.services.account}:thing/"
        )
        self.registry = self.services.registry
        self.broker: Broker | None = None
        self.listeners: dict[str, Listener] = {}
        self.ports: dict[str, int] = {}
        self._admin: asyncio.Server | None = None
        self.admin_port: int | None = None
        self._admin_token = secrets.token_hex(16)
        self.started_at = 0.0

    # --- paths ----------------------------------------------------------------------------

    @property
    def ca_path(self) -> Path:
        """The CA certificate clients trust (exists from construction on)."""
        return self.data_dir / "ca.pem"

    def thing_dir(self, name: str) -> Path:
        return self.data_dir / "things" / name

    # --- start / stop ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the listeners (and the admin endpoint); returns once they accept."""
        cert, key = self.services.ca.server_credentials(self.data_dir)
        tls = TlsFiles(cert, key, self.ca_path)
        self.broker = Broker(
            limits=self.limits,
            authenticate=self._authenticate,
            services=self.services,
            state_dir=self.data_dir,
        )
        self.broker.start()
        try:
            for name, port in self.requested_ports.items():
                listener = await start_listener(
                    self.broker,
                    name,
                    self.host,
                    port,
                    tls,
                    sni_names=SERVER_HOSTS if self.require_sni else None,
                    check_sigv4=self._check_sigv4,
                )
                self.listeners[name] = listener
                self.ports[name] = listener.port
            if self.admin_enabled:
                await self._start_admin()
        except BaseException:
            await self.stop()
            raise
        self.started_at = time.time()

    async def stop(self) -> None:
        """Close listeners, DISCONNECT clients (0x8B), save sessions and retained messages."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
            admin = self.data_dir / ADMIN_FILE
            try:
                if json.loads(admin.read_text()).get("pid") == os.getpid():
                    admin.unlink()
            except (OSError, ValueError):
                pass
        for listener in self.listeners.values():
            listener.server.close()
        if self.broker is not None:
            await self.broker.close()
        for listener in self.listeners.values():
            await listener.close()
        self.listeners.clear()

    async def __aenter__(self) -> Twin:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- registry -------------------------------------------------------------------------

    def add_thing(self, name: str, *, key_type: str = "rsa") -> ThingCredentials:
        """Register thing ``name`` with a new ACTIVE certificate and the default policy;
        writes ``things/NAME/cert.pem`` and ``key.pem``."""
        if not topics.is_thing_name(name):
            raise ValueError(f"invalid thing name: {name!r} (1-128 of [a-zA-Z0-9:_-])")
        cert_id, cert_pem, key_pem = register_device(
            self.registry,
            self.services.ca,
            name,
            key_type=key_type,
            region=self.services.region,
            account=self.services.account,
        )
        folder = self.thing_dir(name)
        log.info("thing %s registered with certificate %s…", name, cert_id[:12])
        return ThingCredentials(
            name, cert_id, folder / "cert.pem", folder / "key.pem", cert_pem, key_pem
        )

    def things(self) -> list[dict[str, Any]]:
        """Registered things with their certificates (id and status)."""
        out = []
        for name in sorted(self.registry.things):
            certs = [
                {
                    "certificate_id": c.certificate_id,
                    "status": c.status,
                    "policies": list(c.policies),
                }
                for c in self.registry.certificates.values()
                if name in c.things
            ]
            out.append(
                {
                    "name": name,
                    "certificates": certs,
                    "cert_path": str(self.thing_dir(name) / "cert.pem"),
                }
            )
        return out

    def set_certificate_status(self, certificate_id: str, status: str) -> None:
        """UpdateCertificate (ACTIVE, INACTIVE, REVOKED). A certificate that is no longer
        ACTIVE may not CONNECT, and its live connections are closed ``revocation_delay_s``
        after the change (AWS: "within minutes"; DISCONNECT 0x98, see DEVIATIONS)."""
        self.registry.set_certificate_status(certificate_id, status)
        log.info("certificate %s… is now %s", certificate_id[:12], status)
        if status != ACTIVE and self.broker is not None:
            broker = self.broker

            def close() -> None:
                cert = self.registry.certificates.get(certificate_id)
                if cert is None or cert.status != ACTIVE:
                    broker.disconnect_principal(
                        lambda p: p.cert_id == certificate_id,
                        0x98,
                        f"certificate {status}",
                    )

            asyncio.get_running_loop().call_later(self.revocation_delay_s, close)

    def add_template(self, name: str, body: dict[str, Any] | str) -> None:
        """CreateProvisioningTemplate."""
        self.registry.create_template(name, body)

    def add_policy(
        self, name: str, document: dict[str, Any] | str, certificate_id: str | None = None
    ) -> None:
        """CreatePolicy, and AttachPolicy to ``certificate_id`` if given."""
        self.registry.create_policy(name, document)
        if certificate_id:
            self.registry.attach_policy(name, certificate_id)
        self._policies_changed()

    def _policies_changed(self) -> None:
        """Policies are read at each authorisation: forget what connections cached."""
        if self.broker is not None:
            self.broker.policies_changed()

    def attach_policy(self, name: str, certificate_id: str) -> None:
        """AttachPolicy: live connections of that certificate get it at their next action."""
        self.registry.attach_policy(name, certificate_id)
        self._policies_changed()
        log.info("policy %s attached to certificate %s…", name, certificate_id[:12])

    def detach_policy(self, name: str, certificate_id: str) -> None:
        """DetachPolicy: live connections of that certificate lose it at their next action."""
        self.registry.detach_policy(name, certificate_id)
        self._policies_changed()
        log.info("policy %s detached from certificate %s…", name, certificate_id[:12])

    def add_iam_credential(
        self,
        access_key_id: str,
        secret_access_key: str,
        policies: list[dict[str, Any]] | None = None,
    ) -> None:
        """A static AWS credential for MQTT over WebSocket signed with SigV4 (§1.2).
        ``policies`` (IoT policy documents) say what it may do; default: everything."""
        if policies is None:
            arn = f"arn:aws:iot:{self.services.region}:{self.services.account}"
            policies = [
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": f"{arn}:*"}],
                }
            ]
        self.iam_credentials[access_key_id] = (secret_access_key, list(policies))

    def _check_sigv4(self, method: str, path: str, query: str, headers: dict[str, str]) -> str:
        return sigv4.verify_presigned(
            method=method,
            path=path,
            query=query,
            headers=headers,
            credentials={k: v[0] for k, v in self.iam_credentials.items()},
            now=time.time(),
            region=self.services.region,
        )

    def register_authorizer(self, authorizer: CustomAuthorizer, *, default: bool = False) -> None:
        """Add a custom authorizer (a Python callable stands in for the Lambda, §2.3)."""
        self.services.authorizers.register(authorizer, default=default)

    # --- jobs and shadows -----------------------------------------------------------------

    def add_job(
        self,
        thing: str | list[str],
        document: dict[str, Any],
        job_id: str | None = None,
        *,
        in_progress_timeout_minutes: int | None = None,
    ) -> str:
        """CreateJob for one thing (or several); notifies subscribers of ``jobs/notify``
        and ``jobs/notify-next``. Returns the job id."""
        things = [thing] if isinstance(thing, str) else list(thing)
        job_id = job_id or "job-" + uuid.uuid4().hex[:12]
        out = self.services.jobs.create_job(
            job_id, document, things, in_progress_timeout_minutes=in_progress_timeout_minutes
        )
        log.info("job %s queued for %s", job_id, ", ".join(things))
        self._emit(out)
        return job_id

    def get_shadow(self, thing: str, name: str | None = None) -> dict[str, Any] | None:
        """The shadow document (state, metadata, version), or None if there is none."""
        return self.services.shadows.document(thing, name)

    def update_shadow(
        self, thing: str, document: dict[str, Any] | str, name: str | None = None
    ) -> dict[str, Any]:
        """UpdateThingShadow: ``document`` is an update request (``{"state": {...}}``).

        Subscribers get ``update/accepted``, ``update/documents`` and ``update/delta``
        as for an MQTT update. Returns the accepted document; raises ValueError with the
        rejection."""
        payload = document.encode() if isinstance(document, str) else json.dumps(document).encode()
        request = topics.parse_shadow_request(topics.shadow_topic(thing, name, "update"))
        if request is None:
            raise ValueError(f"invalid thing or shadow name: {thing!r} {name!r}")
        out = self.services.shadows.handle(request, payload)
        self._emit(out)
        for topic, body in out:
            if topic == request.rejected:
                log.info(
                    "shadow update %s%s (operator) -> rejected %s",
                    thing,
                    "/" + name if name else "",
                    body.decode(),
                )
                raise ValueError(json.loads(body))
            if topic == request.accepted:
                log.info(
                    "shadow update %s%s (operator) -> accepted", thing, "/" + name if name else ""
                )
                return json.loads(body)  # type: ignore[no-any-return]
        raise ValueError("no answer from the shadow service")

    def delete_shadow(self, thing: str, name: str | None = None) -> None:
        request = topics.parse_shadow_request(topics.shadow_topic(thing, name, "delete"))
        if request is None:
            raise ValueError(f"invalid thing or shadow name: {thing!r} {name!r}")
        self._emit(self.services.shadows.handle(request, b""))

    # --- broker ---------------------------------------------------------------------------

    def connections(self) -> list[dict[str, Any]]:
        """Live MQTT connections (client id, thing, listener, peer, subscriptions...)."""
        return self.broker.connection_list() if self.broker is not None else []

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> int:
        """Publish as the twin; returns the number of subscribers reached."""
        if self.broker is None:
            raise RuntimeError("the twin is not running")
        return self.broker.publish(topic, payload, qos, retain)

    def _emit(self, out: list[tuple[str, bytes]]) -> None:
        if self.broker is not None:
            self.broker.emit_all(out)

    # --- identity -------------------------------------------------------------------------

    def _authenticate(self, info: ConnInfo, connect: Connect) -> Principal | int:
        cid = connect.client_id
        if len(self.connect_usernames) >= 1000:
            self.connect_usernames.clear()
        self.connect_usernames[cid] = connect.username
        ip = info.peer[0] if info.peer else None
        svc = self.services
        attributes = policy.connect_attributes(connect.clean_start, connect.will is not None)

        def context(**extra) -> policy.PolicyContext:
            return policy.PolicyContext(client_id=cid, source_ip=ip, region=svc.region,
                                        account=svc.account, connect_attributes=attributes,
                                        **extra)

        if info.listener in ("mtls", "alpn-x509"):
            if info.cert_der is None:
                return 0x87
            cert_id = hashlib.sha256(info.cert_der).hexdigest()
            cert = self.registry.certificates.get(cert_id)
            if cert is None or cert.status != ACTIVE:
                # §1.5/§1.8: MQTT 5 gets a CONNACK reason code; 0x87 Not authorized.
                log.info(
                    "%s: certificate %s… is %s",
                    cid or "?",
                    cert_id[:12],
                    cert.status if cert else "not registered",
                )
                return 0x87
            ctx = svc.policy_context(cid, cert_id, source_ip=ip)
            ctx.connect_attributes = attributes
            thing = ctx.thing_name or (cert.things[0] if cert.things else None)
            # The policies attached now, read again at every check: AttachPolicy and
            # DetachPolicy apply to live connections' next action.
            return _principal(
                "x509",
                cert_id,
                ctx,
                lambda: self.registry.policies_for_certificate(cert_id),
                thing=thing,
                cert_id=cert_id,
            )
        if info.listener == "plain":
            # No AWS equivalent: the client id is the thing name, the default policy rules.
            ctx = context(thing_name=cid, is_attached=True)
            return _principal(
                "plain",
                cid,
                ctx,
                [policy.default_thing_policy(svc.region, svc.account)],
                thing=cid,
            )
        if info.sigv4_key_id is not None:
            # SigV4 WebSocket (§1.2): the credential's policies, read at each check.
            key_id = info.sigv4_key_id
            ctx = context()
            return _principal(
                "sigv4",
                key_id,
                ctx,
                lambda: self.iam_credentials.get(key_id, ("", []))[1],
            )
        http = None
        if info.listener in ("wss", "alpn-wss"):
            # §2.1: on WebSocket the credentials may be upgrade headers or query parameters;
            # the authorizer reads them there (the CONNECT username stays as sent).
            http = HttpRequest(dict(info.ws_headers), info.ws_query)
        try:
            result = svc.authorizers.authenticate(
                username=connect.username,
                password=connect.password,
                client_id=cid,
                server_name=info.sni,
                http=http,
            )
        except AuthorizerError as e:
            log.info("%s: custom authorizer refused: %s", cid or "?", e.reason)
            return 0x87 if e.not_authorized else 0x86
        ctx = context()
        return _principal(
            "custom-auth",
            result.principal_id,
            ctx,
            result.policy_documents,
            disconnect_after_s=result.disconnect_after_s * self.authorizer_time_scale,
            refresh_after_s=result.refresh_after_s * self.authorizer_time_scale,
            refresh=lambda: self._authenticate(info, connect),
        )

    # --- admin endpoint -------------------------------------------------------------------

    async def _start_admin(self) -> None:
        self._admin = await asyncio.start_server(self._admin_client, "127.0.0.1", 0)
        self.admin_port = self._admin.sockets[0].getsockname()[1]
        persist.write_text_atomic(
            self.data_dir / ADMIN_FILE,
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "port": self.admin_port,
                    "token": self._admin_token,
                    "pid": os.getpid(),
                }
            )
            + "\n",
            mode=0o600,
        )

    async def _admin_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            request = json.loads(line)
            if request.get("token") != self._admin_token:
                answer: dict[str, Any] = {"ok": False, "error": "bad admin token"}
            else:
                try:
                    answer = {
                        "ok": True,
                        "result": self.admin(request["op"], request.get("args", {})),
                    }
                except (KeyError, ValueError, TypeError) as e:
                    answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except Exception as e:  # never let a bad admin client hurt the twin
            log.debug("admin client failed: %s", e)
        finally:
            writer.close()

    def admin(self, op: str, args: dict[str, Any]) -> Any:
        """One admin operation (what the CLI sends while ``serve`` runs)."""
        if op == "thing-add":
            c = self.add_thing(args["name"])
            return {
                "name": c.name,
                "certificate_id": c.certificate_id,
                "cert_path": str(c.cert_path),
                "key_path": str(c.key_path),
            }
        if op == "thing-list":
            return self.things()
        if op == "cert-status":
            self.set_certificate_status(args["certificate_id"], args["status"])
            return None
        if op == "policy-add":
            self.add_policy(args["name"], args["document"], args.get("certificate_id"))
            return None
        if op == "policy-attach":
            self.attach_policy(args["name"], args["certificate_id"])
            return None
        if op == "policy-detach":
            self.detach_policy(args["name"], args["certificate_id"])
            return None
        if op == "job-add":
            return self.add_job(args["thing"], args["document"], args.get("job_id"))
        if op == "template-add":
            self.add_template(args["name"], args["body"])
            return None
        if op == "shadow-get":
            return self.get_shadow(args["thing"], args.get("name"))
        if op == "shadow-update":
            return self.update_shadow(args["thing"], args["document"], args.get("name"))
        if op == "connections":
            return self.connections()
        if op == "publish":
            return self.publish(
                args["topic"],
                args.get("payload", ""),
                int(args.get("qos", 1)),
                bool(args.get("retain", False)),
            )
        if op == "status":
            return {
                "ports": self.ports,
                "ca": str(self.ca_path),
                "pid": os.getpid(),
                "uptime_s": round(time.time() - self.started_at, 1),
            }
        raise ValueError(f"unknown admin operation {op!r}")


def _principal(
    kind: str,
    name: str,
    ctx: policy.PolicyContext,
    documents: list[dict[str, Any]] | Callable[[], list[dict[str, Any]]],
    **kwargs: Any,
) -> Principal:
    """A principal whose ``allowed`` evaluates ``documents`` (or, if it is a callable,
    what it returns at each check) in ``ctx`` (policy.py)."""
    fixed = None if callable(documents) else list(documents)

    def allow(action: str, target: str, client_id: str) -> bool:
        policies = fixed if fixed is not None else documents()  # type: ignore[operator]
        if action == policy.CONNECT:
            return policy.can_connect(policies, ctx)
        if action == policy.PUBLISH:
            return policy.can_publish(policies, target, ctx)
        if action == policy.RETAIN_PUBLISH:
            return policy.is_allowed(
                policies,
                policy.RETAIN_PUBLISH,
                policy.resource_arn("topic", target, ctx.region, ctx.account),
                ctx,
            )
        if action == policy.SUBSCRIBE:
            return policy.can_subscribe(policies, target, ctx)
        if action == policy.RECEIVE:
            return policy.can_receive(policies, target, ctx)
        return False

    return Principal(kind, name, allow=allow, **kwargs)
