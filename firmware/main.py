# An ESP32 sensor on AWS IoT Core (or any MQTT 5 broker): the device's main.py.
#
# Files on the device (`make certs` writes and uploads them; firmware/README.md):
#   config.json   {"thing": "weather-sensor-001", "endpoint": "<prefix>-ats.iot.<region>...",
#                  "port": 8883, "ca": "ca.der", "cert": "cert.der", "key": "key.der",
#                  "ssid": "...", "wifi_password": "..."}   and optionally (defaults below):
#                  "server_hostname" (TLS name/SNI if not the endpoint), "tls": false (plain
#                  MQTT to a test broker), "username"/"password", "mode": "deepsleep",
#                  "sleep_s", "awake_s", "report_interval_s", "watchdog_s", "session_expiry_s",
#                  "provisioning": {"template", "claim_cert", "claim_key"} (first boot)
#   ca.der, cert.der, key.der   the CA and the thing's certificate and key (DER or PEM)
#
# What it does, in order: Wi-Fi (retry with backoff), the clock over NTP (a certificate is
# only valid with a clock), fleet provisioning on first boot when there is no certificate
# yet, then mutual TLS to the broker as the thing (persistent session), and:
#   - telemetry at QoS 1 to devices/<thing>/telemetry every report_interval_s;
#   - the device shadow: reports its state, applies desired-state changes (update/delta);
#   - jobs: takes the next job (start-next), runs it, reports SUCCEEDED or FAILED;
#   - a watchdog that resets the board if the program stops feeding it;
#   - "mode": "deepsleep": wake, report, handle what queued up meanwhile, sleep again. The
#     session persists across sleeps, so what arrives while asleep waits on the server.
# Outages are normal: the client reconnects and queues QoS 1 messages by itself.
# Topics and request bodies come from mqtt_v5.aws (shadow, jobs, provisioning); every message
# goes through one on_message handler, so those queued for the session while the board slept
# are handled even though they arrive before any subscription is made.
# Safe mode: a file named "safe" on the device (`mpremote touch :safe`) stops main.py before
# it starts the watchdog, so the REPL stays yours (`mpremote rm :safe` to undo).

import gc
import json
import os
import sys
import time

import asyncio
import machine
import network
import ntptime

from mqtt_v5 import ConnectOptions, ConnectRefused, MqttClient, MqttError, TlsConfig
from mqtt_v5.aws.jobs import jobs_topic
from mqtt_v5.aws.jobs import update_request as job_update
from mqtt_v5.aws.shadow import shadow_topic
from mqtt_v5.aws.shadow import update_request as shadow_update

CONFIG = "config.json"
DEFAULTS = {
    "port": 8883,
    "mode": "continuous",  # or "deepsleep"
    "report_interval_s": 60,
    "sleep_s": 300,
    "awake_s": 3,  # deep sleep: stay up until nothing arrived for this long
    "watchdog_s": 120,
    "session_expiry_s": 3600,  # AWS IoT's default maximum
    "keep_alive_s": 60,
    # The receive buffer; a server drops messages larger than this (a shadow document with
    # its metadata grows with the state: AWS allows 8 KB of state).
    "max_packet_size": 4096,
    "wifi_timeout_s": 15,
    "wifi_retry_s": 2,  # first back-off; doubles up to 60 s
}
# What the shadow's desired state may change, and how to check a value.
SETTINGS = {
    "report_interval_s": lambda v: isinstance(v, int) and 1 <= v <= 86400,
    "led": lambda v: v in ("on", "off"),
}


_T0 = time.ticks_ms()


def uptime_ms():
    # ticks are opaque (they wrap): only ticks_diff makes a number of them (this one wraps
    # to negative after about 6 days on an ESP32: good enough for log lines and uptime)
    return time.ticks_diff(time.ticks_ms(), _T0)


def log(*args):
    ms = uptime_ms()
    print("[%d.%03d]" % (ms // 1000 % 100000, ms % 1000), *args)


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def load_config():
    with open(CONFIG) as f:
        cfg = json.load(f)
    for k, v in DEFAULTS.items():
        cfg.setdefault(k, v)
    if "thing" not in cfg and exists(cfg["cert"] + ".thing"):
        # provisioned, but the power went before config.json was rewritten
        with open(cfg["cert"] + ".thing") as f:
            cfg["thing"] = f.read().strip()
    return cfg


def save_config(cfg):
    from mqtt_v5.aws.provisioning import write_atomic  # all of it or none, power cut or not

    body = {k: v for k, v in cfg.items() if DEFAULTS.get(k, ...) != v}
    write_atomic(CONFIG, json.dumps(body).encode())


# -- the board --------------------------------------------------------------------------

class Watchdog:
    """machine.WDT, or nothing when watchdog_s is 0. Once started it cannot be stopped:
    a program that hangs (or stops at an error) is reset after watchdog_s."""

    def __init__(self, seconds):
        self.wdt = machine.WDT(timeout=seconds * 1000) if seconds else None

    def feed(self):
        if self.wdt is not None:
            self.wdt.feed()


async def sleep_fed(seconds, wdt):
    end = time.ticks_add(time.ticks_ms(), int(seconds * 1000))
    while True:
        wdt.feed()
        left = time.ticks_diff(end, time.ticks_ms())
        if left <= 0:
            return
        await asyncio.sleep_ms(min(left, 1000))


async def wifi_up(cfg, wdt):
    """Join cfg["ssid"], retrying with exponential back-off. Without an ssid the network is
    assumed up already (Ethernet, or Wi-Fi set up by boot.py)."""
    wlan = network.WLAN(network.STA_IF)
    if "ssid" not in cfg:
        return wlan
    wlan.active(True)
    delay = cfg["wifi_retry_s"]
    attempt = 0
    while not wlan.isconnected():
        attempt += 1
        log("wifi: joining", cfg["ssid"], "attempt", attempt)
        wlan.connect(cfg["ssid"], cfg.get("wifi_password", ""))
        for _ in range(cfg["wifi_timeout_s"] * 10):
            if wlan.isconnected():
                break
            wdt.feed()
            await asyncio.sleep_ms(100)
        else:
            log("wifi: not connected (status %s); retry in %d s" % (wlan.status(), delay))
            wlan.disconnect()
            await sleep_fed(delay, wdt)
            delay = min(delay * 2, 60)
    log("wifi: up, address", wlan.ifconfig()[0])
    return wlan


async def set_clock(cfg, wdt):
    """NTP before TLS: mbedTLS checks the certificates' validity dates against the clock."""
    if cfg.get("ntp_host"):
        ntptime.host = cfg["ntp_host"]
    delay = 1
    for attempt in range(1, 6):
        try:
            ntptime.settime()
            log("time: set over NTP, UTC", time.gmtime()[:6])
            return
        except (OSError, OverflowError) as e:
            log("time: NTP attempt %d failed: %r; retry in %d s" % (attempt, e, delay))
            await sleep_fed(delay, wdt)
            delay *= 2
    raise OSError("no NTP answer: TLS cannot check certificate dates without a clock")


def read_sensor(wlan):
    # Replace with the real sensor (e.g. dht.DHT22(machine.Pin(4)).measure()).
    import esp32

    if hasattr(esp32, "mcu_temperature"):  # ESP32-S2/S3/C3/C6
        temp = esp32.mcu_temperature()
    else:  # the original ESP32: Fahrenheit, uncalibrated
        temp = round((esp32.raw_temperature() - 32) / 1.8, 1)
    try:
        rssi = wlan.status("rssi")
    except (OSError, ValueError):
        rssi = None
    return {"temperature": temp, "rssi": rssi, "uptime_s": uptime_ms() // 1000,
            "mem_free": gc.mem_free()}


# -- connecting -------------------------------------------------------------------------

def tls_config(cfg, cert, key):
    if cfg.get("tls", True) is False:
        return None
    return TlsConfig(ca=cfg["ca"], cert=cert, key=key,
                     server_hostname=cfg.get("server_hostname") or cfg["endpoint"])


def broker_url(cfg):
    scheme = "mqtt" if cfg.get("tls", True) is False else "mqtts"
    return "%s://%s:%d" % (scheme, cfg["endpoint"], cfg["port"])


async def connect(client, cfg, wdt):
    """The first connection, retried with back-off (the client reconnects by itself after
    that). A refusal that retrying cannot fix (bad certificate, not authorized) stops."""
    delay = 2
    while True:
        gc.collect()  # mbedTLS wants tens of KB in one piece for the handshake
        try:
            return await client.connect(broker_url(cfg))
        except ConnectRefused as e:
            if e.reason_code in (0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C):
                raise
            log("mqtt: refused:", e)
        except (MqttError, OSError) as e:
            log("mqtt: connect failed:", e)
        await sleep_fed(delay, wdt)
        delay = min(delay * 2, 120)


async def provision(cfg, wdt):
    """First boot without a certificate: AWS IoT fleet provisioning by claim. Connect with
    the claim certificate, get a new certificate and key (CreateKeysAndCertificate), register
    the thing with the template (RegisterThing), save them (DER), and carry on as the new
    thing."""
    from mqtt_v5.aws.provisioning import PROVISIONING_PACKET_SIZE
    from mqtt_v5.aws.provisioning import provision as fleet_provision

    p = cfg["provisioning"]
    serial = "".join("%02x" % b for b in machine.unique_id())
    # The answer holds a certificate and a private key in PEM, about 3 KB: a server drops
    # what is larger than the client's Maximum Packet Size (its receive buffer).
    opts = ConnectOptions(p.get("client_id") or "claim-" + serial, keep_alive=60,
                          maximum_packet_size=PROVISIONING_PACKET_SIZE)
    opts.tls = tls_config(cfg, p["claim_cert"], p["claim_key"])
    client = MqttClient(opts)
    log("provisioning: connecting with the claim certificate as", opts.client_id)
    await connect(client, cfg, wdt)
    try:
        # The thing name is kept next to the certificate before the identity is written
        # (the certificate last): a power cut anywhere leaves a state the next boot handles.
        reg = await fleet_provision(client, p["template"], {"SerialNumber": serial},
                                    cfg["cert"], cfg["key"], der=True,
                                    name_path=cfg["cert"] + ".thing")
    finally:
        await client.disconnect()
    cfg["thing"] = reg["thingName"]
    save_config(cfg)
    log("provisioning: registered as", cfg["thing"])


# -- the application --------------------------------------------------------------------

class Sensor:
    def __init__(self, client, cfg, wdt, wlan):
        self.client = client
        self.cfg = cfg
        self.wdt = wdt
        self.wlan = wlan
        thing = cfg["thing"]
        self.thing = thing
        self.telemetry_topic = "devices/%s/telemetry" % thing
        self.delta = shadow_topic(thing, "update/delta")
        self.get_accepted = shadow_topic(thing, "get/accepted")
        self.get_rejected = shadow_topic(thing, "get/rejected")  # 404: no shadow yet
        self.update_rejected = shadow_topic(thing, "update/rejected")
        self.notify_next = jobs_topic(thing, "notify-next")
        self.started = jobs_topic(thing, "start-next/accepted")
        self.state = {k: cfg[k] for k in SETTINGS if k in cfg}
        self.state.setdefault("led", "off")
        self.inbox = []
        self.wake = asyncio.Event()
        self.last_message = time.ticks_ms()

    # Every message lands here (also those queued for the session while the device slept,
    # which may arrive before any subscribe): parse now, act in the main loop.
    def on_message(self, msg):
        try:
            body = json.loads(msg.payload) if msg.payload else {}
        except ValueError:
            log("ignored non-JSON message on", msg.topic)
            return
        self.inbox.append((msg.topic, body))
        self.last_message = time.ticks_ms()
        self.wake.set()

    def on_event(self, event):
        log("mqtt:", event)

    async def subscribe(self):
        for t in (self.delta, self.get_accepted, self.get_rejected, self.update_rejected,
                  self.notify_next, self.started):
            await self.client.subscribe(t, qos=1)
        log("mqtt: subscribed to the shadow and jobs topics")

    async def catch_up(self):
        """Ask for what happened while the device had no session: the shadow (its delta)
        and the next queued job."""
        await self.client.publish(shadow_topic(self.thing, "get"), "{}", qos=1)
        await self.client.publish(jobs_topic(self.thing, "start-next"), "{}", qos=1)

    async def report(self, state):
        body = shadow_update(reported=state)
        await self.client.publish(shadow_topic(self.thing, "update"), body, qos=1)
        log("shadow: reported", state)

    async def send_telemetry(self):
        reading = read_sensor(self.wlan)
        await self.client.publish(self.telemetry_topic, json.dumps(reading), qos=1)
        log("telemetry:", reading)

    def apply(self, desired):
        """Take the settings the shadow asks for that are valid; returns what changed."""
        changed = {}
        for k, v in desired.items():
            check = SETTINGS.get(k)
            if check is None or not check(v):
                log("shadow: ignored desired", k, "=", v)
                continue
            if self.state.get(k) != v:
                self.state[k] = v
                changed[k] = v
        return changed

    async def handle(self, topic, body):
        if topic == self.delta:
            log("shadow: delta", body.get("state"))
            changed = self.apply(body.get("state", {}))
            if changed:
                await self.report(changed)
        elif topic == self.get_accepted:
            delta = body.get("state", {}).get("delta")
            if delta:
                log("shadow: desired state waiting:", delta)
                self.apply(delta)
            await self.report(self.state)
        elif topic == self.get_rejected:
            await self.report(self.state)
        elif topic == self.update_rejected:
            log("shadow: update rejected:", body)
        elif topic == self.notify_next:
            if body.get("execution"):
                await self.client.publish(jobs_topic(self.thing, "start-next"), "{}", qos=1)
        elif topic == self.started:
            execution = body.get("execution")
            if execution:
                await self.run_job(execution)

    async def run_job(self, execution):
        job_id = execution["jobId"]
        doc = execution.get("jobDocument", {})
        op = doc.get("operation")
        log("job:", job_id, doc)
        status, details = "SUCCEEDED", {}
        reboot = False
        if op == "set":  # {"operation": "set", "settings": {...}}: like a desired state
            changed = self.apply(doc.get("settings", {}))
            if changed:
                await self.report(changed)
            if changed:
                details = {"changed": ",".join(sorted(changed))}
        elif op == "report":  # send a reading now
            await self.send_telemetry()
        elif op == "reboot":
            reboot = True
        else:
            status, details = "FAILED", {"reason": "unknown operation %r" % (op,)}
        body = job_update(status, details or None)
        await self.client.publish(jobs_topic(self.thing, "update", job_id), json.dumps(body),
                                  qos=1)
        log("job:", job_id, status)
        if reboot:
            await self.client.disconnect()
            machine.reset()

    async def drain(self):
        while self.inbox:
            topic, body = self.inbox.pop(0)
            try:
                await self.handle(topic, body)
            except (MqttError, OSError, KeyError, ValueError) as e:
                log("error handling", topic, ":", repr(e))

    async def run_forever(self):
        next_report = time.ticks_ms()
        while True:
            self.wdt.feed()
            self.wake.clear()  # before draining: a message arriving meanwhile sets it again
            await self.drain()
            now = time.ticks_ms()
            if time.ticks_diff(now, next_report) >= 0:
                try:
                    await self.send_telemetry()
                except MqttError as e:  # queued or refused: keep measuring
                    log("telemetry:", e)
                next_report = time.ticks_add(now, self.state["report_interval_s"] * 1000)
            wait = min(max(time.ticks_diff(next_report, time.ticks_ms()), 0), 1000)
            try:
                await asyncio.wait_for_ms(self.wake.wait(), wait)
            except asyncio.TimeoutError:
                pass

    async def run_awake(self):
        """Deep-sleep mode: one reading, then whatever the session brings, until quiet."""
        await self.send_telemetry()
        quiet_ms = self.cfg["awake_s"] * 1000
        while True:
            self.wdt.feed()
            self.wake.clear()
            await self.drain()
            idle = time.ticks_diff(time.ticks_ms(), self.last_message)
            if idle >= quiet_ms and not self.inbox:
                return
            try:
                await asyncio.wait_for_ms(self.wake.wait(), quiet_ms - idle)
            except asyncio.TimeoutError:
                pass


async def main():
    if exists("safe"):
        log("safe mode: the file 'safe' exists; main.py stops here")
        return
    cfg = load_config()
    woke = machine.reset_cause() == machine.DEEPSLEEP_RESET
    log("boot:", "woke from deep sleep" if woke else "reset cause %d" % machine.reset_cause(),
        "mode", cfg["mode"])
    wdt = Watchdog(cfg["watchdog_s"])
    wlan = await wifi_up(cfg, wdt)
    await set_clock(cfg, wdt)
    if not exists(cfg["cert"]) and "provisioning" in cfg:
        await provision(cfg, wdt)
    opts = ConnectOptions(cfg["thing"], clean_start=False, keep_alive=cfg["keep_alive_s"],
                          session_expiry_interval=cfg["session_expiry_s"],
                          maximum_packet_size=cfg["max_packet_size"],
                          username=cfg.get("username"), password=cfg.get("password"))
    opts.tls = tls_config(cfg, cfg["cert"], cfg["key"])
    client = MqttClient(opts)
    app = Sensor(client, cfg, wdt, wlan)
    client.on_message(app.on_message)
    client.on_connection_event(app.on_event)
    event = await connect(client, cfg, wdt)
    log("mqtt: connected to", cfg["endpoint"], "as", cfg["thing"], "session present:",
        event.session_present)
    if not event.session_present:
        # A new session: subscribe, then ask for what happened meanwhile. A resumed one
        # kept its subscriptions and queued what arrived: it just comes in.
        await app.subscribe()
        await app.catch_up()
    if cfg["mode"] == "deepsleep":
        await app.run_awake()
        await client.disconnect()  # the session stays on the server for session_expiry_s
        log("sleep: deep sleep for", cfg["sleep_s"], "s")
        machine.deepsleep(cfg["sleep_s"] * 1000)
    await app.run_forever()


def run():
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 (an unattended device restarts)
        sys.print_exception(e)
        log("fatal error: reset in 10 s (Ctrl-C for the REPL)")
        time.sleep(10)
        machine.reset()


run()
