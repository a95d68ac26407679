# An ESP32 sensor on AWS IoT Core (or any MQTT 5 broker): the device's main.py.
#
# Files on the device (`make certs` writes and uploads them; firmware/README.md):
#   config.json   {"thing": "weather-sensor-001", "endpoint": "<prefix>-ats.iot.<region>...",
#                  "port": 8883, "ca": "ca.der", "cert": "cert.der", "key": "key.der",
#                  "ssid": "...", "wifi_password": "..."}   and optionally (defaults below):
#                  "server_hostname" (TLS name/SNI if not the endpoint), "aws": false (any
#                  other MQTT 5 broker: telemetry only, no shadow or jobs), "tls": false (plain
#                  MQTT to a test broker, with "aws": false), "username"/"password",
#                  "mode": "deepsleep", "sleep_s", "awake_s", "report_interval_s",
#                  "watchdog_s", "session_expiry_s", "wifi_retry_s", "wifi_retry_max_s",
#                  "provisioning": {"template", "claim_cert", "claim_key"} (first boot)
#   ca.der, cert.der, key.der   the CA and the thing's certificate and key (DER or PEM)
#
# What it does, in order: Wi-Fi (retry with exponential back-off: wifi_retry_s, doubled
# after each failed attempt up to wifi_retry_max_s), the clock over NTP (a certificate is
# only valid with a clock), fleet provisioning on first boot when there is no certificate
# yet, then mutual TLS to the broker as the thing (persistent session), and:
#   - telemetry at QoS 1 to devices/<thing>/telemetry every report_interval_s;
#   - the device shadow (mqtt_v5.aws.shadow.Shadow): at start the desired settings are
#     applied and the whole state reported; each delta after that is applied and what
#     changed reported back;
#   - jobs (mqtt_v5.aws.jobs.JobRunner): every pending job and each one announced, run by
#     its document's "operation" ("set", "report", "reboot"), SUCCEEDED / FAILED / REJECTED;
#   - a watchdog that resets the board if the program stops feeding it (the main loop
#     feeds it at least every second; each step before it is bounded well under watchdog_s);
#   - "mode": "deepsleep": wake, report, run what queued up meanwhile, stay up until nothing
#     happened for awake_s, sleep. The session persists across sleeps, so what arrives
#     while asleep waits on the server.
# The client is mqtt_v5.aws.connect.aws_client (AWS IoT's limits checked before a byte is
# sent). Outages are normal: the client reconnects and queues QoS 1 messages by itself;
# the Shadow fetches a delta missed while the session was lost, the JobRunner what is
# pending.
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

CONFIG = "config.json"
DEFAULTS = {
    "port": 8883,
    "aws": True,  # False: any MQTT 5 broker (telemetry only: shadow and jobs are AWS's)
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
    "wifi_retry_s": 2,  # the first back-off after a failed join; doubles after each one ...
    "wifi_retry_max_s": 60,  # ... up to this
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
    a program that hangs (a sensor read or a driver that never returns, a step that never
    ends) is reset after watchdog_s without a feed."""

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
        for _ in range(int(cfg["wifi_timeout_s"] * 10)):
            if wlan.isconnected():
                break
            wdt.feed()
            await asyncio.sleep_ms(100)
        else:
            log("wifi: not connected (status %s); retry in %d ms"
                % (wlan.status(), int(delay * 1000)))
            wlan.disconnect()
            await sleep_fed(delay, wdt)
            delay = min(delay * 2, cfg["wifi_retry_max_s"])
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


def make_client(cfg, client_id, cert, key, **options):
    """AWS IoT: mqtt_v5.aws's AwsClient (mutual TLS, SNI, AWS's limits checked before
    sending). Any other broker ("aws": false): a plain MqttClient."""
    if cfg["aws"]:
        from mqtt_v5.aws.connect import aws_client

        return aws_client(cfg["endpoint"], client_id, cert=cert, key=key, ca=cfg["ca"],
                          port=cfg["port"], server_hostname=cfg.get("server_hostname"),
                          username=cfg.get("username"), password=cfg.get("password"),
                          **options)
    opts = ConnectOptions(client_id, username=cfg.get("username"),
                          password=cfg.get("password"), **options)
    opts.tls = tls_config(cfg, cert, key)
    return MqttClient(opts)


async def connect(client, cfg, wdt):
    """The first connection, retried with back-off (the client reconnects by itself after
    that). A refusal that retrying cannot fix (bad certificate, not authorized) stops."""
    delay = 2
    while True:
        wdt.feed()
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
    client = make_client(cfg, p.get("client_id") or "claim-" + serial, p["claim_cert"],
                         p["claim_key"], keep_alive=60, clean_start=True,
                         session_expiry_interval=0,
                         maximum_packet_size=PROVISIONING_PACKET_SIZE)
    log("provisioning: connecting with the claim certificate as", client.options.client_id)
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
    """The sensor's state (its settings), telemetry, and, on AWS IoT, the shadow and jobs
    through mqtt_v5.aws: ``Shadow.on_delta`` hands over only what changed in the desired
    state and reports back what ``on_delta`` returns; ``JobRunner`` starts each pending job,
    calls the handler of its "operation" and reports the outcome."""

    def __init__(self, client, cfg, wdt, wlan):
        self.client = client
        self.cfg = cfg
        self.wdt = wdt
        self.wlan = wlan
        self.thing = cfg["thing"]
        self.telemetry_topic = "devices/%s/telemetry" % self.thing
        self.state = {k: cfg[k] for k in SETTINGS if k in cfg}
        self.state.setdefault("led", "off")
        self.activity = time.ticks_ms()  # the last delta or job (deep sleep waits for quiet)
        self.reboot_job = None
        self.jobs_logged = 0
        self.shadow = self.runner = self.runner_task = None
        if cfg["aws"]:
            from mqtt_v5.aws.jobs import JobRunner, Jobs
            from mqtt_v5.aws.shadow import Shadow

            self.shadow = Shadow(client, self.thing)
            # Jobs takes its answers through client.on_message: made before connecting,
            # it also sees what a resumed session delivers first.
            self.runner = JobRunner(Jobs(client, self.thing), {
                "set": self.job_set, "report": self.job_report, "reboot": self.job_reboot})

    def on_event(self, event):
        log("mqtt:", event)

    async def start(self, session_present):
        """Right after connecting: take the desired settings the shadow holds (a board that
        slept or reset has lost its own), report the whole state, then follow the deltas;
        run jobs in the background (every pending one, then each announced one)."""
        shadow, runner = self.shadow, self.runner
        if shadow is None or runner is None:
            return
        try:
            doc = await shadow.get()
        except MqttError as e:  # AwsRejected 404: no shadow yet
            log("shadow: none yet:", e)
            doc = {}
        desired = doc.get("state", {}).get("desired")
        if desired:
            changed = self.apply(desired)
            if changed:
                log("shadow: desired settings applied:", changed)
        self.wdt.feed()
        try:
            await shadow.update(reported=self.state)
            log("shadow: reported", self.state)
        except MqttError as e:  # reported again at the next start; deltas still apply
            log("shadow: report failed:", e)
        self.wdt.feed()
        await shadow.on_delta(self.on_delta)
        if not session_present:
            log("mqtt: subscribed to the shadow and jobs topics")
        self.runner_task = asyncio.create_task(runner.run())

    def on_delta(self, state, version):
        log("shadow: delta", state, "version", version)
        self.activity = time.ticks_ms()
        changed = self.apply(state)
        if changed:
            log("shadow: reported", changed)
        return changed  # reported back by the Shadow ({}: nothing)

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

    async def send_telemetry(self):
        reading = read_sensor(self.wlan)
        await self.client.publish(self.telemetry_topic, json.dumps(reading), qos=1)
        log("telemetry:", reading)

    # Job handlers: handler(document, execution); what one returns is the statusDetails of
    # SUCCEEDED, an exception makes the job FAILED, an unknown operation is REJECTED.
    async def job_set(self, doc, execution):  # {"operation": "set", "settings": {...}}
        self.job_started(execution)
        settings = doc.get("settings")
        if not isinstance(settings, dict):
            raise ValueError("a 'set' job needs a 'settings' object")
        changed = self.apply(settings)
        if changed and self.shadow is not None:
            await self.shadow.update(reported=changed)
            log("shadow: reported", changed)
            return {"changed": ",".join(sorted(changed))}
        return None

    async def job_report(self, doc, execution):  # send a reading now
        self.job_started(execution)
        await self.send_telemetry()

    def job_reboot(self, doc, execution):  # reset once SUCCEEDED is reported
        self.job_started(execution)
        self.reboot_job = execution["jobId"]

    def job_started(self, execution):
        self.activity = time.ticks_ms()
        log("job:", execution["jobId"], execution.get("jobDocument"))

    async def after_jobs(self):
        """Log each job's outcome; reset when a reboot job has been reported."""
        if self.runner is None:
            return
        history = self.runner.history
        for job_id, status in history[self.jobs_logged:]:
            log("job:", job_id, status)
            self.activity = time.ticks_ms()
            if job_id == self.reboot_job:
                await self.client.disconnect()
                machine.reset()
        self.jobs_logged = len(history)

    async def run_forever(self):
        next_report = time.ticks_ms()
        while True:
            self.wdt.feed()
            await self.after_jobs()
            now = time.ticks_ms()
            if time.ticks_diff(now, next_report) >= 0:
                try:
                    await self.send_telemetry()
                except MqttError as e:  # queued or refused: keep measuring
                    log("telemetry:", e)
                next_report = time.ticks_add(now, self.state["report_interval_s"] * 1000)
            await asyncio.sleep_ms(min(max(time.ticks_diff(next_report, time.ticks_ms()), 0),
                                       1000))

    async def run_awake(self):
        """Deep-sleep mode: one reading, then whatever the session brings (deltas, jobs),
        until nothing happened for awake_s; then the job runner stops (after reporting the
        job at hand, if any)."""
        await self.send_telemetry()
        quiet_ms = self.cfg["awake_s"] * 1000
        self.activity = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), self.activity) < quiet_ms:
            self.wdt.feed()
            await self.after_jobs()
            await asyncio.sleep_ms(100)
        if self.runner is not None and self.runner_task is not None:
            self.runner.stop()
            await asyncio.wait_for(self.runner_task, 20)
        await self.after_jobs()


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
    client = make_client(cfg, cfg["thing"], cfg["cert"], cfg["key"], clean_start=False,
                         keep_alive=cfg["keep_alive_s"],
                         session_expiry_interval=cfg["session_expiry_s"],
                         maximum_packet_size=cfg["max_packet_size"])
    app = Sensor(client, cfg, wdt, wlan)
    client.on_connection_event(app.on_event)
    event = await connect(client, cfg, wdt)
    log("mqtt: connected to", cfg["endpoint"], "as", cfg["thing"], "session present:",
        event.session_present)
    await app.start(event.session_present)
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
