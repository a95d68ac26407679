"""Where the twin differs from AWS IoT Core, or follows one of AWS's pages where they
disagree, or chose where AWS's behaviour is UNVERIFIED: :data:`DEVIATIONS`, one sentence
or three each. The README's twin section summarises it; keep both current.
"""

from __future__ import annotations

DEVIATIONS = (
    "QoS 2 SUBSCRIBE is granted QoS 1 (SUBACK 0x01): AWS's answer is UNVERIFIED (§1.9); the "
    "SUBACK table allows 'a lower QoS than requested' (§1.8).",
    "A QoS 0 PUBLISH that a QoS 1 one would get a PUBACK error for (0x87 not authorised, "
    "0x90 topic invalid) gets a DISCONNECT with that code: MQTT 5 has no other way to say "
    "it and both codes are in AWS's DISCONNECT list (§1.8); AWS's choice is UNVERIFIED.",
    "Payload over 128 KiB: DISCONNECT 0x97 (reason string PAYLOAD_LIMIT_EXCEEDED, AWS's "
    "CloudWatch reason) then close; AWS is observed to drop the connection (§1.9).",
    "More than 8 filters in one SUBSCRIBE: DISCONNECT 0x97 then close (AWS: connection "
    "closed, §1.9 [SUB8]).",
    "Throttles (on by default, AWS's values [QUOTAS], each configurable in Limits; 0 turns "
    "one off): over 100 inbound PUBLISHes/s on a connection (AWS counts inbound and "
    "outbound) a QoS 1 PUBLISH gets PUBACK 0x97 and a QoS 0 one is dropped (AWS: 'discarded', "
    "the signal is UNVERIFIED); over 512 KiB/s inbound the twin stops reading the connection "
    "until the quota has room (AWS: 'delayed'); over 1 CONNECT/s per client id the CONNACK is "
    "held until the quota has room, or with connect_throttle_refuses the CONNECT gets CONNACK "
    "0x97 (AWS: throttled, mechanism UNVERIFIED). Each quota saves up at most one second's "
    "worth (burst UNVERIFIED). The AWS SDK paces itself to these quotas client-side.",
    "No 10 msg/s replay pacing of queued messages, no 1 h QoS 1 redelivery cutoff.",
    "Queued QoS 1 messages are re-sent after reconnect with DUP=0: AWS does not support the "
    "DUP flag (§1.6); MQTT 5 asks for DUP=1.",
    "No outbound topic aliases: AWS's use of them towards clients is not documented "
    "(§1.6 shows topicAliasMaximumToClient 0 negotiated).",
    "SNI is required by default (the MQTT page [MQTT-DOC]; the protocols page [PROTO] calls it "
    "'highly recommended': §1.3, we follow the stricter one): a ClientHello without the server "
    "name localhost (or with another one) fails the handshake with unrecognized_name. "
    "require_sni=False / --no-sni-check accepts any. Clients dialling 127.0.0.1 must set the "
    "server name to localhost (an IP address is never sent as SNI).",
    "Shared subscriptions are served round-robin among connected members (AWS: random).",
    "The 51st subscription on a connection gets SUBACK 0x97 Quota exceeded (the connection "
    "stays up): AWS documents only that it 'might be rejected' and the connection closed; "
    "0x80 was observed from MQTT 3.1.1 clients, which have no other failure code. The MQTT 5 "
    "code is UNVERIFIED.",
    "UNSUBACK always carries 0x00: AWS's UNSUBACK code list has no 0x11 (§1.8).",
    "An INACTIVE, REVOKED or unregistered certificate (chaining to the twin's CA) gets "
    "CONNACK 0x87 after a successful handshake; whether AWS fails the TLS handshake instead "
    "is not documented. A certificate from another CA fails the handshake.",
    "A certificate set INACTIVE or REVOKED closes its live connections revocation_delay_s "
    "later (default 0; AWS: 'within minutes') with DISCONNECT 0x98 Administrative action "
    "and lifecycle disconnectReason AUTH_ERROR: AWS's code and reason for this are "
    "UNVERIFIED. Policies attached to or detached from a certificate apply to its live "
    "connections' next PUBLISH, SUBSCRIBE or delivery (AWS documents no delay).",
    "iot:ConnectAttributes holds PersistentConnect when Clean Start (clean session) is 0 and "
    "LastWill when the CONNECT has a will [connect-policy]; whether AWS also counts Clean "
    "Start 1 with Session Expiry > 0 as PersistentConnect is UNVERIFIED (the twin does not).",
    "Jobs accepted/rejected answers go to the requester only, subscribed or not (§4.1); "
    "shadow answers go to subscribers (§3.1); fleet provisioning answers go to the "
    "requester only, through its own subscriptions (§5.2).",
    "MQTT over WebSocket: custom authorizers, or SigV4 with static test credentials "
    "(Twin.add_iam_credential / --iam-credential) whose IoT policies stand in for IAM; a bad "
    "signature gets HTTP 403 at the upgrade. The signature is checked with a 15-minute "
    "clock-skew allowance when the URL has no X-Amz-Expires (AWS's allowance UNVERIFIED). The "
    "custom authorizer is invoked at CONNECT (with the upgrade request's headers and query "
    "string in protocolData.http); whether AWS invokes it at the upgrade is UNVERIFIED.",
    "Shadow /update/delta follows the current data-flow page ('When the shadow's state "
    "changes, AWS IoT sends /delta messages'): a reported-only update that leaves a "
    "difference publishes one too; the MQTT topics page's wording can be read as desired-"
    "only (ShadowStore(delta_on_reported_update=False)).",
    "Shadow depth: the current quota page says 8 (as quoted by [ESPR] and an emulator's "
    "changelog; not read directly), the current error page 'maximum is 6' (read). The "
    "twin allows 6 levels inside desired/reported, i.e. 8 keys on a path counted from "
    "'state' (the way a third-party quota summary counts [ESPR]); the two pages agree under "
    "that reading, which is UNVERIFIED. The error text says 'maximum is 6'.",
    "Jobs notify follows the current jobs-notifications page (published when an execution is "
    "queued, changes to IN_PROGRESS or QUEUED, or ends; at most 15 listed); the 2022 page and "
    "the SDKs' docs say 'added to or removed from the list'. Jobs events are opt-in, as on AWS "
    "(Twin(job_events=True) / --job-events): $aws/events/jobExecution/<jobId>/<status> when an "
    "execution ends, $aws/events/job/<jobId>/completed when the last one does, .../canceled "
    "for CancelJob; the cancellation_in_progress / deletion events are not published, and "
    "payload fields beyond eventType, eventId, timestamp, operation, jobId, status are "
    "UNVERIFIED.",
    "Persistent sessions and retained messages are written to the state directory half a "
    "second after they change and at stop; a killed process loses that last half second.",
)
