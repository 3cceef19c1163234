"""RFC 9007 §2.2 MDN/parse: reports written by other mail programs (fixtures/mdn/),
blobs that are no MDN, and the method's errors."""

import os

import pytest

import jmapd
from conftest import import_raw

CORE, MAIL, MDN = jmapd.URN_CORE, jmapd.URN_MAIL, jmapd.URN_MDN
USING = (CORE, MAIL, MDN)
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "mdn")


def upload(core, name_or_raw, user="alice"):
    raw = name_or_raw if isinstance(name_or_raw, bytes) else open(
        os.path.join(FIXTURES, name_or_raw), "rb").read()
    return jmapd.upload_blob(core, core.user(user), core.user(user).account_id, raw,
                             "message/rfc822")["blobId"]


def parse(jmap, blob_ids, using=USING):
    return jmap.call("MDN/parse", {"accountId": jmap.account_id, "blobIds": blob_ids}, using)


def test_parses_a_thunderbird_style_receipt(core, jmap):
    """§2.2 and the §3.3 example: every field of the report, and forEmailId null when
    the account holds no message with that Message-ID."""
    blob = upload(core, "thunderbird-displayed.eml")
    result = parse(jmap, [blob])
    assert (result["notParsable"], result["notFound"]) == (None, None)
    assert result["parsed"][blob] == {
        "forEmailId": None, "subject": "Return Receipt (displayed) - Budget review",
        "textBody": "This is a Return Receipt for the mail that you sent to carol@example.org."
                    "\n\nNote: This Return Receipt only acknowledges that the message was "
                    "displayed \non the recipient's computer. There is no guarantee that the "
                    "recipient has \nread or understood the message contents.\n",
        "includeOriginalMessage": False,
        "reportingUA": "laptop.example.org; Mozilla Thunderbird", "mdnGateway": None,
        "disposition": {"actionMode": "manual-action", "sendingMode": "mdn-sent-manually",
                        "type": "displayed"},
        "originalRecipient": None, "finalRecipient": "rfc822;carol@example.org",
        "originalMessageId": "<budget-review-2026@example.com>", "error": None,
        "extensionFields": None}


def test_parses_a_gateway_report_lowercasing_the_disposition(core, jmap):
    """§2: disposition values "MUST be converted to lowercase by MDN/parse"; the
    gateway, original recipient, error and extension fields are read too, and a
    message/rfc822 third part means includeOriginalMessage."""
    blob = upload(core, "gateway-deleted.eml")
    got = parse(jmap, [blob])["parsed"][blob]
    assert got["disposition"] == {"actionMode": "automatic-action",
                                  "sendingMode": "mdn-sent-automatically", "type": "deleted"}
    assert (got["mdnGateway"], got["originalRecipient"], got["finalRecipient"]) == (
        "dns; gateway.example.net", "rfc822; dieter@legacy.example.net",
        "rfc822; dieter.d@legacy.example.net")
    assert got["error"] == ["the legacy mailbox was  removed by its owner"]
    assert got["extensionFields"] == {"X-Legacy-Queue-Id": "7781-AZ"}
    assert got["includeOriginalMessage"] is True
    assert (got["subject"], got["textBody"]) == ("Gelöscht: Reise",
                                                 "Ihre Nachricht wurde ungelesen gelöscht.")


def test_forEmailId_names_the_one_email_with_that_message_id(core, jmap):
    """§2.2: forEmailId is the related message when exactly one has the Message-ID."""
    original = (b"Message-ID: <budget-review-2026@example.com>\r\nFrom: alice@example.com\r\n"
                b"To: carol@example.org\r\nSubject: Budget review\r\n\r\nNumbers.\r\n")
    email_id = import_raw(core, jmap, original, [jmap.mailbox_ids()["Sent"]])
    blob = upload(core, "thunderbird-displayed.eml")
    assert parse(jmap, [blob])["parsed"][blob]["forEmailId"] == email_id
    import_raw(core, jmap, original + b"Again.\r\n", [jmap.mailbox_ids()["Drafts"]])
    # "if several messages get the same Message-ID header field": null
    assert parse(jmap, [blob])["parsed"][blob]["forEmailId"] is None


def test_blobs_that_are_no_mdn_are_notParsable_and_unknown_ones_notFound(core, jmap):
    """§2.2 notParsable (a DSN, a plain message, not a message at all) and notFound,
    each null when empty; parsed is null when nothing parsed (§3.3 examples)."""
    dsn = upload(core, "dsn-not-an-mdn.eml")
    plain = upload(core, b"From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n")
    junk = upload(core, b"\x00\xff not mail")
    result = parse(jmap, [dsn, plain, junk, "Gnope", dsn])
    assert result == {"accountId": "alice", "parsed": None,
                      "notParsable": [dsn, plain, junk], "notFound": ["Gnope"]}


def test_a_report_missing_disposition_or_final_recipient_is_notParsable(core, jmap):
    """RFC 8098 §3.1: Final-Recipient and Disposition are required fields; a disposition
    type outside the four of §2 cannot become an MDN object."""
    raw = open(os.path.join(FIXTURES, "thunderbird-displayed.eml"), "rb").read()
    blobs = [upload(core, raw.replace(b"Final-Recipient: rfc822;carol@example.org\r\n", b"")),
             upload(core, raw.replace(b"Disposition: manual", b"X-Disposition: manual")),
             upload(core, raw.replace(b"; displayed", b"; denied"))]
    assert parse(jmap, blobs)["notParsable"] == blobs


def test_another_accounts_blob_is_notFound(core, jmap):
    """RFC 8620 §6: a blob is reachable only from the account that holds it."""
    blob = upload(core, "thunderbird-displayed.eml", user="bob")
    assert parse(jmap, [blob])["notFound"] == [blob]


def test_too_many_blob_ids_is_requestTooLarge(core, jmap):
    """§2.2 requestTooLarge: more ids than the server processes in one call."""
    core.limits["maxObjectsInGet"] = 2
    assert jmap.error("MDN/parse", {"accountId": "alice", "blobIds": ["a", "b", "c"]},
                      USING) == "requestTooLarge"


def test_unknown_account_is_invalidArguments(jmap):
    """§2.2: "If the given accountId cannot be found, the MDN parsing is rejected with
    an invalidArguments error"."""
    assert jmap.error("MDN/parse", {"accountId": "nobody", "blobIds": []},
                      USING) == "invalidArguments"


def test_parse_needs_the_mdn_capability(jmap):
    """RFC 8620 §3.6.2: without urn:ietf:params:jmap:mdn in using, unknownMethod."""
    assert jmap.error("MDN/parse", {"accountId": "alice", "blobIds": []},
                      (CORE, MAIL)) == "unknownMethod"
