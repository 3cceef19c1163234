"""Round trips of RFC 8621 §4.6 Email/set creates: what was set is what Email/get returns
(§4.1), what the blob holds parses back (stdlib email and §4.9 Email/parse) to the same
structure, and an §4.8 Email/import of those octets into another account reads back
identically. Blobs cross accounts only by upload (RFC 8620 §6.1)."""

import email
import email.header
import email.policy
import email.utils
import re

import pytest

import jmapd

A = "alice"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 3
NOTES = "Caf\u00e9 notes: \u20ac5\n".encode("iso-8859-15")
PART_PROPERTIES = ["partId", "blobId", "size", "name", "type", "charset", "disposition", "cid",
                   "language", "location", "subParts"]
MESSAGE_PROPERTIES = ["messageId", "inReplyTo", "references", "sender", "from", "to", "cc",
                      "bcc", "replyTo", "subject", "sentAt", "hasAttachment", "preview",
                      "bodyStructure", "bodyValues", "textBody", "htmlBody", "attachments",
                      "header:X-Custom:asText", "header:X-Custom"]
HEADERS = {
    "subject": "Gr\u00fc\u00dfe \u2013 \u65e5\u672c \U0001f35c",
    "from": [{"name": "J\u00f6rg M\u00fcller", "email": "joerg@example.de"}],
    "to": [{"name": "Zo\u00eb Ren\u00e9e", "email": "zoe@example.com"},
           {"name": None, "email": "bob@example.com"}],
    "cc": [{"name": "\u674e\u96f7", "email": "li@example.cn"}],
    "replyTo": [{"name": "Lists", "email": "lists@example.de"}],
    "messageId": ["round.trip@example.de"],
    "inReplyTo": ["earlier@example.de"],
    "references": ["first@example.de", "earlier@example.de"],
    "sentAt": "2026-03-04T05:06:07+01:00",
    "header:X-Custom:asText": "h\u00e9llo w\u00f6rld \u2603",
}


def upload(core, data, media_type, user="alice"):
    return jmapd.upload_blob(core, core.user(user), user, data, media_type)["blobId"]


def download(core, blob_id, user="alice"):
    return jmapd.download_blob(core, core.user(user), user, blob_id)


def create(jmap, **properties):
    result = jmap.call("Email/set", {"accountId": A, "create": {"c": {
        "mailboxIds": {jmap.mailbox_ids()["Inbox"]: True}, **properties}}})
    assert result["notCreated"] is None, result["notCreated"]
    return result["created"]["c"]


def get(jmap, email_id, account=A):
    got = jmap.call("Email/get", {"accountId": account, "ids": [email_id],
                                  "properties": MESSAGE_PROPERTIES + ["size", "blobId"],
                                  "bodyProperties": PART_PROPERTIES, "fetchAllBodyValues": True})
    assert got["notFound"] == []
    return got["list"][0]


def parse(jmap, blob_id, account=A):
    result = jmap.call("Email/parse", {"accountId": account, "blobIds": [blob_id],
                                       "properties": MESSAGE_PROPERTIES,
                                       "bodyProperties": PART_PROPERTIES,
                                       "fetchAllBodyValues": True})
    assert (result["notFound"], result["notParsable"]) == (None, None)
    return result["parsed"][blob_id]


def stdlib(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def rfc2047(value):
    """A raw header value with its encoded-words decoded, unfolded (RFC 2047 §6)."""
    text = str(email.header.make_header(email.header.decode_header(value)))
    return re.sub(r"\r?\n(?=[ \t])", "", text)


def shape(part):
    """(type, charset, disposition, filename, Content-ID) of a stdlib part, recursively."""
    own = (part.get_content_type(), part.get_content_charset(), part.get_content_disposition(),
           part.get_filename(), part["Content-ID"])
    if part.is_multipart():
        return own, [shape(sub) for sub in part.iter_parts()]
    return own


def without_blob_ids(value):
    if isinstance(value, dict):
        return {k: without_blob_ids(v) for k, v in value.items() if k != "blobId"}
    if isinstance(value, list):
        return [without_blob_ids(v) for v in value]
    return value


def leaf(name, part_id, size, media_type, blob_id, charset=None, disposition=None, cid=None):
    return {"partId": part_id, "blobId": blob_id, "size": size, "name": name, "type": media_type,
            "charset": charset, "disposition": disposition, "cid": cid, "language": None,
            "location": None, "subParts": None}


TEXT = "Hallo J\u00f6rg,\nZeile zwei \u2013 mit Umlaut \u00e4.\n\n-- \nJ\u00f6rg"
HTML = '<p>Hallo <b>J\u00f6rg</b></p><img src="cid:logo@example.de">'


# -- text only ------------------------------------------------------------------------------------

def test_4_6_a_text_email_reads_back_what_was_set(core, jmap):
    """RFC 8621 §4.6 create -> §4.1 Email/get: every header property and the body as given;
    §4.1.2.3 header:X-Custom:asText decoded, the raw form RFC 2047 encoded."""
    created = create(jmap, **HEADERS, textBody=[{"partId": "t", "type": "text/plain"}],
                     bodyValues={"t": {"value": TEXT}})
    got = get(jmap, created["id"])
    assert {k: got[k] for k in HEADERS} == {**HEADERS, "sentAt": "2026-03-04T05:06:07+01:00"}
    text_part = got["textBody"][0]
    assert got["bodyStructure"] == text_part == leaf(
        None, text_part["partId"], len(TEXT.replace("\n", "\r\n").encode()), "text/plain",
        text_part["blobId"], "utf-8")  # §4.1.4 size: decoded octets, canonical CRLF lines
    assert got["htmlBody"] == [text_part] and got["attachments"] == []
    assert got["bodyValues"] == {text_part["partId"]: {
        "value": TEXT, "isEncodingProblem": False, "isTruncated": False}}
    assert (got["hasAttachment"], got["preview"]) == (
        False, "Hallo J\u00f6rg, Zeile zwei \u2013 mit Umlaut \u00e4. -- J\u00f6rg")
    assert got["header:X-Custom"].startswith(" =?utf-8?")
    assert (got["size"], got["blobId"]) == (created["size"], created["blobId"])


def test_4_6_a_text_email_blob_parses_back_the_same(core, jmap):
    """§4.6 the blob is the message (RFC 5322, 7-bit, exactly `size` octets): the stdlib
    parser and §4.9 Email/parse read the same values Email/get gives."""
    created = create(jmap, **HEADERS, textBody=[{"partId": "t", "type": "text/plain"}],
                     bodyValues={"t": {"value": TEXT}})
    raw, media_type = download(core, created["blobId"])
    assert (media_type, len(raw), raw.isascii()) == ("message/rfc822", created["size"], True)
    message = stdlib(raw)
    assert shape(message) == ("text/plain", "utf-8", None, None, None)
    assert message.get_content().replace("\r\n", "\n").rstrip("\n") == TEXT.rstrip("\n")
    assert (message["Subject"], message["X-Custom"]) == (HEADERS["subject"],
                                                         HEADERS["header:X-Custom:asText"])
    assert message["From"].addresses[0].display_name == "J\u00f6rg M\u00fcller"
    assert message["Message-ID"] == "<round.trip@example.de>"
    assert message["References"] == "<first@example.de> <earlier@example.de>"
    assert message["Date"].datetime.isoformat() == "2026-03-04T05:06:07+01:00"
    assert parse(jmap, created["blobId"]) == {
        k: v for k, v in get(jmap, created["id"]).items() if k not in ("id", "size", "blobId")}


@pytest.mark.parametrize("properties", [
    {"subject": "plain ASCII subject that is long enough to need folding " * 3},
    {"subject": "caf\u00e9 " * 30 + "end"},
    {"subject": "\u00c4rger " * 20 + "end"},
    {"subject": "tab\tinside and  two spaces"},
    {"header:X-Custom:asText": "\u00fcn\u00efc\u00f6d\u00e9 " * 10 + "x"},
    {"from": [{"name": "M\u00fcller, J\u00f6rg", "email": "j@example.de"}]},
    {"from": [{"name": 'Say "hi"; ok <really>', "email": "j@example.de"}]},
    {"from": [{"name": "=?utf-8?q?fake?=", "email": "j@example.de"}]},
    {"to": [{"name": "\u00c5" * 60, "email": "long@example.de"}]},
], ids=["long-ascii", "long-cafe", "long-aerger", "tab-and-spaces", "long-custom",
        "comma-name", "quotes-name", "encoded-word-lookalike", "long-non-ascii-name"])
def test_4_6_awkward_header_values_read_back_exactly(core, jmap, properties):
    """§4.6 -> §4.1.2.2/§4.1.2.3: values that need quoting, RFC 2047 encoding or folding
    come back from Email/get (and the stdlib parser) exactly as set."""
    created = create(jmap, textBody=[{"partId": "t", "type": "text/plain"}],
                     bodyValues={"t": {"value": "x"}}, **properties)
    got = jmap.call("Email/get", {"accountId": A, "ids": [created["id"]],
                                  "properties": list(properties)})["list"][0]
    assert {k: got[k] for k in properties} == properties
    # the stdlib's RFC 2047 decoder (policy.default's address parser puts spaces between
    # adjacent encoded-words, which RFC 2047 §6.2 says to drop)
    message = email.message_from_bytes(download(core, created["blobId"])[0])
    for name, value in properties.items():
        field = {"subject": "Subject", "header:X-Custom:asText": "X-Custom"}.get(name)
        if field:
            assert rfc2047(message[field]) == value
        else:
            [(display, address)] = email.utils.getaddresses(message.get_all(name))
            assert (rfc2047(display), address) == (value[0]["name"], value[0]["email"])


@pytest.mark.parametrize("name", ["\u00c4" * 80 + ".pdf", 'we"ird; name=x.pdf', "x" * 120 + ".pdf",
                                  "\u65e5\u672c\u8a9e \u30d5\u30a1\u30a4\u30eb.pdf"],
                         ids=["long-non-ascii", "quote-semicolon", "long-ascii", "cjk-space"])
def test_4_6_awkward_filenames_read_back_exactly(core, jmap, name):
    """§4.6 part name -> RFC 2231 filename* (with continuations when long) -> §4.1.4 name."""
    blob = upload(core, PDF, "application/pdf")
    created = create(jmap, textBody=[{"partId": "t", "type": "text/plain"}],
                     bodyValues={"t": {"value": "x"}},
                     attachments=[{"blobId": blob, "type": "application/pdf", "name": name}])
    got = get(jmap, created["id"])
    assert [(a["name"], a["type"], a["size"], a["blobId"]) for a in got["attachments"]] == [
        (name, "application/pdf", len(PDF), blob)]
    message = stdlib(download(core, created["blobId"])[0])
    assert [p.get_filename() for p in message.iter_attachments()] == [name]


# -- text + html ----------------------------------------------------------------------------------

def test_4_6_text_and_html_make_an_alternative_that_round_trips(core, jmap):
    """§4.6 textBody + htmlBody -> multipart/alternative; §4.1.4 textBody/htmlBody pick
    their part, bodyValues hold both texts exactly."""
    created = create(jmap, subject="Both", textBody=[{"partId": "t", "type": "text/plain"}],
                     htmlBody=[{"partId": "h", "type": "text/html"}],
                     bodyValues={"t": {"value": TEXT}, "h": {"value": HTML}})
    got = get(jmap, created["id"])
    text_part, html_part = got["bodyStructure"]["subParts"]
    assert (got["bodyStructure"]["type"], text_part["type"], html_part["type"]) == (
        "multipart/alternative", "text/plain", "text/html")
    assert (got["textBody"], got["htmlBody"], got["attachments"]) == ([text_part], [html_part], [])
    assert {got["bodyValues"][p["partId"]]["value"] for p in (text_part, html_part)} == {
        TEXT, HTML}
    assert (text_part["charset"], html_part["charset"]) == ("utf-8", "utf-8")
    raw = download(core, created["blobId"])[0]
    message = stdlib(raw)
    assert shape(message) == (("multipart/alternative", None, None, None, None), [
        ("text/plain", "utf-8", None, None, None), ("text/html", "utf-8", None, None, None)])
    plain, html = message.iter_parts()
    assert plain.get_content().replace("\r\n", "\n").rstrip("\n") == TEXT.rstrip("\n")
    assert html.get_content().replace("\r\n", "\n").rstrip("\n") == HTML
    assert parse(jmap, created["blobId"])["bodyStructure"] == got["bodyStructure"]


# -- attachments and inline images ------------------------------------------------------------

def compound(core, jmap):
    """mixed[related[alternative[text, html], inline image with cid], pdf, text attachment]."""
    image, pdf, notes = (upload(core, PNG, "image/png"), upload(core, PDF, "application/pdf"),
                         upload(core, NOTES, "text/plain"))
    created = create(jmap, **HEADERS, bodyStructure={"type": "multipart/mixed", "subParts": [
        {"type": "multipart/related", "subParts": [
            {"type": "multipart/alternative", "subParts": [
                {"partId": "t", "type": "text/plain"}, {"partId": "h", "type": "text/html"}]},
            {"blobId": image, "type": "image/png", "cid": "logo@example.de",
             "disposition": "inline", "name": "l\u00f6go.png"}]},
        {"blobId": pdf, "type": "application/pdf", "name": "Bericht M\u00e4rz 2026.pdf"},
        {"blobId": notes, "type": "text/plain", "charset": "iso-8859-15",
         "disposition": "attachment", "name": "Notizen \u20ac.txt"}]},
        bodyValues={"t": {"value": TEXT}, "h": {"value": HTML}})
    return created, {"image": image, "pdf": pdf, "notes": notes}


def test_4_6_attachments_and_an_inline_image_read_back_as_set(core, jmap):
    """§4.6 bodyStructure with uploaded blobs -> §4.1.4 the parts' type, name (non-ASCII,
    RFC 2231), charset, disposition, cid and size; the inline image in a related part and
    the two files are the attachments; the html body references the image by cid."""
    created, blobs = compound(core, jmap)
    got = get(jmap, created["id"])
    mixed = got["bodyStructure"]
    related, pdf, notes = mixed["subParts"]
    alternative, image = related["subParts"]
    text_part, html_part = alternative["subParts"]
    assert [p["type"] for p in (mixed, related, alternative)] == [
        "multipart/mixed", "multipart/related", "multipart/alternative"]
    assert image == leaf("l\u00f6go.png", image["partId"], len(PNG), "image/png",
                         blobs["image"], disposition="inline", cid="logo@example.de")
    assert pdf == leaf("Bericht M\u00e4rz 2026.pdf", pdf["partId"], len(PDF), "application/pdf",
                       blobs["pdf"], disposition="attachment")
    assert notes == leaf("Notizen \u20ac.txt", notes["partId"], len(NOTES), "text/plain",
                         blobs["notes"], charset="iso-8859-15", disposition="attachment")
    assert (got["textBody"], got["htmlBody"]) == ([text_part], [html_part])
    assert got["attachments"] == [image, pdf, notes]
    assert got["hasAttachment"] is True
    assert {k: got[k] for k in HEADERS} == HEADERS
    assert got["bodyValues"][html_part["partId"]]["value"] == HTML
    assert got["bodyValues"][text_part["partId"]]["value"] == TEXT


def test_4_6_attachment_blobs_download_as_the_uploaded_octets(core, jmap):
    """RFC 8620 §6.2 with RFC 8621 §4.1.4: each part's blobId downloads exactly the octets
    that were uploaded for it (after transfer decoding)."""
    created, _ = compound(core, jmap)
    got = get(jmap, created["id"])
    related, pdf, notes = got["bodyStructure"]["subParts"]
    image = related["subParts"][1]
    assert [download(core, p["blobId"])[0] for p in (image, pdf, notes)] == [PNG, PDF, NOTES]


def test_4_6_the_compound_blob_parses_back_to_the_same_structure(core, jmap):
    """§4.6 blob -> stdlib parser: the same tree, types, charsets, dispositions, RFC 2231
    filenames, Content-ID and contents; §4.9 Email/parse equals Email/get throughout."""
    created, _ = compound(core, jmap)
    raw = download(core, created["blobId"])[0]
    assert len(raw) == created["size"] and raw.isascii()
    message = stdlib(raw)
    assert shape(message) == (("multipart/mixed", None, None, None, None), [
        (("multipart/related", None, None, None, None), [
            (("multipart/alternative", None, None, None, None), [
                ("text/plain", "utf-8", None, None, None),
                ("text/html", "utf-8", None, None, None)]),
            ("image/png", None, "inline", "l\u00f6go.png", "<logo@example.de>")]),
        ("application/pdf", None, "attachment", "Bericht M\u00e4rz 2026.pdf", None),
        ("text/plain", "iso-8859-15", "attachment", "Notizen \u20ac.txt", None)])
    related, pdf, notes = message.iter_parts()
    alternative, image = related.iter_parts()
    plain, html = alternative.iter_parts()
    assert html.get_content().replace("\r\n", "\n").rstrip("\n") == HTML
    assert plain.get_content().replace("\r\n", "\n").rstrip("\n") == TEXT.rstrip("\n")
    assert [p.get_payload(decode=True) for p in (image, pdf, notes)] == [PNG, PDF, NOTES]
    assert notes.get_content() == NOTES.decode("iso-8859-15")
    got = get(jmap, created["id"])
    assert parse(jmap, created["blobId"]) == {k: v for k, v in got.items()
                                              if k not in ("id", "size", "blobId")}


# -- the same octets imported into another account ---------------------------------------------

def test_4_8_importing_the_created_blob_into_bob_reads_back_identically(core, jmap, bob):
    """§4.8: bob uploads the octets alice's Email/set wrote and imports them: same size,
    same raw octets, the same Email/get values (blob ids apart) and the same part contents."""
    created, _ = compound(core, jmap)
    raw = download(core, created["blobId"])[0]
    bob_blob = upload(core, raw, "message/rfc822", user="bob")
    result = bob.call("Email/import", {"accountId": "bob", "emails": {"k": {
        "blobId": bob_blob, "mailboxIds": {bob.mailbox_ids()["Inbox"]: True},
        "keywords": {"$seen": True}, "receivedAt": "2026-05-06T07:08:09Z"}}})
    assert result["notCreated"] is None
    imported = result["created"]["k"]
    assert (imported["blobId"], imported["size"]) == (bob_blob, created["size"])
    assert download(core, imported["blobId"], "bob") == (raw, "message/rfc822")
    mine, theirs = get(jmap, created["id"]), get(bob, imported["id"], "bob")
    assert without_blob_ids(theirs) == {**without_blob_ids(mine), "id": imported["id"]}
    leaves = lambda got: got["attachments"] + got["textBody"] + got["htmlBody"]  # noqa: E731
    assert [download(core, p["blobId"], "bob")[0] for p in leaves(theirs)] == [
        download(core, p["blobId"])[0] for p in leaves(mine)]
    meta = bob.call("Email/get", {"accountId": "bob", "ids": [imported["id"]], "properties": [
        "keywords", "receivedAt", "mailboxIds"]})["list"][0]
    assert meta == {"id": imported["id"], "keywords": {"$seen": True},
                    "receivedAt": "2026-05-06T07:08:09Z",
                    "mailboxIds": {bob.mailbox_ids()["Inbox"]: True}}


def test_4_8_bob_cannot_import_alices_blob_without_uploading_it(core, jmap, bob):
    """§4.8 "blobId ... id not found" -> invalidProperties: alice's blob is not in bob's
    account (RFC 8620 §6: blobs are per account), nor can bob download it."""
    created = create(jmap, subject="Private", textBody=[{"partId": "t", "type": "text/plain"}],
                     bodyValues={"t": {"value": "secret"}})
    result = bob.call("Email/import", {"accountId": "bob", "emails": {"k": {
        "blobId": created["blobId"], "mailboxIds": {bob.mailbox_ids()["Inbox"]: True}}}})
    assert result["created"] is None
    assert (result["notCreated"]["k"]["type"], result["notCreated"]["k"]["properties"]) == (
        "invalidProperties", ["blobId"])
    with pytest.raises(jmapd.RequestError) as refused:
        download(core, created["blobId"], "bob")
    assert refused.value.status == 404


def test_4_6_an_attachment_from_another_accounts_upload_is_blobNotFound(core, jmap):
    """§4.6 blobNotFound ("notFound" lists every missing blobId): a blob bob uploaded is
    not alice's to attach; nothing is created."""
    bobs = upload(core, b"bob's file", "application/octet-stream", user="bob")
    mine = upload(core, PDF, "application/pdf")
    before = jmap.call("Email/get", {"accountId": A, "ids": []})["state"]
    result = jmap.call("Email/set", {"accountId": A, "create": {"c": {
        "mailboxIds": {jmap.mailbox_ids()["Inbox"]: True},
        "textBody": [{"partId": "t", "type": "text/plain"}], "bodyValues": {"t": {"value": "x"}},
        "attachments": [{"blobId": mine, "type": "application/pdf"},
                        {"blobId": bobs, "type": "application/octet-stream"}]}}})
    assert result["created"] is None
    assert (result["notCreated"]["c"]["type"], result["notCreated"]["c"]["notFound"]) == (
        "blobNotFound", [bobs])
    assert jmap.call("Email/get", {"accountId": A, "ids": []})["state"] == before
