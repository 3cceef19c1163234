"""The HTTP transport of the JMAP API: RFC 8620 §3.1 (POST to the apiUrl, application/json),
§3.6.1 (request-level errors as RFC 7807 problem details), §3.3 (the Request object),
§2 (maxSizeRequest, maxConcurrentRequests, maxCallsInRequest) and RFC 7230 framing
(keep-alive, chunked bodies, a rejected body never read as the next request).
"""

import base64
import json
import platform
import socket
import time

import pytest

import jmapd
from conftest import Http  # the shared keep-alive client (tests/ is on sys.path)
from conftest import seed_demo_accounts

CORE = jmapd.URN_CORE
PROBLEM = "application/problem+json"
LEAKS = ("Traceback", ".py", "sqlite", "SELECT", "Python", platform.python_version())
ALICE = "Basic " + base64.b64encode(b"alice:alice").decode()
ECHO = {"using": [CORE], "methodCalls": [["Core/echo", {"hello": "world"}, "0"]]}


# -- helpers -------------------------------------------------------------------------------

class Raw:
    """One TCP connection: write raw request bytes, read responses one at a time."""

    def __init__(self, server):
        host, port = server.httpd.server_address[:2]
        self.host = f"{host}:{port}"
        self.sock = socket.create_connection((host, port), timeout=5)
        self.buffer = b""

    def request(self, method, path, body=b"", headers=None, auth=ALICE, length=True):
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        if auth:
            lines.append(f"Authorization: {auth}")
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if length and body is not None:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buffer += chunk

    def response(self):
        """(status, {lower-case name: [values]}, body) of the next response."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        length = int(headers.get("content-length", ["0"])[0])
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body

    def at_eof(self):
        """True if the server closed the connection (after any buffered bytes)."""
        if self.buffer:
            return False
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


@pytest.fixture
def raw(server):
    connection = Raw(server)
    yield connection
    connection.close()


@pytest.fixture
def limited_server():
    """start(**limits): a demo server whose core has these limits."""
    started = []

    def start(**limits):
        core = jmapd.JmapCore(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds(), limits=limits)
        seed_demo_accounts(core)
        started.append(jmapd.JmapServer(core))
        return started[-1]
    yield start
    for running in started:
        running.stop()


def json_body(value):
    return json.dumps(value).encode()


def assert_no_leak(body):
    text = body.decode("utf-8", "replace")
    for leak in LEAKS:
        assert leak not in text, f"response body leaks {leak!r}: {text[:300]}"


def assert_problem(response, status, type_, **members):
    """The response is RFC 7807 problem details with this status and type; returns it."""
    assert response.status == status, response.data[:300]
    assert response.getheader("Content-Type") == PROBLEM
    problem = json.loads(response.data)
    assert problem["type"] == type_
    assert problem["status"] == status
    for name, value in members.items():
        assert problem[name] == value
    assert_no_leak(response.data)
    return problem


def assert_raw_problem(status, headers, body, expected_status, type_):
    assert status == expected_status, body[:300]
    assert headers["content-type"] == [PROBLEM]
    problem = json.loads(body)
    assert problem["type"] == type_ and problem["status"] == expected_status
    assert_no_leak(body)
    return problem


def allowed(response):
    """The methods of the Allow header, as a set (their order carries no meaning)."""
    return {name.strip() for name in response.getheader("Allow", "").split(",")}


def post_api(web, body, content_type="application/json", **kw):
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return web.send("POST", jmapd.API_PATH, body, headers=headers, **kw)


# -- RFC 8620 §3.1: a good request ---------------------------------------------------------

def test_a_valid_request_answers_200_with_a_json_response_object(web):
    """RFC 8620 §3.1: a POSTed Request object answers 200 application/json with a Response."""
    response = post_api(web, json_body(ECHO))
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/json"
    body = json.loads(response.data)
    assert body["methodResponses"] == [["Core/echo", {"hello": "world"}, "0"]]
    assert isinstance(body["sessionState"], str) and body["sessionState"]


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "APPLICATION/JSON"])
def test_a_json_content_type_with_parameters_or_other_case_is_accepted(web, content_type):
    """RFC 8620 §3.1: the media type is application/json, compared case-insensitively,
    parameters allowed (RFC 7231 §3.1.1.1)."""
    response = post_api(web, json_body(ECHO), content_type=content_type)
    assert response.status == 200
    assert json.loads(response.data)["methodResponses"][0][0] == "Core/echo"


# -- RFC 8620 §3.6.1: notJSON ----------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000

NOT_JSON_BODIES = {
    "truncated JSON": b'{"using": [',
    "not JSON at all": b"hello",
    "empty body": b"",
    "non-UTF-8 bytes": b'{"using": ["\xff\xfe"], "methodCalls": []}',
    "UTF-16 encoding": json.dumps(ECHO).encode("utf-16"),
    "overlong UTF-8": b'{"using": ["\xc0\xaf"], "methodCalls": []}',
    "UTF-8-encoded surrogate": b'{"using": ["\xed\xa0\x80"], "methodCalls": []}',
    "NaN": b'{"using": [], "methodCalls": [], "x": NaN}',
    "Infinity": b'{"using": [], "methodCalls": [], "x": Infinity}',
    "-Infinity": b'{"using": [], "methodCalls": [], "x": -Infinity}',
    "duplicate keys": b'{"using": [], "using": ["x"], "methodCalls": []}',
    "duplicate keys in a nested object": b'{"using": [], "methodCalls": [["Core/echo", '
                                         b'{"a": 1, "a": 2}, "0"]]}',
    "lone high surrogate escape": b'{"using": ["\\ud800"], "methodCalls": []}',
    "lone surrogate escape in a member name": b'{"using": [], "methodCalls": [["Core/echo", '
                                              b'{"\\udfff": 1}, "0"]]}',
    "lone low surrogate escape": b'{"using": [], "methodCalls": [["Core/echo", '
                                 b'{"s": "x\\udc00"}, "0"]]}',
    "number 1e400": b'{"using": [], "methodCalls": [], "x": 1e400}',
    "number -1e400": b'{"using": [], "methodCalls": [], "x": -1e400}',
    "100000 nested arrays": DEEP,
    "100000 nested arrays inside a request": b'{"using": [], "methodCalls": [], "x": '
                                            + DEEP + b"}",
}


@pytest.mark.parametrize("body", NOT_JSON_BODIES.values(), ids=NOT_JSON_BODIES.keys())
def test_a_body_that_is_not_i_json_is_rejected_as_notJSON(web, body):
    """RFC 8620 §3.6.1 notJSON: the request did not parse as I-JSON (RFC 7493: UTF-8, no
    duplicate names, no NaN/Infinity, numbers within IEEE 754 range, no lone surrogates)."""
    assert_problem(post_api(web, body), 400, jmapd.URN_ERROR + "notJSON")


def test_a_surrogate_pair_escape_is_valid_json(web):
    """RFC 8620 §3.6.1: a correctly paired surrogate escape is I-JSON and is echoed back."""
    body = b'{"using": ["urn:ietf:params:jmap:core"], "methodCalls": [["Core/echo", ' \
           b'{"s": "\\ud83d\\ude00"}, "0"]]}'
    response = post_api(web, body)
    assert response.status == 200
    assert json.loads(response.data)["methodResponses"][0][1] == {"s": "\U0001F600"}


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/jsonx",
                                          "application/x-www-form-urlencoded"])
def test_a_content_type_other_than_application_json_is_rejected_as_notJSON(web, content_type):
    """RFC 8620 §3.6.1 notJSON: the content type of the request was not application/json
    (a missing Content-Type included), even when the body is a valid Request."""
    problem = assert_problem(post_api(web, json_body(ECHO), content_type=content_type), 400,
                             jmapd.URN_ERROR + "notJSON")
    assert problem["title"] == "Bad Request"


# -- RFC 8620 §3.6.1: notRequest, unknownCapability, limit -------------------------------

NOT_REQUESTS = {
    "an array": [],
    "a string": "request",
    "null": None,
    "missing using": {"methodCalls": []},
    "missing methodCalls": {"using": [CORE]},
    "using not an array": {"using": CORE, "methodCalls": []},
    "using with a number": {"using": [CORE, 1], "methodCalls": []},
    "methodCalls not an array": {"using": [CORE], "methodCalls": {}},
    "an invocation with two elements": {"using": [CORE], "methodCalls": [["Core/echo", {}]]},
    "an invocation with a numeric call id": {"using": [CORE],
                                             "methodCalls": [["Core/echo", {}, 1]]},
    "an invocation with array arguments": {"using": [CORE],
                                           "methodCalls": [["Core/echo", [], "0"]]},
    "createdIds not a map": {"using": [CORE], "methodCalls": [], "createdIds": []},
}


@pytest.mark.parametrize("request_", NOT_REQUESTS.values(), ids=NOT_REQUESTS.keys())
def test_json_that_is_not_a_request_object_is_rejected_as_notRequest(web, request_):
    """RFC 8620 §3.6.1 notRequest: the body parsed as JSON but is not a Request (§3.3)."""
    assert_problem(post_api(web, json_body(request_)), 400, jmapd.URN_ERROR + "notRequest")


def test_an_unknown_capability_in_using_is_rejected_as_unknownCapability(web):
    """RFC 8620 §3.6.1 unknownCapability: 'using' names a capability the server lacks."""
    request = {"using": [CORE, "https://example.com/apis/foobar"], "methodCalls": []}
    problem = assert_problem(post_api(web, json_body(request)), 400,
                             jmapd.URN_ERROR + "unknownCapability")
    assert "https://example.com/apis/foobar" in problem["detail"]


def test_too_many_method_calls_is_a_limit_error_naming_maxCallsInRequest(web):
    """RFC 8620 §3.6.1 limit: more calls than maxCallsInRequest; 'limit' names it."""
    most = jmapd.DEFAULT_LIMITS["maxCallsInRequest"]
    calls = [["Core/echo", {}, str(i)] for i in range(most + 1)]
    assert_problem(post_api(web, json_body({"using": [CORE], "methodCalls": calls})), 400,
                   jmapd.URN_ERROR + "limit", limit="maxCallsInRequest")


def test_exactly_maxCallsInRequest_calls_are_processed(web):
    """RFC 8620 §2 maxCallsInRequest: the limit itself is allowed."""
    calls = [["Core/echo", {}, str(i)] for i in range(jmapd.DEFAULT_LIMITS["maxCallsInRequest"])]
    response = post_api(web, json_body({"using": [CORE], "methodCalls": calls}))
    assert response.status == 200
    assert len(json.loads(response.data)["methodResponses"]) == 32


# -- RFC 8620 §2 maxSizeRequest ------------------------------------------------------------

def padded_echo(size):
    """A valid Request of exactly `size` octets."""
    body = json_body({"using": [CORE], "methodCalls": [["Core/echo", {"pad": ""}, "0"]]})
    assert len(body) <= size
    return body[:-1] + b" " * (size - len(body)) + b"}"


def test_a_body_over_maxSizeRequest_is_a_413_limit_error_and_the_connection_stays_usable(
        limited_server):
    """RFC 8620 §3.6.1 limit: a body larger than maxSizeRequest is refused with limit
    "maxSizeRequest"; the body is drained, so the next request on the connection works."""
    server = limited_server(maxSizeRequest=1000)
    raw = Raw(server)
    try:
        raw.send(raw.request("POST", "/jmap/api", padded_echo(1001),
                             {"Content-Type": "application/json"})
                 + raw.request("POST", "/jmap/api", json_body(ECHO),
                               {"Content-Type": "application/json"}))
        status, headers, body = raw.response()
        problem = assert_raw_problem(status, headers, body, 413, jmapd.URN_ERROR + "limit")
        assert problem["limit"] == "maxSizeRequest"
        status, headers, body = raw.response()
        assert status == 200
        assert json.loads(body)["methodResponses"] == [["Core/echo", {"hello": "world"}, "0"]]
    finally:
        raw.close()


def test_a_body_of_exactly_maxSizeRequest_octets_is_processed(limited_server):
    """RFC 8620 §2 maxSizeRequest: the maximum size itself is allowed."""
    server = limited_server(maxSizeRequest=1000)
    web = Http(server)
    response = post_api(web, padded_echo(1000))
    assert response.status == 200
    assert json.loads(response.data)["methodResponses"] == [["Core/echo", {"pad": ""}, "0"]]
    web.close()


def test_a_chunked_body_over_maxSizeRequest_is_a_413_and_the_connection_is_closed(
        limited_server):
    """RFC 8620 §3.6.1 limit: a chunked body growing past maxSizeRequest is refused at the
    chunk that crosses the limit; the server says Connection: close and closes."""
    server = limited_server(maxSizeRequest=1000)
    raw = Raw(server)
    try:
        # Announce a 1001-octet chunk and send none of it: the server must not wait for it.
        raw.send(raw.request("POST", "/jmap/api", b"3e9\r\n",
                             {"Content-Type": "application/json",
                              "Transfer-Encoding": "chunked"}, length=False))
        status, headers, body = raw.response()
        problem = assert_raw_problem(status, headers, body, 413, jmapd.URN_ERROR + "limit")
        assert problem["limit"] == "maxSizeRequest"
        assert headers["connection"] == ["close"]
        assert raw.at_eof()
    finally:
        raw.close()


# -- RFC 8620 §2 maxConcurrentRequests -----------------------------------------------------

def test_a_request_beyond_maxConcurrentRequests_is_a_limit_error(limited_server):
    """RFC 8620 §3.6.1 limit: with every request slot taken, a request is refused with
    limit "maxConcurrentRequests" (status 429); once a slot frees, requests work again."""
    server = limited_server(maxConcurrentRequests=1)
    web = Http(server)
    assert server.core.request_slots.acquire(blocking=False)
    try:
        assert_problem(post_api(web, json_body(ECHO)), 429, jmapd.URN_ERROR + "limit",
                       limit="maxConcurrentRequests")
    finally:
        server.core.request_slots.release()
    response = post_api(web, json_body(ECHO))
    assert response.status == 200
    web.close()


# -- HTTP methods and paths ----------------------------------------------------------------

@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "GET"])
def test_a_wrong_method_on_the_api_is_405_with_allow(web, method):
    """RFC 8620 §3.1 (the API takes POST) and RFC 7231 §6.5.5: 405 lists the allowed methods."""
    response = web.send(method, jmapd.API_PATH, json_body(ECHO),
                        headers={"Content-Type": "application/json"})
    assert_problem(response, 405, "about:blank")
    assert allowed(response) == {"OPTIONS", "POST"}


def test_a_post_to_the_session_resource_is_405_allowing_get(web):
    """RFC 8620 §2: the session resource is fetched with GET; 405 says Allow: GET."""
    response = web.send("POST", jmapd.SESSION_PATH, json_body(ECHO),
                        headers={"Content-Type": "application/json"})
    assert_problem(response, 405, "about:blank")
    assert allowed(response) == {"GET", "OPTIONS"}


@pytest.mark.parametrize("path", ["/", "/jmap", "/jmap/api/extra", "/jmap/sessionx",
                                  "/.well-known/jmapx", "/jmap/upload/", "/jmap/download/alice/x"])
def test_an_unknown_path_is_404_problem_details(web, path):
    """RFC 7231 §6.5.4, RFC 7807: an unknown resource is 404 with an about:blank problem."""
    response = web.send("GET", path)
    problem = assert_problem(response, 404, "about:blank")
    assert problem["title"] == "Not Found"


def test_the_well_known_uri_redirects_to_the_session_resource(web):
    """RFC 8620 §2.2: /.well-known/jmap redirects (307) to the session resource."""
    response = web.send("GET", jmapd.WELL_KNOWN_PATH, auth=False)
    assert response.status == 307
    assert response.getheader("Location") == f"http://{web.host}:{web.port}/jmap/session"


# -- no leaks ------------------------------------------------------------------------------

MALFORMED = {
    "one word": b"GARBAGE\r\n\r\n",
    "four words": b"GET / HTTP/1.1 extra\r\n\r\n",
    "unknown version": b"GET / HTTP/9.9\r\n\r\n",
    "a 70000-octet request line": b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
    "a negative Content-Length": b"POST /jmap/api HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    "a header line without a colon": b"POST /jmap/api HTTP/1.1\r\nHost: x\r\nBroken\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_request_is_answered_without_internals(raw, request_bytes):
    """RFC 7807, RFC 8620 §3.6.1: whatever a malformed request gets back, the bytes carry no
    traceback, file name, SQL or Python version."""
    raw.send(request_bytes)
    raw.sock.settimeout(0.3)  # a connection kept open ends the read by timeout
    received = b""
    with pytest.raises((EOFError, socket.timeout)):
        while True:
            raw._fill()
            received, raw.buffer = received + raw.buffer, b""
    assert b'"status":' in received
    assert_no_leak(received)


@pytest.mark.parametrize("request_bytes,status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
    (b"GET / HTTP/9.9\r\n\r\n", 505),
], ids=["one word", "four words", "unknown version"])
def test_a_malformed_request_line_gets_a_framed_problem_response_and_a_close(
        raw, request_bytes, status):
    """RFC 7230 §3.1.1, RFC 7231 §6.6.6: an invalid request line is answered with an HTTP/1.1
    status line (400, or 505 for an unsupported version), problem details and a close."""
    raw.send(request_bytes)
    got_status, headers, body = raw.response()
    assert_raw_problem(got_status, headers, body, status, "about:blank")
    assert headers["connection"] == ["close"]
    assert headers["server"] == ["jmapd"]


def test_a_request_line_over_64k_is_414_and_closes(raw):
    """RFC 7230 §3.1.1: a request line longer than the server will parse is 414, and the
    connection is closed."""
    raw.send(MALFORMED["a 70000-octet request line"])
    status, headers, body = raw.response()
    assert_raw_problem(status, headers, body, 414, "about:blank")
    assert headers["connection"] == ["close"]


def test_an_invalid_content_length_is_400_and_closes(raw):
    """RFC 7230 §3.3.3 (4): a Content-Length that is not a number makes the framing invalid:
    the server MUST respond 400 and then close the connection."""
    raw.send(MALFORMED["a negative Content-Length"])
    status, headers, body = raw.response()
    assert_raw_problem(status, headers, body, 400, "about:blank")
    assert headers["connection"] == ["close"]


def test_an_invalid_content_length_closes_the_connection(raw):
    """RFC 7230 §3.3.3 (4): with a Content-Length that is not a number the body cannot be
    delimited, so the answer carries Connection: close and the server closes."""
    raw.send(MALFORMED["a negative Content-Length"])
    status, headers, _ = raw.response()
    assert 400 <= status < 500
    assert headers["connection"] == ["close"]
    assert raw.at_eof()


SMUGGLING_HEADERS = {
    "a header line without a colon": b"Broken\r\nContent-Length: 35\r\n",
    "whitespace before the colon": b"Content-Length : 35\r\n",
    "two different Content-Lengths": b"Content-Length: 35\r\nContent-Length: 0\r\n",
}


@pytest.mark.parametrize("framing", SMUGGLING_HEADERS.values(), ids=SMUGGLING_HEADERS.keys())
def test_invalid_header_framing_is_400_and_closes_so_no_request_is_smuggled(raw, framing):
    """RFC 7230 §3.2.4 (whitespace before ':' MUST be rejected with 400), §3.2 (a field line
    needs a colon) and §3.3.3 (4) (differing Content-Lengths: 400, then close)."""
    assert len(SMUGGLED) == 35
    raw.send(b"PUT /jmap/api HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n" + SMUGGLED)
    status, headers, body = raw.response()
    assert_raw_problem(status, headers, body, 400, "about:blank")
    assert headers["connection"] == ["close"]
    assert raw.at_eof()


def test_transfer_encoding_with_content_length_is_answered_then_closed(raw):
    """RFC 9112 §6.1 (RFC 7230 §3.3.3): with both, Transfer-Encoding wins for this
    message, and the server MUST close the connection after responding, so what
    follows is never run as a request."""
    follow_up = raw.request("POST", "/jmap/api", json_body(ECHO),
                            {"Content-Type": "application/json"})
    raw.send(raw.request("PUT", "/jmap/api", b"0\r\n\r\n",
                         {"Transfer-Encoding": "chunked", "Content-Length": "5000"},
                         length=False) + follow_up)
    status, headers, body = raw.response()
    assert_raw_problem(status, headers, body, 405, "about:blank")
    assert headers["connection"] == ["close"]
    assert raw.at_eof()


def test_the_server_header_names_no_python_or_version(web):
    """RFC 7231 §7.4.2: the Server header is 'jmapd', without Python or a version banner."""
    for response in (web.send("GET", "/jmap/session"), web.send("GET", "/nope"),
                     web.send("GET", "/jmap/session", auth=False)):
        assert response.getheader("Server") == "jmapd"


def test_a_method_crash_is_serverFail_without_internals(web, monkeypatch):
    """RFC 8620 §3.6.2 serverFail: an unexpected exception answers an error response whose
    description carries no traceback or internals."""
    def explode(call, args):
        raise RuntimeError("SELECT * FROM secret in /srv/jmapd.py (Python 3)")
    monkeypatch.setitem(web.server.core.methods, "Core/echo",
                        jmapd.MethodSpec("Core/echo", explode, CORE))
    response = post_api(web, json_body(ECHO))
    assert response.status == 200
    name, result, call_id = json.loads(response.data)["methodResponses"][0]
    assert (name, result["type"], call_id) == ("error", "serverFail", "0")
    assert_no_leak(response.data)


# -- RFC 7230 §6.3 keep-alive and message framing ------------------------------------------

def test_two_requests_are_answered_on_one_kept_alive_connection(raw):
    """RFC 7230 §6.3: HTTP/1.1 connections persist; two pipelined requests, two answers."""
    raw.send(raw.request("GET", "/jmap/session")
             + raw.request("POST", "/jmap/api", json_body(ECHO),
                           {"Content-Type": "application/json"}))
    status, headers, body = raw.response()
    assert status == 200 and json.loads(body)["username"] == "alice"
    assert "connection" not in headers
    status, _, body = raw.response()
    assert status == 200
    assert json.loads(body)["methodResponses"][0] == ["Core/echo", {"hello": "world"}, "0"]


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

ERRORS_WITH_BODIES = {
    "401 on the API with a JSON body": ("POST", "/jmap/api", json_body(ECHO),
                                        {"Content-Type": "application/json"}, None, 401),
    "401 with a body that looks like a request": ("POST", "/jmap/api", SMUGGLED,
                                                  {"Content-Type": "application/json"}, None, 401),
    "405 PUT with a body": ("PUT", "/jmap/api", SMUGGLED, {}, ALICE, 405),
    "405 POST on the session with a body": ("POST", "/jmap/session", SMUGGLED, {}, ALICE, 405),
    "404 with a body": ("POST", "/nowhere", SMUGGLED, {}, ALICE, 404),
    "notJSON with a body": ("POST", "/jmap/api", SMUGGLED, {"Content-Type": "text/plain"},
                            ALICE, 400),
    "notJSON for invalid JSON": ("POST", "/jmap/api", b"{" + SMUGGLED,
                                 {"Content-Type": "application/json"}, ALICE, 400),
    "401 on upload with a body": ("POST", "/jmap/upload/alice/", SMUGGLED, {}, "Basic eDp5", 401),
    "404 upload to another account": ("POST", "/jmap/upload/bob/", SMUGGLED, {}, ALICE, 404),
    "401 on download with a body": ("GET", "/jmap/download/alice/Gx/f", SMUGGLED, {}, None, 401),
}


@pytest.mark.parametrize("method,path,body,headers,auth,status", ERRORS_WITH_BODIES.values(),
                         ids=ERRORS_WITH_BODIES.keys())
def test_an_error_response_never_reads_the_rejected_body_as_the_next_request(
        raw, method, path, body, headers, auth, status):
    """RFC 7230 §3.3.3, §6.3: an error answer consumes the request body, so the next request
    on the same connection is the next one answered (never the body, never a 400)."""
    raw.send(raw.request(method, path, body, headers, auth=auth)
             + raw.request("POST", "/jmap/api", json_body(ECHO),
                           {"Content-Type": "application/json"}))
    first_status, first_headers, first_body = raw.response()
    assert first_status == status
    assert first_headers["content-type"] == [PROBLEM]
    assert_no_leak(first_body)
    second_status, _, second_body = raw.response()
    assert second_status == 200, second_body
    assert json.loads(second_body)["methodResponses"][0] == ["Core/echo", {"hello": "world"}, "0"]


def test_a_401_to_a_chunked_body_drains_it_and_the_next_request_is_answered(raw):
    """RFC 7230 §4.1, §6.3: a chunked body rejected before it is read (401) is drained chunk
    by chunk, so a request-shaped chunk is never taken for the next request."""
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)
    raw.send(raw.request("POST", "/jmap/api", chunked,
                         {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                         auth=None, length=False)
             + raw.request("POST", "/jmap/api", json_body(ECHO),
                           {"Content-Type": "application/json"}))
    status, headers, body = raw.response()
    assert_raw_problem(status, headers, body, 401, "about:blank")
    status, _, body = raw.response()
    assert status == 200
    assert json.loads(body)["methodResponses"][0] == ["Core/echo", {"hello": "world"}, "0"]


def test_an_expect_100_continue_request_gets_100_then_the_answer(raw):
    """RFC 7231 §5.1.1: with Expect: 100-continue the server sends 100 (Continue) and then the
    final response; the connection stays in sync."""
    raw.send(raw.request("POST", "/jmap/api", json_body(ECHO),
                         {"Content-Type": "application/json", "Expect": "100-continue"}))
    status, _, body = raw.response()
    assert (status, body) == (100, b"")
    status, _, body = raw.response()
    assert status == 200
    assert json.loads(body)["methodResponses"][0] == ["Core/echo", {"hello": "world"}, "0"]


def test_a_chunked_request_body_is_accepted_and_the_connection_stays_usable(raw):
    """RFC 7230 §4.1: a chunked body (with a chunk extension and a trailer) is a valid API
    request, and the next request on the connection is answered too."""
    body = json_body(ECHO)
    chunked = (b"%x\r\n%s\r\n" % (10, body[:10])
               + b"%x;ext=1\r\n%s\r\n" % (len(body) - 10, body[10:])
               + b"0\r\nX-Trailer: yes\r\n\r\n")
    raw.send(raw.request("POST", "/jmap/api", chunked,
                         {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                         length=False)
             + raw.request("GET", "/jmap/session"))
    status, _, response_body = raw.response()
    assert status == 200
    assert json.loads(response_body)["methodResponses"] == [["Core/echo", {"hello": "world"}, "0"]]
    status, _, response_body = raw.response()
    assert status == 200 and json.loads(response_body)["username"] == "alice"


def test_a_malformed_chunk_size_is_400_and_closes_the_connection(raw):
    """RFC 7230 §4.1: a chunk size that is not hex is a bad request; the framing is lost, so
    the connection is closed."""
    raw.send(raw.request("POST", "/jmap/api", b"zz\r\nhello\r\n0\r\n\r\n",
                         {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                         length=False))
    status, headers, body = raw.response()
    assert_raw_problem(status, headers, body, 400, "about:blank")
    assert headers["connection"] == ["close"]
    assert raw.at_eof()


def test_a_head_request_on_the_session_has_headers_and_no_body(raw):
    """RFC 7231 §4.3.2: HEAD answers like GET without a body; the connection stays in sync."""
    raw.send(raw.request("HEAD", "/jmap/session") + raw.request("GET", "/jmap/session"))
    while b"\r\n\r\n" not in raw.buffer:
        raw._fill()
    head, raw.buffer = raw.buffer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200")
    status, headers, body = raw.response()
    assert status == 200 and json.loads(body)["username"] == "alice"
    announced = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    assert announced == [b"Content-Length: %d" % len(body)]


def test_connections_have_tcp_keepalive_so_vanished_push_peers_end(server):
    """A push stream whose client vanished without a FIN must not hold its thread for
    ever: the server's sockets probe idle peers (about 90 s on Linux)."""
    with socket.create_connection(server.httpd.server_address[:2], timeout=5) as sock:
        sock.sendall(b"GET /.well-known/jmap HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(4096)
        for _ in range(100):
            if server.httpd.connections:
                break
            time.sleep(0.01)
        [connection] = list(server.httpd.connections)
        assert connection.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
