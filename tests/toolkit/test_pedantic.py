"""Client lint (jmapd.py section 5 LINT_FINDINGS, the checks at their points in 5, 6
and 14): each request detail the RFCs do not allow a client, which jmapd tolerates, is
refused under --pedantic with a description citing the rule, and in normal mode only
warned of: the request log's "warnings" and --trace. The details jmapd refuses in both
modes (RFC 8620 §3.3, §3.5, §3.6.1, §3.7, §5.5) stay refused.
"""

import json
import socket
import time

import pytest

import jmapd
from conftest import Jmap

CORE, MAIL, SUBMISSION = jmapd.URN_CORE, jmapd.URN_MAIL, jmapd.URN_SUBMISSION
ALICE = {"name": "Alice Archer", "email": "alice@example.com"}


def last_entry(server, path_start):
    """The newest request-log entry for a path (waiting a moment for a stream's)."""
    deadline = time.monotonic() + 2
    while True:
        entries = [e for e in server.requests if e["path"].startswith(path_start)]
        if entries or time.monotonic() > deadline:
            return entries[-1]
        time.sleep(0.01)


def findings(entry):
    return [warning["finding"] for warning in entry["warnings"]]


def test_every_finding_cites_its_rule():
    assert set(jmapd.LINT_FINDINGS) == {"json-charset", "download-type",
                                        "event-source-variables", "implicit-capability",
                                        "creation-id-in-get"}
    assert all("RFC " in rule and "§" in rule for rule in jmapd.LINT_FINDINGS.values())


def test_a_clean_request_has_no_warnings(server, web):
    assert web.api([["Core/echo", {"x": 1}, "0"]]).status == 200
    assert last_entry(server, jmapd.API_PATH)["warnings"] == []


# --- Host: RFC 9112 §3.2 (refused always) ---------------------------------------------

def raw_get(server, path, headers=""):
    host, port = server.httpd.server_address[:2]
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


AUTH = "Authorization: Basic YWxpY2U6YWxpY2U=\r\n"  # alice:alice


def test_host_header_missing_is_refused_in_both_modes(server):
    """RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host, so
    this is no tolerance to lint: jmapd refuses it always."""
    for pedantic in (False, True):
        server.core.controls.set_pedantic(pedantic)
        assert raw_get(server, jmapd.SESSION_PATH, AUTH)[0] == 400
        assert raw_get(server, jmapd.SESSION_PATH, AUTH + "Host: x\r\n")[0] == 200


# --- json-charset: RFC 8620 §3.1, RFC 8259 §8.1 ---------------------------------------

LATIN1 = {"Content-Type": "application/json; charset=ISO-8859-1"}
ECHO = json.dumps({"using": [CORE], "methodCalls": [["Core/echo", {"a": 1}, "0"]]}).encode()


def test_a_non_utf8_charset_is_warned_in_normal_mode(server, web):
    response = web.send("POST", jmapd.API_PATH, ECHO, LATIN1)
    assert response.status == 200
    assert json.loads(response.data)["methodResponses"][0][1] == {"a": 1}
    entry = last_entry(server, jmapd.API_PATH)
    assert findings(entry) == ["json-charset"]
    assert "charset=ISO-8859-1" in entry["warnings"][0]["description"]


def test_a_non_utf8_charset_is_not_json_when_pedantic(server, web):
    server.core.controls.set_pedantic(True)
    response = web.send("POST", jmapd.API_PATH, ECHO, LATIN1)
    problem = json.loads(response.data)
    assert (response.status, problem["type"]) == (400, "urn:ietf:params:jmap:error:notJSON")
    assert "RFC 8620 §3.1" in problem["detail"]
    for fine in ("application/json", "application/json; charset=utf-8",
                 'application/json;charset="UTF-8"'):
        assert web.send("POST", jmapd.API_PATH, ECHO, {"Content-Type": fine}).status == 200


# --- download-type: RFC 8620 §6.2 -----------------------------------------------------

def uploaded(server, web):
    blob = jmapd.upload_blob(server.core, server.core.user("alice"), "alice", b"hi",
                             "text/plain")["blobId"]
    return f"{jmapd.DOWNLOAD_PREFIX}alice/{blob}/hi.txt"


def test_a_download_without_type_is_warned_in_normal_mode(server, web):
    response = web.send("GET", uploaded(server, web))
    assert (response.status, response.data) == (200, b"hi")
    assert response.getheader("Content-Type") == "text/plain"  # the upload's own
    assert findings(last_entry(server, jmapd.DOWNLOAD_PREFIX)) == ["download-type"]


def test_a_download_without_type_is_refused_when_pedantic(server, web):
    server.core.controls.set_pedantic(True)
    path = uploaded(server, web)
    response = web.send("GET", path)
    assert response.status == 400
    assert "RFC 8620 §6.2" in json.loads(response.data)["detail"]
    assert web.send("GET", path + "?type=text/x-a").status == 200


# --- event-source-variables: RFC 8620 §7.3 --------------------------------------------

def open_events(server, query):
    user = server.core.user("alice")
    return jmapd.EventSource(f"{server.url}{jmapd.EVENTSOURCE_PATH}?{query}",
                             {"Authorization": f"Bearer {user.token}"}, timeout=2)


def test_event_source_variables_missing_are_warned_in_normal_mode(server):
    with open_events(server, "types=*&closeafter=state") as stream:  # no ping
        assert stream.status == 200
        server.core.call("alice", "Mailbox/set", {"accountId": "alice",
                                                  "create": {"k": {"name": "Ping"}}})
        assert stream.next_state_change()["changed"]["alice"]["Mailbox"]
    entry = last_entry(server, jmapd.EVENTSOURCE_PATH)
    assert findings(entry) == ["event-source-variables"]
    assert entry["warnings"][0]["description"].startswith("ping not in the URL")


def test_event_source_variables_missing_are_refused_when_pedantic(server):
    server.core.controls.set_pedantic(True)
    with pytest.raises(jmapd.CallError) as refused:
        open_events(server, "types=*")
    assert refused.value.status == 400
    assert str(refused.value).endswith("closeafter, ping not in the URL (RFC 8620 §7.3: "
                                       "the client fills in types, closeafter and ping)")
    with open_events(server, "types=*&closeafter=no&ping=0") as stream:
        assert stream.status == 200


# --- implicit-capability: RFC 8620 §2, RFC 8621 §7.5 ----------------------------------

def submit_with_update(jmap, using):
    drafts = jmap.mailbox_ids()["Drafts"]
    email_id = jmap.call("Email/set", {"accountId": "alice", "create": {"d": {
        "mailboxIds": {drafts: True}, "keywords": {"$draft": True}, "from": [ALICE],
        "to": [{"email": "bob@example.com"}], "subject": "Lint",
        "textBody": [{"partId": "t", "type": "text/plain"}],
        "bodyValues": {"t": {"value": "hi"}}}}})["created"]["d"]["id"]
    response = jmap.request([["EmailSubmission/set", {
        "accountId": "alice", "create": {"k1": {"identityId": "Iprimary", "emailId": email_id}},
        "onSuccessUpdateEmail": {"#k1": {"keywords/$draft": None}}}, "0"]], using)
    return email_id, response["methodResponses"]


def test_an_implicit_call_outside_using_is_warned_in_normal_mode(jmap):
    with jmap.core.collect_findings() as warnings:
        email_id, responses = submit_with_update(jmap, (CORE, SUBMISSION))
    assert [r[0] for r in responses] == ["EmailSubmission/set", "Email/set"]
    assert responses[1][1]["updated"] == {email_id: None}
    assert [w["finding"] for w in warnings] == ["implicit-capability"]
    assert MAIL in warnings[0]["description"]


def test_an_implicit_call_outside_using_is_unknown_when_pedantic(jmap):
    jmap.core.controls.set_pedantic(True)
    _, responses = submit_with_update(jmap, (CORE, SUBMISSION))
    assert responses[0][1]["created"]["k1"]["id"]  # the submission itself went through
    assert responses[1][0] == "error" and responses[1][1]["type"] == "unknownMethod"
    assert "RFC 8620 §2" in responses[1][1]["description"]
    with jmap.core.collect_findings() as warnings:
        _, responses = submit_with_update(jmap, (CORE, MAIL, SUBMISSION))
    assert [r[0] for r in responses] == ["EmailSubmission/set", "Email/set"] and not warnings


# --- creation-id-in-get: RFC 8620 §5.1 ------------------------------------------------

def create_then_get(jmap):
    return jmap.request([
        ["Mailbox/set", {"accountId": "alice", "create": {"k": {"name": "Lint"}}}, "0"],
        ["Mailbox/get", {"accountId": "alice", "ids": ["#k"], "properties": ["name"]}, "1"]])[
        "methodResponses"][1]


def test_a_creation_id_in_get_is_warned_in_normal_mode(jmap):
    with jmap.core.collect_findings() as warnings:
        name, result, _ = create_then_get(jmap)
    assert (name, [m["name"] for m in result["list"]]) == ("Mailbox/get", ["Lint"])
    assert [w["finding"] for w in warnings] == ["creation-id-in-get"]


def test_a_creation_id_in_get_is_invalid_arguments_when_pedantic(jmap):
    jmap.core.controls.set_pedantic(True)
    name, result, _ = create_then_get(jmap)
    assert (name, result["type"]) == ("error", "invalidArguments")
    assert result["description"].startswith("ids: a '#creation' reference (RFC 8620 §5.1")


# --- refused in both modes already ------------------------------------------------------

STRICT = {
    "unknown Comparator member (RFC 8620 §5.5)": (
        "Mailbox/query", {"accountId": "alice", "sort": [{"property": "name", "x": 1}]},
        "invalidArguments"),
    "omitted required argument (RFC 8620 §3.5)": (
        "Mailbox/changes", {"accountId": "alice"}, "invalidArguments"),
    "ResultReference with an extra member (RFC 8620 §3.7)": (
        "Mailbox/get", {"accountId": "alice", "#ids": {
            "resultOf": "x", "name": "Mailbox/query", "path": "/ids", "extra": 1}},
        "invalidResultReference"),
    "ResultReference to a later call (RFC 8620 §3.7)": (
        "Mailbox/get", {"accountId": "alice", "#ids": {
            "resultOf": "later", "name": "Mailbox/query", "path": "/ids"}},
        "invalidResultReference"),
}


@pytest.mark.parametrize("pedantic", [False, True])
@pytest.mark.parametrize("case", sorted(STRICT))
def test_what_the_rfc_forbids_outright_is_refused_in_both_modes(jmap, case, pedantic):
    jmap.core.controls.set_pedantic(pedantic)
    name, args, error = STRICT[case]
    assert jmap.error(name, args) == error


@pytest.mark.parametrize("pedantic", [False, True])
def test_a_method_outside_using_and_a_wrong_content_type_are_refused_in_both_modes(
        server, web, pedantic):
    """RFC 8620 §3.6.2 unknownMethod; §3.6.1 notJSON for a Content-Type not JSON."""
    server.core.controls.set_pedantic(pedantic)
    response = json.loads(web.api([["Mailbox/get", {"accountId": "alice"}, "0"]],
                                  using=(CORE,)).data)
    assert response["methodResponses"][0][1]["type"] == "unknownMethod"
    response = web.send("POST", jmapd.API_PATH, ECHO, {"Content-Type": "text/plain"})
    assert (response.status, json.loads(response.data)["type"]) == (
        400, "urn:ietf:params:jmap:error:notJSON")


# --- the switches: serve(), the marker, the control API, the CLI, --trace ---------------

def test_serve_takes_pedantic():
    with jmapd.serve("empty", pedantic=True) as server:
        assert server.core.pedantic is True
    with pytest.raises(ValueError, match="pedantic: true or false"):
        jmapd.serve("empty", pedantic="yes")


@pytest.mark.jmapd(pedantic=True)
def test_the_marker_option_makes_the_server_pedantic(jmap_server, jmap_client):
    blob = jmap_client.upload(b"x", "text/plain")["blobId"]
    status, _, body = jmap_client.send(
        "GET", f"{jmap_server.url}{jmapd.DOWNLOAD_PREFIX}alice/{blob}/x")
    assert status == 400 and b"RFC 8620 \xc2\xa76.2" in body


def test_the_control_api_switches_pedantic(server, web):
    response = web.send("POST", jmapd.CONTROL_PREFIX + "/quirks", {"pedantic": True}, auth={})
    assert (response.status, json.loads(response.data)["pedantic"]) == (200, True)
    assert server.core.pedantic is True
    response = web.send("POST", jmapd.CONTROL_PREFIX + "/quirks", {"pedantic": False}, auth={})
    assert json.loads(response.data)["pedantic"] is False and server.core.pedantic is False


def test_the_cli_has_pedantic():
    assert jmapd.build_arg_parser().parse_args(["--pedantic"]).pedantic is True
    assert jmapd.build_arg_parser().parse_args([]).pedantic is False


def test_trace_prints_the_warnings(core, capsys):
    with jmapd.JmapServer(core, trace=True) as server:
        web_path = f"{jmapd.DOWNLOAD_PREFIX}alice/" + jmapd.upload_blob(
            core, core.user("alice"), "alice", b"t", "text/plain")["blobId"] + "/t"
        status, _ = raw_get(server, web_path, AUTH + "Host: x\r\n")
        assert status == 200
        last_entry(server, jmapd.DOWNLOAD_PREFIX)
    err = capsys.readouterr().err
    assert "--- warnings (--pedantic refuses these)" in err
    assert '"finding": "download-type"' in err
