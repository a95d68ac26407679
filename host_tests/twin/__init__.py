"""Tests of the AWS IoT twin's service logic (tools/iot_twin)."""
