"""Delivery: the one path arriving mail takes (server.deliver), seen over plain HTTP."""

import contextlib
import dataclasses
import json
import socket
import socketserver
import threading
import time

import pytest

import jmapd
from conftest import Http

RAW = (b"From: Carol <carol@example.org>\r\nTo: bob@example.com\r\nSubject: Hello Bob\r\n"
       b"Message-ID: <hello-bob@example.org>\r\n\r\nHi!\r\n")


def post(web, user, calls):
    response = web.send("POST", jmapd.API_PATH, {"using": [jmapd.URN_CORE, jmapd.URN_MAIL],
                                                 "methodCalls": calls},
                        auth=web.basic(user, user))
    return json.loads(response.data)["methodResponses"]


def test_a_delivered_message_shows_in_the_recipients_inbox_changes_and_counts(server, web):
    """RFC 8621 §2, §4.3: bob's Email/changes lists it, his Inbox count moves; alice sees nothing."""
    state = post(web, "bob", [["Email/get", {"accountId": "bob", "ids": []}, "g"]])[0][1]["state"]
    delivered = server.deliver(RAW, to="bob@example.com")
    email_id = delivered["bob@example.com"]
    changes = post(web, "bob", [["Email/changes", {"accountId": "bob", "sinceState": state}, "c"],
                                ["Mailbox/query", {"accountId": "bob", "filter": {"role": "inbox"}}, "q"],
                                ["Mailbox/get", {"accountId": "bob", "properties": ["unreadEmails"],
                                                 "#ids": {"resultOf": "q", "name": "Mailbox/query",
                                                          "path": "/ids"}}, "m"]])
    assert changes[0][1]["created"] == [email_id]
    assert changes[2][1]["list"][0]["unreadEmails"] == 1
    found = post(web, "bob", [["Email/query", {"accountId": "bob",
                                               "filter": {"subject": "Hello Bob"}}, "q"]])
    assert found[0][1]["ids"] == [email_id]
    alice = post(web, "alice", [["Email/query", {"accountId": "alice",
                                                 "filter": {"subject": "Hello Bob"}}, "q"]])
    assert alice[0][1]["ids"] == []


def test_delivery_to_an_unknown_recipient_is_refused(server):
    """Only local users receive mail; anything else is an error, not a silent drop."""
    with pytest.raises(ValueError, match="no local user"):
        server.deliver(RAW, to="nobody@example.com")


SEND_USING = [jmapd.URN_CORE, jmapd.URN_MAIL, jmapd.URN_SUBMISSION]


def send_as_alice(web, to, subject="Over HTTP"):
    """Compose in Drafts and send with one request, as a mail client does (RFC 8621 §7.5)."""
    boxes = {m["role"]: m["id"] for m in post(web, "alice", [[
        "Mailbox/get", {"accountId": "alice", "properties": ["role"]}, "b"]])[0][1]["list"]}
    body = {"using": SEND_USING, "methodCalls": [
        ["Email/set", {"accountId": "alice", "create": {"d": {
            "mailboxIds": {boxes["drafts"]: True}, "keywords": {"$draft": True},
            "from": [{"name": "Alice Archer", "email": "alice@example.com"}],
            "to": [{"name": None, "email": address} for address in to],
            "subject": subject, "textBody": [{"partId": "t", "type": "text/plain"}],
            "bodyValues": {"t": {"value": "Sent through the public API."}}}}}, "0"],
        ["EmailSubmission/set", {"accountId": "alice", "create": {"s": {
            "identityId": "Iprimary", "emailId": "#d"}},
            "onSuccessUpdateEmail": {"#s": {f"mailboxIds/{boxes['drafts']}": None,
                                            f"mailboxIds/{boxes['sent']}": True,
                                            "keywords/$draft": None}}}, "1"]]}
    response = web.send("POST", jmapd.API_PATH, body, auth=web.basic("alice", "alice"))
    return json.loads(response.data)["methodResponses"]


def test_8621_7_5_mail_alice_sends_reaches_bob_through_changes_and_query(server, web):
    """Only the public HTTP API: alice sends, bob's Email/changes and Email/query see it."""
    state = post(web, "bob", [["Email/get", {"accountId": "bob", "ids": []}, "g"]])[0][1]["state"]
    responses = send_as_alice(web, ["bob@example.com"])
    assert [r[0] for r in responses] == ["Email/set", "EmailSubmission/set", "Email/set"]
    changes = post(web, "bob", [["Email/changes", {"accountId": "bob", "sinceState": state}, "c"],
                                ["Email/query", {"accountId": "bob", "filter": {
                                    "subject": "Over HTTP"}}, "q"]])
    assert len(changes[0][1]["created"]) == 1
    assert changes[1][1]["ids"] == changes[0][1]["created"]
    sent = post(web, "alice", [["Email/query", {"accountId": "alice", "filter": {
        "subject": "Over HTTP"}}, "q"], ["Email/get", {"accountId": "alice", "#ids": {
            "resultOf": "q", "name": "Email/query", "path": "/ids"},
            "properties": ["keywords"]}, "g"]])
    assert sent[1][1]["list"][0]["keywords"] == {}  # the implicit Email/set took $draft off


def test_8621_7_5_mail_for_outside_recipients_is_in_server_outbox(server, web):
    send_as_alice(web, ["carol@example.org", "dave@example.net"])
    [message] = server.outbox
    assert message.rcpt_to == ("carol@example.org", "dave@example.net")
    assert message.message["Subject"] == "Over HTTP"


class CaptureSmtp:
    """A minimal SMTP server on a loopback port that refuses one recipient."""

    def __init__(self, refuse="refused@example.org"):
        self.received = received = []

        class Session(socketserver.StreamRequestHandler):
            def handle(self):
                self.wfile.write(b"220 capture ESMTP\r\n")
                envelope = {"from": None, "to": []}
                while line := self.rfile.readline():
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"HELO"):
                        self.wfile.write(b"250 capture\r\n")
                    elif verb == b"MAIL":
                        envelope["from"] = line.split(b":", 1)[1].strip()
                        self.wfile.write(b"250 2.1.0 ok\r\n")
                    elif verb == b"RCPT" and refuse.encode() in line:
                        self.wfile.write(b"550 5.1.1 no such user\r\n")
                    elif verb == b"RCPT":
                        envelope["to"].append(line.split(b":", 1)[1].strip())
                        self.wfile.write(b"250 2.1.5 ok\r\n")
                    elif verb == b"DATA":
                        self.wfile.write(b"354 go ahead\r\n")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk
                        received.append((envelope["from"], envelope["to"], data))
                        self.wfile.write(b"250 2.0.0 queued as 1\r\n")
                    elif verb == b"QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    else:
                        self.wfile.write(b"250 ok\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Session)
        self.address = "127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def submission_over_http(web, submission_id):
    response = web.api([["EmailSubmission/get", {"accountId": "alice", "ids": [submission_id]},
                         "g"]], using=SEND_USING)
    return json.loads(response.data)["methodResponses"][0][1]["list"][0]


def test_8621_7_relay_forwards_outside_mail_and_records_the_replies(demo_template):
    capture = CaptureSmtp()
    core = demo_template.clone(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds())
    server = jmapd.JmapServer(core, relay=capture.address)
    web = Http(server)
    try:
        responses = send_as_alice(web, ["carol@example.org", "refused@example.org"])
        created = responses[1][1]["created"]["s"]
        assert created["deliveryStatus"]["carol@example.org"]["delivered"] == "queued"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            got = submission_over_http(web, created["id"])
            if got["deliveryStatus"]["carol@example.org"]["delivered"] != "queued":
                break
            time.sleep(0.02)
        assert got["deliveryStatus"] == {
            "carol@example.org": {"smtpReply": f"250 2.0.0 relayed to {capture.address}",
                                  "delivered": "unknown", "displayed": "unknown"},
            "refused@example.org": {"smtpReply": "550 5.1.1 no such user", "delivered": "no",
                                    "displayed": "unknown"}}
        [(mail_from, rcpt_to, data)] = capture.received
        assert (mail_from, rcpt_to) == (b"<alice@example.com>", [b"<carol@example.org>"])
        assert b"Subject: Over HTTP\r\n" in data
    finally:
        web.close()
        server.stop()
        capture.close()


@contextlib.contextmanager
def closed_port():
    """An address where nothing listens."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    yield f"127.0.0.1:{port}"


def test_8621_7_an_unreachable_relay_marks_the_recipients_failed(core, monkeypatch):
    monkeypatch.setattr(jmapd.SmtpRelay, "BACKOFF_SECONDS", (0,))
    with closed_port() as address:
        relay = jmapd.SmtpRelay(core, address)
        message = jmapd.OutboxMessage("alice@example.com", ("carol@example.org",), b"x",
                                      "2026-01-01T09:00:00Z")
        replies = relay._send(message)
        relay.stop()
    [(delivered, reply)] = replies.values()
    assert delivered == "no" and reply.startswith(f"554 5.4.4 relay {address} failed after 3")


def test_relay_address_must_be_host_and_port(core):
    with pytest.raises(ValueError, match="HOST:PORT"):
        jmapd.SmtpRelay(core, "localhost")


def test_trace_lists_outbox_mail(demo_template, capsys):
    core = demo_template.clone(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds())
    with jmapd.JmapServer(core, trace=True) as server:
        web = Http(server)
        send_as_alice(web, ["carol@example.org"])
        web.close()
    err = capsys.readouterr().err
    assert "--- outbox: MAIL FROM:<alice@example.com> RCPT TO:<carol@example.org>" in err
    assert "Subject: Over HTTP" in err


def test_8621_7_a_held_send_leaves_on_time_without_any_request(server, web):
    """The server's timer releases it (FUTURERELEASE, RFC 4865): nobody needs to ask."""
    responses = send_as_alice(web, ["carol@example.org"])
    email_id = responses[0][1]["created"]["d"]["id"]
    held = web.api([["EmailSubmission/set", {"accountId": "alice", "create": {"h": {
        "identityId": "Iprimary", "emailId": email_id, "envelope": {
            "mailFrom": {"email": "alice@example.com", "parameters": {"HOLDFOR": "60"}},
            "rcptTo": [{"email": "dave@example.net", "parameters": None}]}}}}, "h"]],
        using=SEND_USING)
    held_id = json.loads(held.data)["methodResponses"][0][1]["created"]["h"]["id"]
    server.core.clock.advance(60)
    deadline = time.monotonic() + 3
    while len(server.outbox) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [(m.rcpt_to, m.submission_id) for m in server.outbox][1] == (
        ("dave@example.net",), held_id)


@pytest.fixture
def delivery_filter(monkeypatch):
    """Install one DELIVERY_FILTERS entry for a test (the seam Sieve will use)."""
    def install(decide):
        monkeypatch.setattr(jmapd, "DELIVERY_FILTERS", [decide])
    return install


def test_a_delivery_filter_files_into_another_mailbox_with_keywords(core, jmap,
                                                                     delivery_filter):
    archive = jmap.mailbox_ids()["Archive"]

    def file_into_archive(core, user, raw, mail_from, filing):
        assert (user.name, mail_from, b"Hello Bob" in raw) == ("alice", "carol@example.org", True)
        filing.mailbox_ids, filing.keywords = [archive], filing.keywords | {"$flagged"}
        return filing
    delivery_filter(file_into_archive)
    email_id = jmapd.deliver_message(core, RAW, "alice", keywords=["$seen"],
                                     mail_from="carol@example.org")["alice"]
    got = jmap.call("Email/get", {"accountId": "alice", "ids": [email_id],
                                  "properties": ["mailboxIds", "keywords"]})["list"][0]
    assert got == {"id": email_id, "mailboxIds": {archive: True},
                   "keywords": {"$flagged": True, "$seen": True}}


def test_a_delivery_filter_may_discard_and_redirect(core, jmap, delivery_filter):
    def discard_and_redirect(core, user, raw, mail_from, filing):
        filing.discard, filing.redirect = True, ["dave@example.net"]
        return filing
    delivery_filter(discard_and_redirect)
    assert jmapd.deliver_message(core, RAW, "alice", mail_from="carol@example.org") == {
        "alice": None}
    assert jmap.call("Email/query", {"accountId": "alice"})["ids"] == []
    [redirected] = core.outbox
    assert (redirected.mail_from, redirected.rcpt_to) == ("carol@example.org",
                                                          ("dave@example.net",))
    assert redirected.message["Subject"] == "Hello Bob"


def test_a_delivery_filter_may_silence_the_vacation_response(core, jmap, delivery_filter):
    jmap.call("VacationResponse/set", {"accountId": "alice", "update": {"singleton": {
        "isEnabled": True}}}, [jmapd.URN_CORE, jmapd.URN_VACATION])
    raw = RAW.replace(b"To: bob@example.com", b"To: alice@example.com")
    delivery_filter(lambda core, user, raw, mail_from, filing: dataclasses.replace(
        filing, auto_reply=False))
    jmapd.deliver_message(core, raw, "alice", mail_from="carol@example.org")
    assert core.outbox == []
    delivery_filter(lambda core, user, raw, mail_from, filing: filing)
    jmapd.deliver_message(core, raw, "alice", mail_from="carol@example.org")
    assert [m.rcpt_to for m in core.outbox] == [("carol@example.org",)]


@pytest.mark.parametrize("rcpt, raw, options", [
    ("carol@example.org", b"Subject: x\r\n\r\nplain", []),
    ("carol@example.org", b"Subject: x\r\n\r\ncaf\xc3\xa9", ["BODY=8BITMIME"]),
    ("b\u00f8b@ex\u00e4mple.com", b"Subject: x\r\n\r\nplain", ["SMTPUTF8", "BODY=8BITMIME"]),
    ("carol@example.org", "To: b\u00f8b@ex\u00e4mple.com\r\n\r\nx".encode(),
     ["SMTPUTF8", "BODY=8BITMIME"]),
])
def test_the_relay_asks_for_what_the_octets_need(rcpt, raw, options):
    """RFC 6531 §3.4 SMTPUTF8 for UTF-8 addresses or headers, RFC 6152 BODY=8BITMIME."""
    message = jmapd.OutboxMessage("alice@example.com", (rcpt,), raw, "2026-01-01T09:00:00Z")
    assert jmapd._mail_options(message) == options


@pytest.mark.parametrize("mail_from", ["carol@example.org\r\nBcc: x@example.net",
                                       "not an address", "<carol@example.org>"])
def test_an_envelope_sender_that_is_no_address_is_refused(core, mail_from):
    """It becomes Return-Path (RFC 5321 §4.4): a line break there would forge fields."""
    with pytest.raises(ValueError, match="mail_from"):
        jmapd.deliver_message(core, RAW, "bob", mail_from=mail_from)
