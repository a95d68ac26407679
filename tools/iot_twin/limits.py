"""AWS IoT Core's numbers as the twin applies them (aws-iot-spec §0, §1.6): the broker's
:class:`Limits` (defaults are AWS's quotas) and the :class:`TokenBucket` behind the
per-connection throttles.
"""

from __future__ import annotations

from dataclasses import dataclass

RECEIVE_MAXIMUM = 100  # §1.6 observed CONNACK [JS535]; §0 100 in-flight each way [QUOTAS]
MAXIMUM_QOS = 1  # §0 QoS 0 and 1 only [MQTT-DOC]
MAXIMUM_PACKET_SIZE = 149504  # §1.6 observed CONNACK [JS535]
TOPIC_ALIAS_MAXIMUM = 8  # §1.6 [MQTT-DOC], [JS535], [CRTJ618]
MAX_PAYLOAD_BYTES = 131072  # §0 128 KiB per PUBLISH [QUOTAS-OLD], [JS535]
MAX_CLIENT_ID_BYTES = 128  # §1.5 [QUOTAS-OLD]
MAX_FILTERS_PER_SUBSCRIBE = 8  # §1.7 [QUOTAS-OLD], [SUB8]
MAX_SUBSCRIPTIONS = 50  # §1.7 [QUOTAS], [SUB50]
KEEPALIVE_MIN_S = 30  # §1.5 1-29 -> 30 [QUOTAS-OLD]
KEEPALIVE_MAX_S = 1200  # §1.5 0 or >1200 -> 1200 [QUOTAS-OLD]
SESSION_EXPIRY_DEFAULT_MAX_S = 3600  # §1.6 default account maximum 1 h [MQTT-DOC]
SESSION_EXPIRY_HARD_MAX_S = 604800  # §1.6 at most 7 days [MQTT-DOC]
MESSAGE_EXPIRY_MIN_S = 1  # §1.6 0 -> 1 [MQTT-DOC]
MESSAGE_EXPIRY_MAX_S = 604800  # §1.6 larger values clamped [MQTT-DOC]
PUBLISHES_PER_S = 100  # §0 publish requests per second per connection [QUOTAS]
THROUGHPUT_BYTES_PER_S = 512 * 1024  # §0 512 KiB/s per connection, excess delayed [QUOTAS]
CONNECTS_PER_S_PER_CLIENT_ID = 1  # §1.5 1 CONNECT/s per client id [QUOTAS]

# The 51st subscription on a connection: AWS's quotas page says only that it "might be
# rejected" [QUOTAS]; the 0x80 reports [SUB50] come from MQTT 3.1.1 clients, where 0x80 is
# the only failure code. For MQTT 5 the twin answers 0x97 Quota exceeded, which AWS lists
# among its SUBACK codes (§1.8 [MQTT-DOC]); UNVERIFIED, see DEVIATIONS.
RC_SUBSCRIPTION_QUOTA = 0x97


@dataclass
class Limits:
    """The broker's limits; the defaults are AWS IoT Core's (aws-iot-spec §0, §1.6)."""

    receive_maximum: int = RECEIVE_MAXIMUM
    maximum_packet_size: int = MAXIMUM_PACKET_SIZE
    topic_alias_maximum: int = TOPIC_ALIAS_MAXIMUM
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    max_client_id_bytes: int = MAX_CLIENT_ID_BYTES
    max_filters_per_subscribe: int = MAX_FILTERS_PER_SUBSCRIBE
    max_subscriptions: int = MAX_SUBSCRIPTIONS
    # Test-only override of AWS's 30 s keep-alive floor (see Twin's keepalive_floor_s).
    keepalive_min_s: float = KEEPALIVE_MIN_S
    keepalive_max_s: int = KEEPALIVE_MAX_S
    max_session_expiry_s: int = SESSION_EXPIRY_DEFAULT_MAX_S
    outbound_inflight_max: int = RECEIVE_MAXIMUM
    # Throttles (§0 [QUOTAS]); 0 turns one off. What a client over them sees is in
    # DEVIATIONS: PUBACK 0x97 (QoS 0: dropped), reading paused, CONNACK 0x97.
    publishes_per_s: float = PUBLISHES_PER_S
    throughput_bytes_per_s: float = THROUGHPUT_BYTES_PER_S
    connects_per_s_per_client_id: float = CONNECTS_PER_S_PER_CLIENT_ID
    # Over the CONNECT rate: False holds the CONNACK until the quota has room (the
    # default: quick reconnects, as tests make, just slow down); True refuses (0x97).
    connect_throttle_refuses: bool = False
    # Not AWS numbers: how long a connection may stay silent before CONNECT, how many
    # QoS 1 messages an offline session keeps, when QoS 0 deliveries start being dropped.
    connect_timeout_s: float = 10.0
    max_queued_messages: int = 10000
    write_high_water: int = 1 << 20
    lifecycle_events: bool = True

    @classmethod
    def unthrottled(cls) -> Limits:
        """AWS's limits without its per-connection throttles (load tests, benches)."""
        return cls(publishes_per_s=0, throughput_bytes_per_s=0, connects_per_s_per_client_id=0)


class TokenBucket:
    """``rate`` tokens a second, at most one second's worth saved up; ``rate`` 0 is
    unlimited. ``take(n, now)`` spends ``n`` and returns how far in debt that leaves the
    bucket, in seconds (0: within the quota)."""

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.at = now

    def take(self, n: float, now: float) -> float:
        if not self.rate:
            return 0.0
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= n
        return -self.tokens / self.rate if self.tokens < 0 else 0.0

    def try_take(self, n: float, now: float) -> bool:
        """Spend ``n`` only if that stays within the quota."""
        if self.take(n, now):
            self.tokens += n
            return False
        return True
