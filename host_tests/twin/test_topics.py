"""Topic rules and reserved-topic routing (aws-iot-spec §1.7, §3.1, §4.1, §5.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iot_twin import topics
from iot_twin.topics import (
    JobsRequest,
    ProvisioningRequest,
    ShadowRequest,
    parse_request,
    topic_matches,
)

# --- filter matching --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        # §1.7 AWS deviation: 'sensor/#' matches 'sensor/' and below but not 'sensor'.
        ("sensor/#", "sensor", False),
        ("sensor/#", "sensor/", True),
        ("sensor/#", "sensor/x", True),
        ("sensor/#", "sensor/x/y", True),
        ("#", "a", True),
        ("#", "a/b/c", True),
        ("+", "a", True),
        ("+", "a/b", False),
        ("+/b", "a/b", True),
        ("a/+", "a/", True),
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d", False),
        ("a/b", "a/b", True),
        ("a/b", "a/b/c", False),
        ("a/+/#", "a/b", False),
        ("a/+/#", "a/b/c", True),
        # §1.7 wildcard-first filters never match $-topics.
        ("#", "$aws/things/t/shadow/update", False),
        ("+/things/t", "$aws/things/t", False),
        ("$aws/things/+/shadow/update", "$aws/things/t/shadow/update", True),
        ("$aws/#", "$aws/things/t", True),
        # $share/{name}/ is stripped for matching.
        ("$share/g/a/#", "a/b", True),
        ("$share/g/#", "$aws/x", False),
    ],
)
def test_topic_matches_aws_semantics(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


def _reference_match(topic_filter: str, topic: str) -> bool:
    """A naive regex-free reference for hypothesis: recursive level matching."""
    f, t = topic_filter.split("/"), topic.split("/")
    if topic.startswith("$") and f[0] in ("+", "#"):
        return False

    def rec(i: int, j: int) -> bool:
        if i == len(f):
            return j == len(t)
        if f[i] == "#":
            return j < len(t)  # AWS: at least one level left
        if j == len(t):
            return False
        return (f[i] == "+" or f[i] == t[j]) and rec(i + 1, j + 1)

    return rec(0, 0)


_level = st.sampled_from(["a", "b", "", "$aws", "x y"])


@given(
    st.lists(st.sampled_from(["a", "b", "", "+"]), min_size=1, max_size=4),
    st.booleans(),
    st.lists(_level, min_size=1, max_size=5),
)
def test_topic_matches_agrees_with_reference(
    levels: list[str], hash_end: bool, names: list[str]
) -> None:
    topic_filter = "/".join([*levels, "#"] if hash_end else levels)
    topic = "/".join(names)
    assert topic_matches(topic_filter, topic) == _reference_match(topic_filter, topic)


# --- limits -----------------------------------------------------------------------------


def test_topic_length_limit_is_256_bytes() -> None:
    """§1.7: topics up to 256 bytes of UTF-8; multi-byte characters count as bytes."""
    assert topics.is_valid_topic_name("a" * 256)
    assert not topics.is_valid_topic_name("a" * 257)
    assert not topics.is_valid_topic_name("é" * 129)  # 258 bytes, 129 characters


def test_topic_slash_limit_is_seven() -> None:
    """§1.7: at most 7 forward slashes (8 levels) in a topic or filter."""
    assert topics.is_valid_topic_name("/".join("abcdefgh"))  # 7 slashes
    assert not topics.is_valid_topic_name("/".join("abcdefghi"))  # 8 slashes
    assert topics.is_valid_topic_filter("/".join([*"abcdefg", "#"]))
    assert not topics.is_valid_topic_filter("/".join([*"abcdefgh", "#"]))


def test_rules_and_share_prefixes_are_not_counted() -> None:
    """§1.7: `$aws/rules/<rule>/` and `$share/<name>/` are excluded from both limits."""
    eight_levels = "/".join("abcdefgh")
    assert topics.is_valid_topic_name("$aws/rules/myrule/" + eight_levels)
    assert not topics.is_valid_topic_name("$aws/rules/myrule/" + eight_levels + "/i")
    assert topics.is_valid_topic_filter("$share/grp/" + eight_levels)
    assert topics.is_valid_topic_filter("$share/grp/$aws/rules/r/" + eight_levels)
    assert topics.is_valid_topic_name("$aws/rules/r/" + "a" * 256)


def test_reserved_topics_fit_the_slash_limit() -> None:
    """§3.1, §4.1: the deepest reserved topics have exactly 7 slashes, so need no exemption."""
    topic = "$aws/things/t/shadow/name/s/update/documents"
    assert topic.count("/") == 7
    assert topics.is_valid_topic_name(topic)
    assert topics.is_valid_topic_filter("$aws/things/t/shadow/name/s/update/+")
    assert not topics.is_valid_topic_name(topic + "/x")


@pytest.mark.parametrize(
    "bad", ["", "a/#/b", "a#", "a/b+", "+a", "$share/", "$share/g", "$share//a", "$share/g+/a"]
)
def test_invalid_filters(bad: str) -> None:
    """§1.7: '#' last and alone, '+' alone; well-formed $share prefixes."""
    assert not topics.is_valid_topic_filter(bad)


@pytest.mark.parametrize("bad", ["", "a/+", "a/#", "a\x00b", "$share/g/a"])
def test_invalid_topic_names(bad: str) -> None:
    assert not topics.is_valid_topic_name(bad)


# --- requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (
            "$aws/things/t1/shadow/get",
            ShadowRequest("$aws/things/t1/shadow/get", "t1", None, "get"),
        ),
        (
            "$aws/things/t1/shadow/name/cfg/update",
            ShadowRequest("$aws/things/t1/shadow/name/cfg/update", "t1", "cfg", "update"),
        ),
        (
            "$aws/things/t1/shadow/delete",
            ShadowRequest("$aws/things/t1/shadow/delete", "t1", None, "delete"),
        ),
        ("$aws/things/t1/jobs/get", JobsRequest("$aws/things/t1/jobs/get", "t1", "get")),
        (
            "$aws/things/t1/jobs/start-next",
            JobsRequest("$aws/things/t1/jobs/start-next", "t1", "start-next"),
        ),
        (
            "$aws/things/t1/jobs/$next/get",
            JobsRequest("$aws/things/t1/jobs/$next/get", "t1", "describe", "$next"),
        ),
        (
            "$aws/things/t1/jobs/j-1/get",
            JobsRequest("$aws/things/t1/jobs/j-1/get", "t1", "describe", "j-1"),
        ),
        (
            "$aws/things/t1/jobs/j_1/update",
            JobsRequest("$aws/things/t1/jobs/j_1/update", "t1", "update", "j_1"),
        ),
        ("$aws/things/t1/jobs/bogus", JobsRequest("$aws/things/t1/jobs/bogus", "t1", "invalid")),
        (
            "$aws/things/t1/jobs/$next/update",
            JobsRequest("$aws/things/t1/jobs/$next/update", "t1", "invalid"),
        ),
        (
            "$aws/certificates/create/json",
            ProvisioningRequest("$aws/certificates/create/json", "create-keys", "json"),
        ),
        (
            "$aws/certificates/create-from-csr/cbor",
            ProvisioningRequest(
                "$aws/certificates/create-from-csr/cbor", "create-from-csr", "cbor"
            ),
        ),
        (
            "$aws/provisioning-templates/tpl/provision/json",
            ProvisioningRequest(
                "$aws/provisioning-templates/tpl/provision/json", "register-thing", "json", "tpl"
            ),
        ),
    ],
)
def test_parse_request(topic: str, expected: object) -> None:
    assert parse_request(topic) == expected


@pytest.mark.parametrize(
    "topic",
    [
        "a/b",
        "$aws/things/t1/shadow/update/accepted",  # a response topic, not a request
        "$aws/things/t1/shadow/update/delta",
        "$aws/things/t1/shadow/bogus",
        "$aws/things/t1/shadow/name/s",
        "$aws/things/bad name/shadow/get",
        "$aws/things/" + "t" * 129 + "/shadow/get",  # §3.1 thing name <= 128
        "$aws/things/t1/shadow/name/" + "s" * 65 + "/get",  # shadow name <= 64
        "$aws/things/t1/jobs/notify",
        "$aws/things/t1/jobs/notify-next",
        "$aws/things/t1/jobs/get/accepted",
        "$aws/things/t1/jobs/j1/update/rejected",
        "$aws/certificates/create/xml",
        "$aws/certificates/create/json/accepted",
        "$aws/provisioning-templates/" + "x" * 37 + "/provision/json",  # §5.1 name <= 36
    ],
)
def test_non_requests(topic: str) -> None:
    assert parse_request(topic) is None


def test_request_response_topics() -> None:
    req = parse_request("$aws/things/t1/shadow/name/s/update")
    assert isinstance(req, ShadowRequest)
    assert req.accepted == "$aws/things/t1/shadow/name/s/update/accepted"
    assert req.rejected == "$aws/things/t1/shadow/name/s/update/rejected"
    assert (
        topics.shadow_topic("t1", "s", "update/delta")
        == "$aws/things/t1/shadow/name/s/update/delta"
    )
    assert (
        topics.shadow_topic("t1", None, "update/documents")
        == "$aws/things/t1/shadow/update/documents"
    )
    assert topics.jobs_topic("t1", "notify-next") == "$aws/things/t1/jobs/notify-next"
    assert topics.provisioning_topic("register-thing", "cbor", "x") == (
        "$aws/provisioning-templates/x/provision/cbor"
    )


def test_parse_shadow_topic_matches_like_the_embedded_library() -> None:
    """§3.1 Shadow_MatchTopicString: only AWS's suffixes, nothing extra."""
    assert topics.parse_shadow_topic("$aws/things/t/shadow/update/delta") == (
        "t",
        None,
        "update/delta",
    )
    assert topics.parse_shadow_topic("$aws/things/t/shadow/name/s/get/rejected") == (
        "t",
        "s",
        "get/rejected",
    )
    assert topics.parse_shadow_topic("$aws/things/t/shadow/update/deltax") is None
    assert topics.parse_shadow_topic("$aws/things/t/shadow/name//get") is None
