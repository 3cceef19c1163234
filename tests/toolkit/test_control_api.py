"""The control API over HTTP (jmapd.py section 15.6): /_jmapd/... for test suites in any
language, each endpoint with good and bad input; --no-control (404) and --ready-file.
Faults armed here reach clients as RFC 8620 §3.6 errors, like those armed in Python.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

import jmapd
from conftest import Http, Jmap

CORE, MAIL, SUBMISSION = jmapd.URN_CORE, jmapd.URN_MAIL, jmapd.URN_SUBMISSION
P = jmapd.CONTROL_PREFIX


def control(web, method, name, body=None, raw=None):
    """(status, JSON or text) of one control request; sent without credentials."""
    response = web.send(method, P + name, raw if raw is not None else body, auth={})
    kind = response.getheader("Content-Type") or ""
    value = json.loads(response.data) if "json" in kind else response.data.decode()
    return response.status, value


def api_call(web, name, args, using=(CORE, MAIL)):
    response = web.api([[name, args, "0"]], using)
    assert response.status == 200, response.data
    return json.loads(response.data)["methodResponses"][0][:2]


def send_outside(web, to="dave@elsewhere.example"):
    """alice sends a message to an address outside the server (RFC 8621 §7.5)."""
    _, boxes = api_call(web, "Mailbox/query", {"accountId": "alice", "filter": {"role": "drafts"}})
    _, created = api_call(web, "Email/set", {"accountId": "alice", "create": {"d": {
        "mailboxIds": {boxes["ids"][0]: True}, "from": [{"email": "alice@example.com"}],
        "to": [{"email": to}], "subject": "Quarterly", "bodyValues": {"t": {"value": "Numbers"}},
        "textBody": [{"partId": "t", "type": "text/plain"}]}}})
    name, result = api_call(web, "EmailSubmission/set", {"accountId": "alice", "create": {
        "s": {"identityId": "Iprimary", "emailId": created["created"]["d"]["id"]}}},
        (CORE, MAIL, SUBMISSION))
    assert result["created"], result
    return result["created"]["s"]["id"]


def test_the_index_lists_every_endpoint(web):
    status, body = control(web, "GET", "")
    assert status == 200 and body["jmapd"] == jmapd.__version__
    assert {"POST /_jmapd/faults", "GET /_jmapd/outbox", "POST /_jmapd/restore"} <= set(
        body["endpoints"])


def test_controls_need_no_credentials_and_send_cors_headers(web):
    response = web.send("GET", P + "/clock", auth={})
    assert response.status == 200
    assert response.getheader("Access-Control-Allow-Origin") == "*"


# --- deliver ------------------------------------------------------------------------

def test_deliver_a_raw_message(server, web):
    status, body = control(web, "POST", "/deliver", {
        "to": "alice", "raw": "From: x@example.net\r\nSubject: Raw\r\n\r\nhello\r\n",
        "keywords": ["$seen"], "receivedAt": "2026-01-01T08:00:00Z"})
    assert status == 200 and list(body["delivered"]) == ["alice"]
    _, got = api_call(web, "Email/get", {"accountId": "alice", "ids": list(
        body["delivered"].values()), "properties": ["subject", "keywords", "receivedAt"]})
    assert got["list"][0]["subject"] == "Raw"
    assert got["list"][0]["keywords"] == {"$seen": True}
    assert got["list"][0]["receivedAt"] == "2026-01-01T08:00:00Z"


def test_deliver_a_described_message_to_its_to_and_cc(web):
    status, body = control(web, "POST", "/deliver", {"message": {
        "from": "Carol <carol@example.org>", "to": "alice", "cc": "bob", "subject": "Hi",
        "text": "Hello"}})
    assert status == 200 and set(body["delivered"]) == {"alice@example.com", "bob@example.com"}


@pytest.mark.parametrize("body, problem", [
    ({"to": "alice"}, "either raw"),
    ({"to": "alice", "raw": "x", "message": {}}, "either raw"),
    ({"to": "alice", "raw": "x", "cc": "bob"}, "unknown 'cc'"),
    ({"to": "alice", "raw": 5}, "raw is a string"),
    ({"raw": "Subject: x\r\n\r\n"}, "to:"),
    ({"to": "nobody", "raw": "Subject: x\r\n\r\n"}, "no local user"),
    ({"message": {"to": "alice", "subjet": "x"}}, "unknown field"),
    ({"to": "alice", "raw": "x", "keywords": [1]}, "keywords"),
])
def test_deliver_refuses_bad_input_with_400(web, body, problem):
    status, answer = control(web, "POST", "/deliver", body)
    assert status == 400 and problem in answer["detail"]


@pytest.mark.parametrize("raw, problem", [(b"{nope", "not I-JSON"), (b"[1]", "JSON object")])
def test_a_body_that_is_not_a_json_object_is_400(web, raw, problem):
    status, answer = control(web, "POST", "/deliver", raw=raw)
    assert status == 400 and problem in answer["detail"]


# --- outbox and requests -------------------------------------------------------------

def test_the_outbox_shows_envelope_headers_subject_and_text(server, web):
    assert control(web, "GET", "/outbox") == (200, {"messages": []})
    submission_id = send_outside(web)
    status, body = control(web, "GET", "/outbox")
    (message,) = body["messages"]
    assert (message["mailFrom"], message["rcptTo"], message["subject"], message["text"]) == (
        "alice@example.com", ["dave@elsewhere.example"], "Quarterly", "Numbers")
    assert (message["accountId"], message["submissionId"]) == ("alice", submission_id)
    assert ["To", "dave@elsewhere.example"] in message["headers"]
    assert message["html"] is None and "raw" not in message
    _, with_raw = control(web, "GET", "/outbox?raw=1")
    assert "Subject: Quarterly" in with_raw["messages"][0]["raw"]
    assert control(web, "POST", "/outbox/clear") == (200, {"cleared": 1})
    assert server.outbox == []


def test_the_request_log_as_json_and_text(server, web):
    api_call(web, "Core/echo", {"n": 1})
    api_call(web, "Core/echo", {"n": 2})
    status, body = control(web, "GET", "/requests")
    assert status == 200 and [e["request"]["methodCalls"][0][1]["n"]
                              for e in body["requests"]] == [1, 2]
    _, newest = control(web, "GET", "/requests?last=1")
    assert [e["seq"] for e in newest["requests"]] == [2]
    status, text = control(web, "GET", "/requests?format=text")
    assert status == 200 and text.startswith("#1 POST /jmap/api -> 200 (alice")
    assert control(web, "POST", "/requests/clear") == (200, {"cleared": 2})
    assert control(web, "GET", "/requests") == (200, {"requests": []})


@pytest.mark.parametrize("query", ["?last=0", "?last=x", "?format=xml"])
def test_the_request_log_refuses_bad_parameters(web, query):
    assert control(web, "GET", "/requests" + query)[0] == 400


# --- faults -------------------------------------------------------------------------

def test_an_armed_fault_reaches_the_client_then_is_spent(web):
    status, body = control(web, "POST", "/faults", {"fault": "fail", "method": "Mailbox/get",
                                                    "error": "serverFail"})
    assert status == 201
    assert body["fault"] | {"id": None} == {"id": None, "fault": "fail", "methods": [
        "Mailbox/get"], "path": None, "times": 1, "fired": 0, "error": "serverFail",
        "description": None}
    assert control(web, "GET", "/faults")[1]["faults"][0]["id"] == body["fault"]["id"]
    assert api_call(web, "Mailbox/get", {"accountId": "alice", "ids": []}) == [
        "error", {"type": "serverFail"}]
    assert control(web, "GET", "/faults") == (200, {"faults": []})
    assert api_call(web, "Mailbox/get", {"accountId": "alice", "ids": []})[0] == "Mailbox/get"


def test_an_http_status_fault_armed_over_http(web):
    control(web, "POST", "/faults", {"fault": "http_status", "status": 503, "retry_after": 7})
    response = web.api([["Core/echo", {}, "0"]])
    assert (response.status, response.getheader("Retry-After")) == (503, "7")


def test_immediate_faults_answer_200_with_their_result(server, web):
    before = server.core.session_state("alice")
    status, body = control(web, "POST", "/faults", {"fault": "bump_session_state"})
    assert status == 200 and body["fault"] == "bump_session_state"
    assert web.send("GET", jmapd.SESSION_PATH).status == 200
    assert json.loads(web.send("GET", jmapd.SESSION_PATH).data)["state"] != before
    status, body = control(web, "POST", "/faults", {"fault": "expire_states", "type": "Email"})
    assert status == 200 and set(body["result"]["alice"]) == {"Email"}
    assert control(web, "POST", "/faults", {"fault": "disconnect_push"}) == (
        200, {"fault": "disconnect_push", "result": 0})


@pytest.mark.parametrize("body, problem", [
    ({}, "fault: one of"),
    ({"fault": "explode"}, "fault: one of"),
    ({"fault": "fail"}, "missing 1 required positional argument: 'method'"),
    ({"fault": "fail", "method": "Core/echo", "eror": "x"}, "unexpected keyword argument"),
    ({"fault": "fail", "method": "Core/echo", "error": "nope"}, "not a method-level error"),
    ({"fault": "latency", "ms": "fast"}, "ms:"),
    ({"fault": "http_status", "status": 200}, "status:"),
    ({"fault": "state_mismatch", "type": "Nope"}, "type:"),
])
def test_a_bad_fault_is_400_and_arms_nothing(web, body, problem):
    status, answer = control(web, "POST", "/faults", body)
    assert status == 400 and problem in answer["detail"], answer
    assert control(web, "GET", "/faults") == (200, {"faults": []})


def test_faults_clear_disarms_all(web):
    control(web, "POST", "/faults", {"fault": "latency", "ms": 1})
    control(web, "POST", "/faults", {"fault": "drop_connection", "path": "*", "times": None})
    assert control(web, "POST", "/faults/clear") == (200, {"cleared": 2})


def test_the_control_api_answers_whatever_is_armed(web):
    control(web, "POST", "/faults", {"fault": "drop_connection", "path": "*", "times": None})
    assert control(web, "GET", "/faults")[0] == 200
    assert control(web, "POST", "/faults/clear") == (200, {"cleared": 1})


# --- clock --------------------------------------------------------------------------

def test_the_clock_reads_advances_sets_and_follows_real_time(web):
    assert control(web, "GET", "/clock") == (200, {"now": "2026-01-01T09:00:00Z", "fixed": True})
    assert control(web, "POST", "/clock", {"advance": {"hours": 2, "minutes": 30}}) == (
        200, {"now": "2026-01-01T11:30:00Z", "fixed": True})
    assert control(web, "POST", "/clock", {"set": "2027-03-04T05:06:07Z"})[1]["now"] == \
        "2027-03-04T05:06:07Z"
    status, real = control(web, "POST", "/clock", {"fixed": False})
    assert status == 200 and real["fixed"] is False and real["now"] > "2026"
    assert control(web, "POST", "/clock", {"fixed": True})[1]["fixed"] is True


def test_advancing_the_clock_over_http_sends_a_held_submission(server, web):
    """RFC 8621 §7.5, FUTURERELEASE HOLDFOR (RFC 4865): released by the clock alone."""
    jmap = Jmap(server.core)
    drafts = jmap.mailbox_ids()["Drafts"]
    email_id = jmap.call("Email/set", {"accountId": "alice", "create": {"d": {
        "mailboxIds": {drafts: True}, "from": [{"email": "alice@example.com"}],
        "to": [{"email": "bob@example.com"}], "subject": "Held"}}})["created"]["d"]["id"]
    created = jmap.call("EmailSubmission/set", {"accountId": "alice", "create": {"s": {
        "identityId": "Iprimary", "emailId": email_id, "envelope": {
            "mailFrom": {"email": "alice@example.com", "parameters": {"HOLDFOR": "60"}},
            "rcptTo": [{"email": "bob@example.com", "parameters": None}]}}}},
        (CORE, MAIL, SUBMISSION))["created"]["s"]
    control(web, "POST", "/clock", {"advance": {"minutes": 1}})
    assert server.core.store.outgoing("alice", created["id"])["state"] == "sent"


@pytest.mark.parametrize("body", [
    {}, {"advance": {"hours": 1}, "set": "2026-01-01T00:00:00Z"}, {"advance": {}},
    {"advance": {"weeks": 1}}, {"advance": {"hours": -1}}, {"advance": {"hours": "1"}},
    {"advance": 60}, {"set": "tomorrow"}, {"set": 5}, {"fixed": "yes"}, {"rewind": 1},
])
def test_a_bad_clock_request_is_400_and_moves_nothing(web, body):
    assert control(web, "POST", "/clock", body)[0] == 400
    assert control(web, "GET", "/clock")[1]["now"] == "2026-01-01T09:00:00Z"


# --- users, snapshots, reset ---------------------------------------------------------

def test_users_are_listed_and_added(server, web):
    status, body = control(web, "GET", "/users")
    assert status == 200 and [u["name"] for u in body["users"]] == ["alice", "bob"]
    status, body = control(web, "POST", "/users", {"name": "carol", "password": "pw",
                                                   "seed": [{"subject": "Welcome"}]})
    assert status == 201 and body["user"] == {
        "name": "carol", "password": "pw", "token": "token-carol", "email": "carol@example.com",
        "accountId": "carol", "fullName": ""}
    response = web.api([["Email/query", {"accountId": "carol"}, "0"]],
                       auth=Http.basic("carol", "pw"))
    assert len(json.loads(response.data)["methodResponses"][0][1]["ids"]) == 1


@pytest.mark.parametrize("body, problem", [
    ({"name": "alice"}, "exists"), ({}, "users:"), ({"name": "x", "pass": "y"}, "unknown"),
    ({"name": 5}, "strings"), ({"name": "a:b"}, "bad user name"),
    ({"name": "dan", "seed": "x"}, "seed"),
])
def test_a_bad_user_is_400(web, body, problem):
    status, answer = control(web, "POST", "/users", body)
    assert status == 400 and problem in answer["detail"]


def test_snapshot_and_restore_over_http(server, web):
    status, snap = control(web, "POST", "/snapshot", {"name": "before"})
    assert status == 201 and snap == {"snapshot": "before", "takenAt": "2026-01-01T09:00:00Z"}
    _, state = api_call(web, "Mailbox/get", {"accountId": "alice", "ids": []})
    api_call(web, "Mailbox/set", {"accountId": "alice", "create": {"k": {"name": "Temp"}}})
    assert control(web, "GET", "/snapshot")[1] == {"snapshots": [snap]}
    assert control(web, "POST", "/restore", {"snapshot": "before"}) == (
        200, {"restored": "before"})
    assert "Temp" not in Jmap(server.core).mailbox_ids()
    name, result = api_call(web, "Mailbox/changes", {"accountId": "alice",
                                                     "sinceState": state["state"]})
    assert (name, result["type"]) == ("error", "cannotCalculateChanges")
    assert control(web, "POST", "/snapshot")[1]["snapshot"] == "s2"


@pytest.mark.parametrize("path, body, status", [
    ("/restore", {"snapshot": "missing"}, 404), ("/restore", {}, 400),
    ("/restore", {"snapshot": 1}, 400), ("/snapshot", {"name": "a b"}, 400),
    ("/snapshot", {"label": "x"}, 400),
])
def test_bad_snapshot_requests(web, path, body, status):
    assert control(web, "POST", path, body)[0] == status


def test_reset_over_http(server, web):
    control(web, "POST", "/users", {"name": "carol"})
    control(web, "POST", "/clock", {"advance": {"days": 1}})
    assert control(web, "POST", "/reset") == (200, {"reset": True})
    assert [u.name for u in server.users] == ["alice", "bob"]
    assert control(web, "GET", "/clock")[1]["now"] == "2026-01-01T09:00:00Z"


def test_a_wrong_method_is_405_and_an_unknown_control_404(web):
    assert control(web, "GET", "/reset")[0] == 405
    assert control(web, "GET", "/nothing")[0] == 404


# --- turning it off; the command line -------------------------------------------------

def test_control_false_answers_404_everywhere(demo_template):
    core = demo_template.clone(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds())
    with jmapd.JmapServer(core, control=False) as server:
        web = Http(server)
        for method, name in (("GET", ""), ("POST", "/reset"), ("GET", "/outbox"),
                             ("POST", "/faults"), ("GET", "/reset"), ("POST", "")):
            assert control(web, method, name, {})[0] == 404
        assert web.api([["Core/echo", {}, "0"]]).status == 200
        web.close()


def start_jmapd(tmp_path, *args):
    ready = tmp_path / "url.txt"
    process = subprocess.Popen([sys.executable, os.path.abspath(jmapd.__file__), "--port", "0",
                                "--seed", "empty", "--ready-file", str(ready), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ready.exists(), process.stderr.read() if process.poll() is not None else "timeout"
    return process, ready.read_text()


def stop(process):
    process.terminate()
    process.communicate(timeout=10)


def test_ready_file_holds_the_url_and_the_control_api_answers(tmp_path):
    process, text = start_jmapd(tmp_path)
    try:
        assert text.endswith("\n") and text.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(text.strip() + P + "/users", timeout=5) as response:
            assert [u["name"] for u in json.load(response)["users"]] == ["alice", "bob"]
    finally:
        stop(process)


def test_no_control_flag_gives_404(tmp_path):
    process, text = start_jmapd(tmp_path, "--no-control")
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(text.strip() + P + "/users", timeout=5)
        assert refused.value.code == 404
    finally:
        stop(process)


def test_an_unwritable_ready_file_fails_the_start(tmp_path):
    result = subprocess.run([sys.executable, os.path.abspath(jmapd.__file__), "--port", "0",
                             "--seed", "empty", "--ready-file",
                             str(tmp_path / "missing" / "url.txt")],
                            capture_output=True, text=True, timeout=15)
    assert result.returncode == 1 and "--ready-file" in result.stderr


def test_captured_pushes_are_readable_over_the_control_api(server, web):
    """RFC 8620 §7.2.2: the PushVerification to the reserved host, read over HTTP."""
    url = "https://push.jmapd.test/phone"
    _, result = api_call(web, "PushSubscription/set", {"create": {"p": {
        "deviceClientId": "phone", "url": url}}}, using=(CORE,))
    created = result["created"]["p"]
    for _ in range(100):
        status, body = control(web, "GET", f"/pushes?url={url}")
        if body["pushes"]:
            break
        time.sleep(0.01)
    [push] = body["pushes"]
    assert (status, push["url"], push["body"]["@type"], push["body"]["pushSubscriptionId"]) == (
        200, url, "PushVerification", created["id"])
    assert control(web, "GET", "/pushes?url=https://push.jmapd.test/other") == (
        200, {"pushes": []})


def test_a_clock_advance_past_the_calendar_is_400_and_the_clock_still_works(web):
    assert control(web, "POST", "/clock", {"advance": {"days": 3_000_000}})[0] == 400
    assert control(web, "POST", "/clock", {"advance": {"hours": 1e300}})[0] == 400
    status, clock = control(web, "GET", "/clock")
    assert (status, clock["now"]) == (200, "2026-01-01T09:00:00Z")
    assert web.api([["Core/echo", {}, "0"]]).status == 200


def test_deliver_refuses_keywords_that_are_not_a_list(web):
    status, problem = control(web, "POST", "/deliver", {"message": {"to": "alice"},
                                                         "keywords": "$seen"})
    assert status == 400 and "keywords" in problem["detail"]


@pytest.mark.parametrize("user, problem", [
    ({"name": "hank", "fullName": 5}, "full_name"),
    ({"name": "hank", "email": "notanemail"}, "bad address"),
    ({"name": "hank", "email": "ALICE@example.com"}, "another user's"),
    ({"name": "bad name"}, "bad user name"),
])
def test_bad_users_are_refused(web, user, problem):
    status, body = control(web, "POST", "/users", user)
    assert status == 400 and problem in body["detail"]
