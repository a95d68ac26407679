# tools/bench_mp/scenario.py's "bare": a TLS connect and an MQTT CONNECT/CONNACK, no library.


def run(host, port, sni, ca, cert, key, ctx, read):
    import socket

    s = socket.socket()
    s.connect(socket.getaddrinfo(host, port)[0][-1])
    s = ctx().wrap_socket(s, server_hostname=sni)
    s.write(b"\x10\x12\x00\x04MQTT\x04\x02\x00\x3c\x00\x06bare-1")  # MQTT 3.1.1 CONNECT
    ack = s.read(4)
    s.write(b"\xe0\x00")
    s.close()
    return ack == b"\x20\x02\x00\x00"
