"""The twin's services in one object, for the broker and the endpoint to call.

``ServiceLayer(data_dir)`` loads (or creates) everything from the state directory: the CA
(``ca.pem``), the registry (``registry.json``), shadows (``shadows.json``) and jobs
(``jobs.json``). The broker's connections hand requests on reserved topics to
``shadows``, ``jobs`` and ``provisioning`` (each ``handle(request, payload)`` returns the
``(topic, payload)`` pairs to publish); ``tick()`` applies timers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from . import persist
from .authorizer import Authorizers
from .ca import CertificateAuthority, subject_fields
from .jobs import JobStore
from .policy import DEFAULT_ACCOUNT, DEFAULT_REGION, PolicyContext
from .provisioning import FleetProvisioning
from .registry import Registry
from .shadow import ShadowStore

Clock = Callable[[], float]
Responses = list[tuple[str, bytes]]

SHADOWS_FILE = "shadows.json"
JOBS_FILE = "jobs.json"


class ServiceLayer:
    """The twin's service layer: registry, CA, shadows, jobs, provisioning, authorizers.

    ``data_dir`` None means ``$TWIN_DATA`` or ``.twin``; ``in_memory=True`` persists
    nothing (tests). ``clock`` returns epoch seconds and drives every timestamp and timer.
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        clock: Clock = time.time,
        in_memory: bool = False,
        region: str = DEFAULT_REGION,
        account: str = DEFAULT_ACCOUNT,
        key_type: str = "rsa",
    ) -> None:
        self.clock = clock
        self.region = region
        self.account = account
        if in_memory:
            self.data_dir: Path | None = None
            self.ca = CertificateAuthority.create(clock=clock)
            self.registry = Registry(None, clock=clock)
            self.shadows = ShadowStore(clock=clock)
            self.jobs = JobStore(clock=clock)
        else:
            self.data_dir = persist.data_dir(data_dir)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.ca = CertificateAuthority.load_or_create(self.data_dir, clock=clock)
            self.registry = Registry(self.data_dir, clock=clock)
            self.shadows = ShadowStore(clock=clock, path=self.data_dir / SHADOWS_FILE)
            self.jobs = JobStore(clock=clock, path=self.data_dir / JOBS_FILE)
        self.provisioning = FleetProvisioning(
            self.registry, self.ca, clock=clock, region=region, account=account, key_type=key_type
        )
        self.authorizers = Authorizers()

    def tick(self) -> Responses:
        """Apply timers that fire without a request (job timeouts) and expire tokens."""
        self.registry.expire_tokens()
        return self.jobs.tick()

    def policy_context(
        self,
        client_id: str,
        certificate_id: str | None = None,
        *,
        source_ip: str | None = None,
    ) -> PolicyContext:
        """The :class:`PolicyContext` of a connection authenticated by a certificate.

        Thing variables resolve only when the certificate is attached to a thing named
        exactly like the client id [thing-policy-variables].
        """
        ctx = PolicyContext(
            client_id=client_id,
            certificate_id=certificate_id,
            source_ip=source_ip,
            region=self.region,
            account=self.account,
        )
        cert = self.registry.certificates.get(certificate_id or "")
        if cert is None:
            return ctx
        ctx.certificate = subject_fields(cert.pem)
        thing = self.registry.things.get(client_id)
        if thing is not None and client_id in cert.things:
            ctx.thing_name = thing.name
            ctx.is_attached = True
            ctx.thing_type = thing.thing_type
            ctx.thing_attributes = dict(thing.attributes)
        return ctx

    def policies_for_certificate(self, certificate_id: str) -> list[dict[str, object]]:
        """The policy documents attached to a certificate."""
        return self.registry.policies_for_certificate(certificate_id)
