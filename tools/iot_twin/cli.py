"""``python -m iot_twin``: run the local AWS IoT Core twin and manage what is in it.

While ``serve`` runs, the other commands go through its admin endpoint (loopback TCP,
port and token in ``$TWIN_DATA/admin.json``) so that subscribers see what they do (a job
added notifies ``jobs/notify-next``; a shadow update publishes ``update/delta``). When no
twin is running they act on the state directory directly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from . import persist
from .listeners import DEFAULT_PORTS, PORT_ENV

EPILOG = """\
environment (flags win over these):
  TWIN_DATA        state directory (default .twin/): ca.pem, things/NAME/{cert,key}.pem, ...
  TWIN_HOST        address to bind (default 127.0.0.1; non-loopback needs --allow-remote)
  TWIN_MTLS_PORT   mutual TLS, like AWS port 8883                     (default 18883)
  TWIN_ALPN_PORT   TLS routed by ALPN, like AWS port 443              (default 18443)
  TWIN_WSS_PORT    MQTT over WebSocket over TLS, path /mqtt           (default 18444)
  TWIN_PLAIN_PORT  plain MQTT, no AWS equivalent                      (default 11883)

examples:
  python -m iot_twin serve
  python -m iot_twin thing add t1          # writes $TWIN_DATA/things/t1/{cert,key}.pem
  python -m iot_twin job add t1 job.json --job-id fw-1
  python -m iot_twin shadow update t1 '{"state":{"desired":{"led":"on"}}}'
  python -m iot_twin shadow get t1
  python -m iot_twin connections
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m iot_twin",
        description="A local, offline twin of AWS IoT Core: MQTT 5 with AWS's limits and "
        "reason codes, X.509 and custom-authorizer identities, policies, Device "
        "Shadow, Jobs and Fleet Provisioning.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", metavar="DIR", help="state directory (default $TWIN_DATA or .twin)")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "serve",
        help="run the twin in the foreground (Ctrl-C stops it)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    s.add_argument("--host", help="address to bind (default $TWIN_HOST or 127.0.0.1)")
    for name in DEFAULT_PORTS:
        s.add_argument(
            f"--{name}-port",
            type=int,
            metavar="N",
            help=f"port of the {name} listener (default ${PORT_ENV[name]} or "
            f"{DEFAULT_PORTS[name]}; 0 = any free port)",
        )
    s.add_argument(
        "--no",
        action="append",
        default=[],
        choices=sorted(DEFAULT_PORTS),
        metavar="LISTENER",
        help="do not open this listener (repeatable)",
    )
    s.add_argument(
        "--require-sni",
        action="store_true",
        default=True,
        help="close TLS connections whose SNI is not localhost (the default: AWS refuses "
        "a connection without SNI)",
    )
    s.add_argument(
        "--no-sni-check",
        dest="require_sni",
        action="store_false",
        help="accept TLS connections with any server name or none",
    )
    s.add_argument(
        "--iam-credential",
        action="append",
        default=[],
        metavar="KEY_ID:SECRET",
        help="a static AWS credential for MQTT over WebSocket signed with SigV4 "
        "(region us-east-1; allowed everything; repeatable)",
    )
    s.add_argument(
        "--job-events",
        action="store_true",
        help="publish jobs events ($aws/events/job/..., $aws/events/jobExecution/...), "
        "which AWS publishes only once enabled",
    )
    s.add_argument(
        "--no-throttle",
        action="store_true",
        help="turn off AWS's per-connection throttles (100 publishes/s, 512 KiB/s, "
        "1 CONNECT/s per client id), e.g. for load tests",
    )
    s.add_argument(
        "--revocation-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds between a certificate leaving ACTIVE and its live connections being "
        "closed (AWS: within minutes; default 0)",
    )
    s.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow binding a non-loopback address (the twin has no real security)",
    )
    s.add_argument(
        "--authorizers",
        metavar="FILE.json",
        help="custom authorizers to register: a list of {name, token_key_name, "
        "public_keys: {key name: PEM file}, signing_disabled, default, "
        "tokens: {token: Lambda response}}",
    )
    s.add_argument(
        "--session-expiry-max",
        type=int,
        metavar="S",
        help="account maximum for Session Expiry (default 3600, at most 604800)",
    )
    s.add_argument("-v", "--verbose", action="store_true", help="also log every PUBLISH")
    s.add_argument("-q", "--quiet", action="store_true", help="log warnings only")

    t = sub.add_parser("thing", help="things and their certificates")
    tsub = t.add_subparsers(dest="action", required=True, metavar="ACTION")
    ta = tsub.add_parser(
        "add",
        help="register a thing with a new certificate "
        "(writes $TWIN_DATA/things/NAME/cert.pem and key.pem)",
    )
    ta.add_argument("name")
    tsub.add_parser("list", help="registered things and their certificates")
    tc = tsub.add_parser("cert-status", help="set a certificate ACTIVE, INACTIVE or REVOKED")
    tc.add_argument("certificate_id")
    tc.add_argument("status", choices=["ACTIVE", "INACTIVE", "REVOKED"])

    po = sub.add_parser("policy", help="IoT policies on certificates (live connections too)")
    posub = po.add_subparsers(dest="action", required=True, metavar="ACTION")
    pa = posub.add_parser("add", help="create (or replace) a policy from a JSON file")
    pa.add_argument("name")
    pa.add_argument("file", metavar="FILE.json")
    for verb in ("attach", "detach"):
        pv = posub.add_parser(verb, help=f"{verb} a policy to/from a certificate")
        pv.add_argument("name")
        pv.add_argument("certificate_id")

    j = sub.add_parser("job", help="jobs")
    jsub = j.add_subparsers(dest="action", required=True, metavar="ACTION")
    ja = jsub.add_parser("add", help="queue a job (document from a JSON file) on a thing")
    ja.add_argument("thing")
    ja.add_argument("document", metavar="DOC.json")
    ja.add_argument("--job-id", help="job id (default: generated)")

    tp = sub.add_parser("template", help="fleet provisioning templates")
    tpsub = tp.add_subparsers(dest="action", required=True, metavar="ACTION")
    tpa = tpsub.add_parser("add", help="create (or replace) a provisioning template")
    tpa.add_argument("name")
    tpa.add_argument("file", metavar="FILE.json")

    sh = sub.add_parser("shadow", help="device shadows")
    shsub = sh.add_subparsers(dest="action", required=True, metavar="ACTION")
    sg = shsub.add_parser("get", help="print a shadow document")
    sg.add_argument("thing")
    sg.add_argument("--name", help="named shadow (default: the classic shadow)")
    su = shsub.add_parser("update", help="update a shadow like UpdateThingShadow")
    su.add_argument("thing")
    su.add_argument(
        "document", metavar="JSON", help='{"state": {...}} (or just {"desired": ...}), or @FILE'
    )
    su.add_argument("--name", help="named shadow (default: the classic shadow)")

    sub.add_parser("connections", help="list live MQTT connections (needs a running twin)")

    pb = sub.add_parser("publish", help="publish a message as the twin (needs a running twin)")
    pb.add_argument("topic")
    pb.add_argument("payload")
    pb.add_argument("--qos", type=int, choices=[0, 1], default=1)
    pb.add_argument("--retain", action="store_true")
    return p


# --- talking to a running twin ---------------------------------------------------------------


class NotRunning(Exception):
    pass


def admin_call(data_dir: Path, op: str, args: dict[str, Any], timeout: float = 30.0) -> Any:
    """Run ``op`` in the twin serving ``data_dir``; NotRunning if there is none."""
    info = persist.read_json(data_dir / "admin.json")
    if not info:
        raise NotRunning()
    try:
        with socket.create_connection((info["host"], info["port"]), timeout=timeout) as s:
            s.sendall(
                json.dumps({"token": info["token"], "op": op, "args": args}).encode() + b"\n"
            )
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        raise NotRunning() from None
    answer = json.loads(data or b"{}")
    if not answer.get("ok"):
        raise SystemExit("error: " + str(answer.get("error", "no answer from the twin")))
    return answer.get("result")


def _offline(data_dir: Path) -> Any:
    from .twin import Twin

    return Twin(data_dir, admin=False)


def run_op(data_dir: Path, op: str, args: dict[str, Any]) -> Any:
    try:
        return admin_call(data_dir, op, args)
    except NotRunning:
        pass
    if op in ("connections", "publish"):
        raise SystemExit(
            f"error: no twin is running on {data_dir} (start: python -m iot_twin serve)"
        )
    try:
        return _offline(data_dir).admin(op, args)
    except (KeyError, ValueError, TypeError) as e:
        raise SystemExit(f"error: {e}") from None


def _read_json_arg(text: str) -> Any:
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        return json.loads(text)
    except ValueError as e:
        raise SystemExit(f"error: not JSON: {e}") from None


# --- serve -----------------------------------------------------------------------------------


def _load_authorizers(twin: Any, path: str) -> None:
    from .authorizer import CustomAuthorizer

    for entry in json.loads(Path(path).read_text()):
        keys = {name: Path(pem).read_text() for name, pem in entry.get("public_keys", {}).items()}
        twin.register_authorizer(
            CustomAuthorizer(
                entry["name"],
                tokens=entry.get("tokens", {}),
                token_key_name=entry.get("token_key_name"),
                public_keys=keys,
                signing_disabled=bool(entry.get("signing_disabled", False)),
            ),
            default=bool(entry.get("default", False)),
        )


def banner(twin: Any) -> str:
    host = twin.host
    where = {
        "mtls": "mutual TLS, client certificate required (like AWS 8883)",
        "alpn": "TLS routed by ALPN (like AWS 443): x-amzn-mqtt-ca = X.509, "
        "mqtt = custom authorizer, http/1.1 = WebSocket",
        "wss": "MQTT over WebSocket over TLS, wss://localhost:%d/mqtt (custom authorizer "
        "or SigV4)",
        "plain": "plain MQTT, NO AWS equivalent (client id = thing name, default policy)",
    }
    lines = [
        "AWS IoT Core twin (mqtt_v5): offline, MQTT 5, AWS limits and reason codes",
        f"  state dir   {twin.data_dir.resolve()}",
        f"  CA          {twin.ca_path.resolve()}  (server certificate: localhost, 127.0.0.1)",
    ]
    for name, port in twin.ports.items():
        text = where[name] % port if "%d" in where[name] else where[name]
        lines.append(f"  {name:<10}  {host}:{port:<6} {text}")
    lim = twin.limits
    lines.append(
        "  TLS         SNI "
        + ("required: connect to localhost" if twin.require_sni else "not checked")
    )
    lines.append(
        "  throttles   "
        + (
            f"{lim.publishes_per_s:g} PUBLISH/s, {lim.throughput_bytes_per_s / 1024:g} KiB/s per "
            f"connection, {lim.connects_per_s_per_client_id:g} CONNECT/s per client id"
            if lim.publishes_per_s or lim.throughput_bytes_per_s
            else "off"
        )
    )
    if twin.admin_port:
        lines.append(
            f"  admin       127.0.0.1:{twin.admin_port} (used by the other "
            "python -m iot_twin commands)"
        )
    things = twin.things()
    if things:
        lines.append(
            "  things      "
            + ", ".join(
                "{} ({})".format(
                    t["name"],
                    ", ".join(
                        "{}… {}".format(c["certificate_id"][:10], c["status"])
                        for c in t["certificates"]
                    )
                    or "no certificate",
                )
                for t in things
            )
        )
    else:
        lines.append("  things      none yet: python -m iot_twin thing add NAME")
    lines.append("Ctrl-C stops it.")
    return "\n".join(lines)


async def serve(args: argparse.Namespace, data_dir: Path) -> None:
    from .server import Limits
    from .twin import Twin

    ports = {f"{n}_port": getattr(args, f"{n}_port") for n in DEFAULT_PORTS}
    twin = Twin(
        data_dir,
        host=args.host,
        allow_remote=args.allow_remote,
        listeners=tuple(n for n in DEFAULT_PORTS if n not in args.no),
        max_session_expiry_s=args.session_expiry_max,
        require_sni=args.require_sni,
        revocation_delay_s=args.revocation_delay,
        job_events=args.job_events,
        limits=Limits.unthrottled()
        if args.no_throttle
        else None,
        **ports,
    )
    if args.authorizers:
        _load_authorizers(twin, args.authorizers)
    for credential in args.iam_credential:
        key_id, sep, secret = credential.partition(":")
        if not sep or not key_id or not secret:
            raise ValueError("--iam-credential wants KEY_ID:SECRET")
        twin.add_iam_credential(key_id, secret)
    await twin.start()
    print(banner(twin), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await stop.wait()
    finally:
        logging.getLogger("iot_twin").info("stopping")
        await twin.stop()


# --- main ------------------------------------------------------------------------------------


def _print(result: Any, as_json: bool) -> None:
    if as_json or (not isinstance(result, (str, list)) and result is not None):
        print(json.dumps(result, indent=2, sort_keys=True))
    elif isinstance(result, str):
        print(result)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    data_dir = persist.data_dir(args.data)
    cmd = args.command
    if cmd == "serve":
        level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
        logging.basicConfig(
            level=level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout
        )
        if not args.verbose:
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        try:
            asyncio.run(serve(args, data_dir))
        except (ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            pass
        return 0
    if cmd == "thing" and args.action == "add":
        r = run_op(data_dir, "thing-add", {"name": args.name})
        if args.json:
            _print(r, True)
        else:
            print(
                f"thing {r['name']}: certificate {r['certificate_id']} ACTIVE\n"
                f"  cert {r['cert_path']}\n  key  {r['key_path']}\n"
                f"  CA   {data_dir / 'ca.pem'}"
            )
    elif cmd == "thing" and args.action == "list":
        things = run_op(data_dir, "thing-list", {})
        if args.json:
            _print(things, True)
        elif not things:
            print("no things (python -m iot_twin thing add NAME)")
        for t in things if not args.json else []:
            certs = ", ".join(f"{c['certificate_id']} {c['status']}" for c in t["certificates"])
            print(f"{t['name']}: {certs or 'no certificate'}")
    elif cmd == "thing" and args.action == "cert-status":
        run_op(
            data_dir, "cert-status", {"certificate_id": args.certificate_id, "status": args.status}
        )
        print(f"certificate {args.certificate_id} is {args.status}")
    elif cmd == "policy" and args.action == "add":
        doc = _read_json_arg("@" + args.file)
        run_op(data_dir, "policy-add", {"name": args.name, "document": doc})
        print(f"policy {args.name} saved")
    elif cmd == "policy":
        run_op(
            data_dir,
            f"policy-{args.action}",
            {"name": args.name, "certificate_id": args.certificate_id},
        )
        print(f"policy {args.name} {args.action}ed: certificate {args.certificate_id}")
    elif cmd == "job":
        doc = _read_json_arg("@" + args.document)
        job_id = run_op(
            data_dir, "job-add", {"thing": args.thing, "document": doc, "job_id": args.job_id}
        )
        print(
            json.dumps({"jobId": job_id}) if args.json else f"job {job_id} queued for {args.thing}"
        )
    elif cmd == "template":
        body = _read_json_arg("@" + args.file)
        run_op(data_dir, "template-add", {"name": args.name, "body": body})
        print(f"template {args.name} saved")
    elif cmd == "shadow" and args.action == "get":
        doc = run_op(data_dir, "shadow-get", {"thing": args.thing, "name": args.name})
        if doc is None:
            print(
                f"no shadow for {args.thing}" + (f" named {args.name}" if args.name else ""),
                file=sys.stderr,
            )
            return 1
        _print(doc, True)
    elif cmd == "shadow" and args.action == "update":
        doc = _read_json_arg(args.document)
        if isinstance(doc, dict) and "state" not in doc and set(doc) <= {"desired", "reported"}:
            doc = {"state": doc}
        _print(
            run_op(
                data_dir,
                "shadow-update",
                {"thing": args.thing, "document": doc, "name": args.name},
            ),
            True,
        )
    elif cmd == "connections":
        conns = run_op(data_dir, "connections", {})
        if args.json:
            _print(conns, True)
        elif not conns:
            print("no connections")
        for c in conns if not args.json else []:
            print(
                f"{c['client_id']}  {c['auth']} via {c['listener']} from {c['peer']}  "
                f"keep-alive {c['keep_alive_s']} s  {len(c['subscriptions'])} subscriptions  "
                f"{c['connected_for_s']} s"
            )
    elif cmd == "publish":
        n = run_op(
            data_dir,
            "publish",
            {"topic": args.topic, "payload": args.payload, "qos": args.qos, "retain": args.retain},
        )
        print(f"delivered to {n} subscription(s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
