# tools/bench_mp/scenario.py's program for umqtt.simple.
TOPIC = "bench/heap"


class _Sni:
    # umqtt passes its server address as server_hostname: verify the certificate's name.
    def __init__(self, c, sni):
        self.c = c
        self.sni = sni

    def wrap_socket(self, sock, server_hostname=None):
        return self.c.wrap_socket(sock, server_hostname=self.sni)


def run(host, port, sni, ca, cert, key, ctx, read):
    from umqtt.simple import MQTTClient

    got = []
    c = MQTTClient("heap-umqtt", host, port, ssl=_Sni(ctx(), sni))
    c.set_callback(lambda t, m: got.append(len(m)))
    c.connect()
    c.subscribe(TOPIC, 1)
    c.publish(TOPIC, bytes(64), qos=1)
    while not got:
        c.wait_msg()
    c.disconnect()
    return got[0] == 64
