"""Seeds: the embedded demo mailbox, folder / eml / mbox seeds, generated:N."""

import base64
import json
import pathlib
import zlib

import pytest

import jmapd

DEMO = pathlib.Path(__file__).parents[2] / "fixtures" / "demo"


def demo_core():
    core = jmapd.JmapCore(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds())
    jmapd.SEEDS["demo"](core, "demo")
    return core


def test_the_embedded_demo_mail_equals_fixtures_demo():
    """The copy inside jmapd.py is fixtures/demo, byte for byte (make_demo.py writes both)."""
    packed = json.loads(zlib.decompress(base64.b64decode("".join(jmapd.DEMO_MAIL))))
    manifest = json.loads((DEMO / "manifest.json").read_text(encoding="utf-8"))
    assert packed["manifest"] == manifest
    for entry in manifest:
        assert base64.b64decode(packed["files"][entry["file"]]) == (DEMO / entry["file"]).read_bytes()


def test_the_demo_seed_gives_alice_and_bob_a_believable_mailbox():
    """RFC 8621 §2/§4: 68 messages with threads, drafts, flags and unread mail."""
    core = demo_core()
    alice = {m["name"]: m for m in core.call("alice", "Mailbox/get", {"accountId": "alice"})["list"]}
    assert alice["Inbox"]["totalEmails"] == 27 and alice["Inbox"]["unreadEmails"] == 11
    assert alice["Apollo"]["totalEmails"] == 3 and alice["Apollo"]["totalThreads"] == 1
    assert alice["Drafts"]["totalEmails"] == 2 and alice["Drafts"]["unreadEmails"] == 0
    everything = core.call("alice", "Email/query", {"accountId": "alice", "calculateTotal": True})
    bobs = core.call("bob", "Email/query", {"accountId": "bob", "calculateTotal": True})
    assert everything["total"] + bobs["total"] == 68
    apollo = core.call("alice", "Email/query", {"accountId": "alice", "collapseThreads": True,
                                                "filter": {"subject": "Apollo launch plan"},
                                                "sort": [{"property": "receivedAt"}],
                                                "calculateTotal": True})
    assert apollo["total"] == 2  # the four-message thread (folder and Sent), and a draft
    thread = core.call("alice", "Email/get", {"accountId": "alice", "ids": apollo["ids"],
                                              "properties": ["threadId"]})["list"][0]["threadId"]
    assert len(core.call("alice", "Thread/get", {"accountId": "alice", "ids": [thread]})[
        "list"][0]["emailIds"]) == 4


def test_the_demo_seed_has_the_mime_cases_a_client_must_handle():
    """RFC 8621 §4.1.4: inline image by cid, RFC 2231 names, calendar, broken MIME."""
    core = demo_core()

    def one(subject, properties):
        ids = core.call("alice", "Email/query", {"accountId": "alice",
                                                 "filter": {"subject": subject}})["ids"]
        return core.call("alice", "Email/get", {"accountId": "alice", "ids": ids[:1],
                                                "properties": properties})["list"][0]
    cafe = one("receipt", ["htmlBody", "attachments", "subject"])
    assert cafe["subject"] == "Your receipt from Café Olé"
    assert cafe["attachments"][0]["cid"] == "logo@cafe-ole.example"
    invoice = one("Rechnung", ["attachments"])
    assert invoice["attachments"][0]["name"] == "Rechnung_März.pdf"
    invite = one("Invitation", ["attachments"])
    assert invite["attachments"][0]["type"] == "text/calendar"
    broken = one("Broken", ["textBody", "attachments"])
    assert [p["type"] for p in broken["textBody"]] == ["text/plain"]
    family = one("Abendessen", ["from", "subject"])
    assert family["from"] == [{"name": "Jörg Müller", "email": "joerg@example.de"}]
    assert family["subject"] == "Abendessen am Samstag? 🍝"


def test_the_demo_seed_is_deterministic():
    """Same seed, same clock and ids: the same ids, states and data."""
    first, second = demo_core(), demo_core()
    args = {"accountId": "alice", "sort": [{"property": "receivedAt"}]}
    assert first.call("alice", "Email/query", args) == second.call("alice", "Email/query", args)


def test_a_folder_of_eml_files_goes_to_the_first_users_inbox(tmp_path):
    """--seed PATH: a plain folder of .eml files, all into alice's Inbox."""
    for name in ("apollo-1.eml", "photo.eml"):
        (tmp_path / name).write_bytes((DEMO / name).read_bytes())
    (tmp_path / "notes.txt").write_text("not mail")
    core = jmapd.JmapCore()
    jmapd.SEEDS[jmapd.FILE_SEED](core, str(tmp_path))
    inbox = jmapd.mailbox_paths(core, core.user("alice"))["Inbox"]
    found = core.call("alice", "Email/query", {"accountId": "alice", "filter": {"inMailbox": inbox},
                                               "calculateTotal": True})
    assert found["total"] == 2


def test_an_mbox_file_is_split_into_messages(tmp_path):
    """--seed PATH: an mbox (From_ separated, '>From ' unescaped)."""
    mbox = tmp_path / "mail.mbox"
    mbox.write_bytes(b"From a@example.com Mon Jan  1 00:00:00 2026\nFrom: a@example.com\n"
                     b"Subject: one\n\nHello\n>From the start\n\n"
                     b"From b@example.com Mon Jan  1 00:00:00 2026\nFrom: b@example.com\n"
                     b"Subject: two\n\nBye\n")
    core = jmapd.JmapCore()
    jmapd.SEEDS[jmapd.FILE_SEED](core, str(mbox))
    listed = core.call("alice", "Email/get", {"accountId": "alice", "ids": None,
                                              "properties": ["subject", "bodyValues"],
                                              "fetchAllBodyValues": True})["list"]
    assert sorted(e["subject"] for e in listed) == ["one", "two"]
    one = next(e for e in listed if e["subject"] == "one")
    assert list(one["bodyValues"].values())[0]["value"] == "Hello\nFrom the start\n"


def test_a_manifest_folder_keeps_users_mailboxes_and_keywords(tmp_path):
    """--seed PATH with manifest.json: the fixtures/demo layout."""
    (tmp_path / "a.eml").write_bytes((DEMO / "apollo-1.eml").read_bytes())
    (tmp_path / "manifest.json").write_text(json.dumps([{
        "file": "a.eml", "user": "bob", "mailbox": "Clients/Initech", "keywords": ["$flagged"],
        "receivedAt": "2026-11-02T08:14:00Z"}]))
    core = jmapd.JmapCore()
    jmapd.SEEDS[jmapd.FILE_SEED](core, str(tmp_path))
    box = jmapd.mailbox_paths(core, core.user("bob"))["Clients/Initech"]
    email = core.call("bob", "Email/get", {"accountId": "bob", "ids": None,
                                           "properties": ["mailboxIds", "keywords", "receivedAt"]})
    assert email["list"][0]["mailboxIds"] == {box: True}
    assert email["list"][0]["keywords"] == {"$flagged": True}
    assert email["list"][0]["receivedAt"] == "2026-11-02T08:14:00Z"


def test_generated_seed_is_deterministic_and_threaded():
    """generated:N: N messages for alice, threads of five, the same twice."""
    cores = []
    for _ in range(2):
        core = jmapd.JmapCore(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds())
        jmapd.SEEDS["generated"](core, "generated:40")
        cores.append(core)
    args = {"accountId": "alice", "sort": [{"property": "receivedAt"}], "calculateTotal": True}
    first = cores[0].call("alice", "Email/query", args)
    assert first == cores[1].call("alice", "Email/query", args) and first["total"] == 40
    collapsed = cores[0].call("alice", "Email/query", {**args, "collapseThreads": True})
    assert collapsed["total"] == 8


def test_an_unknown_seed_name_is_a_clear_error():
    """A seed that is neither a name nor a path says so."""
    with pytest.raises(ValueError, match="no seed named 'nonesuch'"):
        jmapd.SEEDS[jmapd.FILE_SEED](jmapd.JmapCore(), "nonesuch")
