"""The dev controls (jmapd.py section 15) through Python: faults that reach a client as
the RFC 8620 errors a real server sends (§3.6.1 request errors, §3.6.2 method errors,
§5.2 cannotCalculateChanges and hasMoreChanges, §5.3 stateMismatch, §2 session state,
§7.3 EventSource), the request log, the clock, snapshots, reset and accounts on demand.
"""

import http.client
import json
import socket
import time

import pytest

import jmapd
from conftest import Http, Jmap

CORE, MAIL, SUBMISSION = jmapd.URN_CORE, jmapd.URN_MAIL, jmapd.URN_SUBMISSION


def faults(core):
    return core.controls.faults


def mailbox_state(jmap):
    return jmap.call("Mailbox/get", {"accountId": jmap.account_id, "ids": []})["state"]


def create_mailbox(jmap, name, **args):
    result = jmap.call("Mailbox/set", {"accountId": jmap.account_id,
                                       "create": {"k": {"name": name}}, **args})
    return result


def changes(jmap, since, **args):
    return jmap.call_raw("Mailbox/changes", {"accountId": jmap.account_id,
                                              "sinceState": since, **args})


# --- method faults (RFC 8620 §3.6.2) ---------------------------------------------

def test_3_6_2_fail_answers_the_error_response_once(jmap):
    rule = faults(jmap.core).fail("Mailbox/get", error="serverFail")
    name, result = jmap.call_raw("Mailbox/get", {"accountId": "alice", "ids": []})
    assert (name, result["type"]) == ("error", "serverFail")
    assert set(result) <= {"type", "description"}
    assert jmap.call_raw("Mailbox/get", {"accountId": "alice", "ids": []})[0] == "Mailbox/get"
    assert (rule.fired, rule.times, faults(jmap.core).active) == (1, 0, [])


def test_3_6_2_a_failed_call_leaves_the_other_calls_of_the_request_alone(jmap):
    faults(jmap.core).fail("Mailbox/*", error="forbidden", times=None)
    response = jmap.request([["Core/echo", {"x": 1}, "a"],
                             ["Mailbox/get", {"accountId": "alice"}, "b"],
                             ["Mailbox/query", {"accountId": "alice"}, "c"]])
    assert [(n, r.get("type"), i) for n, r, i in response["methodResponses"]] == [
        ("Core/echo", None, "a"), ("error", "forbidden", "b"), ("error", "forbidden", "c")]


def test_3_6_2_fail_counts_its_times_and_clear_disarms(jmap):
    faults(jmap.core).fail("Core/echo", error="serverUnavailable", times=2,
                           description="maintenance")
    answers = [jmap.call_raw("Core/echo", {})[1] for _ in range(3)]
    assert answers[:2] == [{"type": "serverUnavailable", "description": "maintenance"}] * 2
    assert answers[2] == {}
    faults(jmap.core).fail("Core/echo", times=None)
    assert faults(jmap.core).clear() == 1
    assert jmap.call_raw("Core/echo", {})[0] == "Core/echo"


@pytest.mark.parametrize("args, problem", [
    (("Mailbox/get", "notJSON"), "not a method-level error"),   # a request-level type
    (("Mailbox/get", "mailboxHasChild"), "not a method-level error"),  # a SetError
    (("Mailbox/gte", "serverFail"), "method:"),
    (("", "serverFail"), "method:"),
])
def test_fail_refuses_what_no_server_could_answer(core, args, problem):
    with pytest.raises(ValueError, match=problem):
        faults(core).fail(*args)


@pytest.mark.parametrize("times", [0, -1, 1.5, True, "2"])
def test_times_must_be_a_positive_integer_or_none(core, times):
    with pytest.raises(ValueError, match="times"):
        faults(core).fail("Core/echo", times=times)


def test_latency_delays_the_matching_calls_only(jmap):
    faults(jmap.core).latency(ms=150, method="Core/echo", times=1)
    started = time.monotonic()
    jmap.call("Mailbox/get", {"accountId": "alice", "ids": []})
    assert time.monotonic() - started < 0.1
    started = time.monotonic()
    assert jmap.call("Core/echo", {"a": 1}) == {"a": 1}
    assert time.monotonic() - started >= 0.15


@pytest.mark.parametrize("ms", [-1, 60_001, "10", None, True])
def test_latency_refuses_a_bad_delay(core, ms):
    with pytest.raises(ValueError, match="ms"):
        faults(core).latency(ms=ms)


# --- /changes and /set faults (RFC 8620 §5.2, §5.3, §5.6) ---------------------------

def test_5_2_cannot_calculate_changes_answers_changes_and_query_changes(jmap):
    state = mailbox_state(jmap)
    faults(jmap.core).cannot_calculate_changes("Mailbox", times=2)
    assert changes(jmap, state) == ("error", {"type": "cannotCalculateChanges"})
    name, result = jmap.call_raw("Mailbox/queryChanges", {"accountId": "alice",
                                                          "sinceQueryState": state})
    assert (name, result["type"]) == ("error", "cannotCalculateChanges")
    assert changes(jmap, state)[1]["hasMoreChanges"] is False  # spent
    email_state = jmap.call("Email/get", {"accountId": "alice", "ids": []})["state"]
    faults(jmap.core).cannot_calculate_changes("Mailbox")
    assert jmap.call_raw("Email/changes", {"accountId": "alice",
                                           "sinceState": email_state})[0] == "Email/changes"


def test_a_fault_for_an_unknown_data_type_is_refused(core):
    with pytest.raises(ValueError, match="type"):
        faults(core).cannot_calculate_changes("Mailboxes")


def test_5_3_state_mismatch_answers_a_set_with_if_in_state_and_writes_nothing(jmap):
    state = mailbox_state(jmap)
    rule = faults(jmap.core).state_mismatch("Mailbox")
    assert create_mailbox(jmap, "Plain")["created"]["k"]["id"]  # no ifInState: untouched
    assert rule.fired == 0
    state = mailbox_state(jmap)
    name, result = jmap.call_raw("Mailbox/set", {"accountId": "alice", "ifInState": state,
                                                 "create": {"k": {"name": "Guarded"}}})
    assert (name, result["type"]) == ("error", "stateMismatch")
    assert mailbox_state(jmap) == state
    assert "Guarded" not in jmap.mailbox_ids()
    assert create_mailbox(jmap, "Guarded", ifInState=state)["created"]["k"]["id"]


def test_5_2_has_more_changes_pages_exactly(jmap):
    state = mailbox_state(jmap)
    made = [create_mailbox(jmap, f"Box {n}")["created"]["k"]["id"] for n in range(3)]
    faults(jmap.core).has_more_changes("Mailbox", max_changes=1)
    seen, pages = [], 0
    while True:
        name, result = changes(jmap, state, maxChanges=50)
        assert name == "Mailbox/changes" and len(result["created"]) <= 1
        seen += result["created"]
        pages, state = pages + 1, result["newState"]
        if not result["hasMoreChanges"]:
            break
    assert (seen, pages) == (made, 3)
    assert state == mailbox_state(jmap)


def test_has_more_changes_refuses_a_bad_page_size(core):
    with pytest.raises(ValueError, match="max_changes"):
        faults(core).has_more_changes("Mailbox", max_changes=0)


def test_5_2_expire_states_refuses_older_states_and_keeps_the_current_one(jmap):
    old = mailbox_state(jmap)
    create_mailbox(jmap, "New")
    current = mailbox_state(jmap)
    kept = faults(jmap.core).expire_states("Mailbox")
    assert kept["alice"] == {"Mailbox": current}
    assert changes(jmap, old)[1]["type"] == "cannotCalculateChanges"
    assert changes(jmap, current)[1]["created"] == []
    made = create_mailbox(jmap, "Newer")["created"]["k"]["id"]
    assert changes(jmap, current)[1]["created"] == [made]
    assert faults(jmap.core).clear() == 0  # not a rule: clear() leaves it expired
    assert changes(jmap, old)[1]["type"] == "cannotCalculateChanges"


def test_2_bump_session_state_changes_the_session_and_response_state(jmap):
    before = jmap.core.session_state("alice")
    assert jmap.request([])["sessionState"] == before
    faults(jmap.core).bump_session_state()
    after = jmap.core.session_state("alice")
    assert after != before and jmap.request([])["sessionState"] == after
    assert jmap.core.session(jmap.core.user("alice"), "http://x")["state"] == after


# --- transport faults, over real HTTP (RFC 8620 §3.6.1, §7.3) ------------------------

def test_3_6_1_http_status_answers_problem_details_with_retry_after(server, web):
    server.faults.http_status(503, retry_after=2)
    response = web.api([["Core/echo", {}, "0"]])
    assert (response.status, response.getheader("Retry-After")) == (503, "2")
    assert response.getheader("Content-Type") == "application/problem+json"
    body = json.loads(response.data)
    assert (body["type"], body["status"], body["title"]) == (
        "about:blank", 503, "Service Unavailable")
    assert web.api([["Core/echo", {}, "0"]]).status == 200


def test_3_6_1_a_429_is_the_limit_error_naming_its_limit(server, web):
    server.faults.http_status(429)
    response = web.api([["Core/echo", {}, "0"]])
    body = json.loads(response.data)
    assert (response.status, response.getheader("Retry-After")) == (429, None)
    assert (body["type"], body["limit"]) == (jmapd.URN_ERROR + "limit", "maxConcurrentRequests")


def test_http_status_matches_its_path_only(server, web):
    server.faults.http_status(500, path=jmapd.SESSION_PATH, times=None)
    assert web.api([["Core/echo", {}, "0"]]).status == 200
    assert web.send("GET", jmapd.SESSION_PATH).status == 500
    assert web.send("GET", jmapd.SESSION_PATH).status == 500


@pytest.mark.parametrize("kwargs", [{"status": 200}, {"status": 600}, {"status": "503"},
                                    {"retry_after": -1}, {"path": "jmap/api"}])
def test_http_status_refuses_bad_arguments(core, kwargs):
    with pytest.raises(ValueError):
        faults(core).http_status(**kwargs)


def test_drop_connection_closes_without_an_answer(server, web):
    server.faults.drop_connection()
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        web.api([["Core/echo", {}, "0"]])
    fresh = Http(server)
    assert fresh.api([["Core/echo", {}, "0"]]).status == 200
    fresh.close()
    assert server.requests[-2]["fault"] == "drop_connection"


def test_drop_connection_after_processing_loses_only_the_answer(server, web):
    server.faults.drop_connection(after=True)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        web.api([["Mailbox/set", {"accountId": "alice", "create": {"k": {"name": "Lost"}}},
                  "0"]])
    assert "Lost" in Jmap(server.core).mailbox_ids()  # the write happened


def open_event_stream(server):
    sock = socket.create_connection(server.httpd.server_address[:2], timeout=5)
    sock.sendall(b"GET /jmap/eventsource?types=*&closeafter=no&ping=0 HTTP/1.1\r\n"
                 b"Host: x\r\n" + Http.basic()["Authorization"].join(
                     [b"Authorization: ".decode(), "\r\n\r\n"]).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200")
    for _ in range(100):
        if server.httpd.event_streams:
            break
        time.sleep(0.01)
    return sock


def test_7_3_disconnect_push_closes_open_event_streams(server):
    sock = open_event_stream(server)
    assert server.faults.disconnect_push() == 1
    assert sock.recv(4096) == b""  # the stream ended: the client must reconnect
    sock.close()
    assert server.faults.disconnect_push() == 0


def test_the_control_prefix_is_never_faulted(server):
    server.faults.http_status(503, path="*", times=None)
    assert server.core.controls.before_http("GET", "/_jmapd/faults") is None
    assert server.faults.active[0].fired == 0


# --- the request log ----------------------------------------------------------------

def test_the_request_log_records_calls_status_user_and_timing(server, web):
    web.api([["Mailbox/get", {"accountId": "alice", "ids": []}, "m"]])
    web.send("GET", jmapd.SESSION_PATH, auth={})
    web.send("GET", "/_jmapd/faults")  # the controls' own requests are not logged
    api, refused = server.requests[-2:]
    assert (api["transport"], api["method"], api["path"], api["status"], api["user"]) == (
        "http", "POST", "/jmap/api", 200, "alice")
    assert api["request"]["methodCalls"] == [["Mailbox/get", {"accountId": "alice",
                                                              "ids": []}, "m"]]
    assert api["response"]["methodResponses"][0][0] == "Mailbox/get"
    assert api["durationMs"] >= 0 and api["fault"] is None
    assert (refused["status"], refused["user"], refused["response"]["status"]) == (401, None, 401)
    assert len(server.requests) == 2
    assert server.requests.calls("Mailbox/get") == [api["request"]["methodCalls"][0]]


def test_the_request_log_formats_for_a_failing_test(server, web):
    web.api([["Core/echo", {"hello": "world"}, "e"]])
    text = server.requests.format()
    assert text.splitlines()[0].startswith("#1 POST /jmap/api -> 200 (alice, ")
    assert '    > ["Core/echo",{"hello":"world"},"e"]' in text
    assert '    < ["Core/echo",{"hello":"world"},"e"]' in text
    assert server.requests.clear() == 1 and server.requests.format() == "(no requests)"


def test_the_request_log_is_bounded(core):
    log = jmapd.RequestLog(core, size=3)
    for n in range(5):
        log.add({"path": f"/{n}"})
    assert [e["seq"] for e in log] == [3, 4, 5] and len(log) == 3
    assert log.recent(1)[0]["path"] == "/4"


# --- the clock -----------------------------------------------------------------------

def test_fixed_clock_advances_by_keyword_units():
    clock = jmapd.FixedClock("2026-01-01T09:00:00Z")
    clock.advance(30)
    clock.advance(hours=2, minutes=1, days=1)
    assert jmapd.format_utc(clock.now()) == "2026-01-02T11:01:30Z"


def test_system_clock_advances_by_an_offset():
    clock = jmapd.SystemClock()
    clock.advance(days=1)
    ahead = clock.now() - jmapd.SystemClock().now()
    assert 86399 < ahead.total_seconds() < 86401


def test_clock_advance_releases_a_held_submission_at_once(core, jmap):
    """RFC 8621 §7.5 with FUTURERELEASE HOLDFOR (RFC 4865): advancing the clock sends it,
    with no request needed."""
    drafts = jmap.mailbox_ids()["Drafts"]
    email_id = jmap.call("Email/set", {"accountId": "alice", "create": {"d": {
        "mailboxIds": {drafts: True}, "from": [{"email": "alice@example.com"}],
        "to": [{"email": "bob@example.com"}], "subject": "Later",
        "bodyValues": {"t": {"value": "hi"}},
        "textBody": [{"partId": "t", "type": "text/plain"}]}}})["created"]["d"]["id"]
    created = jmap.call("EmailSubmission/set", {"accountId": "alice", "create": {"s": {
        "identityId": "Iprimary", "emailId": email_id, "envelope": {
            "mailFrom": {"email": "alice@example.com", "parameters": {"HOLDFOR": "60"}},
            "rcptTo": [{"email": "bob@example.com", "parameters": None}]}}}},
        (CORE, MAIL, SUBMISSION))["created"]["s"]
    assert created["undoStatus"] == "pending"
    clock = core.controls.clock
    clock.advance(seconds=59)
    assert core.store.outgoing("alice", created["id"])["state"] == "pending"
    assert clock.advance(seconds=1) == clock.now()
    assert core.store.outgoing("alice", created["id"])["state"] == "sent"
    bob = Jmap(core, "bob")
    listed = bob.call("Email/query", {"accountId": "bob"})["ids"]
    assert len(listed) == 1


def test_6_1_clock_advance_expires_uploads(core, jmap):
    user = core.user("alice")
    blob = jmapd.upload_blob(core, user, "alice", b"hello", "text/plain")["blobId"]
    assert jmapd.download_blob(core, user, "alice", blob)[0] == b"hello"
    core.controls.clock.advance(hours=jmapd.UPLOAD_TTL_SECONDS // 3600 + 1)
    with pytest.raises(jmapd.RequestError) as refused:
        jmapd.download_blob(core, user, "alice", blob)
    assert refused.value.status == 404


def test_5_2_clock_advance_past_the_history_makes_old_states_uncalculable(jmap):
    before = mailbox_state(jmap)
    made = create_mailbox(jmap, "Brief")["created"]["k"]["id"]
    jmap.call("Mailbox/set", {"accountId": "alice", "destroy": [made]})
    jmap.core.controls.clock.advance(days=jmapd.TOMBSTONE_TTL_SECONDS // 86400 + 1)
    assert changes(jmap, before)[1]["type"] == "cannotCalculateChanges"


def test_clock_set_freeze_and_real_time(core):
    clock = core.controls.clock
    assert clock.fixed and jmapd.format_utc(clock.set("2030-05-01T00:00:00Z")) == \
        "2030-05-01T00:00:00Z"
    assert jmapd.format_utc(core.clock.now()) == "2030-05-01T00:00:00Z"
    clock.use_real_time()
    assert not clock.fixed
    clock.freeze()
    assert clock.fixed
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-5)
    with pytest.raises(ValueError, match="UTCDate"):
        clock.set("2030-05-01 00:00")


# --- accounts, mail, snapshots, reset ----------------------------------------------

def test_add_user_gives_a_pristine_account_that_logs_in_at_once(server, web):
    carol = server.add_user("carol", password="pw", seed=[
        {"from": "dave@example.net", "subject": "Welcome", "text": "Hi Carol"}])
    assert (carol.name, carol.email, carol.account_id) == ("carol", "carol@example.com", "carol")
    response = web.api([["Mailbox/get", {"accountId": "carol"}, "0"]],
                       auth=Http.basic("carol", "pw"))
    listed = json.loads(response.data)["methodResponses"][0][1]["list"]
    assert sorted(m["role"] for m in listed) == sorted(
        ["inbox", "drafts", "sent", "archive", "junk", "trash"])
    inbox = next(m for m in listed if m["role"] == "inbox")
    assert inbox["totalEmails"] == 1
    with pytest.raises(ValueError, match="exists"):
        server.add_user("carol")


def test_deliver_composes_a_described_message_and_push_sees_it(server):
    core = server.core
    before = core.feed.sequence
    delivered = server.deliver({
        "from": {"name": "Carol", "email": "carol@example.org"}, "to": "alice",
        "cc": ["Bob <bob@example.com>"],
        "subject": "Plans", "text": "See you", "html": "<p>See you</p>",
        "attachments": [{"name": "plan.txt", "type": "text/plain", "text": "step 1"},
                        {"name": "x.bin", "base64": "AAEC"}]})
    assert set(delivered) == {"alice@example.com", "bob@example.com"}
    assert core.feed.sequence > before
    alice = Jmap(core)
    email = alice.call("Email/get", {"accountId": "alice", "ids": [delivered["alice@example.com"]],
                                     "properties": ["subject", "from", "to", "cc",
                                                    "hasAttachment", "attachments", "preview"]}
                       )["list"][0]
    assert (email["subject"], email["from"], email["to"], email["cc"]) == (
        "Plans", [{"name": "Carol", "email": "carol@example.org"}],
        [{"name": None, "email": "alice@example.com"}],
        [{"name": "Bob", "email": "bob@example.com"}])
    assert email["hasAttachment"] is True and email["preview"] == "See you"
    assert [a["name"] for a in email["attachments"]] == ["plan.txt", "x.bin"]


def test_deliver_sends_to_bcc_without_a_bcc_field(server):
    delivered = server.deliver({"to": "alice", "bcc": "bob", "subject": "s"})
    bob = Jmap(server.core, "bob")
    email = bob.call("Email/get", {"accountId": "bob", "ids": [delivered["bob@example.com"]],
                                   "properties": ["header:Bcc"]})["list"][0]
    assert email["header:Bcc"] is None


@pytest.mark.parametrize("message, to, problem", [
    ({"subjct": "typo"}, "alice", "unknown field 'subjct'"),
    ({"to": "not an address"}, None, "is not an address"),
    ({"subject": "nobody"}, None, "to:"),
    (b"Subject: raw\r\n\r\nbody", None, "to:"),
    ({"to": "alice", "attachments": [{"base64": "!!"}]}, None, "base64"),
    (42, "alice", "raw RFC 5322 octets"),
    (b"Subject: x\r\n\r\n", "zed", "no local user"),
])
def test_deliver_refuses_bad_input(server, message, to, problem):
    with pytest.raises(ValueError, match=problem):
        server.deliver(message, to=to)


def test_snapshot_restore_brings_back_data_and_refuses_every_older_state(server):
    jmap = Jmap(server.core)
    early = mailbox_state(jmap)
    snap = server.snapshot()
    made = create_mailbox(jmap, "After")["created"]["k"]["id"]
    late = mailbox_state(jmap)
    server.restore(snap)
    assert "After" not in jmap.mailbox_ids()
    current = mailbox_state(jmap)
    assert current.startswith("r1-") and current not in (early, late)
    for state in (early, late):  # never a wrong answer: the client resyncs
        assert changes(jmap, state)[1]["type"] == "cannotCalculateChanges"
    assert changes(jmap, current)[1]["created"] == []
    again = create_mailbox(jmap, "After")["created"]["k"]["id"]
    assert again != made  # ids are never reused
    server.restore(snap.name)
    assert mailbox_state(jmap).startswith("r2-")


def test_7_1_restore_tells_push_clients_every_state_changed(server):
    jmap = Jmap(server.core)
    snap = server.snapshot()
    after = server.core.feed.sequence
    server.restore(snap)
    (_, changed), = server.core.feed.wait(after, 0)
    assert changed["alice"]["Mailbox"] == mailbox_state(jmap)
    assert set(changed["bob"]) >= {"Mailbox", "Email", "Thread"}


def test_restore_of_an_unknown_snapshot_is_refused(server):
    with pytest.raises(KeyError):
        server.restore("nope")
    with pytest.raises(ValueError, match="name"):
        server.snapshot("no spaces")


def test_reset_goes_back_to_the_start(server, web):
    start = server.clock.now()
    server.add_user("carol")
    server.deliver({"to": "alice", "subject": "gone soon"})
    server.faults.fail("Core/echo", times=None)
    server.faults.bump_session_state()
    server.clock.advance(days=2)
    web.api([["Core/echo", {}, "0"]])
    server.core.outbox.append("placeholder")
    session_before = server.core.session_state("alice")
    server.reset()
    assert [u.name for u in server.users] == ["alice", "bob"]
    assert server.faults.active == [] and len(server.requests) == 0
    assert server.outbox == [] and server.clock.now() == start
    assert server.core.session_state("alice") != session_before
    jmap = Jmap(server.core)
    assert jmap.call("Email/query", {"accountId": "alice"})["ids"] == []
    assert jmap.call_raw("Core/echo", {})[0] == "Core/echo"


def test_reset_needs_a_baseline_on_a_bare_core(core):
    with pytest.raises(ValueError, match="baseline"):
        core.controls.reset()
    core.controls.take_baseline()
    core.controls.reset()


def test_faults_armed_one_after_another_fire_one_after_another(jmap, core):
    """Each call spends one rule, the oldest first: the second fault is not lost."""
    faults(core).fail("Mailbox/get")
    faults(core).fail("Mailbox/get", error="forbidden")
    errors = [jmap.call_raw("Mailbox/get", {"accountId": "alice"}) for _ in range(3)]
    assert [(name, result.get("type")) for name, result in errors] == [
        ("error", "serverFail"), ("error", "forbidden"), ("Mailbox/get", None)]


def test_reset_brings_back_real_time_and_the_starting_quirks(demo_template):
    core = demo_template.clone(ids=jmapd.SequentialIds())  # the real clock
    with jmapd.JmapServer(core) as server:
        server.clock.set("2030-01-01T00:00:00Z")
        server.core.controls.set_quirks("cyrus")
        server.reset()
        assert not server.clock.fixed
        assert abs(server.clock.now().year - jmapd.SystemClock().now().year) <= 1
        assert "eventSourceUrl" in server.core.session("alice", server.url)


def test_a_clock_advance_past_the_calendar_is_refused(core):
    with pytest.raises(ValueError, match="last date"):
        core.controls.clock.advance(days=3_000_000)


def test_a_method_fault_is_named_in_the_request_log(server, web):
    """The log says which fault hit a request, method-level ones too ([fault: ...])."""
    server.faults.fail("Mailbox/get", error="forbidden")
    web.api([["Mailbox/get", {"accountId": "alice"}, "0"]])
    entry = server.requests.recent()[-1]
    assert entry["fault"] == "fail Mailbox/get"
    assert "[fault: fail Mailbox/get]" in server.requests.format(last=1)
