"""AWS IoT policy evaluation (aws-iot-spec §2.3, §8 item 7; the guide's policy pages)."""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iot_twin import policy as pol
from iot_twin.policy import PolicyContext, PolicyError, resource_arn

ARN = "arn:aws:iot:us-east-1:123456789012"


def doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource}


CTX = PolicyContext(client_id="dev1", thing_name="dev1", is_attached=True)


def test_explicit_deny_wins() -> None:
    """Explicit Deny beats Allow, across policies too; nothing matching means denied."""
    p = doc(
        allow("iot:Publish", f"{ARN}:topic/dev1/*"), deny("iot:Publish", f"{ARN}:topic/dev1/bar")
    )
    assert pol.can_publish([p], "dev1/foo", CTX)
    assert not pol.can_publish([p], "dev1/bar", CTX)
    assert not pol.can_publish([p], "other", CTX)
    other = doc(deny("iot:*", "*"))
    assert not pol.can_publish([p, other], "dev1/foo", CTX)


def test_star_and_question_mark_wildcards() -> None:
    p = doc(allow("iot:Publish", [f"{ARN}:topic/a/*", f"{ARN}:topic/b?"]))
    assert pol.can_publish([p], "a/x/y", CTX)  # '*' crosses '/'
    assert pol.can_publish([p], "bz", CTX)
    assert not pol.can_publish([p], "bzz", CTX)
    assert not pol.can_publish([p], "a", CTX)


def test_topicfilter_wildcards_are_literal() -> None:
    """[pub-sub-policy]: '+' and '#' in a topicfilter resource are literal characters."""
    p = doc(allow("iot:Subscribe", f"{ARN}:topicfilter/some/+/topic"))
    assert pol.can_subscribe([p], "some/+/topic", CTX)
    assert not pol.can_subscribe([p], "some/x/topic", CTX)
    assert not pol.can_subscribe([p], "some/#", CTX)
    p = doc(allow("iot:Subscribe", f"{ARN}:topicfilter/a/*"))
    assert pol.can_subscribe([p], "a/#", CTX)  # '*' matches the text '#'


def test_connect_resource_and_client_id_variable() -> None:
    p = doc(allow("iot:Connect", f"{ARN}:client/${{iot:ClientId}}"))
    assert pol.can_connect([p], PolicyContext(client_id="anything"))
    p = doc(allow("iot:Connect", f"{ARN}:client/${{iot:Connection.Thing.ThingName}}"))
    assert pol.can_connect([p], CTX)
    # Unattached certificate: the thing variable has no value and stays literal.
    assert not pol.can_connect([p], PolicyContext(client_id="dev1"))


def test_substituted_values_are_literal() -> None:
    """A client id of '*' must not turn into a wildcard ([basic-policy-variables] warns)."""
    p = doc(allow("iot:Publish", f"{ARN}:topic/${{iot:ClientId}}/data"))
    ctx = PolicyContext(client_id="*")
    assert pol.can_publish([p], "*/data", ctx)
    assert not pol.can_publish([p], "dev2/data", ctx)


def test_is_attached_condition() -> None:
    """[thing-policy-variables]: Bool condition on iot:Connection.Thing.IsAttached."""
    p = doc(
        allow(
            "iot:Connect", "*", Condition={"Bool": {"iot:Connection.Thing.IsAttached": ["true"]}}
        )
    )
    assert pol.can_connect([p], CTX)
    assert not pol.can_connect([p], PolicyContext(client_id="dev1"))


def test_thing_attributes_and_certificate_variables() -> None:
    ctx = PolicyContext(
        client_id="dev1",
        thing_name="dev1",
        is_attached=True,
        thing_attributes={"site": "lab"},
        certificate={
            "Subject.CommonName": ["cn1"],
            "Subject.Organization": ["Example Corp", "AnyCompany"],
        },
    )
    p = doc(
        allow("iot:Publish", f"{ARN}:topic/${{iot:Connection.Thing.Attributes[site]}}/*"),
        allow("iot:Publish", f"{ARN}:topic/cn/${{iot:Certificate.Subject.CommonName}}"),
        allow("iot:Publish", f"{ARN}:topic/org/${{iot:Certificate.Subject.Organization.1}}"),
    )
    assert pol.can_publish([p], "lab/x", ctx)
    assert pol.can_publish([p], "cn/cn1", ctx)
    assert pol.can_publish([p], "org/AnyCompany", ctx)
    assert not pol.can_publish([p], "org/Example Corp", ctx)
    cond = {
        "ForAllValues:StringEquals": {
            "iot:Certificate.Subject.Organization.List": ["Example Corp", "AnyCompany"]
        }
    }
    p = doc(allow("iot:Publish", "*", Condition=cond))
    assert pol.can_publish([p], "t", ctx)
    ctx.certificate["Subject.Organization"].append("Evil")
    assert not pol.can_publish([p], "t", ctx)


def test_wildcard_in_certificate_value_is_not_substituted() -> None:
    """[cert-policy-variables]: a certificate value with '*' leaves ${...} in place."""
    ctx = PolicyContext(client_id="c", certificate={"Subject.CommonName": ["a*"]})
    p = doc(allow("iot:Publish", f"{ARN}:topic/${{iot:Certificate.Subject.CommonName}}"))
    assert not pol.can_publish([p], "a*", ctx)
    assert not pol.can_publish([p], "abc", ctx)


def test_string_conditions() -> None:
    p = doc(allow("iot:Connect", "*", Condition={"StringLike": {"iot:ClientId": "sensor-*"}}))
    assert pol.can_connect([p], PolicyContext(client_id="sensor-1"))
    assert not pol.can_connect([p], PolicyContext(client_id="x"))
    p = doc(allow("iot:Connect", "*", Condition={"StringNotEquals": {"iot:ClientId": ["a", "b"]}}))
    assert pol.can_connect([p], PolicyContext(client_id="c"))
    assert not pol.can_connect([p], PolicyContext(client_id="a"))
    p = doc(
        allow("iot:Connect", "*", Condition={"StringEqualsIfExists": {"aws:SourceIp": "1.2.3.4"}})
    )
    assert pol.can_connect([p], PolicyContext(client_id="c"))
    assert not pol.can_connect([p], PolicyContext(client_id="c", source_ip="5.6.7.8"))
    p = doc(allow("iot:Connect", "*", Condition={"NumericLessThan": {"x": "1"}}))
    with pytest.raises(PolicyError):
        pol.can_connect([p], CTX)


def test_action_lists_and_wildcards() -> None:
    p = doc(allow(["iot:Publish", "iot:Receive"], "*"), allow("iot:Sub*", "*"))
    assert pol.can_receive([p], "x", CTX)
    assert pol.can_subscribe([p], "x", CTX)
    assert not pol.can_connect([p], CTX)
    assert not pol.can_publish([p], "x", CTX, retain=True)  # RetainPublish not granted


def test_default_thing_policy() -> None:
    p = [pol.default_thing_policy()]
    other = PolicyContext(client_id="dev2")
    assert pol.can_connect(p, CTX)
    assert not pol.can_connect(p, other)
    assert pol.can_publish(p, "$aws/things/dev1/shadow/update", CTX)
    assert pol.can_publish(p, "$aws/things/dev1/shadow/name/cfg/get", CTX)
    assert pol.can_publish(p, "$aws/things/dev1/jobs/start-next", CTX)
    assert pol.can_subscribe(p, "$aws/things/dev1/jobs/notify-next", CTX)
    assert not pol.can_publish(p, "$aws/things/dev2/shadow/update", CTX)
    assert not pol.can_subscribe(p, "$aws/things/dev2/shadow/update/delta", CTX)
    assert pol.can_publish(p, "$aws/certificates/create/json", CTX)
    assert pol.can_publish(p, "$aws/provisioning-templates/tpl/provision/json", CTX)
    assert not pol.can_publish(p, "$aws/events/presence/connected/dev1", CTX)
    assert pol.can_publish(p, "any/topic", CTX, retain=True)
    assert pol.can_subscribe(p, "#", CTX)
    assert pol.can_receive(p, "any/topic", CTX)
    assert not pol.can_publish(p, "$aws/things/dev1/shadow/update", CTX, retain=True)


def test_claim_policy() -> None:
    p = [pol.claim_policy("tpl")]
    ctx = PolicyContext(client_id="whatever")
    assert pol.can_connect(p, ctx)
    assert pol.can_publish(p, "$aws/certificates/create-from-csr/json", ctx)
    assert pol.can_subscribe(p, "$aws/provisioning-templates/tpl/provision/json/accepted", ctx)
    assert not pol.can_publish(p, "$aws/provisioning-templates/other/provision/json", ctx)
    assert not pol.can_publish(p, "a/b", ctx)


def test_resource_arn() -> None:
    assert resource_arn("topic", "a/b", "eu-west-1", "1") == "arn:aws:iot:eu-west-1:1:topic/a/b"


def test_malformed_policies_raise() -> None:
    with pytest.raises(PolicyError):
        pol.can_connect(
            [{"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}], CTX
        )


_chars = st.sampled_from(list("ab/*?+#$"))


@given(st.text(_chars, max_size=8), st.text(st.sampled_from(list("ab/+#$")), max_size=8))
def test_resource_matching_agrees_with_fnmatch(pattern: str, name: str) -> None:
    """Reference: fnmatch on the ARN, with '[' absent its '*' and '?' mean what AWS's do."""
    p = doc(allow("iot:Subscribe", f"{ARN}:topicfilter/{pattern}"))
    expected = fnmatch.fnmatchcase(f"{ARN}:topicfilter/{name}", f"{ARN}:topicfilter/{pattern}")
    assert pol.can_subscribe([p], name, CTX) is expected


@given(
    st.text(st.characters(blacklist_characters="*?$", blacklist_categories=("Cs",)), max_size=10)
)
def test_client_id_variable_matches_exactly_itself(client_id: str) -> None:
    p = doc(allow("iot:Publish", f"{ARN}:topic/x/${{iot:ClientId}}"))
    ctx = PolicyContext(client_id=client_id)
    assert pol.can_publish([p], f"x/{client_id}", ctx)
    assert not pol.can_publish([p], f"x/{client_id}z", ctx)
