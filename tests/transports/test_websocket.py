"""RFC 8887 JMAP over WebSocket on jmapd's own RFC 6455 server.

The codec (section 13) is tested sans-IO; the transport over real sockets with
WsClient below, a small RFC 6455 client that can also send broken frames.
"""

import base64
import contextlib
import email.message
import json
import os
import socket
import threading
import time

import pytest

import jmapd
from jmapd import CloseCode, Frame, FrameError, FrameReader, MessageAssembler, Opcode

from conftest import CORE, MAIL, Http

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example key


# --- the test client ------------------------------------------------------------

def client_frame(opcode, payload=b"", *, fin=True, mask=True, rsv=0, length=None):
    """A client frame written independently of jmapd.encode_frame; length lies if given."""
    payload = payload.encode() if isinstance(payload, str) else payload
    size = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask else 0
    if size < 126:
        header = bytes([first, mask_bit | size])
    elif size < 65536:
        header = bytes([first, mask_bit | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([first, mask_bit | 127]) + size.to_bytes(8, "big")
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class WsClient:
    """An RFC 6455 client on a raw socket; .status and .headers hold the handshake answer."""

    def __init__(self, server, *, auth=True, query="", protocol="jmap", version="13",
                 key=KEY, extra="", http_version="HTTP/1.1", upgrade=True):
        host, port = server.httpd.server_address[:2]
        self.sock = socket.create_connection((host, port), timeout=5)
        lines = [f"GET {jmapd.WEBSOCKET_PATH}{query} {http_version}", "Host: 127.0.0.1"]
        if upgrade:
            lines += ["Upgrade: websocket", "Connection: keep-alive, Upgrade"]
        lines += [f"Sec-WebSocket-Key: {key}"] if key else []
        lines += [f"Sec-WebSocket-Version: {version}"] if version else []
        lines += [f"Sec-WebSocket-Protocol: {protocol}"] if protocol else []
        if auth is True:
            auth = Http.basic()["Authorization"]
        lines += [f"Authorization: {auth}"] if auth else []
        self.sock.sendall(("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode())
        self.buffer = b""
        head = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        self.status = int(head[0].split()[1])
        self.headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            self.headers.setdefault(name.strip().lower(), []).append(value.strip())
        if self.status != 101:
            length = int(self.header("content-length") or 0)
            while len(self.buffer) < length:
                self._fill()
            self.body = json.loads(self.buffer[:length]) if length else None

    def header(self, name):
        return ", ".join(self.headers.get(name, [])) or None

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buffer += chunk

    def _until(self, marker):
        while marker not in self.buffer:
            self._fill()
        item, self.buffer = self.buffer.split(marker, 1)
        return item

    def _take(self, count):
        while len(self.buffer) < count:
            self._fill()
        item, self.buffer = self.buffer[:count], self.buffer[count:]
        return item

    def send(self, opcode, payload=b"", **options):
        self.sock.sendall(client_frame(opcode, payload, **options))

    def send_json(self, value):
        self.send(0x1, json.dumps(value))

    def recv_frame(self):
        """(fin, opcode, payload, masked) of the next server frame."""
        first, second = self._take(2)
        length = second & 0x7F
        if length >= 126:
            length = int.from_bytes(self._take(2 if length == 126 else 8), "big")
        assert first & 0x70 == 0, "server set reserved bits"
        return bool(first & 0x80), first & 0x0F, self._take(length), bool(second & 0x80)

    def recv_json(self):
        """The next text message (pings answered by the server are not expected here)."""
        fin, opcode, payload, masked = self.recv_frame()
        assert (fin, opcode, masked) == (True, 0x1, False), (fin, opcode, payload)
        return json.loads(payload)

    def expect_close(self):
        """(code, reason) of the server's Close frame, after which the server hangs up."""
        fin, opcode, payload, masked = self.recv_frame()
        assert opcode == 0x8, (opcode, payload)
        with contextlib.suppress(OSError):  # a client answers Close with Close (§5.5.1)
            self.send(0x8, payload[:2])
        with pytest.raises((EOFError, ConnectionResetError)):
            self._fill()
        return (int.from_bytes(payload[:2], "big") if payload else None), payload[2:].decode()

    def silent_for(self, seconds):
        """True if nothing arrives within seconds."""
        self.sock.settimeout(seconds)
        try:
            self._fill()
            return False
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(5)

    def close(self):
        self.sock.close()


def echo(request_id, **arguments):
    return {"@type": "Request", "id": request_id, "using": [CORE],
            "methodCalls": [["Core/echo", arguments or {"hello": True}, "c1"]]}


def rename_inbox(core, name):
    """Mailbox/set through the core (it publishes to the feed on commit); the new state."""
    inbox = core.call("alice", "Mailbox/query", {"accountId": "alice",
                                                 "filter": {"role": "inbox"}})["ids"][0]
    return core.call("alice", "Mailbox/set", {"accountId": "alice",
                                              "update": {inbox: {"name": name}}})["newState"]


@pytest.fixture
def ws(server):
    client = WsClient(server)
    assert client.status == 101
    yield client
    client.close()


# --- RFC 6455 codec, sans-IO (section 13) ------------------------------------------

def test_rfc6455_4_2_2_accept_token_is_the_rfc_example():
    """§4.2.2 item 5.4: the example key gives s3pPLMBiTxaQ9kYGzzhZRbK+xOo=."""
    assert jmapd.websocket_accept(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_rfc6455_5_7_examples_decode_and_encode():
    """§5.7: masked and unmasked "Hello", a fragmented "Hello", and a Ping."""
    masked = bytes([0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58])
    reader = FrameReader(1000)
    reader.feed(masked)
    assert list(reader.frames()) == [Frame(Opcode.TEXT, b"Hello", True)]
    assert jmapd.encode_frame(Opcode.TEXT, b"Hello") == bytes([0x81, 0x05]) + b"Hello"
    assert jmapd.encode_frame(Opcode.TEXT, b"Hello", mask=bytes([0x37, 0xfa, 0x21, 0x3d])) \
        == masked
    unmasked = FrameReader(1000, require_mask=False)
    unmasked.feed(bytes([0x01, 0x03]) + b"Hel" + bytes([0x80, 0x02]) + b"lo"
                  + bytes([0x89, 0x05]) + b"Hello")
    frames = list(unmasked.frames())
    assert frames == [Frame(Opcode.TEXT, b"Hel", False), Frame(Opcode.CONTINUATION, b"lo", True),
                      Frame(Opcode.PING, b"Hello", True)]
    assembler = MessageAssembler(1000)
    assert [assembler.add(f) for f in frames] == [
        None, jmapd.Message(Opcode.TEXT, b"Hello"), Frame(Opcode.PING, b"Hello", True)]


@pytest.mark.parametrize("size, header", [(125, bytes([0x82, 125])),
                                          (126, bytes([0x82, 126, 0, 126])),
                                          (65535, bytes([0x82, 126, 0xff, 0xff])),
                                          (65536, bytes([0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]))])
def test_rfc6455_5_2_payload_length_forms(size, header):
    """§5.2: 7-bit, 16-bit (126) and 64-bit (127) lengths, in the minimal form."""
    frame = jmapd.encode_frame(Opcode.BINARY, b"x" * size)
    assert frame[:len(header)] == header and len(frame) == len(header) + size
    reader = FrameReader(1 << 20)
    reader.feed(client_frame(0x2, b"x" * size))
    assert [len(f.payload) for f in reader.frames()] == [size]


def test_rfc6455_5_2_reader_takes_a_frame_one_octet_at_a_time():
    """§5.2: a frame split anywhere is read once complete, and not before."""
    reader, data, seen = FrameReader(1000), client_frame(0x1, "x" * 300), []
    for index in range(len(data)):
        reader.feed(data[index:index + 1])
        seen += list(reader.frames())
        assert bool(seen) == (index == len(data) - 1)
    assert seen == [Frame(Opcode.TEXT, b"x" * 300, True)]


@pytest.mark.parametrize("frame, code", [
    (client_frame(0x1, "x", mask=False), 1002),                    # §5.1 unmasked
    (client_frame(0x1, "x", rsv=4), 1002),                         # §5.2 RSV1
    (client_frame(0x1, "x", rsv=1), 1002),                         # §5.2 RSV3
    (client_frame(0x3, "x"), 1002),                                # §5.2 reserved data opcode
    (client_frame(0xB, "x"), 1002),                                # §5.2 reserved control opcode
    (client_frame(0x9, "x" * 126), 1002),                          # §5.5 control > 125
    (client_frame(0x9, "x", fin=False), 1002),                     # §5.5 fragmented control
    (client_frame(0x1, b"", length=1 << 63)[:10], 1002),           # §5.2 64-bit MSB set
    (client_frame(0x1, "x" * 101), 1009),                          # §7.4.1 too big (limit 100)
])
def test_rfc6455_frame_errors_carry_their_close_code(frame, code):
    """§5.1, §5.2, §5.5, §7.4.1: the reader refuses with the status code to close with."""
    reader = FrameReader(100)
    reader.feed(frame)
    with pytest.raises(FrameError) as raised:
        list(reader.frames())
    assert raised.value.close_code == code


def test_rfc6455_10_4_an_oversized_frame_is_refused_from_its_header():
    """§10.4: the length in the header is enough to refuse; no payload is buffered."""
    reader = FrameReader(100)
    reader.feed(client_frame(0x1, b"", length=10_000_000)[:14])
    with pytest.raises(FrameError) as raised:
        list(reader.frames())
    assert raised.value.close_code == CloseCode.MESSAGE_TOO_BIG


def fragments(*frames):
    """Feed Frames to a MessageAssembler(10); the results, or the close code it raised."""
    assembler = MessageAssembler(10)
    try:
        return [assembler.add(frame) for frame in frames]
    except FrameError as error:
        return error.close_code


def test_rfc6455_5_4_fragments_join_and_control_frames_interleave():
    """§5.4: a Ping between fragments passes through; the message is the joined text."""
    assert fragments(Frame(Opcode.TEXT, b"ab", False), Frame(Opcode.PING, b"p"),
                     Frame(Opcode.CONTINUATION, b"c", False),
                     Frame(Opcode.CONTINUATION, b"d", True)) == [
        None, Frame(Opcode.PING, b"p"), None, jmapd.Message(Opcode.TEXT, b"abcd")]


def test_rfc6455_5_4_fragmentation_errors_are_protocol_errors():
    """§5.4: a continuation with nothing to continue, or a new message mid-way: 1002."""
    assert fragments(Frame(Opcode.CONTINUATION, b"x")) == 1002
    assert fragments(Frame(Opcode.TEXT, b"x", False), Frame(Opcode.TEXT, b"y")) == 1002
    assert fragments(Frame(Opcode.TEXT, b"x", False), Frame(Opcode.BINARY, b"y")) == 1002


def test_rfc6455_8_1_utf8_is_checked_across_fragments():
    """§8.1: "é" split over two frames is valid; a bad or truncated sequence is 1007."""
    e_acute = "é".encode()
    assert fragments(Frame(Opcode.TEXT, e_acute[:1], False),
                     Frame(Opcode.CONTINUATION, e_acute[1:]))[-1].text == "é"
    assert fragments(Frame(Opcode.TEXT, b"\xff", False)) == 1007  # fails before the end
    assert fragments(Frame(Opcode.TEXT, e_acute[:1])) == 1007
    assert fragments(Frame(Opcode.TEXT, b"\xed\xa0\x80")) == 1007  # a UTF-16 surrogate
    assert fragments(Frame(Opcode.BINARY, b"\xff"))[0].payload == b"\xff"  # binary: any


def test_rfc6455_7_4_1_a_message_over_the_limit_is_1009():
    """§7.4.1: 1009 when the joined fragments pass the limit, even if each is small."""
    assert fragments(Frame(Opcode.TEXT, b"x" * 6, False), Frame(Opcode.CONTINUATION, b"x" * 5)) \
        == 1009
    assert fragments(Frame(Opcode.TEXT, b"x" * 10))[0].payload == b"x" * 10  # at the limit


def test_rfc6455_5_5_1_close_payloads():
    """§5.5.1, §7.4: code and UTF-8 reason; empty is 1005; reserved codes are 1002."""
    assert jmapd.parse_close(b"") == (1005, "")
    assert jmapd.parse_close(b"\x03\xe8bye") == (1000, "bye")
    assert jmapd.parse_close((4000).to_bytes(2, "big")) == (4000, "")
    for code in (999, 1004, 1005, 1006, 1012, 1015, 2999, 5000):
        with pytest.raises(FrameError) as raised:
            jmapd.parse_close(code.to_bytes(2, "big"))
        assert raised.value.close_code == 1002
    for payload, code in ((b"\x03", 1002), (b"\x03\xe8\xff", 1007)):
        with pytest.raises(FrameError) as raised:
            jmapd.parse_close(payload)
        assert raised.value.close_code == code
    long_reason = jmapd.encode_close(1000, "é" * 100)  # cut to 125 octets, whole characters
    assert len(long_reason) == 124 and long_reason[2:].decode() == "é" * 61
    assert jmapd.encode_close(None) == b""


def handshake_headers(**fields):
    headers = email.message.Message()
    defaults = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": KEY,
                "Sec-WebSocket-Version": "13", "Sec-WebSocket-Protocol": "jmap"}
    for name, value in {**defaults, **fields}.items():
        if value is not None:
            headers[name.replace("_", "-")] = value
    return headers


@pytest.mark.parametrize("command, version, fields, status", [
    ("GET", "HTTP/1.1", {"Upgrade": None}, 426),                     # not an upgrade
    ("GET", "HTTP/1.1", {"Sec-WebSocket-Version": "8"}, 426),         # §4.2.2 /version/
    ("GET", "HTTP/1.1", {"Sec-WebSocket-Version": None}, 426),
    ("GET", "HTTP/1.0", {}, 400),                                     # §4.2.1 item 1
    ("POST", "HTTP/1.1", {}, 400),
    ("GET", "HTTP/1.1", {"Connection": "keep-alive"}, 400),           # §4.2.1 item 4
    ("GET", "HTTP/1.1", {"Sec-WebSocket-Key": None}, 400),            # §4.2.1 item 5
    ("GET", "HTTP/1.1", {"Sec-WebSocket-Key": "c2hvcnQ="}, 400),      # 5 octets
    ("GET", "HTTP/1.1", {"Sec-WebSocket-Key": "not base64!"}, 400),
    ("GET", "HTTP/1.1", {"Sec-WebSocket-Protocol": None}, 400),       # RFC 8887 §4.2
    ("GET", "HTTP/1.1", {"Sec-WebSocket-Protocol": "chat"}, 400),
])
def test_rfc6455_4_2_1_bad_opening_handshakes(command, version, fields, status):
    """§4.2.1: a malformed handshake is 400; §4.2.2: a version we lack, or no upgrade, 426."""
    with pytest.raises(jmapd.RequestError) as raised:
        jmapd.check_websocket_handshake(command, version, handshake_headers(**fields))
    assert raised.value.status == status


def test_rfc6455_4_2_1_a_good_handshake_gives_its_key():
    """§4.2.1: header tokens are case-insensitive lists; jmap may be one of several."""
    headers = handshake_headers(Upgrade="WebSocket", Connection="keep-alive, upgrade",
                                **{"Sec-WebSocket-Protocol": "chat, jmap"})
    assert jmapd.check_websocket_handshake("GET", "HTTP/1.1", headers) == KEY


def test_rfc8887_4_3_client_messages_are_one_of_three_types():
    """§4.3: Request, WebSocketPushEnable, WebSocketPushDisable; anything else notRequest."""
    assert jmapd.read_websocket_message(echo("r1"))[::2] == ("Request", "r1")
    assert jmapd.read_websocket_message(echo("r1"))[1] == {
        "using": [CORE], "methodCalls": [["Core/echo", {"hello": True}, "c1"]]}
    for bad in ([1], {"@type": "Response"}, {"using": [], "methodCalls": []},
                {"@type": "Request", "id": 7}, {"@type": "WebSocketPushEnable"},
                {"@type": "WebSocketPushEnable", "dataTypes": "Mailbox"},
                {"@type": "WebSocketPushEnable", "dataTypes": None, "pushState": 3}):
        with pytest.raises(jmapd.RequestError) as raised:
            jmapd.read_websocket_message(bad)
        assert raised.value.type == "notRequest"


def test_rfc8887_3_capability_url_follows_the_origin(core):
    """§3: the session's websocket url, on the origin the client used, with supportsPush."""
    session = core.session("alice", "https://mail.example:8443")
    assert session["capabilities"][jmapd.URN_WEBSOCKET] == {
        "url": "wss://mail.example:8443/jmap/ws", "supportsPush": True}
    assert jmapd.URN_WEBSOCKET not in session["accounts"]["alice"]["accountCapabilities"]


# --- the opening handshake over a socket ---------------------------------------------

def test_rfc8887_3_session_advertises_the_websocket_url(server, web):
    """§3: url matches the Host the client used, like apiUrl."""
    response = web.send("GET", jmapd.SESSION_PATH, headers={"Host": "jmap.test:8080"})
    capability = json.loads(response.data)["capabilities"]["urn:ietf:params:jmap:websocket"]
    assert capability == {"url": "ws://jmap.test:8080/jmap/ws", "supportsPush": True}


def test_rfc6455_4_2_2_switching_protocols(server):
    """§4.2.2: 101 with Upgrade, Connection, the accept token and jmap (RFC 8887 §4.2);
    §9.1: permessage-deflate offered, no extension accepted."""
    client = WsClient(server, protocol="chat, jmap",
                      extra="Sec-WebSocket-Extensions: permessage-deflate\r\n")
    assert client.status == 101
    assert client.header("upgrade") == "websocket" and client.header("connection") == "Upgrade"
    assert client.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert client.header("sec-websocket-protocol") == "jmap"
    assert client.header("sec-websocket-extensions") is None
    client.close()


def test_rfc6455_4_2_2_plain_get_and_wrong_version_are_426(server):
    """§4.2.2 /version/: 426 with Sec-WebSocket-Version: 13 (and Upgrade, RFC 7231 §6.5.15)."""
    for options in ({"upgrade": False}, {"version": "8"}):
        client = WsClient(server, **options)
        assert client.status == 426
        assert client.header("sec-websocket-version") == "13"
        assert client.header("upgrade") == "websocket"
        assert client.body["status"] == 426 and client.body["title"] == "Upgrade Required"
        client.close()


@pytest.mark.parametrize("options", [{"key": None}, {"key": "c2hvcnQ="}, {"protocol": None},
                                     {"protocol": "chat"}, {"http_version": "HTTP/1.0"}])
def test_rfc6455_4_2_1_bad_upgrades_are_400(server, options):
    """§4.2.1: no or bad key, HTTP/1.0; RFC 8887 §4.2: jmap not offered. 400, no upgrade."""
    client = WsClient(server, **options)
    assert client.status == 400 and client.body["status"] == 400
    assert client.header("sec-websocket-accept") is None
    client.close()


def test_rfc8887_4_1_the_upgrade_needs_credentials(server):
    """§4.1: unauthenticated, or a wrong password or token: 401 with challenges."""
    wrong = "Basic " + base64.b64encode(b"alice:wrong").decode()
    for options in ({"auth": None}, {"auth": wrong}, {"auth": None, "query": "?access_token=no"}):
        client = WsClient(server, **options)
        assert client.status == 401
        assert 'Bearer realm="jmapd"' in client.headers["www-authenticate"]
        client.close()


def test_rfc8887_4_1_access_token_query_parameter_authenticates(server):
    """§4.1 with the dev convenience: ?access_token=<Bearer token> for browsers."""
    client = WsClient(server, auth=None, query="?access_token=token-bob")
    assert client.status == 101
    client.send_json({"@type": "Request", "id": "who", "using": [CORE, MAIL], "methodCalls": [
        ["Mailbox/get", {"accountId": "bob", "ids": []}, "0"]]})
    assert client.recv_json()["methodResponses"][0][0] == "Mailbox/get"
    client.close()


def test_rfc8887_4_2_bearer_header_authenticates(server):
    """§4.1: Bearer on the upgrade like any request."""
    client = WsClient(server, auth="Bearer token-alice")
    assert client.status == 101
    client.close()


# --- JMAP messages (RFC 8887 §4.3) ---------------------------------------------------

def test_rfc8887_4_3_3_response_echoes_the_request_id(server, ws):
    """§4.3.2-4.3.3: @type Response, requestId = the Request's id, the echo's arguments."""
    ws.send_json(echo("R1", hello=True, high=5))
    assert ws.recv_json() == {"@type": "Response", "requestId": "R1", "methodResponses": [
        ["Core/echo", {"hello": True, "high": 5}, "c1"]],
        "sessionState": server.core.session_state("alice")}


def test_rfc8887_4_3_3_no_id_no_request_id(ws):
    """§4.3.3: requestId is returned only when the Request had an id."""
    request = echo("x")
    del request["id"]
    ws.send_json(request)
    response = ws.recv_json()
    assert response["@type"] == "Response" and "requestId" not in response


def test_rfc8887_4_3_2_results_are_those_of_http(server, ws, web):
    """§4.3.2: the same Request over WebSocket and HTTP gives the same Response."""
    calls = [["Mailbox/get", {"accountId": "alice", "ids": None}, "0"],
             ["Mailbox/query", {"accountId": "alice", "sort": [{"property": "name"}]}, "1"]]
    over_http = json.loads(web.api(calls).data)
    ws.send_json({"@type": "Request", "id": "same", "using": [CORE, MAIL], "methodCalls": calls})
    assert ws.recv_json() == {"@type": "Response", "requestId": "same", **over_http}


def test_rfc8887_4_3_4_not_json_is_a_request_error(ws):
    """§4.3.4: problem details with @type RequestError; no id could be read."""
    ws.send(0x1, '{"@type": "Request", "id": "bad", "using": [')
    error = ws.recv_json()
    assert (error["@type"], error["type"], error["status"]) == (
        "RequestError", "urn:ietf:params:jmap:error:notJSON", 400)
    assert "requestId" not in error


def test_rfc8887_4_3_4_request_errors_carry_the_request_id(ws):
    """§4.3.4: unknownCapability, limit and an unknown @type answer with requestId."""
    ws.send_json({**echo("cap"), "using": [CORE, "urn:example:nothing"]})
    ws.send_json({**echo("many"), "methodCalls": [["Core/echo", {}, str(i)] for i in range(33)]})
    ws.send_json({"@type": "Ping", "id": "what"})
    answers = {(e["requestId"], e["@type"], e["type"]) for e in
               (ws.recv_json(), ws.recv_json(), ws.recv_json())}
    error = "urn:ietf:params:jmap:error:"
    assert answers == {("cap", "RequestError", error + "unknownCapability"),
                       ("many", "RequestError", error + "limit"),
                       ("what", "RequestError", error + "notRequest")}


def test_rfc8887_4_3_2_many_requests_in_flight(ws):
    """§4.3.2: requests are answered in any order, each by its id."""
    for index in range(20):
        ws.send_json(echo(f"r{index}", n=index))
    answers = [ws.recv_json() for _ in range(20)]
    assert sorted((a["requestId"], a["methodResponses"][0][1]["n"]) for a in answers) == \
        sorted((f"r{i}", i) for i in range(20))


def test_rfc6455_5_4_fragmented_request_with_a_ping_between(ws):
    """§5.4: fragments are joined before parsing (RFC 8887 §4.3); a Ping between them
    is answered at once (§5.5.2)."""
    text = json.dumps(echo("frag"))
    ws.send(0x1, text[:10], fin=False)
    ws.send(0x9, "mid")
    ws.send(0x0, text[10:30], fin=False)
    ws.send(0x0, text[30:], fin=True)
    assert ws.recv_frame() == (True, 0xA, b"mid", False)
    assert ws.recv_json()["requestId"] == "frag"


def test_rfc6455_5_5_2_ping_gets_a_pong_with_its_payload(ws):
    """§5.5.2-5.5.3: Pong echoes the Ping's payload, unmasked (§5.1); a Pong is ignored."""
    ws.send(0xA, "unsolicited")
    ws.send(0x9, "probe")
    ws.send(0x9, "")
    assert ws.recv_frame() == (True, 0xA, b"probe", False)
    assert ws.recv_frame() == (True, 0xA, b"", False)


def test_rfc8887_4_3_1_maximum_message_is_max_size_request(server):
    """RFC 8887 §4.3.1: a Request of maxSizeRequest octets is served; one octet more
    (whole or in fragments) is a request-level error, "exceeding a server request
    limit", answered as problem details with its requestId; the socket stays open."""
    server.core.limits["maxSizeRequest"] = 1000
    request = echo("edge", pad="")
    request["methodCalls"][0][1]["pad"] = "x" * (1000 - len(json.dumps(request)))
    text = json.dumps(request)
    assert len(text) == 1000
    client = WsClient(server)
    client.send(0x1, text)
    assert client.recv_json()["requestId"] == "edge"
    client.send(0x1, text + " ")
    error = client.recv_json()
    assert (error["@type"], error["requestId"], error["type"], error["limit"]) == (
        "RequestError", "edge", "urn:ietf:params:jmap:error:limit", "maxSizeRequest")
    client.send(0x1, text[:600], fin=False)
    client.send(0x0, text[600:] + " ")
    assert client.recv_json()["type"] == "urn:ietf:params:jmap:error:limit"
    client.send_json(echo("still open"))
    assert client.recv_json()["requestId"] == "still open"


def test_rfc6455_7_4_1_a_message_far_over_the_limit_closes_with_1009(server):
    """Beyond twice maxSizeRequest the message is not even read: 1009 Message Too Big."""
    server.core.limits["maxSizeRequest"] = 1000
    client = WsClient(server)
    client.send(0x1, "x" * 2001)
    assert client.expect_close()[0] == 1009
    client = WsClient(server)
    client.send(0x1, "x" * 1500, fin=False)
    client.send(0x0, "x" * 600)
    assert client.expect_close()[0] == 1009


# --- closing (RFC 6455 §5.5.1, §7) -----------------------------------------------------

@pytest.mark.parametrize("payload, answer", [((1000).to_bytes(2, "big") + b"bye", 1000),
                                             ((4001).to_bytes(2, "big"), 4001),
                                             (b"", None)])
def test_rfc6455_5_5_1_close_is_answered_with_close(ws, payload, answer):
    """§5.5.1: the server answers Close with Close echoing the code (none for none),
    then closes the TCP connection (§7.1.1)."""
    ws.send(0x8, payload)
    assert ws.expect_close() == (answer, "")


BAD_FRAMES = {
    "unmasked (§5.1)": (client_frame(0x1, json.dumps(echo("u")), mask=False), 1002),
    "RSV1 without extension (§5.2)": (client_frame(0x1, "{}", rsv=4), 1002),
    "reserved opcode 0x3 (§5.2)": (client_frame(0x3, "{}"), 1002),
    "reserved opcode 0xF (§5.2)": (client_frame(0xF, ""), 1002),
    "Ping of 126 octets (§5.5)": (client_frame(0x9, "p" * 126), 1002),
    "fragmented Ping (§5.5)": (client_frame(0x9, "p", fin=False), 1002),
    "continuation first (§5.4)": (client_frame(0x0, "{}"), 1002),
    "text inside a fragmented text (§5.4)": (client_frame(0x1, "{", fin=False)
                                             + client_frame(0x1, "}"), 1002),
    "Close with one octet (§5.5.1)": (client_frame(0x8, b"\x03"), 1002),
    "Close with code 1005 (§7.4.1)": (client_frame(0x8, (1005).to_bytes(2, "big")), 1002),
    "invalid UTF-8 text (§8.1)": (client_frame(0x1, b'{"a": "\xc3\x28"}'), 1007),
    "invalid UTF-8 close reason (§5.5.1)": (client_frame(0x8, b"\x03\xe8\xff"), 1007),
    "binary data (RFC 8887 §4.3.1)": (client_frame(0x2, b"\x00\x01"), 1003),
}


@pytest.mark.parametrize("name", BAD_FRAMES)
def test_rfc6455_7_4_1_bad_frames_close_with_their_code(ws, name):
    """§7.1.7, §7.4.1: the server fails the connection with the right status code."""
    frame, code = BAD_FRAMES[name]
    ws.sock.sendall(frame)
    assert ws.expect_close()[0] == code


def test_rfc8887_4_2_changed_credentials_close_with_1008(server, ws):
    """§4.2: once the handshake's credentials are no longer valid, Policy Violation."""
    ws.send_json(echo("before"))
    assert ws.recv_json()["requestId"] == "before"
    with server.core.store.transaction():
        server.core.store.db.execute("UPDATE user SET password = 'new' WHERE name = 'alice'")
    ws.send_json(echo("after"))
    assert ws.expect_close()[0] == 1008


def test_rfc6455_7_1_7_a_bad_frame_never_affects_another_socket(server):
    """§7.1.7: failing one connection leaves the others, their pushes and requests, alone."""
    healthy, broken = WsClient(server), WsClient(server)
    healthy.send_json({"@type": "WebSocketPushEnable", "dataTypes": None})
    healthy.send_json(echo("sync"))
    assert healthy.recv_json()["requestId"] == "sync"
    broken.sock.sendall(client_frame(0x1, "x" * 10, rsv=2) + client_frame(0x9, "p" * 200))
    assert broken.expect_close()[0] == 1002
    state = rename_inbox(server.core, "Still here")
    assert healthy.recv_json()["changed"] == {"alice": {"Mailbox": state}}
    healthy.send_json(echo("after"))
    assert healthy.recv_json()["requestId"] == "after"
    healthy.close()
    broken.close()


def websocket_threads():
    return [t for t in threading.enumerate() if t.name.startswith("jmapd-ws")]


def test_rfc6455_7_4_1_server_stop_says_going_away_and_leaks_no_threads(demo_template):
    """§7.4.1 1001: stopping the server closes each socket with Going Away; its push
    and request threads end."""
    before = len(websocket_threads())
    running = jmapd.JmapServer(demo_template.clone(clock=jmapd.FixedClock(),
                                                   ids=jmapd.SequentialIds()))
    clients = [WsClient(running) for _ in range(3)]
    for client in clients:
        client.send_json(echo("warm"))
        assert client.recv_json()["requestId"] == "warm"
    running.stop()
    for client in clients:
        fin, opcode, payload, masked = client.recv_frame()
        assert (opcode, int.from_bytes(payload[:2], "big")) == (0x8, 1001)
        client.close()
    deadline = time.monotonic() + 2
    while len(websocket_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(websocket_threads()) == before


# --- push (RFC 8887 §4.3.5) ------------------------------------------------------------

def push_state(server):
    return f"{server.httpd.push_epoch}.{server.core.feed.sequence}"


def test_rfc8887_4_3_5_2_push_enable_sends_state_changes(server, ws):
    """§4.3.5.1-2: after WebSocketPushEnable, a StateChange with the new state and a
    pushState for each change."""
    ws.send_json({"@type": "WebSocketPushEnable", "dataTypes": None})
    ws.send_json(echo("sync"))
    assert ws.recv_json()["requestId"] == "sync"
    state = rename_inbox(server.core, "Pushed")
    assert ws.recv_json() == {"@type": "StateChange", "changed": {"alice": {"Mailbox": state}},
                              "pushState": push_state(server)}


def test_rfc8887_4_3_5_2_data_types_filter_and_other_users_changes_stay_hidden(server, ws):
    """§4.3.5.2 dataTypes: only those types; RFC 8620 §7.1: only the user's accounts."""
    ws.send_json({"@type": "WebSocketPushEnable", "dataTypes": ["Email"]})
    ws.send_json(echo("sync"))
    assert ws.recv_json()["requestId"] == "sync"
    rename_inbox(server.core, "Not pushed")  # Mailbox only
    raw = b"From: a@example.com\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
    server.deliver(raw, to="bob")  # bob's account: not alice's
    server.deliver(raw.replace(b"bob@", b"alice@"), to="alice")
    change = ws.recv_json()
    assert list(change["changed"]) == ["alice"] and list(change["changed"]["alice"]) == ["Email"]


def test_rfc8887_4_3_5_2_push_state_replays_what_was_missed(server):
    """§4.3.5.2: given a pushState, what changed since is sent at once, newest states
    folded into one StateChange; none when nothing changed."""
    first = WsClient(server)
    first.send_json({"@type": "WebSocketPushEnable", "dataTypes": None})
    first.send_json(echo("sync"))
    first.recv_json()
    rename_inbox(server.core, "One")
    seen = first.recv_json()["pushState"]
    first.close()
    rename_inbox(server.core, "Two")
    newest = rename_inbox(server.core, "Three")
    again = WsClient(server)
    again.send_json({"@type": "WebSocketPushEnable", "dataTypes": ["Mailbox"], "pushState": seen})
    assert again.recv_json() == {"@type": "StateChange", "changed": {"alice": {"Mailbox": newest}},
                                 "pushState": push_state(server)}
    again.send_json({"@type": "WebSocketPushEnable", "dataTypes": None,
                     "pushState": push_state(server)})
    again.send_json(echo("nothing new"))
    assert again.recv_json()["requestId"] == "nothing new"
    again.close()


def test_rfc8887_4_3_5_2_unknown_push_state_sends_every_current_state(server, ws):
    """§4.3.5.2: a pushState we cannot read back (another server run, or too old) gets
    the current state of every type, so the client can resynchronise."""
    ws.send_json({"@type": "WebSocketPushEnable", "dataTypes": ["Mailbox", "Thread"],
                  "pushState": "elsewhere.5"})
    change = ws.recv_json()
    mailbox_state = server.core.call("alice", "Mailbox/get", {"accountId": "alice",
                                                              "ids": []})["state"]
    assert change["changed"]["alice"]["Mailbox"] == mailbox_state
    assert set(change["changed"]["alice"]) <= {"Mailbox", "Thread"}
    assert change["pushState"] == push_state(server)


def test_rfc8887_4_3_5_3_push_disable_stops_state_changes(server, ws):
    """§4.3.5.3: after WebSocketPushDisable, no more StateChange; requests still work."""
    ws.send_json({"@type": "WebSocketPushEnable", "dataTypes": None})
    ws.send_json(echo("sync"))
    ws.recv_json()
    state = rename_inbox(server.core, "On")
    assert ws.recv_json()["changed"] == {"alice": {"Mailbox": state}}
    ws.send_json({"@type": "WebSocketPushDisable"})
    ws.send_json(echo("off"))
    assert ws.recv_json()["requestId"] == "off"
    rename_inbox(server.core, "Off")
    assert ws.silent_for(0.2)
    ws.send_json(echo("alive"))
    assert ws.recv_json()["requestId"] == "alive"


def test_rfc6455_7_4_1_the_disconnect_push_fault_closes_websockets_with_1001(server, ws):
    """A dev fault (section 15): every WebSocket gets Close 1001 Going Away, so a client
    reconnects and resumes with its pushState (RFC 8887 §4.3.5.2)."""
    for _ in range(100):
        if server.httpd.websockets:
            break
        time.sleep(0.01)
    assert server.faults.disconnect_push() == 1
    assert ws.expect_close() == (1001, "closed by the server (a jmapd dev fault)")
    assert server.faults.disconnect_push() == 0


def test_websocket_requests_are_in_the_request_log(server, ws):
    """Section 15's server.requests covers every transport: "transport": "ws"."""
    ws.send_json(echo("r1", logged=True))
    assert ws.recv_json()["requestId"] == "r1"
    for _ in range(100):
        entries = [e for e in server.requests.recent() if e["transport"] == "ws"]
        if entries:
            break
        time.sleep(0.01)
    assert (entries[-1]["status"], entries[-1]["user"]) == (200, "alice")
    assert server.requests.calls("Core/echo") == [["Core/echo", {"logged": True}, "c1"]]


def test_rfc6455_4_2_1_an_upgrade_without_host_is_400(server):
    """§4.2.1 item 2 (and RFC 9112 §3.2 for any HTTP/1.1 request): Host is required."""
    host, port = server.httpd.server_address[:2]
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(f"GET {jmapd.WEBSOCKET_PATH} HTTP/1.1\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: jmap\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 400 ")


def test_rfc9110_7_8_a_426_names_the_upgrade_in_connection(server):
    client = WsClient(server, upgrade=False)
    assert client.status == 426
    assert (client.header("upgrade"), client.header("connection")) == ("websocket", "Upgrade")
    client.close()
