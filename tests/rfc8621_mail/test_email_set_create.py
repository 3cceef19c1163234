"""RFC 8621 §4.6 Email/set create: the message jmapd writes, and the errors it gives."""

import email
import email.policy

import pytest

import jmapd
from conftest import Jmap


@pytest.fixture
def inbox(jmap):
    return jmap.mailbox_ids()["Inbox"]


def create(jmap, inbox, **properties):
    result = jmap.call("Email/set", {"accountId": "alice", "create": {
        "d": {"mailboxIds": {inbox: True}, **properties}}})
    return result["created"], result["notCreated"]


def get(jmap, email_id, *properties, **args):
    return jmap.call("Email/get", {"accountId": "alice", "ids": [email_id],
                                   "properties": list(properties), **args})["list"][0]


def raw_of(core, blob_id):
    return jmapd.download_blob(core, core.user("alice"), "alice", blob_id)[0]


TEXT = {"textBody": [{"partId": "t", "type": "text/plain"}],
        "bodyValues": {"t": {"value": "Draft body café\nline two"}}}


def test_a_text_draft_round_trips_exactly(jmap, core, inbox):
    """§4.6: what was set is what Email/get returns; created has id, blobId, threadId, size."""
    created, failed = create(jmap, inbox, keywords={"$draft": True}, subject="Lunch? 🍜",
                             **{"from": [{"name": "Jörg Müller", "email": "joerg@example.de"}]},
                             to=[{"name": None, "email": "bob@example.com"}], **TEXT)
    assert failed is None and set(created["d"]) == {"id", "blobId", "threadId", "size"}
    got = get(jmap, created["d"]["id"], "subject", "from", "to", "keywords", "bodyValues",
              "textBody", fetchTextBodyValues=True)
    assert got["subject"] == "Lunch? 🍜" and got["keywords"] == {"$draft": True}
    assert got["from"] == [{"name": "Jörg Müller", "email": "joerg@example.de"}]
    assert got["to"] == [{"name": None, "email": "bob@example.com"}]
    assert got["bodyValues"][got["textBody"][0]["partId"]]["value"] == "Draft body café\nline two"


def test_the_written_message_is_7bit_with_encoded_words_and_generated_ids(jmap, core, inbox):
    """§4.6: Message-ID and Date generated; RFC 2047 headers; the blob is exactly size octets."""
    created, _ = create(jmap, inbox, subject="Café", **TEXT)
    raw = raw_of(core, created["d"]["blobId"])
    assert len(raw) == created["d"]["size"] and raw.isascii()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == "Café" and "=?utf-8?" in raw.decode().lower()
    assert message["Message-ID"].startswith("<") and message["Date"] is not None
    got = get(jmap, created["d"]["id"], "messageId", "sentAt")
    assert len(got["messageId"]) == 1 and got["sentAt"] == "2026-01-01T09:00:00Z"


def test_html_text_and_an_attachment_make_mixed_over_alternative(jmap, core, inbox):
    """§4.6: textBody + htmlBody + attachments, RFC 2231 for a non-ASCII filename."""
    blob = jmapd.upload_blob(core, core.user("alice"), "alice", b"%PDF" * 75,
                             "application/pdf")["blobId"]
    created, failed = create(jmap, inbox, subject="Report",
                             textBody=[{"partId": "t", "type": "text/plain"}],
                             htmlBody=[{"partId": "h", "type": "text/html"}],
                             bodyValues={"t": {"value": "plain"}, "h": {"value": "<p>html</p>"}},
                             attachments=[{"blobId": blob, "type": "application/pdf",
                                           "name": "Bericht März.pdf"}])
    assert failed is None
    got = get(jmap, created["d"]["id"], "bodyStructure", "attachments", "hasAttachment",
              "htmlBody", "textBody")
    assert got["bodyStructure"]["type"] == "multipart/mixed"
    assert [p["type"] for p in got["bodyStructure"]["subParts"]] == ["multipart/alternative",
                                                                     "application/pdf"]
    assert [(a["name"], a["size"], a["blobId"]) for a in got["attachments"]] == [
        ("Bericht März.pdf", 300, blob)]
    assert got["hasAttachment"] is True
    assert [p["type"] for p in got["htmlBody"]] == ["text/html"]
    assert "filename*=" in raw_of(core, created["d"]["blobId"]).decode()


def test_a_body_structure_with_an_inline_image_keeps_its_cid(jmap, core, inbox):
    """§4.6: bodyStructure as given, with cid and disposition on a part."""
    blob = jmapd.upload_blob(core, core.user("alice"), "alice", b"\x89PNG....", "image/png")["blobId"]
    created, failed = create(jmap, inbox, bodyStructure={"type": "multipart/related", "subParts": [
        {"partId": "h", "type": "text/html"},
        {"blobId": blob, "type": "image/png", "cid": "logo@x", "disposition": "inline"}]},
        bodyValues={"h": {"value": '<img src="cid:logo@x">'}})
    assert failed is None
    image = get(jmap, created["d"]["id"], "bodyStructure")["bodyStructure"]["subParts"][1]
    assert (image["type"], image["cid"], image["disposition"]) == ("image/png", "logo@x", "inline")


def test_a_reply_joins_the_thread_of_its_original(jmap, core, inbox):
    """§3 with §4.6: In-Reply-To/References and the same base subject share a Thread."""
    first, _ = create(jmap, inbox, subject="Plans", messageId=["plans@example.com"], **TEXT)
    reply, _ = create(jmap, inbox, subject="Re: Plans", inReplyTo=["plans@example.com"],
                      references=["plans@example.com"], **TEXT)
    assert reply["d"]["threadId"] == first["d"]["threadId"]


def test_a_header_property_is_written_in_its_form(jmap, core, inbox):
    """§4.6: header:Name:asForm properties become header fields."""
    created, _ = create(jmap, inbox, **{"header:X-Mood:asText": "sunny ☀",
                                        "header:List-Post:asURLs": ["mailto:l@example.org"]},
                        **TEXT)
    got = get(jmap, created["d"]["id"], "header:X-Mood:asText", "header:List-Post:asURLs")
    assert got["header:X-Mood:asText"] == "sunny ☀"
    assert got["header:List-Post:asURLs"] == ["mailto:l@example.org"]


def test_a_missing_blob_is_blobNotFound_listing_every_id(jmap, inbox):
    """§4.6: blobNotFound with notFound holding each unknown blobId."""
    _, failed = create(jmap, inbox, bodyStructure={"type": "multipart/mixed", "subParts": [
        {"blobId": "Gnope1", "type": "image/png"}, {"blobId": "Gnope2", "type": "image/png"}]})
    assert failed["d"]["type"] == "blobNotFound"
    assert failed["d"]["notFound"] == ["Gnope1", "Gnope2"]


@pytest.mark.parametrize("properties, property_name", [
    ({"headers": [{"name": "X", "value": "y"}], **TEXT}, "headers"),
    ({"bodyStructure": {"partId": "t", "type": "text/plain"}, **TEXT}, "bodyStructure"),
    ({"textBody": [{"partId": "a", "type": "text/plain"}, {"partId": "b", "type": "text/plain"}],
      "bodyValues": {"a": {"value": "1"}, "b": {"value": "2"}}}, "textBody"),
    ({"textBody": [{"partId": "t", "type": "text/html"}], "bodyValues": {"t": {"value": "x"}}},
     "textBody"),
    ({"textBody": [{"partId": "t", "type": "text/plain"}],
      "bodyValues": {"t": {"value": "x", "isTruncated": True}}}, "bodyValues"),
    ({"header:Content-Type": "text/plain", **TEXT}, "header:Content-Type"),
], ids=["headers", "structure-and-textBody", "two-text-parts", "html-in-textBody",
        "truncated-value", "content-header-on-email"])
def test_a_create_the_rfc_forbids_is_invalidProperties(jmap, inbox, properties, property_name):
    """§4.6: the listed constraints are rejected with invalidProperties naming the property."""
    _, failed = create(jmap, inbox, **properties)
    assert failed["d"]["type"] == "invalidProperties"
    assert property_name in failed["d"]["properties"]


def test_a_part_with_both_part_id_and_blob_id_is_invalidProperties(jmap, inbox):
    """§4.6: a part has a partId OR a blobId, not both."""
    _, failed = create(jmap, inbox, bodyStructure={"partId": "t", "blobId": "G1",
                                                   "type": "text/plain"},
                       bodyValues={"t": {"value": "x"}})
    assert failed["d"]["type"] == "invalidProperties"


def test_a_created_draft_can_be_destroyed(jmap, inbox):
    """§4.6: destroy removes it from every Mailbox; Email/get no longer finds it."""
    created, _ = create(jmap, inbox, **TEXT)
    email_id = created["d"]["id"]
    assert jmap.call("Email/set", {"accountId": "alice", "destroy": [email_id]})["destroyed"] == [email_id]
    assert jmap.call("Email/get", {"accountId": "alice", "ids": [email_id]})["notFound"] == [email_id]


@pytest.mark.parametrize("properties", [
    {"from": ["x@y"]}, {"from": "x@y"}, {"from": [{"name": 5, "email": "x@y"}]},
    {"subject": 5}, {"messageId": "abc"}, {"header:X-A:asAddresses": "nope"},
    {"sentAt": "yesterday"},
    {"attachments": [{"blobId": "G1", "type": "image/png", "cid": "a\r\nb"}]},
    {"attachments": [{"blobId": "G1", "type": "image/png", "name": 5}]},
    {"attachments": [{"blobId": "G1", "type": "image/png", "language": [1]}]},
    {"attachments": [{"blobId": "G1", "type": "image/png", "disposition": "a b\r\nc"}]},
], ids=["from-strings", "from-string", "name-number", "subject-number", "messageId-string",
        "header-form-type", "sentAt", "cid-crlf", "name-number-part", "language-numbers",
        "disposition-crlf"])
def test_wrong_types_in_a_create_are_invalidProperties_never_serverFail(jmap, core, inbox,
                                                                         properties):
    """RFC 8620 §5.3: invalid properties are a SetError, whatever the value's type."""
    jmapd.upload_blob(core, core.user("alice"), "alice", b"png", "image/png")
    created, failed = create(jmap, inbox, **TEXT, **properties)
    assert created is None and failed["d"]["type"] in ("invalidProperties", "blobNotFound")


# --- what third-party clients send every day (review findings) ---------------------

def upload(core, data, media_type):
    return jmapd.upload_blob(core, core.user("alice"), "alice", data, media_type)["blobId"]


def test_4_6_an_internationalised_address_is_written_as_utf8_and_reads_back(jmap, core, inbox):
    """RFC 2047 §5: no encoded-word in an addr-spec; RFC 6532 §3: UTF-8 header fields."""
    created, _ = create(jmap, inbox, to=[{"name": "Bjørn", "email": "bøb@exämple.com"}], **TEXT)
    email_id = created["d"]["id"]
    assert get(jmap, email_id, "to")["to"] == [{"name": "Bjørn", "email": "bøb@exämple.com"}]
    raw = raw_of(core, created["d"]["blobId"])
    assert "To: =?utf-8?b?QmrDuHJu?= <bøb@exämple.com>\r\n".encode() in raw


def test_4_6_an_attached_message_keeps_an_identity_encoding(jmap, core, inbox):
    """RFC 2046 §5.2.1: message/rfc822 is 7bit, 8bit or binary, never base64."""
    forwarded = b"From: carol@example.org\r\nSubject: Fwd me\r\n\r\nThe original.\r\n"
    created, _ = create(jmap, inbox, attachments=[{"blobId": upload(core, forwarded,
                                                                     "message/rfc822"),
                                                   "type": "message/rfc822", "name": "o.eml"}],
                        **TEXT)
    raw = raw_of(core, created["d"]["blobId"])
    assert b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n" in raw
    assert forwarded in raw
    part = get(jmap, created["d"]["id"], "attachments")["attachments"][0]
    parsed = jmap.call("Email/parse", {"accountId": "alice", "blobIds": [part["blobId"]],
                                       "properties": ["subject"]})["parsed"]
    assert parsed[part["blobId"]]["subject"] == "Fwd me"


def test_4_6_an_html_body_part_without_a_type_is_text_html(jmap, inbox):
    """§4.6: "htmlBody ... MUST be of type text/html": the type may be left out."""
    created, _ = create(jmap, inbox, htmlBody=[{"partId": "h"}],
                        bodyValues={"h": {"value": "<p>Hi <b>there</b></p>"}})
    got = get(jmap, created["d"]["id"], "htmlBody", "textBody", "preview")
    assert [p["type"] for p in got["htmlBody"]] == ["text/html"]
    assert got["preview"] == "Hi there"


def test_4_6_an_inline_image_travels_in_multipart_related_and_reads_back_as_attachment(
        jmap, core, inbox):
    image = upload(core, b"\x89PNG fake", "image/png")
    created, _ = create(jmap, inbox, htmlBody=[{"partId": "h", "type": "text/html"}],
                        bodyValues={"h": {"value": '<img src="cid:logo">'}},
                        attachments=[{"blobId": image, "type": "image/png",
                                      "disposition": "inline", "cid": "logo"}])
    got = get(jmap, created["d"]["id"], "bodyStructure", "attachments", "htmlBody")
    assert got["bodyStructure"]["type"] == "multipart/related"
    assert [p["type"] for p in got["bodyStructure"]["subParts"]] == ["text/html", "image/png"]
    assert [(p["cid"], p["disposition"]) for p in got["attachments"]] == [("logo", "inline")]
    assert [p["type"] for p in got["htmlBody"]] == ["text/html"]


def test_4_1_3_a_header_property_with_all_writes_every_instance(jmap, inbox):
    created, _ = create(jmap, inbox, **{"header:X-Tag:asText:all": ["one", "two"]}, **TEXT)
    assert get(jmap, created["d"]["id"], "header:X-Tag:asText:all")[
        "header:X-Tag:asText:all"] == ["one", "two"]


def test_4_1_2_1_a_folded_raw_value_is_written_as_given(jmap, inbox):
    """A Raw value read from Email/get (leading space, folding) can be written back."""
    created, _ = create(jmap, inbox, **{"header:X-Long": " first\r\n second"}, **TEXT)
    assert get(jmap, created["d"]["id"], "header:X-Long")["header:X-Long"] == " first\r\n second"
    _, failed = create(jmap, inbox, **{"header:X-Bad": " one\nBcc: x@example.com"}, **TEXT)
    assert failed["d"]["type"] == "invalidProperties"


@pytest.mark.parametrize("part", [
    {"partId": "t", "type": "text/plain", "headers": []},
    {"partId": "t", "type": "text/plain", "header:Content-Transfer-Encoding": "base64"},
    {"partId": "t", "type": "text/plain", "colour": "blue"},
])
def test_4_6_a_body_part_with_headers_or_a_transfer_encoding_is_invalidProperties(jmap, inbox,
                                                                                   part):
    _, failed = create(jmap, inbox, bodyStructure=part, bodyValues={"t": {"value": "x"}})
    assert (failed["d"]["type"], failed["d"]["properties"]) == ("invalidProperties",
                                                                ["bodyStructure"])


def test_4_6_a_body_structure_nested_too_deep_is_invalidProperties(jmap, inbox):
    part = {"partId": "t", "type": "text/plain"}
    for _ in range(300):
        part = {"type": "multipart/mixed", "subParts": [part]}
    _, failed = create(jmap, inbox, bodyStructure=part, bodyValues={"t": {"value": "x"}})
    assert failed["d"]["type"] == "invalidProperties"


def test_the_same_create_writes_the_same_octets(demo_template):
    """Deterministic output (fixed clock, sequential ids): multipart boundaries too."""
    blob_ids = []
    for _ in range(2):
        core = demo_template.clone(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds())
        jmap = Jmap(core, "alice")
        created, _ = create(jmap, jmap.mailbox_ids()["Inbox"],
                            htmlBody=[{"partId": "h"}], bodyValues={
                                "t": {"value": "x"}, "h": {"value": "<b>x</b>"}},
                            textBody=[{"partId": "t"}])
        blob_ids.append(created["d"]["blobId"])
        core.close()
    assert blob_ids[0] == blob_ids[1]


def test_4_7_a_copy_may_set_only_mailbox_ids_keywords_and_received_at(jmap, core, inbox):
    jmapd.add_team_account(core, "team", "Team", members=["alice"])
    created, _ = create(jmap, inbox, **TEXT)
    team_inbox = jmap.call("Mailbox/query", {"accountId": "team", "filter": {
        "role": "inbox"}})["ids"][0]
    result = jmap.call("Email/copy", {"fromAccountId": "alice", "accountId": "team", "create": {
        "c": {"id": created["d"]["id"], "mailboxIds": {team_inbox: True}, "blobId": "Gx",
              "subject": "changed"}}})
    error = result["notCreated"]["c"]
    assert (error["type"], error["properties"]) == ("invalidProperties", ["blobId", "subject"])


def test_rfc9404_4_1_a_blob_uploaded_in_the_same_request_may_be_used_by_creation_id(jmap,
                                                                                    inbox):
    raw = "From: carol@example.org\r\nSubject: Via Blob/upload\r\n\r\nHi\r\n"
    response = jmap.request([
        ["Blob/upload", {"accountId": "alice", "create": {
            "m": {"data": [{"data:asText": raw}], "type": "message/rfc822"},
            "png": {"data": [{"data:asBase64": "iVBORw0KGgo="}], "type": "image/png"}}}, "u"],
        ["Email/import", {"accountId": "alice", "emails": {"i": {
            "blobId": "#m", "mailboxIds": {inbox: True}}}}, "i"],
        ["Email/set", {"accountId": "alice", "create": {"d": {
            "mailboxIds": {inbox: True}, "attachments": [{"blobId": "#png", "type": "image/png"}],
            **TEXT}}}, "s"],
        ["Email/parse", {"accountId": "alice", "blobIds": ["#m"], "properties": ["subject"]},
         "p"]], using=(jmapd.URN_CORE, jmapd.URN_MAIL, jmapd.URN_BLOB))
    imported, composed, parsed = (r[1] for r in response["methodResponses"][1:])
    assert imported["created"]["i"]["id"] and composed["notCreated"] is None
    assert list(parsed["parsed"].values())[0]["subject"] == "Via Blob/upload"
