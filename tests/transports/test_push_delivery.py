"""RFC 8620 §7.2 PushSubscription delivery over real sockets: a receiver on a loopback
port gets the PushVerification, then StateChanges once verified (http:// allowed by the
dev-only allow_http_push); retries with back-off; a dead or slow endpoint never slows the
API; https receivers are verified against the CAs (push_ca adds one)."""

import http.server
import json
import queue
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

import jmapd

from conftest import Http, connected, serving

CORE = jmapd.URN_CORE
MAIL = jmapd.URN_MAIL
POLICY = jmapd.PushPolicy(timeout=0.3, backoff=0.03, attempts=3)


class Receiver:
    """A push endpoint on 127.0.0.1: records each POST, answers the next status queued."""

    def __init__(self, statuses=(), tls=None):
        self.posts = queue.Queue()
        self.statuses = list(statuses)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.posts.put({"path": self.path, "headers": dict(self.headers),
                                 "body": json.loads(body), "time": time.monotonic()})
                self.send_response(outer.statuses.pop(0) if outer.statuses else 201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/push/device-1?k=v"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def next(self, timeout=2.0):
        return self.posts.get(timeout=timeout)

    def nothing_within(self, seconds):
        try:
            item = self.posts.get(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected push {item['body']}")

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def push_server(demo_template):
    with serving(demo_template, allow_http_push=True, push_policy=POLICY) as running:
        yield running


@pytest.fixture
def client(push_server):
    with connected(push_server) as http_client:
        yield http_client


def call(web, name, args, using=(CORE, MAIL)):
    response = web.api([[name, args, "c"]], using=using)
    assert response.status == 200, response.data
    result_name, result, _ = json.loads(response.data)["methodResponses"][0]
    assert result_name == name, result
    return result


def subscribe(web, url, **props):
    result = call(web, "PushSubscription/set", {"create": {"k": {
        "deviceClientId": "dev-1", "url": url, **props}}}, using=(CORE,))
    assert result["notCreated"] is None, result["notCreated"]
    return result["created"]["k"]["id"]


def touch_inbox(web, order=3):
    inbox = call(web, "Mailbox/query", {"accountId": "alice", "filter": {"role": "inbox"}})
    result = call(web, "Mailbox/set", {"accountId": "alice", "update": {
        inbox["ids"][0]: {"sortOrder": order}}})
    return result["newState"]


def wait_for(predicate, seconds=2.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once it is closed


@pytest.fixture
def black_hole():
    """Accepts connections (the kernel's backlog) and never answers: a slow endpoint."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/push"
    listener.close()


def test_verification_then_state_changes_reach_a_loopback_receiver(client, receiver):
    """§7.2.2: the PushVerification at once; §7.2: nothing more until verified; §7.1 then."""
    subscription_id = subscribe(client, receiver.url, types=["Mailbox"])
    verification = receiver.next()
    assert verification["path"] == "/push/device-1?k=v"
    assert verification["headers"]["Content-Type"] == "application/json"
    assert verification["headers"]["TTL"] == str(jmapd.PUSH_TTL_SECONDS)  # RFC 8030 §5.2
    code = verification["body"]["verificationCode"]
    assert verification["body"] == {"@type": "PushVerification",
                                    "pushSubscriptionId": subscription_id,
                                    "verificationCode": code}
    touch_inbox(client, 4)
    assert receiver.nothing_within(0.2)  # §7.2: MUST NOT push before verification
    updated = call(client, "PushSubscription/set", {"update": {subscription_id: {
        "verificationCode": code}}}, using=(CORE,))
    assert updated["updated"] == {subscription_id: None}
    state = touch_inbox(client, 5)
    push = receiver.next()
    assert push["body"] == {"@type": "StateChange", "changed": {"alice": {"Mailbox": state}}}
    assert push["headers"]["Content-Type"] == "application/json"


def test_http_push_urls_are_refused_without_the_option(web, receiver):
    """§7.2: url MUST begin with https://; only allow_http_push lifts that, for loopback."""
    result = call(web, "PushSubscription/set", {"create": {"k": {
        "deviceClientId": "d", "url": receiver.url}}}, using=(CORE,))
    error = result["notCreated"]["k"]
    assert (error["type"], error["properties"]) == ("invalidProperties", ["url"])
    assert "--allow-http-push" in error["description"]
    assert receiver.nothing_within(0.1)


def test_pushes_to_the_reserved_host_are_captured_without_network(server, web):
    """https://push.jmapd.test/NAME: each POST is kept in server.pushes, none is sent."""
    subscription_id = subscribe(web, "https://push.jmapd.test/alice-phone")
    wait_for(lambda: len(server.pushes) == 1)
    verification = server.pushes[0]
    assert verification["url"] == "https://push.jmapd.test/alice-phone"
    assert verification["body"]["pushSubscriptionId"] == subscription_id
    call(web, "PushSubscription/set", {"update": {subscription_id: {
        "verificationCode": verification["body"]["verificationCode"]}}}, using=(CORE,))
    state = touch_inbox(web)
    wait_for(lambda: len(server.pushes) == 2)
    assert server.pushes[1]["body"] == {"@type": "StateChange",
                                        "changed": {"alice": {"Mailbox": state}}}
    assert server.deliverer.stats == {"sent": 0, "retried": 0, "dropped": 0}


def test_failing_endpoint_is_retried_with_doubling_back_off_then_dropped(push_server, client):
    """§7.2: the server handles error statuses "in a reasonable manner": 503 is retried
    after 0.03 s, then 0.06 s; after POLICY.attempts failures the POST is dropped."""
    failing = Receiver(statuses=[503] * 10)
    try:
        subscribe(client, failing.url)
        times = [failing.next()["time"] for _ in range(POLICY.attempts)]
        assert failing.nothing_within(0.2)
    finally:
        failing.close()
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    assert gaps[0] >= POLICY.backoff and gaps[1] >= 2 * POLICY.backoff
    wait_for(lambda: push_server.deliverer.stats["dropped"] == 1)
    assert push_server.deliverer.stats == {"sent": 0, "retried": 2, "dropped": 1}
    assert push_server.deliverer.queues == {}


def test_429_is_retried_and_then_delivered(push_server, client):
    """§7.2: a 429 "MUST cause the JMAP server to reduce the frequency of pushes"."""
    limited = Receiver(statuses=[429])
    try:
        subscribe(client, limited.url)
        first, second = limited.next(), limited.next()
    finally:
        limited.close()
    assert first["body"] == second["body"]
    assert second["time"] - first["time"] >= POLICY.backoff
    wait_for(lambda: push_server.deliverer.stats["sent"] == 1)
    assert push_server.deliverer.stats["retried"] == 1


@pytest.mark.parametrize("status", [404, 410, 400, 301])
def test_gone_or_refused_endpoints_are_not_retried(push_server, client, status):
    """RFC 8030 §7.3: 404/410 mean the subscription is gone; other 4xx/3xx will not improve."""
    refusing = Receiver(statuses=[status])
    try:
        subscribe(client, refusing.url)
        refusing.next()
        assert refusing.nothing_within(0.15)
    finally:
        refusing.close()
    assert push_server.deliverer.stats == {"sent": 0, "retried": 0, "dropped": 1}


def test_dead_and_slow_endpoints_never_slow_the_api_or_other_subscriptions(
        push_server, client, receiver, black_hole):
    """Delivery is asynchronous: a black-hole and a refused endpoint cost the API
    nothing, and a healthy subscription's verification still arrives at once."""
    started = time.monotonic()
    subscribe(client, black_hole)
    subscribe(client, f"http://127.0.0.1:{closed_port()}/push")
    good = subscribe(client, receiver.url)
    assert receiver.next(timeout=1.0)["body"]["pushSubscriptionId"] == good
    slowest = 0.0
    for order in range(10):
        before = time.monotonic()
        touch_inbox(client, order)
        slowest = max(slowest, time.monotonic() - before)
    assert slowest < 0.2  # far below the 0.3 s a POST to the black hole may take
    assert time.monotonic() - started < 1.5
    wait_for(lambda: push_server.deliverer.stats["retried"] >= 2)


def test_7_2_2_many_dead_endpoints_do_not_delay_a_fresh_verification(
        push_server, client, receiver, black_hole):
    """§7.2.2: the server "MUST immediately push a PushVerification": ten subscriptions
    hanging on a black hole (more than a fixed pool of senders) hold only themselves."""
    for _ in range(10):
        subscribe(client, black_hole)
    wait_for(lambda: len(push_server.deliverer.busy) == 10)
    before = time.monotonic()
    good = subscribe(client, receiver.url)
    assert receiver.next(timeout=1.0)["body"]["pushSubscriptionId"] == good
    assert time.monotonic() - before < 0.25  # not a POST timeout (0.3 s) behind the others


def test_stopping_does_not_wait_out_a_slow_endpoint(demo_template, black_hole):
    """stop() returns within about one POST timeout, even with a POST hanging."""
    core = demo_template.clone(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds())
    running = jmapd.JmapServer(core, allow_http_push=True, push_policy=POLICY)
    web = Http(running)
    subscribe(web, black_hole)
    web.close()
    wait_for(lambda: running.deliverer.busy)  # the POST is in flight
    before = time.monotonic()
    running.stop()
    assert time.monotonic() - before < POLICY.timeout + 0.5


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (openssl; skipped where it is missing)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_https_receivers_are_verified_against_the_cas_plus_push_ca(demo_template, certificate):
    """§8.6/§7.2: https pushes verify the receiver's certificate: an unknown CA fails
    (retried, then dropped); with push_ca naming it the POST is delivered."""
    cert, key = certificate
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    results = {}
    for push_ca in (None, str(cert)):
        secure = Receiver(tls=tls)
        core = demo_template.clone(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds())
        running = jmapd.JmapServer(core, push_ca=push_ca, push_policy=POLICY)
        web = Http(running)
        try:
            subscribe(web, secure.url)  # https: allowed without allow_http_push
            if push_ca:
                results[push_ca] = secure.next()["body"]["@type"]
            else:
                wait_for(lambda: running.deliverer.stats["dropped"] == 1)
                results[push_ca] = secure.nothing_within(0.05) and "dropped"
        finally:
            web.close()
            running.stop()
            secure.close()
    assert results == {None: "dropped", str(cert): "PushVerification"}
