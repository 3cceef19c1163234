"""Benchmarks, run by hand (not collected by pytest): python tests/bench.py

Prints one figure per line; README quotes them with the machine they ran on.
"""

import base64
import http.client
import json
import os
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jmapd  # noqa: E402


def timed(fn, repeat):
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), max(samples)


def bench_serve_startup():
    """serve(seed="demo") until the session answers over HTTP."""
    def start_and_ask():
        with jmapd.serve(seed="demo") as server:
            host, port = server.httpd.server_address[:2]
            conn = http.client.HTTPConnection(host, port)
            conn.request("GET", jmapd.SESSION_PATH, headers={"Authorization": "Bearer token-alice"})
            assert conn.getresponse().status == 200
            conn.close()
    median, worst = timed(start_and_ask, 30)
    print(f"serve(seed='demo') to first session answer: median {median * 1000:.1f} ms, "
          f"max {worst * 1000:.1f} ms (30 runs)")


def bench_clone():
    template = jmapd.JmapCore()
    jmapd.SEEDS["demo"](template, "demo")
    median, _ = timed(lambda: template.clone().close(), 50)
    print(f"fresh core from a demo template (sqlite backup): median {median * 1000:.2f} ms")


def bench_plugin_server_ready(runs=50):
    """The pytest plugin's jmap_server: the fixture's setup (a copy of the session's
    template, a bind, the server's threads), and then a Client's first session answer."""
    templates = jmapd.ServerTemplates()
    start = time.perf_counter()
    templates.server(seed="demo").stop()  # the first seeds the template (or copies serve()'s)
    first = time.perf_counter() - start
    ready, answered = [], []
    for _ in range(runs):
        start = time.perf_counter()
        server = templates.server(seed="demo")
        ready.append(time.perf_counter() - start)
        server.client().session
        answered.append(time.perf_counter() - start)
        server.stop()  # teardown is not part of "ready"
    templates.close()
    print(f"jmap_server fixture, request to ready: median {statistics.median(ready) * 1000:.1f}"
          f" ms, max {max(ready) * 1000:.1f} ms; to the first session answer: median "
          f"{statistics.median(answered) * 1000:.1f} ms ({runs} runs after the first, "
          f"{first * 1000:.0f} ms)")


def bench_http_requests():
    with jmapd.serve(seed="demo") as server:
        host, port = server.httpd.server_address[:2]
        conn = http.client.HTTPConnection(host, port)
        body = json.dumps({"using": [jmapd.URN_CORE, jmapd.URN_MAIL], "methodCalls": [
            ["Mailbox/get", {"accountId": "alice", "ids": None}, "0"]]})
        headers = {"Authorization": "Bearer token-alice", "Content-Type": "application/json"}
        count, start = 2000, time.perf_counter()
        for _ in range(count):
            conn.request("POST", jmapd.API_PATH, body, headers)
            conn.getresponse().read()
        elapsed = time.perf_counter() - start
    print(f"HTTP keep-alive Mailbox/get (11 mailboxes): {count / elapsed:.0f} requests/s, "
          f"{elapsed / count * 1000:.2f} ms each")


class BenchWebSocket:
    """Just enough of an RFC 6455 client for the figures: masked text out, text in."""

    def __init__(self, server):
        host, port = server.httpd.server_address[:2]
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {jmapd.WEBSOCKET_PATH} HTTP/1.1\r\nHost: x\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           "Sec-WebSocket-Protocol: jmap\r\n"
                           "Authorization: Bearer token-alice\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send_json(self, value):
        self.sock.sendall(jmapd.encode_frame(jmapd.Opcode.TEXT, json.dumps(value).encode(),
                                             mask=os.urandom(4)))

    def recv_json(self):
        reader = jmapd.FrameReader(1 << 30, require_mask=False)
        reader.feed(self.buffer)
        while True:
            for frame in reader.frames():
                self.buffer = bytes(reader.buffer)
                return json.loads(frame.payload)
            reader.feed(self.sock.recv(1 << 20))

    def close(self):
        self.sock.close()


def bench_websocket_versus_http(count=2000):
    """Requests/s for Core/echo and Email/get over HTTP keep-alive and one WebSocket."""
    with jmapd.serve(seed="demo") as server:
        ids = server.core.call("alice", "Email/query", {"accountId": "alice", "limit": 10})["ids"]
        calls = {"Core/echo": [["Core/echo", {"hello": True}, "0"]],
                 "Email/get of 10": [["Email/get", {"accountId": "alice", "ids": ids}, "0"]]}
        host, port = server.httpd.server_address[:2]
        headers = {"Authorization": "Bearer token-alice", "Content-Type": "application/json"}
        for label, method_calls in calls.items():
            request = {"using": [jmapd.URN_CORE, jmapd.URN_MAIL], "methodCalls": method_calls}
            conn = http.client.HTTPConnection(host, port)
            body = json.dumps(request)
            start = time.perf_counter()
            for _ in range(count):
                conn.request("POST", jmapd.API_PATH, body, headers)
                conn.getresponse().read()
            http_rate = count / (time.perf_counter() - start)
            conn.close()
            ws = BenchWebSocket(server)
            start = time.perf_counter()
            for index in range(count):
                ws.send_json({"@type": "Request", "id": str(index), **request})
                ws.recv_json()
            ws_rate = count / (time.perf_counter() - start)
            start, window = time.perf_counter(), 16
            for index in range(count + window):
                if index < count:
                    ws.send_json({"@type": "Request", "id": str(index), **request})
                if index >= window:
                    ws.recv_json()
            pipelined = count / (time.perf_counter() - start)
            ws.close()
            print(f"{label}: HTTP keep-alive {http_rate:.0f} requests/s; WebSocket one at a "
                  f"time {ws_rate:.0f}/s, {window} in flight {pipelined:.0f}/s")


def bench_push_latency(count=50):
    """Median time from the start of a write (HTTP Mailbox/set) to its StateChange."""
    with jmapd.serve(seed="demo") as server:
        host, port = server.httpd.server_address[:2]
        inbox = server.core.call("alice", "Mailbox/query", {
            "accountId": "alice", "filter": {"role": "inbox"}})["ids"][0]
        writer = http.client.HTTPConnection(host, port)
        headers = {"Authorization": "Bearer token-alice", "Content-Type": "application/json"}

        def write(index):
            writer.request("POST", jmapd.API_PATH, json.dumps({
                "using": [jmapd.URN_CORE, jmapd.URN_MAIL], "methodCalls": [["Mailbox/set", {
                    "accountId": "alice", "update": {inbox: {"name": f"Inbox {index}"}}}, "0"]]}),
                headers)
            writer.getresponse().read()

        stream = socket.create_connection((host, port))
        stream.sendall((f"GET {jmapd.EVENTSOURCE_PATH}?types=*&closeafter=no&ping=0 HTTP/1.1"
                        "\r\nHost: x\r\nAuthorization: Bearer token-alice\r\n\r\n").encode())
        received = stream.recv(65536)
        samples = []
        for index in range(count):
            start = time.perf_counter()
            write(index)
            while b"event: state" not in received:
                received += stream.recv(65536)
            samples.append(time.perf_counter() - start)
            received = received.split(b"event: state", 1)[1].split(b"\n\n", 1)[1]
        stream.close()
        print(f"write to StateChange, EventSource: median {statistics.median(samples) * 1000:.2f} ms")
        ws = BenchWebSocket(server)
        ws.send_json({"@type": "WebSocketPushEnable", "dataTypes": None})
        ws.send_json({"@type": "Request", "using": [jmapd.URN_CORE], "methodCalls": []})
        ws.recv_json()  # messages are read in order: push is on once this is answered
        samples = []
        for index in range(count):
            start = time.perf_counter()
            write(count + index)
            while ws.recv_json().get("@type") != "StateChange":
                pass
            samples.append(time.perf_counter() - start)
        ws.close()
        writer.close()
        print(f"write to StateChange, WebSocket: median {statistics.median(samples) * 1000:.2f} ms")


def bench_mailbox_scale(count=2000):
    core = jmapd.JmapCore()
    jmapd.SEEDS["empty"](core, "empty")
    start = time.perf_counter()
    for batch in range(0, count, 500):
        core.call("alice", "Mailbox/set", {"accountId": "alice", "create": {
            f"m{i}": {"name": f"folder {i:05d}"} for i in range(batch, batch + 500)}})
    created = time.perf_counter() - start
    args = {"accountId": "alice", "sort": [{"property": "name"}], "limit": 50,
            "calculateTotal": True}
    query, _ = timed(lambda: core.call("alice", "Mailbox/query", args), 20)
    state = core.call("alice", "Mailbox/get", {"accountId": "alice", "ids": []})["state"]
    core.call("alice", "Mailbox/set", {"accountId": "alice", "create": {"x": {"name": "late"}}})
    changes, _ = timed(lambda: core.call("alice", "Mailbox/changes", {
        "accountId": "alice", "sinceState": state}), 20)
    print(f"Mailbox/set create {count} mailboxes in batches of 500: {created * 1000:.0f} ms "
          f"({created / count * 1e6:.0f} us each)")
    print(f"Mailbox/query sorted by name over {count + 6} mailboxes: median {query * 1000:.1f} ms")
    print(f"Mailbox/changes with {count + 7} mailboxes, 1 change: median {changes * 1000:.2f} ms")


def bench_mail_scale(count=100_000):
    """RFC 8621 reading at scale: generated:N, then the queries a client makes."""
    import resource
    path = os.path.join(os.path.dirname(__file__), f".bench-generated-{count}.sqlite")
    if not os.path.exists(path):
        start = time.perf_counter()
        builder = jmapd.JmapCore(path)
        jmapd.SEEDS["generated"](builder, f"generated:{count}")
        builder.close()
        print(f"generated:{count} seeded in {time.perf_counter() - start:.1f} s "
              f"({(time.perf_counter() - start) / count * 1000:.2f} ms a message)")
    on_disk = jmapd.JmapCore(path)
    core = on_disk.clone()  # measure the default, in-memory store
    on_disk.close()
    inbox = jmapd.mailbox_paths(core, core.user("alice"))["Inbox"]
    newest = [{"property": "receivedAt", "isAscending": False}]

    def query(**args):
        return core.call("alice", "Email/query", {"accountId": "alice", "limit": 50, **args})
    figures = {
        "Email/query inMailbox, receivedAt desc, limit 50":
            lambda: query(filter={"inMailbox": inbox}, sort=newest),
        "  the same with collapseThreads":
            lambda: query(filter={"inMailbox": inbox}, sort=newest, collapseThreads=True),
        "  the same with calculateTotal":
            lambda: query(filter={"inMailbox": inbox}, sort=newest, calculateTotal=True),
        "Email/query text search (one word)":
            lambda: query(filter={"text": "roadmap"}, sort=newest),
        "Email/query noneInThreadHaveKeyword $seen (unread threads)":
            lambda: query(filter={"noneInThreadHaveKeyword": "$seen"}, sort=newest),
        "Email/query someInThreadHaveKeyword $flagged":
            lambda: query(filter={"someInThreadHaveKeyword": "$flagged"}, sort=newest),
    }
    for label, run in figures.items():
        median, _ = timed(run, 15)
        print(f"{label}: median {median * 1000:.1f} ms")
    ids = query(filter={"inMailbox": inbox}, sort=newest)["ids"]
    get_args = {"accountId": "alice", "ids": ids, "fetchTextBodyValues": True,
                "properties": ["subject", "from", "receivedAt", "preview", "bodyValues",
                               "textBody", "keywords", "threadId"]}
    median, _ = timed(lambda: core.call("alice", "Email/get", get_args), 15)
    print(f"Email/get of 50 emails with preview and bodyValues: median {median * 1000:.1f} ms")
    median, _ = timed(lambda: core.call("alice", "Mailbox/get", {"accountId": "alice"}), 10)
    print(f"Mailbox/get with counts over {count} emails: median {median * 1000:.1f} ms")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process: {peak:.0f} MB")


if __name__ == "__main__":
    start = time.perf_counter()
    print(f"jmapd {jmapd.__version__}, Python {sys.version.split()[0]}, "
          f"sqlite {jmapd.sqlite3.sqlite_version}, {os.cpu_count()} cores")
    bench_serve_startup()
    bench_clone()
    bench_plugin_server_ready()
    bench_http_requests()
    bench_websocket_versus_http()
    bench_push_latency()
    bench_mailbox_scale()
    bench_mail_scale(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
    print(f"(all benchmarks: {time.perf_counter() - start:.1f} s)")
