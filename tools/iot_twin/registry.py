"""The twin's registry: things, certificates, policies, provisioning templates.

Persisted as ``registry.json`` in the state directory (``TWIN_DATA``, default ``.twin/``);
every change is written through, so a restart loses nothing. Credentials issued for a
thing are also written as ``things/<name>/cert.pem`` and ``key.pem`` for humans and
test scripts to pick up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import persist
from .ca import certificate_id
from .topics import is_thing_name

Clock = Callable[[], float]
Json = Any

REGISTRY_FILE = "registry.json"
THINGS_DIR = "things"

ACTIVE = "ACTIVE"
INACTIVE = "INACTIVE"
REVOKED = "REVOKED"
PENDING_ACTIVATION = "PENDING_ACTIVATION"
CERT_STATUSES = (ACTIVE, INACTIVE, REVOKED, PENDING_ACTIVATION)


@dataclass
class Thing:
    """A registered thing."""

    name: str
    attributes: dict[str, str] = field(default_factory=dict)
    thing_type: str | None = None
    groups: list[str] = field(default_factory=list)
    version: int = 1


@dataclass
class Certificate:
    """A registered device certificate and what is attached to it."""

    certificate_id: str
    pem: str
    status: str
    created_at: int
    things: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)


@dataclass
class Template:
    """A fleet provisioning template (``body`` is the template JSON as a dict)."""

    name: str
    body: dict[str, Json]
    enabled: bool = True
    description: str = ""


@dataclass
class OwnershipToken:
    """A certificate ownership token from CreateKeysAndCertificate / FromCsr."""

    token: str
    certificate_id: str
    expires_at: int
    private_key_pem: str | None = None  # kept until RegisterThing writes key.pem


class Registry:
    """Things, certificates, policies, templates and ownership tokens.

    ``state_dir`` None keeps everything in memory (tests); otherwise ``registry.json``
    there is loaded now and rewritten after each change.
    """

    def __init__(self, state_dir: Path | str | None = None, *, clock: Clock = time.time) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.clock = clock
        self.things: dict[str, Thing] = {}
        self.certificates: dict[str, Certificate] = {}
        self.policies: dict[str, dict[str, Json]] = {}
        self.templates: dict[str, Template] = {}
        self.tokens: dict[str, OwnershipToken] = {}
        if self.state_dir is not None:
            data = persist.read_json(self.state_dir / REGISTRY_FILE)
            if data is not None:
                self._load(data)

    # --- things ----------------------------------------------------------------------

    def create_thing(
        self,
        name: str,
        attributes: dict[str, str] | None = None,
        *,
        thing_type: str | None = None,
        groups: list[str] | None = None,
    ) -> Thing:
        """Create (or return the existing) thing called ``name``."""
        if not is_thing_name(name):
            raise ValueError(f"invalid thing name: {name!r}")
        thing = self.things.get(name)
        if thing is None:
            thing = Thing(name, dict(attributes or {}), thing_type, list(groups or []))
            self.things[name] = thing
            self.save()
        return thing

    def delete_thing(self, name: str) -> None:
        """Delete a thing and detach it from its certificates."""
        self.things.pop(name, None)
        for cert in self.certificates.values():
            if name in cert.things:
                cert.things.remove(name)
        self.save()

    # --- certificates ----------------------------------------------------------------

    def add_certificate(self, pem: str, status: str = ACTIVE) -> Certificate:
        """Register a certificate (idempotent by id)."""
        if status not in CERT_STATUSES:
            raise ValueError(f"invalid certificate status: {status}")
        cert_id = certificate_id(pem)
        cert = self.certificates.get(cert_id)
        if cert is None:
            cert = Certificate(cert_id, pem, status, int(self.clock()))
            self.certificates[cert_id] = cert
            self.save()
        return cert

    def set_certificate_status(self, cert_id: str, status: str) -> None:
        """UpdateCertificate."""
        if status not in CERT_STATUSES:
            raise ValueError(f"invalid certificate status: {status}")
        self.certificates[cert_id].status = status
        self.save()

    def delete_certificate(self, cert_id: str) -> None:
        """Forget a certificate."""
        self.certificates.pop(cert_id, None)
        self.save()

    def certificate_for_pem(self, pem: str | bytes) -> Certificate | None:
        """The registered certificate with this PEM (or DER-equal PEM), if any."""
        try:
            return self.certificates.get(certificate_id(pem))
        except ValueError:
            return None

    def attach_thing_principal(self, thing: str, cert_id: str) -> None:
        """AttachThingPrincipal."""
        if thing not in self.things:
            raise KeyError(thing)
        cert = self.certificates[cert_id]
        if thing not in cert.things:
            cert.things.append(thing)
            self.save()

    def things_for_certificate(self, cert_id: str) -> list[str]:
        """Things the certificate is attached to."""
        cert = self.certificates.get(cert_id)
        return list(cert.things) if cert else []

    # --- policies --------------------------------------------------------------------

    def create_policy(self, name: str, document: dict[str, Json] | str) -> None:
        """CreatePolicy (or replace the document of an existing one)."""
        if isinstance(document, str):
            document = json.loads(document)
        if not isinstance(document, dict) or "Statement" not in document:
            raise ValueError("a policy document is a JSON object with a Statement")
        self.policies[name] = document
        self.save()

    def attach_policy(self, name: str, cert_id: str) -> None:
        """AttachPolicy to a certificate."""
        if name not in self.policies:
            raise KeyError(name)
        cert = self.certificates[cert_id]
        if name not in cert.policies:
            cert.policies.append(name)
            self.save()

    def detach_policy(self, name: str, cert_id: str) -> None:
        """DetachPolicy from a certificate."""
        cert = self.certificates[cert_id]
        if name in cert.policies:
            cert.policies.remove(name)
            self.save()

    def policies_for_certificate(self, cert_id: str) -> list[dict[str, Json]]:
        """The documents of the policies attached to a certificate."""
        cert = self.certificates.get(cert_id)
        if cert is None:
            return []
        return [self.policies[n] for n in cert.policies if n in self.policies]

    # --- templates and ownership tokens -----------------------------------------------

    def create_template(
        self, name: str, body: dict[str, Json] | str, *, enabled: bool = True
    ) -> Template:
        """CreateProvisioningTemplate."""
        if isinstance(body, str):
            body = json.loads(body)
        if not isinstance(body, dict):
            raise ValueError("a template body is a JSON object")
        template = Template(name, body, enabled)
        self.templates[name] = template
        self.save()
        return template

    def add_token(self, token: OwnershipToken) -> None:
        """Remember an ownership token until it is used or expires."""
        self.tokens[token.token] = token
        self.save()

    def take_token(self, token: str) -> OwnershipToken | None:
        """The live token ``token``, removed from the registry; None if unknown or expired."""
        self.expire_tokens()
        found = self.tokens.pop(token, None)
        if found is not None:
            self.save()
        return found

    def expire_tokens(self) -> list[str]:
        """Drop expired tokens and, as AWS does, their certificates if still unused.

        [FP-API]: a certificate not activated and not attached to a policy or thing when
        its token expires is deleted. Returns the deleted certificate ids.
        """
        now = int(self.clock())
        deleted = []
        for token in [t for t in self.tokens.values() if t.expires_at <= now]:
            del self.tokens[token.token]
            cert = self.certificates.get(token.certificate_id)
            if (
                cert is not None
                and cert.status == PENDING_ACTIVATION
                and not cert.things
                and not cert.policies
            ):
                del self.certificates[cert.certificate_id]
                deleted.append(cert.certificate_id)
        if deleted:
            self.save()
        return deleted

    # --- files -----------------------------------------------------------------------

    def write_thing_credentials(self, thing: str, cert_pem: str, key_pem: str | None) -> None:
        """Write ``things/<thing>/cert.pem`` (and ``key.pem``) under the state directory."""
        if self.state_dir is None:
            return
        folder = self.state_dir / THINGS_DIR / thing
        persist.write_text_atomic(folder / "cert.pem", cert_pem)
        if key_pem is not None:
            persist.write_text_atomic(folder / "key.pem", key_pem, mode=0o600)

    def to_json(self) -> dict[str, Json]:
        """The registry as one JSON object."""
        return {
            "things": [asdict(t) for t in self.things.values()],
            "certificates": [asdict(c) for c in self.certificates.values()],
            "policies": dict(self.policies),
            "templates": [asdict(t) for t in self.templates.values()],
            "tokens": [asdict(t) for t in self.tokens.values()],
        }

    def _load(self, data: dict[str, Json]) -> None:
        self.things = {t["name"]: Thing(**t) for t in data.get("things", [])}
        self.certificates = {
            c["certificate_id"]: Certificate(**c) for c in data.get("certificates", [])
        }
        self.policies = dict(data.get("policies", {}))
        self.templates = {t["name"]: Template(**t) for t in data.get("templates", [])}
        self.tokens = {t["token"]: OwnershipToken(**t) for t in data.get("tokens", [])}

    def save(self) -> None:
        """Write ``registry.json`` (no-op in memory)."""
        if self.state_dir is not None:
            persist.write_json_atomic(self.state_dir / REGISTRY_FILE, self.to_json())
