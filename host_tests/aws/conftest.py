"""Fixtures for the mqtt_v5.aws tests: the AWS IoT twin on free loopback ports (requiring
SNI, like AWS), and helpers to build clients for its things with the AWS preset."""

from __future__ import annotations

import asyncio

import pytest
from twin._server_util import running_twin


@pytest.fixture
def twin(tmp_path):
    with running_twin(tmp_path, require_sni=True) as t:
        yield t


def run(coro, timeout=60):
    """Run ``coro`` on a fresh event loop with an overall bound."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def device(twin, thing, **kwargs):
    """An ``AwsClient`` for ``thing`` on the twin's mutual-TLS listener (registered on
    first use), exactly as on AWS but for the endpoint and port."""
    from mqtt_v5.aws.connect import aws_client

    creds = twin.thing(thing)
    kwargs.setdefault("reconnect_config", _fast_reconnect())
    return aws_client("127.0.0.1", thing, cert=str(creds.cert_path), key=str(creds.key_path),
                      ca=twin.ca, port=twin.port("mtls"), server_hostname="localhost", **kwargs)


def _fast_reconnect():
    from mqtt_v5 import ReconnectConfig

    return ReconnectConfig(initial_delay=0.1, max_delay=0.5, jitter=0)
