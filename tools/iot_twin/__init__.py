"""A local, offline twin of AWS IoT Core: the service logic behind the MQTT endpoint.

Modules here are pure: topics and payloads in, ``(topic, payload)`` pairs out, time passed
in through an injectable clock. Nothing in them opens a socket or speaks MQTT; the endpoint
(``server.py`` and friends) does the I/O and calls into :mod:`iot_twin.services`.
"""
