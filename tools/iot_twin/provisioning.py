"""Fleet Provisioning over MQTT (aws-iot-spec §5), no I/O.

``FleetProvisioning.handle(request, payload, client_id=..., claim_certificate_id=...)``
answers CreateKeysAndCertificate, CreateCertificateFromCsr and RegisterThing on their
``json`` or ``cbor`` topics with ``.../accepted`` or ``.../rejected`` (errors are
``{"statusCode", "errorCode", "errorMessage"}`` [FP-API]). New certificates are signed
by the twin's CA and stay ``PENDING_ACTIVATION`` until RegisterThing; the ownership
token expires after an hour, and an unused certificate goes with it [FP-API].

RegisterThing evaluates the template: ``Parameters`` (with ``Default``), ``Mappings``,
``Conditions``, ``Resources`` of type ``AWS::IoT::Thing`` / ``Certificate`` / ``Policy``
(with ``OverrideSettings``), ``DeviceConfiguration``, and the intrinsics ``Ref``,
``Fn::Join``, ``Fn::Select``, ``Fn::Split``, ``Fn::Sub``, ``Fn::FindInMap``, ``Fn::If``
(conditions: ``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or``, ``Condition``)
[provision-template]. An optional pre-provisioning hook (a Python callable standing in
for the Lambda) sees AWS's event and may deny or override parameters.

Error codes other than ``InvalidCertificateOwnershipToken`` (observed [JS69]) are not
documented by AWS; the ones used here are marked UNVERIFIED where they are raised.
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from . import cbor
from .ca import AWS_DEVICE_CERT_CN, CertificateAuthority, InvalidCsrError, subject_fields
from .policy import DEFAULT_ACCOUNT, DEFAULT_REGION, default_thing_policy
from .registry import (
    ACTIVE,
    INACTIVE,
    PENDING_ACTIVATION,
    OwnershipToken,
    Registry,
)
from .topics import ProvisioningRequest, is_thing_name

Clock = Callable[[], float]
Responses = list[tuple[str, bytes]]
Json = Any
PreProvisioningHook = Callable[[dict[str, Json]], dict[str, Json]]

TOKEN_TTL_S = 3600  # [FP-API] the ownership token expires after one hour
DEFAULT_POLICY_NAME = "TwinDefaultThingPolicy"


class ProvisioningError(Exception):
    """A rejected request: ``status_code``, ``error_code`` and ``error_message``."""

    def __init__(self, status_code: int, error_code: str, error_message: str) -> None:
        super().__init__(status_code, error_code, error_message)
        self.status_code = status_code
        self.error_code = error_code
        self.error_message = error_message

    def payload(self) -> dict[str, Json]:
        """The rejected document of [FP-API]."""
        return {
            "statusCode": self.status_code,
            "errorCode": self.error_code,
            "errorMessage": self.error_message,
        }


class TemplateError(ProvisioningError):
    """The template cannot be evaluated with these parameters (400, UNVERIFIED code)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "InvalidParameters", message)


# --- template evaluation ----------------------------------------------------------------


class _Evaluator:
    def __init__(self, body: dict[str, Json], values: dict[str, str]) -> None:
        self.body = body
        self.values = values
        self.mappings = body.get("Mappings", {})
        self.conditions: dict[str, bool] = {}
        for name, expr in body.get("Conditions", {}).items():
            self.conditions[name] = self.condition(expr)

    def condition(self, expr: Json) -> bool:
        if isinstance(expr, dict) and len(expr) == 1:
            ((fn, arg),) = expr.items()
            if fn == "Fn::Equals" and isinstance(arg, list) and len(arg) == 2:
                return bool(self.resolve(arg[0]) == self.resolve(arg[1]))
            if fn == "Fn::Not" and isinstance(arg, list) and len(arg) == 1:
                return not self.condition(arg[0])
            if fn == "Fn::And" and isinstance(arg, list):
                return all(self.condition(a) for a in arg)
            if fn == "Fn::Or" and isinstance(arg, list):
                return any(self.condition(a) for a in arg)
            if fn == "Condition" and isinstance(arg, str):
                return self.named_condition(arg)
        raise TemplateError(f"Invalid condition: {json.dumps(expr)}")

    def named_condition(self, name: str) -> bool:
        if name in self.conditions:
            return self.conditions[name]
        expr = self.body.get("Conditions", {}).get(name)
        if expr is None:
            raise TemplateError(f"Unknown condition: {name}")
        self.conditions[name] = self.condition(expr)
        return self.conditions[name]

    def ref(self, name: Json) -> str:
        if not isinstance(name, str) or name not in self.values:
            raise TemplateError(f"Missing value for parameter: {name}")
        return self.values[name]

    def sub(self, arg: Json) -> str:
        if isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], dict):
            text, extra = arg[0], {k: self.resolve(v) for k, v in arg[1].items()}
        else:
            text, extra = arg, {}
        if not isinstance(text, str):
            raise TemplateError("Fn::Sub needs a string")
        out, i = [], 0
        while True:
            start = text.find("${", i)
            if start < 0:
                out.append(text[i:])
                return "".join(out)
            end = text.find("}", start)
            if end < 0:
                raise TemplateError("Fn::Sub: unterminated ${")
            out.append(text[i:start])
            name = text[start + 2 : end]
            out.append(str(extra[name]) if name in extra else self.ref(name))
            i = end + 1

    def resolve(self, node: Json) -> Json:
        if isinstance(node, list):
            return [self.resolve(n) for n in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((fn, arg),) = node.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::Join":
                if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list)):
                    raise TemplateError("Fn::Join takes [delimiter, [values]]")
                return str(arg[0]).join(str(v) for v in self.resolve(arg[1]))
            if fn == "Fn::Select":
                if not (isinstance(arg, list) and len(arg) == 2):
                    raise TemplateError("Fn::Select takes [index, list]")
                items = self.resolve(arg[1])
                try:
                    picked = items[int(self.resolve(arg[0]))]
                except (IndexError, TypeError, ValueError):
                    raise TemplateError("Fn::Select index out of range") from None
                if picked is None:
                    raise TemplateError("Fn::Select picked a null value")
                return picked
            if fn == "Fn::Split":
                if not (isinstance(arg, list) and len(arg) == 2):
                    raise TemplateError("Fn::Split takes [delimiter, string]")
                return str(self.resolve(arg[1])).split(str(arg[0]))
            if fn == "Fn::Sub":
                return self.sub(arg)
            if fn == "Fn::FindInMap":
                if not (isinstance(arg, list) and len(arg) == 3):
                    raise TemplateError("Fn::FindInMap takes [map, key, key]")
                m, k1, k2 = (self.resolve(a) for a in arg)
                try:
                    return copy.deepcopy(self.mappings[m][k1][k2])
                except (KeyError, TypeError):
                    raise TemplateError(f"Fn::FindInMap: no {m}/{k1}/{k2}") from None
            if fn == "Fn::If":
                if not (isinstance(arg, list) and len(arg) == 3):
                    raise TemplateError("Fn::If takes [condition, then, else]")
                return self.resolve(arg[1] if self.named_condition(arg[0]) else arg[2])
        return {k: self.resolve(v) for k, v in node.items()}


def evaluate_template(
    body: dict[str, Json], parameters: dict[str, str], pseudo: dict[str, str] | None = None
) -> tuple[dict[str, dict[str, Json]], dict[str, Json]]:
    """Resolve a template: returns ``(resources, device_configuration)``.

    ``parameters`` are the device's (after any hook overrides); each declared parameter
    takes its value from there, else its ``Default``; pseudo parameters such as
    ``AWS::IoT::Certificate::Id`` come from ``pseudo``. Resources whose ``Condition`` is
    false are dropped.
    """
    values = dict(pseudo or {})
    for name, decl in body.get("Parameters", {}).items():
        if name in parameters:
            values[name] = parameters[name]
        elif isinstance(decl, dict) and "Default" in decl:
            values[name] = decl["Default"]
        elif name in values:
            continue  # a declared pseudo parameter, e.g. AWS::IoT::Certificate::Id
    ev = _Evaluator(body, values)
    resources: dict[str, dict[str, Json]] = {}
    for logical, resource in body.get("Resources", {}).items():
        if not isinstance(resource, dict):
            raise TemplateError(f"Resource {logical} is not an object")
        cond = resource.get("Condition")
        if cond is not None and not ev.named_condition(cond):
            continue
        resources[logical] = {
            "Type": resource.get("Type"),
            "Properties": ev.resolve(resource.get("Properties", {})),
            "OverrideSettings": resource.get("OverrideSettings", {}),
        }
    return resources, ev.resolve(body.get("DeviceConfiguration", {}))


# --- the service ------------------------------------------------------------------------


class FleetProvisioning:
    """CreateKeysAndCertificate, CreateCertificateFromCsr and RegisterThing."""

    def __init__(
        self,
        registry: Registry,
        ca: CertificateAuthority,
        *,
        clock: Clock = time.time,
        token_ttl_s: int = TOKEN_TTL_S,
        key_type: str = "rsa",
        region: str = DEFAULT_REGION,
        account: str = DEFAULT_ACCOUNT,
    ) -> None:
        self.registry = registry
        self.ca = ca
        self.clock = clock
        self.token_ttl_s = token_ttl_s
        self.key_type = key_type
        self.region = region
        self.account = account
        self.hooks: dict[str, PreProvisioningHook] = {}

    def set_pre_provisioning_hook(self, template: str, hook: PreProvisioningHook | None) -> None:
        """Install (or with None remove) the hook called before ``template`` provisions."""
        if hook is None:
            self.hooks.pop(template, None)
        else:
            self.hooks[template] = hook

    def handle(
        self,
        request: ProvisioningRequest,
        payload: bytes,
        *,
        client_id: str = "",
        claim_certificate_id: str | None = None,
    ) -> Responses:
        """Answer one request; the response is encoded in the topic's format."""
        encode = cbor.dumps if request.fmt == "cbor" else _json_bytes
        try:
            body = self._decode(payload, request.fmt, required=request.op != "create-keys")
            if request.op == "create-keys":
                doc = self.create_keys_and_certificate()
            elif request.op == "create-from-csr":
                doc = self.create_certificate_from_csr(body.get("certificateSigningRequest"))
            else:
                doc = self.register_thing(
                    request.template or "",
                    body.get("certificateOwnershipToken"),
                    body.get("parameters"),
                    client_id=client_id,
                    claim_certificate_id=claim_certificate_id,
                )
        except ProvisioningError as e:
            return [(request.rejected, encode(e.payload()))]
        return [(request.accepted, encode(doc))]

    @staticmethod
    def _decode(payload: bytes, fmt: str, *, required: bool) -> dict[str, Json]:
        if not payload:
            if required:
                raise ProvisioningError(400, "InvalidPayload", "The payload is empty.")
            return {}
        try:
            body = cbor.loads(payload) if fmt == "cbor" else json.loads(bytes(payload))
        except (ValueError, UnicodeDecodeError):
            if not required:
                return {}  # CreateKeysAndCertificate ignores its payload
            # UNVERIFIED error code and text.
            raise ProvisioningError(400, "InvalidPayload", "The payload is not valid.") from None
        if not isinstance(body, dict):
            if not required:
                return {}
            raise ProvisioningError(400, "InvalidPayload", "The payload is not an object.")
        return body

    def _issue_token(self, cert_id: str, key_pem: str | None) -> str:
        self.registry.expire_tokens()
        token = secrets.token_urlsafe(96)
        expires = int(self.clock()) + self.token_ttl_s
        self.registry.add_token(OwnershipToken(token, cert_id, expires, key_pem))
        return token

    def create_keys_and_certificate(self) -> dict[str, Json]:
        """A new key pair and CA-signed certificate, PENDING_ACTIVATION [FP-API]."""
        cert_pem, key_pem = self.ca.issue_device_cert(AWS_DEVICE_CERT_CN, key_type=self.key_type)
        cert = self.registry.add_certificate(cert_pem, PENDING_ACTIVATION)
        return {
            "certificateId": cert.certificate_id,
            "certificatePem": cert_pem,
            "privateKey": key_pem,
            "certificateOwnershipToken": self._issue_token(cert.certificate_id, key_pem),
        }

    def create_certificate_from_csr(self, csr: Json) -> dict[str, Json]:
        """Sign the device's CSR; the certificate is PENDING_ACTIVATION [FP-API]."""
        if not isinstance(csr, str) or not csr.strip():
            # UNVERIFIED error code and text.
            raise ProvisioningError(
                400, "InvalidPayload", "Certificate signing request cannot be empty."
            )
        try:
            cert_pem = self.ca.sign_csr(csr)
        except InvalidCsrError:
            # UNVERIFIED error code and text.
            raise ProvisioningError(
                400, "InvalidCSR", "The certificate signing request is not valid."
            ) from None
        cert = self.registry.add_certificate(cert_pem, PENDING_ACTIVATION)
        return {
            "certificateOwnershipToken": self._issue_token(cert.certificate_id, None),
            "certificateId": cert.certificate_id,
            "certificatePem": cert_pem,
        }

    def register_thing(
        self,
        template_name: str,
        token: Json,
        parameters: Json,
        *,
        client_id: str = "",
        claim_certificate_id: str | None = None,
    ) -> dict[str, Json]:
        """Provision against ``template_name`` with the certificate ``token`` owns."""
        if not isinstance(token, str) or not token:
            # Real text observed on the live service [JS69].
            raise ProvisioningError(
                400,
                "InvalidCertificateOwnershipToken",
                "Certificate ownership token cannot be empty.",
            )
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in parameters.items()
        ):
            raise ProvisioningError(
                400, "InvalidParameters", "Parameters must be a map of strings."
            )
        template = self.registry.templates.get(template_name)
        if template is None or not template.enabled:
            # UNVERIFIED error code and text.
            raise ProvisioningError(
                404, "ResourceNotFound", f"Template {template_name} does not exist."
            )
        self.registry.expire_tokens()
        owned = self.registry.tokens.get(token)
        if owned is None or owned.certificate_id not in self.registry.certificates:
            raise ProvisioningError(
                400,
                "InvalidCertificateOwnershipToken",
                "Certificate ownership token is invalid or expired.",
            )
        cert = self.registry.certificates[owned.certificate_id]

        hook = self.hooks.get(template_name)
        if hook is not None:
            event = {
                "claimCertificateId": claim_certificate_id,
                "certificateId": cert.certificate_id,
                "certificatePem": cert.pem,
                "templateArn": (
                    f"arn:aws:iot:{self.region}:{self.account}:provisioningtemplate/"
                    f"{template_name}"
                ),
                "clientId": client_id,
                "parameters": dict(parameters),
            }
            try:
                answer = hook(event)
                allowed = answer.get("allowProvisioning") in (True, "true", "True")
                overrides = answer.get("parameterOverrides") or {}
            except Exception:
                allowed, overrides = False, {}  # [pre-provisioning-hook] Lambda failure
            if not allowed:
                # [pre-provisioning-hook] "fails with ACCESS_DENIED"; code/status UNVERIFIED.
                raise ProvisioningError(403, "AccessDenied", "Pre-provisioning hook denied.")
            parameters = {**parameters, **{k: str(v) for k, v in overrides.items()}}

        pseudo = {
            "AWS::IoT::Certificate::Id": cert.certificate_id,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
        }
        for key, values in subject_fields(cert.pem).items():
            if key.startswith("Subject."):
                pseudo["AWS::IoT::Certificate::" + key[len("Subject.") :]] = values[0]
        resources, device_config = evaluate_template(template.body, parameters, pseudo)
        thing_name = self._apply(resources, cert.certificate_id)

        self.registry.take_token(token)  # one use
        if thing_name is not None:
            self.registry.write_thing_credentials(thing_name, cert.pem, owned.private_key_pem)
        out: dict[str, Json] = {"deviceConfiguration": device_config}
        if thing_name is not None:
            out["thingName"] = thing_name
        return out

    def _apply(self, resources: dict[str, dict[str, Json]], cert_id: str) -> str | None:
        """Create or update the template's resources; returns the thing name, if any."""
        reg = self.registry
        thing_name = None
        policies: list[str] = []
        status = None
        for logical, res in resources.items():
            props, override = res["Properties"], res["OverrideSettings"]
            kind = res["Type"]
            if kind == "AWS::IoT::Thing":
                thing_name = self._apply_thing(props, override)
            elif kind == "AWS::IoT::Certificate":
                wanted = props.get("CertificateId")
                if wanted is not None and wanted != cert_id:
                    raise TemplateError(
                        f"Resource {logical}: only the certificate being provisioned can be used"
                    )
                raw = str(props.get("Status", ACTIVE)).upper()
                if raw not in (ACTIVE, INACTIVE):
                    raise TemplateError(f"Resource {logical}: invalid Status {raw}")
                status = raw
            elif kind == "AWS::IoT::Policy":
                policies.append(self._apply_policy(logical, props))
            else:
                raise TemplateError(f"Resource {logical}: unsupported type {kind}")
        if status is not None:
            reg.set_certificate_status(cert_id, status)
        for name in policies:
            reg.attach_policy(name, cert_id)
        if thing_name is not None:
            reg.attach_thing_principal(thing_name, cert_id)
        return thing_name

    def _apply_thing(self, props: dict[str, Json], override: dict[str, Json]) -> str:
        name = props.get("ThingName")
        if not isinstance(name, str) or not is_thing_name(name):
            raise TemplateError(f"Invalid ThingName: {name!r}")
        attributes = {k: str(v) for k, v in (props.get("AttributePayload") or {}).items()}
        groups = [str(g) for g in props.get("ThingGroups") or []]
        thing_type = props.get("ThingTypeName")
        existing = self.registry.things.get(name)
        if existing is None:
            self.registry.create_thing(name, attributes, thing_type=thing_type, groups=groups)
            return name

        def action(prop: str) -> str:
            return str(override.get(prop, "DO_NOTHING")).upper()

        for prop in ("AttributePayload", "ThingTypeName", "ThingGroups"):
            if prop in props and action(prop) == "FAIL":
                # [provision-template] FAIL -> ResourceConflictsException; status UNVERIFIED.
                raise ProvisioningError(
                    409, "ResourceConflict", f"Thing {name} already exists with {prop}."
                )
        if "AttributePayload" in props:
            if action("AttributePayload") == "REPLACE":
                existing.attributes = attributes
            elif action("AttributePayload") == "MERGE":
                existing.attributes.update(attributes)
        if "ThingTypeName" in props and action("ThingTypeName") == "REPLACE":
            existing.thing_type = thing_type
        if "ThingGroups" in props:
            if action("ThingGroups") == "REPLACE":
                existing.groups = groups
            elif action("ThingGroups") == "MERGE":
                existing.groups += [g for g in groups if g not in existing.groups]
        self.registry.save()
        return name

    def _apply_policy(self, logical: str, props: dict[str, Json]) -> str:
        name, document = props.get("PolicyName"), props.get("PolicyDocument")
        if (name is None) == (document is None):
            raise TemplateError(f"Resource {logical}: give PolicyName or PolicyDocument")
        if document is None:
            if name not in self.registry.policies:
                raise TemplateError(f"Resource {logical}: no policy named {name}")
            return str(name)
        if isinstance(document, str):
            try:
                document = json.loads(document)
            except ValueError:
                raise TemplateError(f"Resource {logical}: PolicyDocument is not JSON") from None
        # [provision-template] the name defaults to a hash of the document.
        text = json.dumps(document, sort_keys=True, separators=(",", ":"))
        name = hashlib.sha256(text.encode()).hexdigest()
        self.registry.create_policy(name, document)
        return name


def _json_bytes(obj: Json) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def register_device(
    registry: Registry,
    ca: CertificateAuthority,
    thing_name: str,
    *,
    policy_name: str = DEFAULT_POLICY_NAME,
    key_type: str = "rsa",
    region: str = DEFAULT_REGION,
    account: str = DEFAULT_ACCOUNT,
) -> tuple[str, str, str]:
    """Create a thing with a fresh ACTIVE certificate (``CN=thing_name``) and a policy.

    The policy ``policy_name`` is created as :func:`policy.default_thing_policy` if it
    does not exist. Writes ``things/<thing_name>/cert.pem`` and ``key.pem``. Returns
    ``(certificate_id, cert_pem, key_pem)``.
    """
    registry.create_thing(thing_name)
    cert_pem, key_pem = ca.issue_device_cert(thing_name, key_type=key_type)
    cert = registry.add_certificate(cert_pem, ACTIVE)
    if policy_name not in registry.policies:
        registry.create_policy(policy_name, default_thing_policy(region, account))
    registry.attach_policy(policy_name, cert.certificate_id)
    registry.attach_thing_principal(thing_name, cert.certificate_id)
    registry.write_thing_credentials(thing_name, cert_pem, key_pem)
    return cert.certificate_id, cert_pem, key_pem
