"""The broker's subscription index matches exactly what ``topics.topic_matches`` says (AWS
semantics, aws-iot-spec §1.7: ``a/#`` does not match ``a``; leading wildcards miss ``$``
topics), for shared and plain filters, and removal leaves no trace."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from iot_twin import topics
from iot_twin.server import Session, Subscription, SubscriptionTree

levels = st.sampled_from(["a", "b", "", "$x", "+", "#"])
names = st.sampled_from(["a", "b", "", "$x"])


def _filter(parts):
    f = "/".join(parts)
    return f if topics.topic_filter_problem(f) is None else None


filters = st.lists(levels, min_size=1, max_size=4).map(_filter).filter(bool)
topic_names = (
    st.lists(names, min_size=1, max_size=4)
    .map("/".join)
    .filter(lambda t: topics.topic_name_problem(t) is None)
)


def _matched(tree, topic):
    found, groups = tree.match(topic)
    out = {sub.filter for subs in found for sub in subs.values()}
    out |= {sub.filter for g in groups for sub in g.members.values()}
    return out


@given(st.lists(filters, min_size=1, max_size=8, unique=True), topic_names, st.booleans())
def test_tree_agrees_with_topic_matches(filts, topic, shared):
    tree = SubscriptionTree()
    subs = []
    for i, f in enumerate(filts):
        full = f"$share/g{i}/{f}" if shared else f
        sub = Subscription(Session(f"c{i}"), full, 1)
        tree.add(sub)
        subs.append(sub)
    expected = {s.filter for s in subs if topics.topic_matches(s.filter, topic)}
    assert _matched(tree, topic) == expected
    for s in subs:
        tree.remove(s)
    assert not tree.root.children
    assert not tree.root.subs


def test_examples():
    tree = SubscriptionTree()
    for f in ("sensor/#", "#", "+/x", "$aws/things/+/shadow/#"):
        tree.add(Subscription(Session(f), f, 0))
    assert _matched(tree, "sensor") == {"#"}
    assert _matched(tree, "sensor/") == {"#", "sensor/#"}
    assert _matched(tree, "a/x") == {"#", "+/x"}
    assert _matched(tree, "$aws/things/t/shadow/update") == {"$aws/things/+/shadow/#"}
    assert _matched(tree, "$aws/x") == set()
