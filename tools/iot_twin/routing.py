"""Routing: :class:`Subscription` and the :class:`SubscriptionTree` that finds, for a
topic, every matching subscription (AWS's ``#`` and ``$`` rules, §1.7) and every
``$share`` group (served round-robin, see DEVIATIONS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mqtt_v5 import _server_codec as codec

from . import topics
from .limits import MAXIMUM_QOS

if TYPE_CHECKING:
    from .session import Session


class Subscription:
    __slots__ = (
        "filter",
        "no_local",
        "qos",
        "retain_as_published",
        "retain_handling",
        "session",
        "share",
        "topic_filter",
    )

    def __init__(self, session: Session, filt: str, options: int) -> None:
        self.session = session
        self.filter = filt
        self.share, self.topic_filter = topics.share_group(filt)
        self.qos = min(options & 3, MAXIMUM_QOS)
        self.no_local = bool(options & 4)
        self.retain_as_published = bool(options & 8)
        self.retain_handling = (options >> 4) & 3


class _Group:
    """The members of one shared subscription ``$share/{name}/{filter}``."""

    __slots__ = ("members", "turn")

    def __init__(self) -> None:
        self.members: dict[str, Subscription] = {}
        self.turn = 0

    def pick(self) -> Subscription | None:
        """The next member round-robin, preferring connected ones; persistent offline
        members queue when nobody is connected (§1.10 [MQTT-DOC])."""
        subs = list(self.members.values())
        if not subs:
            return None
        n = len(subs)
        for k in range(n):
            sub = subs[(self.turn + k) % n]
            if sub.session.conn is not None:
                self.turn = (self.turn + k + 1) % n
                return sub
        for k in range(n):
            sub = subs[(self.turn + k) % n]
            if sub.session.expiry_s:
                self.turn = (self.turn + k + 1) % n
                return sub
        return None


class _Node:
    __slots__ = ("children", "groups", "subs")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.subs: dict[str, Subscription] = {}  # client id -> subscription
        self.groups: dict[str, _Group] = {}  # share name -> group


class SubscriptionTree:
    """Filters indexed level by level, matched the AWS way (aws-iot-spec §1.7).

    ``sensor/#`` matches ``sensor/`` and below but not ``sensor`` [MQTT-DOC], [TOPICS];
    a first level of ``+`` or ``#`` never matches a ``$`` topic [MQTT-4.7.2-1].
    """

    def __init__(self) -> None:
        self.root = _Node()

    def add(self, sub: Subscription) -> None:
        node = self.root
        for level in sub.topic_filter.split("/"):
            nxt = node.children.get(level)
            if nxt is None:
                nxt = node.children[level] = _Node()
            node = nxt
        cid = sub.session.client_id
        if sub.share is None:
            node.subs[cid] = sub
        else:
            group = node.groups.get(sub.share)
            if group is None:
                group = node.groups[sub.share] = _Group()
            group.members[cid] = sub

    def remove(self, sub: Subscription) -> None:
        path = [self.root]
        node = self.root
        for level in sub.topic_filter.split("/"):
            nxt = node.children.get(level)
            if nxt is None:
                return
            node = nxt
            path.append(node)
        cid = sub.session.client_id
        if sub.share is None:
            if node.subs.get(cid) is sub:
                del node.subs[cid]
        else:
            group = node.groups.get(sub.share)
            if group is not None and group.members.get(cid) is sub:
                del group.members[cid]
                if not group.members:
                    del node.groups[sub.share]
        levels = sub.topic_filter.split("/")
        for i in range(len(levels), 0, -1):
            child = path[i]
            if child.children or child.subs or child.groups:
                break
            del path[i - 1].children[levels[i - 1]]

    def match(self, topic: str) -> tuple[list[dict[str, Subscription]], list[_Group]]:
        """The subscription maps and shared groups whose filters match ``topic``."""
        names = topic.split("/")
        n = len(names)
        dollar = topic.startswith("$")
        found: list[dict[str, Subscription]] = []
        groups: list[_Group] = []
        stack = [(self.root, 0)]
        while stack:
            node, i = stack.pop()
            if i == n:
                if node.subs:
                    found.append(node.subs)
                if node.groups:
                    groups.extend(node.groups.values())
                continue
            children = node.children
            if not (dollar and i == 0):
                hash_node = children.get("#")
                # i < n here: '#' stands for at least one level, so 'a/#' misses 'a' (§1.7).
                if hash_node is not None:
                    if hash_node.subs:
                        found.append(hash_node.subs)
                    if hash_node.groups:
                        groups.extend(hash_node.groups.values())
                plus = children.get("+")
                if plus is not None:
                    stack.append((plus, i + 1))
            child = children.get(names[i])
            if child is not None:
                stack.append((child, i + 1))
        return found, groups


def sub_options(sub: Subscription) -> int:
    return codec.sub_options(sub.qos, sub.no_local, sub.retain_as_published, sub.retain_handling)
