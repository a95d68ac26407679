"""The fleet-provisioning template the tests register with the twin: a thing named
``prefix`` + SerialNumber, the new certificate made active, and a policy (by name, or a
policy document), optionally with extra thing properties and a DeviceConfiguration."""

from __future__ import annotations

import json
from typing import Any


def fleet_template(prefix: str, policy: str | dict, device_configuration: dict | None = None,
                   thing: dict | None = None) -> dict[str, Any]:
    """``policy``: a policy name, or a policy document (a dict); ``thing``: more of the
    thing's Properties (e.g. an AttributePayload)."""
    policy_props = ({"PolicyName": policy} if isinstance(policy, str)
                    else {"PolicyDocument": json.dumps(policy)})
    template: dict[str, Any] = {
        "Parameters": {
            "SerialNumber": {"Type": "String"},
            "AWS::IoT::Certificate::Id": {"Type": "String"},
        },
        "Resources": {
            "thing": {
                "Type": "AWS::IoT::Thing",
                "Properties": {"ThingName": {"Fn::Join": ["", [prefix, {"Ref": "SerialNumber"}]]},
                               **(thing or {})},
            },
            "certificate": {
                "Type": "AWS::IoT::Certificate",
                "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"},
                               "Status": "Active"},
            },
            "policy": {"Type": "AWS::IoT::Policy", "Properties": policy_props},
        },
    }
    if device_configuration is not None:
        template["DeviceConfiguration"] = device_configuration
    return template
