# First boot with AWS IoT Fleet Provisioning (by claim), for MicroPython and CPython.
#
# The device ships with a claim certificate (shared by the fleet, allowed only to
# provision). On first boot it asks AWS IoT for its own certificate, registers itself
# through the provisioning template, stores the certificate and key on flash (atomically,
# DER on MicroPython) and reconnects with them; on later boots it connects straight away.
#
#   micropython aws_first_boot.py ENDPOINT PORT CA CLAIM_CERT CLAIM_KEY TEMPLATE SERIAL DIR \
#       [CLAIM_CLIENT_ID [SERVER_HOSTNAME]]
#
# Prints {"thing": ..., "shadow_version": ...} as its last line. On an ESP32, set the
# clock first (TLS checks certificate dates): ntptime.settime().
import asyncio
import json
import sys

from mqtt_v5.aws.provisioning import first_boot
from mqtt_v5.aws.shadow import Shadow


async def main(endpoint, port, ca, claim_cert, claim_key, template, serial, folder,
               claim_client_id=None, server_hostname=None):
    client, thing = await first_boot(
        endpoint, claim_cert, claim_key, ca, template,
        parameters={"SerialNumber": serial},
        cert_path=folder + "/device.crt", key_path=folder + "/device.key",
        claim_client_id=claim_client_id or "claim-" + serial,
        port=port, server_hostname=server_hostname)
    shadow = Shadow(client)          # the device's own identity and policy from here on
    accepted = await shadow.update(reported={"serial": serial, "booted": True})
    await client.disconnect()
    return {"thing": thing, "shadow_version": accepted["version"]}


if __name__ == "__main__":
    a = sys.argv[1:]
    out = asyncio.run(main(a[0], int(a[1]), a[2], a[3], a[4], a[5], a[6], a[7], *a[8:10]))
    print(json.dumps(out))
