"""AWS IoT Core policy evaluation for ``iot:Connect``, ``Publish``, ``Subscribe``,
``Receive`` and ``RetainPublish``.

Semantics, from the AWS IoT developer guide's policy pages:

* explicit ``Deny`` wins; otherwise any matching ``Allow`` allows; otherwise denied;
* resources are ARNs ``arn:aws:iot:{region}:{account}:client/{clientId}``,
  ``topic/{topic}`` (Publish, Receive, RetainPublish) and ``topicfilter/{filter}``
  (Subscribe); ``*`` matches any run of characters (``/`` included) and ``?`` one;
* MQTT wildcards in a ``topicfilter`` resource are literal characters: subscribing to
  ``a/#`` needs a resource matching the text ``a/#`` [pub-sub-policy];
* policy variables ``${iot:ClientId}``, ``${iot:Connection.Thing.ThingName}``,
  ``...ThingTypeName``, ``...Attributes[name]``, ``...IsAttached``,
  ``${iot:Certificate.Subject.CommonName}`` and the other certificate fields (with ``.N``
  index and ``.List``), ``${aws:SourceIp}``. A variable with no value stays as literal
  text, so the resource will not match [cert-policy-variables]; substituted values are
  matched literally, so a client id of ``*`` cannot widen a resource;
* ``Condition`` operators ``String(Not)Equals(IgnoreCase)``, ``String(Not)Like``,
  ``Bool``, ``Null``, ``ArnEquals``/``ArnLike``, with ``ForAnyValue:``/``ForAllValues:``
  and ``...IfExists``. An unknown operator raises :class:`PolicyError` (the caller denies).

``NotAction`` and ``NotResource`` follow IAM; AWS IoT's support for them is UNVERIFIED and
only :func:`default_thing_policy` relies on ``NotResource``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Json = Any

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"

CONNECT = "iot:Connect"
PUBLISH = "iot:Publish"
SUBSCRIBE = "iot:Subscribe"
RECEIVE = "iot:Receive"
RETAIN_PUBLISH = "iot:RetainPublish"

_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_MAX_CERT_VALUE_CHARS = 1024  # [cert-policy-variables]


class PolicyError(ValueError):
    """A policy the evaluator cannot interpret."""


@dataclass
class PolicyContext:
    """What a connection's policies are evaluated against.

    ``thing_name`` is the thing the connection acts as: the endpoint sets it when the
    client's certificate is attached to a thing whose name equals the client id
    [thing-policy-variables]; ``is_attached`` says the same as a boolean.
    ``certificate`` maps ``Subject.CommonName``-style keys to values (see
    :func:`iot_twin.ca.subject_fields`).
    """

    client_id: str
    thing_name: str | None = None
    is_attached: bool = False
    thing_type: str | None = None
    thing_attributes: dict[str, str] = field(default_factory=dict)
    certificate: dict[str, list[str]] = field(default_factory=dict)
    certificate_id: str | None = None
    source_ip: str | None = None
    region: str = DEFAULT_REGION
    account: str = DEFAULT_ACCOUNT
    # iot:ConnectAttributes of the CONNECT being authorised (see connect_attributes()).
    connect_attributes: list[str] = field(default_factory=list)

    def value(self, name: str) -> str | list[str] | None:
        """The value of policy variable / condition key ``name`` (None if it has none)."""
        if name == "iot:ClientId":
            return self.client_id
        if name == "iot:ConnectAttributes":
            return list(self.connect_attributes)
        if name == "aws:SourceIp":
            return self.source_ip
        thing_prefixes = ("iot:Connection.Thing.", "iot:Thing.")
        for prefix in thing_prefixes:
            if name.startswith(prefix):
                return self._thing_value(name[len(prefix) :])
        if name.startswith("iot:Certificate."):
            return self._cert_value(name[len("iot:Certificate.") :])
        return None

    def _thing_value(self, key: str) -> str | None:
        if key == "IsAttached":
            return "true" if self.is_attached else "false"
        if self.thing_name is None:
            return None
        if key == "ThingName":
            return self.thing_name
        if key == "ThingTypeName":
            return self.thing_type
        if key.startswith("Attributes[") and key.endswith("]"):
            return self.thing_attributes.get(key[len("Attributes[") : -1])
        return None

    def _cert_value(self, key: str) -> str | list[str] | None:
        if key == "Id":
            return self.certificate_id
        if key == "AvailableKeys":
            return sorted(self.certificate)
        if key.endswith(".List"):
            values = self.certificate.get(key[: -len(".List")])
            return list(values[:5]) if values else None  # arrays limited to five items
        index = 0
        base, _, last = key.rpartition(".")
        if base and last.isdigit():
            key, index = base, int(last)
        values = self.certificate.get(key)
        if not values or index >= len(values):
            return None  # no substitution; authorization fails [cert-policy-variables]
        value = values[index]
        if "*" in value or "?" in value or len(value) > _MAX_CERT_VALUE_CHARS:
            return None
        return value


PERSISTENT_CONNECT = "PersistentConnect"
LAST_WILL = "LastWill"


def connect_attributes(clean_start: bool, has_will: bool) -> list[str]:
    """``iot:ConnectAttributes`` of a CONNECT [connect-policy] (aws-iot-spec §1.5):
    ``PersistentConnect`` when it asks for a persistent session (Clean Start / clean
    session 0), ``LastWill`` when it carries a will. A clean CONNECT without a will has
    none, so ``ForAllValues:`` conditions hold for it and ``ForAnyValue:`` ones do not."""
    out = []
    if not clean_start:
        out.append(PERSISTENT_CONNECT)
    if has_will:
        out.append(LAST_WILL)
    return out


def resource_arn(
    kind: str, name: str, region: str = DEFAULT_REGION, account: str = DEFAULT_ACCOUNT
) -> str:
    """``arn:aws:iot:{region}:{account}:{kind}/{name}``; kind is client, topic or topicfilter."""
    return f"arn:aws:iot:{region}:{account}:{kind}/{name}"


def _pattern_regex(
    pattern: str, ctx: PolicyContext, *, ignore_case: bool = False
) -> re.Pattern[str]:
    """Compile a resource / StringLike pattern: ``*``, ``?`` wild, variables literal."""
    parts: list[str] = []
    pos = 0
    for m in _VARIABLE.finditer(pattern):
        parts.append(_glob_part(pattern[pos : m.start()]))
        value = ctx.value(m.group(1))
        parts.append(re.escape(value if isinstance(value, str) else m.group(0)))
        pos = m.end()
    parts.append(_glob_part(pattern[pos:]))
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _glob_part(text: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)


def _substitute(text: str, ctx: PolicyContext) -> str:
    def repl(m: re.Match[str]) -> str:
        value = ctx.value(m.group(1))
        return value if isinstance(value, str) else m.group(0)

    return _VARIABLE.sub(repl, text)


def _as_list(value: Json) -> list[Json]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _action_matches(patterns: list[Json], action: str) -> bool:
    return any(
        isinstance(p, str) and fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns
    )


def _resource_matches(patterns: list[Json], resource: str, ctx: PolicyContext) -> bool:
    return any(isinstance(p, str) and _pattern_regex(p, ctx).fullmatch(resource) for p in patterns)


def _compare(op: str, actual: str, wanted: str, ctx: PolicyContext) -> bool:
    if op in ("StringEquals", "ArnEquals"):
        return actual == _substitute(wanted, ctx)
    if op == "StringEqualsIgnoreCase":
        return actual.lower() == _substitute(wanted, ctx).lower()
    if op in ("StringLike", "ArnLike"):
        return _pattern_regex(wanted, ctx).fullmatch(actual) is not None
    if op == "Bool":
        return actual.lower() == str(wanted).lower()
    raise PolicyError(f"unsupported condition operator: {op}")


_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


_OPERATORS = frozenset({*_NEGATED, *_NEGATED.values(), "StringEqualsIgnoreCase", "Bool", "Null"})


def _condition_holds(op: str, key: str, wanted: Json, ctx: PolicyContext) -> bool:
    quantifier = None
    if ":" in op and op.split(":", 1)[0] in ("ForAnyValue", "ForAllValues"):
        quantifier, op = op.split(":", 1)
    if_exists = op.endswith("IfExists")
    if if_exists:
        op = op[: -len("IfExists")]
    if op not in _OPERATORS:
        raise PolicyError(f"unsupported condition operator: {op}")
    wanted_values = [str(w).lower() if isinstance(w, bool) else str(w) for w in _as_list(wanted)]
    actual = ctx.value(key)
    if op == "Null":
        return (actual is None) == (wanted_values[:1] == ["true"])
    if actual is None:
        return if_exists or quantifier == "ForAllValues"
    actuals = actual if isinstance(actual, list) else [actual]
    negated = op in _NEGATED
    base = _NEGATED.get(op, op)

    def one(value: str) -> bool:
        hit = any(_compare(base, value, w, ctx) for w in wanted_values)
        return not hit if negated else hit

    if quantifier == "ForAllValues":
        return all(one(v) for v in actuals)
    return any(one(v) for v in actuals)


def _conditions_hold(conditions: Json, ctx: PolicyContext) -> bool:
    if not conditions:
        return True
    if not isinstance(conditions, dict):
        raise PolicyError("Condition must be an object")
    for op, block in conditions.items():
        if not isinstance(block, dict):
            raise PolicyError(f"Condition {op} must be an object")
        for key, wanted in block.items():
            if not _condition_holds(op, key, wanted, ctx):
                return False
    return True


def _statement_applies(
    stmt: dict[str, Json], action: str, resource: str, ctx: PolicyContext
) -> bool:
    if "Action" in stmt:
        if not _action_matches(_as_list(stmt["Action"]), action):
            return False
    elif "NotAction" in stmt:
        if _action_matches(_as_list(stmt["NotAction"]), action):
            return False
    else:
        return False
    if "Resource" in stmt:
        if not _resource_matches(_as_list(stmt["Resource"]), resource, ctx):
            return False
    elif "NotResource" in stmt:
        if _resource_matches(_as_list(stmt["NotResource"]), resource, ctx):
            return False
    else:
        return False
    return _conditions_hold(stmt.get("Condition"), ctx)


def is_allowed(
    policies: Iterable[dict[str, Json]], action: str, resource: str, ctx: PolicyContext
) -> bool:
    """Evaluate ``action`` on the ARN ``resource`` against every statement of ``policies``."""
    allowed = False
    for policy in policies:
        for stmt in _as_list(policy.get("Statement")):
            if not isinstance(stmt, dict):
                raise PolicyError("a Statement must be an object")
            effect = stmt.get("Effect")
            if effect not in ("Allow", "Deny"):
                raise PolicyError(f"invalid Effect: {effect!r}")
            if _statement_applies(stmt, action, resource, ctx):
                if effect == "Deny":
                    return False  # explicit deny wins
                allowed = True
    return allowed


def can_connect(policies: Iterable[dict[str, Json]], ctx: PolicyContext) -> bool:
    """``iot:Connect`` on ``client/{clientId}``."""
    return is_allowed(
        policies, CONNECT, resource_arn("client", ctx.client_id, ctx.region, ctx.account), ctx
    )


def can_publish(
    policies: Iterable[dict[str, Json]], topic: str, ctx: PolicyContext, *, retain: bool = False
) -> bool:
    """``iot:Publish`` on ``topic/{topic}``, and ``iot:RetainPublish`` too if ``retain``."""
    arn = resource_arn("topic", topic, ctx.region, ctx.account)
    policies = list(policies)
    if not is_allowed(policies, PUBLISH, arn, ctx):
        return False
    return not retain or is_allowed(policies, RETAIN_PUBLISH, arn, ctx)


def can_subscribe(
    policies: Iterable[dict[str, Json]], topic_filter: str, ctx: PolicyContext
) -> bool:
    """``iot:Subscribe`` on ``topicfilter/{filter}`` (``+`` and ``#`` literal)."""
    return is_allowed(
        policies,
        SUBSCRIBE,
        resource_arn("topicfilter", topic_filter, ctx.region, ctx.account),
        ctx,
    )


def can_receive(policies: Iterable[dict[str, Json]], topic: str, ctx: PolicyContext) -> bool:
    """``iot:Receive`` on ``topic/{topic}`` (checked per delivered message)."""
    return is_allowed(
        policies, RECEIVE, resource_arn("topic", topic, ctx.region, ctx.account), ctx
    )


def default_thing_policy(
    region: str = DEFAULT_REGION, account: str = DEFAULT_ACCOUNT
) -> dict[str, Json]:
    """The twin's policy for a registered thing.

    Connect with the thing name as client id; publish, receive and subscribe on the
    thing's own shadow and jobs topics and the fleet provisioning topics; and any
    topic outside the reserved ``$`` namespace (via ``NotResource``), shared
    subscriptions (``$share/{name}/{filter}``) to such topics included.
    """

    def arn(kind: str, name: str) -> str:
        return resource_arn(kind, name, region, account)

    thing = "${iot:Connection.Thing.ThingName}"
    reserved = [
        f"$aws/things/{thing}/shadow/*",
        f"$aws/things/{thing}/jobs/*",
        "$aws/certificates/create/*",
        "$aws/certificates/create-from-csr/*",
        "$aws/provisioning-templates/*/provision/*",
    ]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": CONNECT, "Resource": arn("client", thing)},
            {
                "Effect": "Allow",
                "Action": [PUBLISH, RECEIVE],
                "Resource": [arn("topic", t) for t in reserved],
            },
            {
                "Effect": "Allow",
                "Action": SUBSCRIBE,
                "Resource": [arn("topicfilter", t) for t in reserved],
            },
            {
                "Effect": "Allow",
                "Action": [PUBLISH, RECEIVE, RETAIN_PUBLISH],
                "NotResource": arn("topic", "$*"),
            },
            {"Effect": "Allow", "Action": SUBSCRIBE, "NotResource": arn("topicfilter", "$*")},
            # Shared subscriptions ($share/{name}/{filter}, §1.10) to non-reserved topics;
            # the iot:Subscribe resource is the filter as sent, $share prefix included.
            {"Effect": "Allow", "Action": SUBSCRIBE, "Resource": arn("topicfilter", "$share/*")},
            {"Effect": "Deny", "Action": SUBSCRIBE, "Resource": arn("topicfilter", "$share/*/$*")},
        ],
    }


def claim_policy(
    template: str = "*", region: str = DEFAULT_REGION, account: str = DEFAULT_ACCOUNT
) -> dict[str, Json]:
    """A fleet-provisioning claim certificate's policy (aws-iot-spec §5.3).

    Connect with any client id; publish/receive/subscribe only on the certificate
    topics (both ``create`` and ``create-from-csr``) and ``template``'s provision topics.
    """
    topics = [
        "$aws/certificates/create/*",
        "$aws/certificates/create-from-csr/*",
        f"$aws/provisioning-templates/{template}/provision/*",
    ]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": CONNECT,
                "Resource": resource_arn("client", "*", region, account),
            },
            {
                "Effect": "Allow",
                "Action": [PUBLISH, RECEIVE],
                "Resource": [resource_arn("topic", t, region, account) for t in topics],
            },
            {
                "Effect": "Allow",
                "Action": SUBSCRIBE,
                "Resource": [resource_arn("topicfilter", t, region, account) for t in topics],
            },
        ],
    }
