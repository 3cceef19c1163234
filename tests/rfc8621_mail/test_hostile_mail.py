"""Hostile and odd input found in review: each once broke a response or stalled the server."""

import time

import pytest

import jmapd

from conftest import import_raw


def crlf(text):
    return text.replace("\n", "\r\n").encode("utf-8")


@pytest.fixture
def inbox(jmap):
    return jmap.mailbox_ids()["Inbox"]


def get(jmap, email_id, *properties, **args):
    return jmap.call("Email/get", {"accountId": "alice", "ids": [email_id],
                                   "properties": list(properties), **args})["list"][0]


@pytest.mark.parametrize("charset", ["idna", "undefined", "unicode_escape", "punycode"])
def test_python_only_codecs_are_not_mail_charsets(jmap, core, inbox, charset):
    """RFC 8621 §4.1.2.2/§4.2: such labels are unknown charsets, never a serverFail."""
    raw = crlf(f"From: a@x.test\nSender: =?{charset}?q?xn--abc-?= <s@x.test>\n"
               f"Subject: poison\nContent-Type: text/plain; charset={charset}\n\nC:\\new\\table\n")
    email_id = import_raw(core, jmap, raw, [inbox])
    got = get(jmap, email_id, "sender", "bodyValues", fetchAllBodyValues=True)
    assert got["sender"] == [{"name": f"=?{charset}?q?xn--abc-?=", "email": "s@x.test"}]
    assert got["bodyValues"]["1"] == {"value": "C:\\new\\table\n", "isEncodingProblem": True,
                                      "isTruncated": False}


def test_iso_8859_1_is_read_as_windows_1252(jmap, core, inbox):
    """RFC 8621 §4.1.4 allows heuristics: the curly quotes senders mean, not C1 controls."""
    raw = b"From: a@x.test\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n\x93hi\x94"
    value = get(jmap, import_raw(core, jmap, raw, [inbox]), "bodyValues",
                fetchAllBodyValues=True)["bodyValues"]["1"]
    assert (value["value"], value["isEncodingProblem"]) == ("\u201chi\u201d", False)


@pytest.mark.parametrize("date", ["Mon, 1 Jan 0999 00:00:00 +0000",
                                  "Fri, 31 Dec 9999 23:59:59 -2359", "Mon, 1 Jan 0001 00:00:00 +0000"])
def test_impossible_dates_are_null_and_the_import_succeeds(jmap, core, inbox, date):
    """RFC 8621 §4.1.2.6: a date that does not parse as RFC 5322 date-time is null."""
    raw = crlf(f"From: a@x.test\nDate: {date}\nReceived: from x by y; {date}\n\nx")
    email_id = import_raw(core, jmap, raw, [inbox])
    got = get(jmap, email_id, "sentAt", "receivedAt")
    assert got["sentAt"] in (None, "9999-12-31T23:59:59-23:59")
    assert got["receivedAt"] == "2026-01-01T09:00:00Z"  # the import time: no usable date


@pytest.mark.parametrize("field", ["text", "subject", "body", "from"])
def test_a_nul_in_a_search_is_ignored_not_a_serverFail(jmap, field):
    """RFC 8621 §4.4.1: any String is a valid search; FTS5 strings cannot hold NUL."""
    result = jmap.call("Email/query", {"accountId": "alice", "filter": {field: "a\u0000b"}})
    assert result["ids"] == []


@pytest.mark.parametrize("body, content_type", [
    ("<!--" * 25000, "text/html"), ("<a " * 40000, "text/html"), ("<" * 40000, "text/html"),
    ("x", "text/plain; " + "a" * 30000)])
def test_pathological_parts_parse_in_linear_time(jmap, core, inbox, body, content_type):
    """A malformed message never stalls the server (all work runs under the store lock)."""
    raw = crlf(f"From: a@x.test\nSubject: {'[a]' * 8000}\nContent-Type: {content_type}\n\n{body}")
    start = time.monotonic()
    email_id = import_raw(core, jmap, raw, [inbox])
    get(jmap, email_id, "preview", "subject")
    assert time.monotonic() - start < 2


def test_an_attachment_shared_by_two_messages_survives_one_being_destroyed(jmap, core, inbox):
    """RFC 8621 §4.1.4: identical parts share a blobId; each message stays a source."""
    def message(n):
        return crlf(f"From: a@x.test\nMessage-ID: <{n}@x>\nSubject: s{n}\nMIME-Version: 1.0\n"
                    'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain'
                    "\n\nhi\n--b\nContent-Type: application/octet-stream\n"
                    "Content-Transfer-Encoding: base64\n\nSGVsbG8gYXR0YWNobWVudA==\n--b--\n")
    first, second = (import_raw(core, jmap, message(n), [inbox]) for n in (1, 2))
    blob = get(jmap, second, "attachments")["attachments"][0]["blobId"]
    assert get(jmap, first, "attachments")["attachments"][0]["blobId"] == blob
    jmap.call("Email/set", {"accountId": "alice", "destroy": [first]})
    core.clock.advance(jmapd.UPLOAD_TTL_SECONDS + 60)
    core._maintained_at = float("-inf")
    core.maintain()
    assert jmapd.download_blob(core, core.user("alice"), "alice", blob)[0] == b"Hello attachment"


def test_thread_wide_query_changes_are_empty_when_nothing_changed(jmap, core, inbox):
    """RFC 8620 §5.6: a Thread's own write after its Email is no change to the results."""
    import_raw(core, jmap, crlf("From: a@x.test\nSubject: one\n\nx"), [inbox])
    args = {"accountId": "alice", "collapseThreads": True,
            "sort": [{"property": "receivedAt", "isAscending": False}]}
    state = jmap.call("Email/query", args)["queryState"]
    changes = jmap.call("Email/queryChanges", {**args, "sinceQueryState": state, "maxChanges": 1})
    assert (changes["removed"], changes["added"]) == ([], [])
