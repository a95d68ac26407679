"""AWS IoT Core topic rules and the reserved service topics the twin answers.

Three jobs, all pure string work:

* validate topic names and filters against AWS's limits (aws-iot-spec §1.7);
* match filters to topics the AWS way (``a/#`` does not match ``a``; filters that start with
  a wildcard never match ``$`` topics);
* recognise requests on the reserved Device Shadow, Jobs and Fleet Provisioning topics
  (§3.1, §4.1, §5.1) and build the topics the answers go to.

Parsers return a small frozen request object, or ``None`` for a topic that is not a request
this twin serves (response topics such as ``.../update/accepted`` included: those are
ordinary topics the broker routes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_TOPIC_BYTES = 256  # [QUOTAS-OLD] topic and filter, after the uncounted prefixes
MAX_TOPIC_SLASHES = 7  # [QUOTAS-OLD] at most 8 levels
MAX_SHARE_NAME_CHARS = 128  # [MQTT-DOC] $share/{ShareName}/...

_THING_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}\Z")  # [JOBS-MODEL], [SHADOW-LIB]
_SHADOW_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,64}\Z")  # [SHADOW-LIB]
_JOB_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}\Z")  # [JOBS-LIB]
_TEMPLATE_NAME = re.compile(r"[0-9A-Za-z_-]{1,36}\Z")  # [FP-LIB]

SHADOW_OPS = ("get", "update", "delete")
PAYLOAD_FORMATS = ("json", "cbor")
NEXT_JOB = "$next"


def is_thing_name(name: str) -> bool:
    """True if ``name`` is a legal thing name (1-128 of ``[a-zA-Z0-9:_-]``)."""
    return _THING_NAME.match(name) is not None


def is_shadow_name(name: str) -> bool:
    """True if ``name`` is a legal named-shadow name (1-64 of ``[a-zA-Z0-9:_-]``)."""
    return _SHADOW_NAME.match(name) is not None


def is_job_id(job_id: str) -> bool:
    """True if ``job_id`` is a legal job id (1-64 of ``[a-zA-Z0-9_-]``)."""
    return _JOB_ID.match(job_id) is not None


# --- limits -----------------------------------------------------------------------------


def _skip_uncounted_prefix(topic: str) -> str | None:
    """Drop ``$share/<name>/`` then ``$aws/rules/<rule>/``; None if a prefix is malformed.

    [QUOTAS-OLD] excludes the Basic Ingest prefix from both limits, [MQTT-DOC] the shared
    subscription prefix; the CRT skips them in this order [CRT-MQTT].
    """
    if topic.startswith("$share/"):
        parts = topic.split("/", 2)
        if len(parts) < 3 or not parts[1] or not parts[2]:
            return None
        name = parts[1]
        if len(name) > MAX_SHARE_NAME_CHARS or "+" in name or "#" in name:
            return None
        topic = parts[2]
    if topic.startswith("$aws/rules/"):
        parts = topic.split("/", 3)
        if len(parts) < 4 or not parts[2] or not parts[3]:
            return None
        topic = parts[3]
    return topic


def _limit_problem(counted: str) -> str | None:
    if len(counted.encode("utf-8")) > MAX_TOPIC_BYTES:
        return "topic longer than 256 bytes"
    # AWS's own reserved topics fit: the longest, a named shadow's
    # $aws/things/t/shadow/name/s/update/documents, has exactly 7 slashes.
    if counted.count("/") > MAX_TOPIC_SLASHES:
        return "more than 7 forward slashes"
    return None


def topic_name_problem(topic: str) -> str | None:
    """Why ``topic`` may not be published to on AWS IoT Core, or None if it may.

    Checks MQTT well-formedness (non-empty, no wildcards, no NUL) and the AWS limits of
    aws-iot-spec §1.7. Whether a ``$`` topic is a supported reserved topic is the
    endpoint's business, not this function's.
    """
    if not topic:
        return "empty topic"
    if "+" in topic or "#" in topic:
        return "wildcard in topic name"
    if "\x00" in topic:
        return "NUL character in topic"
    if topic.startswith("$share/"):
        return "$share/ is for topic filters only"
    counted = _skip_uncounted_prefix(topic)
    if counted is None:
        return "malformed $aws/rules/ prefix"
    return _limit_problem(counted)


def topic_filter_problem(topic_filter: str) -> str | None:
    """Why ``topic_filter`` may not be subscribed to on AWS IoT Core, or None if it may."""
    if not topic_filter:
        return "empty topic filter"
    if "\x00" in topic_filter:
        return "NUL character in topic filter"
    counted = _skip_uncounted_prefix(topic_filter)
    if counted is None:
        return "malformed $share/ or $aws/rules/ prefix"
    levels = _strip_share(topic_filter).split("/")
    for i, level in enumerate(levels):
        # [TOPICS] '#' must be last and alone in its level; '+' alone in its level.
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be the whole last level"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return _limit_problem(counted)


def is_valid_topic_name(topic: str) -> bool:
    """True if AWS IoT Core accepts a PUBLISH to ``topic`` (see :func:`topic_name_problem`)."""
    return topic_name_problem(topic) is None


def is_valid_topic_filter(topic_filter: str) -> bool:
    """True if AWS IoT Core accepts a SUBSCRIBE to ``topic_filter``."""
    return topic_filter_problem(topic_filter) is None


def _strip_share(topic_filter: str) -> str:
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        if len(parts) == 3:
            return parts[2]
    return topic_filter


def share_group(topic_filter: str) -> tuple[str | None, str]:
    """Split ``$share/{name}/{filter}`` into ``(name, filter)``; ``(None, f)`` otherwise."""
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        if len(parts) == 3:
            return parts[1], parts[2]
    return None, topic_filter


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True if a subscription to ``topic_filter`` receives messages published to ``topic``.

    AWS semantics (aws-iot-spec §1.7): ``sensor/#`` matches ``sensor/``, ``sensor/x`` and
    ``sensor/x/y`` but not ``sensor`` (the MQTT spec says it should); a filter whose first
    level is ``+`` or ``#`` never matches a topic starting with ``$``. A ``$share/{name}/``
    prefix is ignored. The filter is assumed valid.
    """
    levels = _strip_share(topic_filter).split("/")
    names = topic.split("/")
    if topic.startswith("$") and levels[0] in ("+", "#"):
        return False
    for i, level in enumerate(levels):
        if level == "#":
            # The AWS deviation: '#' needs a level to stand for, even an empty one.
            return len(names) > i
        if i >= len(names):
            return False
        if level != "+" and level != names[i]:
            return False
    return len(names) == len(levels)


# --- requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ShadowRequest:
    """A Device Shadow request: ``op`` is ``get``, ``update`` or ``delete`` (§3.1)."""

    topic: str
    thing: str
    shadow: str | None  # None for the classic (unnamed) shadow
    op: str

    @property
    def accepted(self) -> str:
        return self.topic + "/accepted"

    @property
    def rejected(self) -> str:
        return self.topic + "/rejected"


@dataclass(frozen=True)
class JobsRequest:
    """A Jobs device API request (§4.1).

    ``op`` is ``get`` (GetPendingJobExecutions), ``start-next``, ``describe``
    (``{jobId}/get``, ``job_id`` may be ``$next``), ``update`` (``{jobId}/update``) or
    ``invalid`` for a topic in the jobs namespace that maps to no API (answered with
    ``InvalidTopic``).
    """

    topic: str
    thing: str
    op: str
    job_id: str | None = None

    @property
    def accepted(self) -> str:
        return self.topic + "/accepted"

    @property
    def rejected(self) -> str:
        return self.topic + "/rejected"


@dataclass(frozen=True)
class ProvisioningRequest:
    """A Fleet Provisioning request (§5.1).

    ``op`` is ``create-keys`` (CreateKeysAndCertificate), ``create-from-csr``
    (CreateCertificateFromCsr) or ``register-thing``; ``fmt`` is ``json`` or ``cbor``.
    """

    topic: str
    op: str
    fmt: str
    template: str | None = None

    @property
    def accepted(self) -> str:
        return self.topic + "/accepted"

    @property
    def rejected(self) -> str:
        return self.topic + "/rejected"


Request = ShadowRequest | JobsRequest | ProvisioningRequest


def parse_shadow_request(topic: str) -> ShadowRequest | None:
    """Recognise ``$aws/things/{thing}/shadow[/name/{shadow}]/{get,update,delete}``."""
    if not topic.startswith("$aws/things/"):
        return None
    parts = topic.split("/")
    # ['$aws', 'things', thing, 'shadow', op] or [..., 'shadow', 'name', shadow, op]
    if len(parts) == 5 and parts[3] == "shadow":
        thing, shadow, op = parts[2], None, parts[4]
    elif len(parts) == 7 and parts[3] == "shadow" and parts[4] == "name":
        thing, shadow, op = parts[2], parts[5], parts[6]
        if not is_shadow_name(shadow):
            return None
    else:
        return None
    if op not in SHADOW_OPS or not is_thing_name(thing):
        return None
    return ShadowRequest(topic, thing, shadow, op)


def parse_jobs_request(topic: str) -> JobsRequest | None:
    """Recognise the Jobs device API topics under ``$aws/things/{thing}/jobs/``.

    Notification and response topics (``notify``, ``notify-next``, ``.../accepted``,
    ``.../rejected``) are not requests and give None.
    """
    if not topic.startswith("$aws/things/"):
        return None
    parts = topic.split("/")
    if len(parts) < 5 or parts[3] != "jobs" or not is_thing_name(parts[2]):
        return None
    thing, rest = parts[2], parts[4:]
    if rest[-1] in ("accepted", "rejected") or rest in (["notify"], ["notify-next"]):
        return None
    if rest == ["get"]:
        return JobsRequest(topic, thing, "get")
    if rest == ["start-next"]:
        return JobsRequest(topic, thing, "start-next")
    if len(rest) == 2 and rest[1] in ("get", "update"):
        job_id = rest[0]
        if job_id == NEXT_JOB and rest[1] == "get":
            return JobsRequest(topic, thing, "describe", job_id)
        if is_job_id(job_id):
            return JobsRequest(topic, thing, "describe" if rest[1] == "get" else "update", job_id)
    # [JOBS-ERR] a topic in the jobs namespace that maps to no API -> InvalidTopic.
    return JobsRequest(topic, thing, "invalid")


def parse_provisioning_request(topic: str) -> ProvisioningRequest | None:
    """Recognise CreateKeysAndCertificate, CreateCertificateFromCsr and RegisterThing."""
    parts = topic.split("/")
    if len(parts) == 4 and parts[:2] == ["$aws", "certificates"] and parts[3] in PAYLOAD_FORMATS:
        if parts[2] == "create":
            return ProvisioningRequest(topic, "create-keys", parts[3])
        if parts[2] == "create-from-csr":
            return ProvisioningRequest(topic, "create-from-csr", parts[3])
        return None
    if (
        len(parts) == 5
        and parts[:2] == ["$aws", "provisioning-templates"]
        and parts[3] == "provision"
        and parts[4] in PAYLOAD_FORMATS
        and _TEMPLATE_NAME.match(parts[2])
    ):
        return ProvisioningRequest(topic, "register-thing", parts[4], parts[2])
    return None


def parse_request(topic: str) -> Request | None:
    """The service request ``topic`` carries, or None if the twin does not serve it."""
    if topic.startswith("$aws/things/"):
        return parse_shadow_request(topic) or parse_jobs_request(topic)
    if topic.startswith(("$aws/certificates/", "$aws/provisioning-templates/")):
        return parse_provisioning_request(topic)
    return None


# --- topic builders ---------------------------------------------------------------------


def shadow_prefix(thing: str, shadow: str | None = None) -> str:
    """``$aws/things/{thing}/shadow`` or ``.../shadow/name/{shadow}``."""
    base = "$aws/things/" + thing + "/shadow"
    return base if shadow is None else base + "/name/" + shadow


def shadow_topic(thing: str, shadow: str | None, suffix: str) -> str:
    """A shadow topic, e.g. ``shadow_topic("t", None, "update/delta")``."""
    return shadow_prefix(thing, shadow) + "/" + suffix


def jobs_topic(thing: str, suffix: str) -> str:
    """A jobs topic, e.g. ``jobs_topic("t", "notify-next")`` or ``"j1/update/accepted"``."""
    return "$aws/things/" + thing + "/jobs/" + suffix


def provisioning_topic(op: str, fmt: str = "json", template: str | None = None) -> str:
    """The request topic of a Fleet Provisioning operation (see :class:`ProvisioningRequest`)."""
    if op == "create-keys":
        return "$aws/certificates/create/" + fmt
    if op == "create-from-csr":
        return "$aws/certificates/create-from-csr/" + fmt
    if op == "register-thing" and template:
        return "$aws/provisioning-templates/" + template + "/provision/" + fmt
    raise ValueError("unknown provisioning operation: " + op)


def parse_shadow_topic(topic: str) -> tuple[str, str | None, str] | None:
    """Split any shadow topic into ``(thing, shadow, suffix)``, like the embedded library.

    ``suffix`` is what follows the shadow prefix, e.g. ``update/delta``. Only the suffixes
    AWS defines are recognised [SHADOW-LIB].
    """
    if not topic.startswith("$aws/things/"):
        return None
    thing, sep, rest = topic[len("$aws/things/") :].partition("/")
    if not sep or not is_thing_name(thing) or not rest.startswith("shadow/"):
        return None
    rest = rest[len("shadow/") :]
    shadow = None
    if rest.startswith("name/"):
        shadow, sep, rest = rest[len("name/") :].partition("/")
        if not sep or not is_shadow_name(shadow):
            return None
    suffixes = set(SHADOW_OPS)
    suffixes |= {op + "/" + r for op in SHADOW_OPS for r in ("accepted", "rejected")}
    suffixes |= {"update/delta", "update/documents"}
    return (thing, shadow, rest) if rest in suffixes else None
