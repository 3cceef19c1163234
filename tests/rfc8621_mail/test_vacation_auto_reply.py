"""RFC 8621 §8 with RFC 3834 and RFC 5230: the vacation response actually answers."""

import pytest

import jmapd
from conftest import CORE

VACATION = jmapd.URN_VACATION


def message(sender="carol@example.org", to="alice@example.com", subject="Hello",
            extra=""):
    return (f"From: Carol <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <m1@example.org>\r\nReferences: <m0@example.org>\r\n{extra}"
            f"Date: Thu, 01 Jan 2026 08:00:00 +0000\r\n\r\nAre you there?\r\n").encode()


def set_vacation(jmap, **settings):
    result = jmap.call("VacationResponse/set", {"accountId": jmap.account_id, "update": {
        "singleton": {"isEnabled": True, **settings}}}, (CORE, VACATION))
    assert result["updated"] == {"singleton": None}, result


def text_of(sent):
    return sent.get_content().replace("\r\n", "\n")


def replies(core):
    return [m for m in core.outbox if m.message["Auto-Submitted"] == "auto-replied"]


def test_8_an_enabled_response_answers_the_sender_once(core, jmap):
    set_vacation(jmap, subject="Away until Monday", textBody="Back on Monday.")
    jmapd.deliver_message(core, message(), "alice", mail_from="carol@example.org")
    [reply] = replies(core)
    assert (reply.mail_from, reply.rcpt_to) == ("", ("carol@example.org",))  # RFC 3834 §3.3
    sent = reply.message
    assert (sent["From"], sent["To"], sent["Subject"]) == (
        "Alice Archer <alice@example.com>", "carol@example.org", "Away until Monday")
    assert (sent["In-Reply-To"], sent["References"]) == (
        "<m1@example.org>", "<m0@example.org> <m1@example.org>")  # RFC 3834 §3.1.5
    assert text_of(sent) == "Back on Monday.\n"
    jmapd.deliver_message(core, message(subject="Again"), "alice", mail_from="carol@example.org")
    assert len(replies(core)) == 1  # RFC 5230 §4.1: once per sender per period


def test_8_the_period_is_seven_days_then_the_sender_is_answered_again(core, jmap):
    set_vacation(jmap)
    jmapd.deliver_message(core, message(), "alice")
    core.clock.advance(7 * 86400 - 1)
    jmapd.deliver_message(core, message(), "alice")
    assert len(replies(core)) == 1
    core.clock.advance(1)
    jmapd.deliver_message(core, message(), "alice")
    assert len(replies(core)) == 2


def test_8_new_settings_start_a_new_period(core, jmap):
    set_vacation(jmap, textBody="First")
    jmapd.deliver_message(core, message(), "alice")
    set_vacation(jmap, textBody="Second")
    jmapd.deliver_message(core, message(), "alice")
    assert [text_of(r.message) for r in replies(core)] == ["First\n", "Second\n"]


def test_8_without_a_subject_the_reply_is_auto_and_the_original_subject(core, jmap):
    set_vacation(jmap)
    jmapd.deliver_message(core, message(subject="Plans"), "alice")
    [reply] = replies(core)
    assert reply.message["Subject"] == "Auto: Plans"
    assert text_of(reply.message) == jmapd.DEFAULT_VACATION_TEXT + "\n"


def test_8_an_html_only_response_sends_text_made_from_it_and_the_html(core, jmap):
    set_vacation(jmap, htmlBody="<p>I am <b>away</b>.</p>")
    jmapd.deliver_message(core, message(), "alice")
    sent = replies(core)[0].message
    assert sent.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in sent.iter_parts()] == ["text/plain", "text/html"]
    assert sent.get_body(("plain",)).get_content().strip() == "I am away."


@pytest.mark.parametrize("settings, advance, answered", [
    ({"isEnabled": False}, 0, False),
    ({"fromDate": "2026-01-01T09:00:00Z"}, 0, True),    # on fromDate: answered
    ({"fromDate": "2026-01-01T09:00:01Z"}, 0, False),
    ({"toDate": "2026-01-01T09:00:00Z"}, 0, False),     # toDate itself is outside
    ({"toDate": "2026-01-01T09:00:01Z"}, 0, True),
    ({"fromDate": "2026-01-02T00:00:00Z", "toDate": "2026-01-03T00:00:00Z"}, 86400, True),
])
def test_8_the_response_answers_only_between_from_date_and_to_date(core, jmap, settings,
                                                                    advance, answered):
    set_vacation(jmap, **settings)
    core.clock.advance(advance)
    jmapd.deliver_message(core, message(), "alice")
    assert len(replies(core)) == int(answered)


@pytest.mark.parametrize("sender, extra, mail_from", [
    ("carol@example.org", "Auto-Submitted: auto-generated\r\n", None),   # RFC 3834 §2
    ("carol@example.org", "Auto-Submitted: auto-replied; owner=x\r\n", None),
    ("carol@example.org", "Precedence: bulk\r\n", None),
    ("carol@example.org", "List-Id: <team.example.org>\r\n", None),      # RFC 5230 §4.6
    ("MAILER-DAEMON@example.org", "", None),
    ("owner-team@example.org", "", None),
    ("team-request@example.org", "", None),
    ("noreply@example.org", "", None),
    ("alice@example.com", "", None),                                     # oneself
    ("carol@example.org", "", ""),                                       # null return path
])
def test_8_automatic_and_list_mail_is_never_answered(core, jmap, sender, extra, mail_from):
    set_vacation(jmap)
    jmapd.deliver_message(core, message(sender, extra=extra), "alice", mail_from=mail_from)
    assert replies(core) == []


def test_8_auto_submitted_no_is_answered(core, jmap):
    set_vacation(jmap)
    jmapd.deliver_message(core, message(extra="Auto-Submitted: no\r\n"), "alice")
    assert len(replies(core)) == 1


def test_8_mail_that_does_not_name_the_user_is_not_answered(core, jmap):
    """RFC 5230 §4.5: e.g. a Bcc copy, or a list the user is on."""
    set_vacation(jmap)
    jmapd.deliver_message(core, message(to="team@example.org"), "alice")
    jmapd.deliver_message(core, message(to="Alice <ALICE+work@example.com>"), "alice")
    assert [r.message["To"] for r in replies(core)] == ["carol@example.org"]


def test_8_the_return_path_is_answered_when_there_is_no_envelope(core, jmap):
    set_vacation(jmap)
    jmapd.deliver_message(core, b"Return-Path: <bounces@example.org>\r\n" + message(), "alice")
    jmapd.deliver_message(core, b"Return-Path: <>\r\n" + message("dave@example.net"), "alice")
    assert [r.rcpt_to for r in replies(core)] == [("bounces@example.org",)]


def test_8_a_local_sender_gets_the_reply_in_their_inbox_and_no_loop_follows(core, jmap, bob):
    set_vacation(jmap, subject="Away")
    set_vacation(bob, subject="Bob is away too")
    jmapd.deliver_message(core, message("bob@example.com"), "alice",
                          mail_from="bob@example.com")
    inbox = bob.mailbox_ids()["Inbox"]
    ids = bob.call("Email/query", {"accountId": "bob", "filter": {"inMailbox": inbox}})["ids"]
    got = bob.call("Email/get", {"accountId": "bob", "ids": ids,
                                 "properties": ["subject", "header:Auto-Submitted:asText"]})
    assert [(e["subject"], e["header:Auto-Submitted:asText"]) for e in got["list"]] == [
        ("Away", "auto-replied")]
    assert core.outbox == []  # bob's own vacation did not answer the auto-reply


def test_8_a_line_break_in_the_subject_cannot_forge_header_fields(core, jmap):
    """The subject is the user's text: written as RFC 2047 words, never as raw lines."""
    set_vacation(jmap, subject="Away\r\nBcc: spy@example.net")
    jmapd.deliver_message(core, message(), "alice")
    sent = replies(core)[0].message
    assert sent["Bcc"] is None
    assert str(sent["Subject"]) == "Away\r\nBcc: spy@example.net"
