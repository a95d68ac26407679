# An ESP32 weather sensor on AWS IoT Core (or on the local twin: `make twin`).
#
# Files on the device (mpremote cp ...): this main.py, config.json, and the thing's
# certificate, key and the CA as DER or PEM (see firmware/README.md):
#
#   {"ssid": "...", "wifi_password": "...", "thing": "weather-sensor-001",
#    "endpoint": "xxxxxxxx-ats.iot.eu-west-1.amazonaws.com", "port": 8883,
#    "ca": "ca.der", "cert": "cert.der", "key": "key.der"}
#
# It reports telemetry every report_interval_s (QoS 1), keeps the device shadow's reported
# state up to date, applies desired-state changes from update/delta, and runs jobs
# (notify-next -> start-next -> SUCCEEDED). Outages are normal: the client reconnects by
# itself and queues what is published meanwhile.

import json
import time

import asyncio
import network

from mqtt_v5 import ConnectOptions, MqttClient, TlsConfig


def load_config():
    with open("config.json") as f:
        return json.load(f)


async def wifi_up(cfg):
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(cfg["ssid"], cfg["wifi_password"])
        for _ in range(200):
            if wlan.isconnected():
                break
            await asyncio.sleep_ms(100)
    print("wifi:", wlan.ifconfig())


def read_sensor():
    # Replace with the real sensor driver (e.g. dht.DHT22(machine.Pin(4)).measure()).
    import esp32

    return {"temperature": esp32.mcu_temperature(), "uptime_s": time.ticks_ms() // 1000}


class Sensor:
    def __init__(self, client, thing):
        self.client = client
        self.shadow = "$aws/things/%s/shadow" % thing
        self.jobs = "$aws/things/%s/jobs" % thing
        self.telemetry = "devices/%s/telemetry" % thing
        self.config = {"report_interval_s": 60}

    def on_delta(self, msg):
        delta = json.loads(msg.payload)["state"]
        print("desired state changed:", delta)
        self.config.update(delta)
        asyncio.create_task(self.report(self.config))

    def on_next_job(self, msg):
        execution = json.loads(msg.payload).get("execution")
        if execution:
            asyncio.create_task(self.run_job(execution["jobId"], execution["jobDocument"]))

    async def report(self, state):
        body = json.dumps({"state": {"reported": state}})
        await self.client.publish(self.shadow + "/update", body, qos=1)

    async def run_job(self, job_id, document):
        print("job", job_id, document)
        await self.client.publish(self.jobs + "/start-next", "{}", qos=1)
        # ... do what the job document asks ...
        await self.client.publish(self.jobs + "/%s/update" % job_id,
                                  json.dumps({"status": "SUCCEEDED"}), qos=1)

    async def run(self):
        await self.client.subscribe(self.shadow + "/update/delta", self.on_delta, qos=1)
        await self.client.subscribe(self.jobs + "/notify-next", self.on_next_job, qos=1)
        await self.report(self.config)
        while True:
            reading = read_sensor()
            try:
                await self.client.publish(self.telemetry, json.dumps(reading), qos=1)
            except Exception as e:  # keep measuring through outages; the client retries
                print("publish:", e)
            await asyncio.sleep(self.config["report_interval_s"])


async def main():
    cfg = load_config()
    await wifi_up(cfg)
    options = ConnectOptions(cfg["thing"], clean_start=False, session_expiry_interval=3600,
                             keep_alive=60)
    options.tls = TlsConfig(ca=cfg["ca"], cert=cfg["cert"], key=cfg["key"],
                            server_hostname=cfg["endpoint"])
    client = MqttClient(options)
    client.on_connection_event(lambda event: print("mqtt:", event))
    await client.connect("mqtts://%s:%d" % (cfg["endpoint"], cfg.get("port", 8883)))
    await Sensor(client, cfg["thing"]).run()


asyncio.run(main())
