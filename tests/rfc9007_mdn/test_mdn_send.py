"""RFC 9007 §2.1 MDN/send: the RFC 8098 report it sends, the implicit Email/set, the
errors it defines, and the read receipt's way back to the sender's EmailSubmission."""

import email
import email.policy

import pytest

import jmapd
from conftest import import_raw

CORE, MAIL, MDN, SUBMISSION = jmapd.URN_CORE, jmapd.URN_MAIL, jmapd.URN_MDN, jmapd.URN_SUBMISSION
USING = (CORE, MAIL, MDN)
DISPLAYED = {"actionMode": "manual-action", "sendingMode": "mdn-sent-manually",
             "type": "displayed"}
REQUEST = (b"From: Carol <carol@elsewhere.example>\r\nTo: bob@example.com\r\n"
           b"Subject: World domination\r\nMessage-ID: <plan-1@elsewhere.example>\r\n"
           b"Disposition-Notification-To: Carol <carol@elsewhere.example>\r\n\r\nRead me.\r\n")


@pytest.fixture
def asked(core, bob):
    """An Email in bob's Inbox whose sender asks for a read receipt."""
    return import_raw(core, bob, REQUEST, [bob.mailbox_ids()["Inbox"]])


def mdn(email_id, **fields):
    return {"forEmailId": email_id, "disposition": dict(DISPLAYED), **fields}


def send(client, mdns, updates="auto", identity="Iprimary", using=USING):
    """One MDN/send; updates "auto" sets $mdnsent for every creation id (§2.1 MUST)."""
    if updates == "auto":
        updates = {f"#{k}": {"keywords/$mdnsent": True} for k in mdns}
    args = {"accountId": client.account_id, "identityId": identity, "send": mdns}
    if updates is not None:
        args["onSuccessUpdateEmail"] = updates
    return client.request([["MDN/send", args, "0"]], using)["methodResponses"]


def not_sent(client, mdns, **kw):
    response = send(client, mdns, **kw)
    assert response[0][0] == "MDN/send" and response[0][1]["sent"] is None, response
    return {k: e["type"] for k, e in response[0][1]["notSent"].items()}


def keywords(client, email_id):
    return client.call("Email/get", {"accountId": client.account_id, "ids": [email_id],
                                     "properties": ["keywords"]})["list"][0]["keywords"]


def test_capability_is_an_empty_object_in_session_and_account(core):
    """§1.3: the value is an empty object in capabilities and accountCapabilities."""
    session = core.session("bob", "http://x")
    assert session["capabilities"][MDN] == {}
    assert session["accounts"]["bob"]["accountCapabilities"][MDN] == {}


def test_send_answers_server_set_fields_and_runs_the_implicit_email_set(core, bob, asked):
    """§2.1 and the §3.1 example: sent holds what the client did not set (finalRecipient
    from the Identity, originalMessageId from the message); an Email/set response with
    the same call id follows, and it set $mdnsent."""
    response = send(bob, {"k1": mdn(asked, subject="Read receipt", textBody="Seen.",
                                    reportingUA="bobs-pc; jmapd tests")})
    assert [(name, call_id) for name, _, call_id in response] == [("MDN/send", "0"),
                                                                  ("Email/set", "0")]
    sent = response[0][1]
    assert sent["notSent"] is None and sent["accountId"] == "bob"
    assert sent["sent"]["k1"] == {
        "finalRecipient": "rfc822; bob@example.com",
        "originalMessageId": "<plan-1@elsewhere.example>", "originalRecipient": None,
        "includeOriginalMessage": False, "mdnGateway": None, "error": None,
        "extensionFields": None}
    assert list(response[1][1]["updated"]) == [asked]
    assert keywords(bob, asked) == {"$mdnsent": True}


def test_the_report_is_an_rfc8098_multipart_report_sent_with_a_null_return_path(core, bob, asked):
    """§2.1 "sends a message in the style of RFC 5322": multipart/report with
    report-type disposition-notification and three parts; the second holds
    Reporting-UA, Final-Recipient, Original-Message-ID and Disposition; it goes to the
    Disposition-Notification-To address, with MAIL FROM <> (RFC 8098 §3)."""
    send(bob, {"k": mdn(asked, reportingUA="bobs-pc; jmapd tests")})
    [out] = core.outbox
    assert (out.mail_from, out.rcpt_to) == ("", ("carol@elsewhere.example",))
    report = out.message
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "disposition-notification"
    assert report["Subject"] == "Read: World domination"  # the server's default subject
    assert report["In-Reply-To"] == "<plan-1@elsewhere.example>"
    assert str(report["From"]) == "Bob Baker <bob@example.com>"
    parts = report.get_payload()
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/disposition-notification", "text/rfc822-headers"]
    assert "was displayed" in parts[0].get_content()
    fields = parts[1].get_payload()[0] if parts[1].is_multipart() else email.message_from_bytes(
        parts[1].get_payload(decode=True))
    assert (fields["Reporting-UA"], fields["Final-Recipient"], fields["Original-Message-ID"],
            fields["Disposition"]) == ("bobs-pc; jmapd tests", "rfc822; bob@example.com",
                                       "<plan-1@elsewhere.example>",
                                       "manual-action/MDN-sent-manually; displayed")
    assert b"Subject: World domination" in out.raw and b"Read me." not in out.raw


def test_include_original_message_and_extension_fields(core, bob, asked):
    """§2 includeOriginalMessage: the original as the third part; extensionFields
    become fields of the report (RFC 8098 §3.3); a null reportingUA is left out."""
    send(bob, {"k": mdn(asked, includeOriginalMessage=True,
                        extensionFields={"X-Example-Ext": "example.com"})})
    [out] = core.outbox
    parts = out.message.get_payload()
    assert parts[2].get_content_type() == "message/rfc822"
    assert b"Read me." in out.raw
    assert b"X-Example-Ext: example.com\r\n" in out.raw and b"Reporting-UA" not in out.raw


def test_alice_sends_bob_replies_with_an_mdn_and_her_submission_shows_displayed(core, jmap, bob):
    """§1 case 3 and RFC 8621 §7: alice asks for a receipt, bob's MDN/send delivers it
    to her, and her EmailSubmission gets mdnBlobIds and displayed "yes"; MDN/parse of
    that blob finds her sent Email again (§2.2 forEmailId)."""
    using = (CORE, MAIL, SUBMISSION)
    created = jmap.request([
        ["Email/set", {"accountId": "alice", "create": {"e": {
            "mailboxIds": {jmap.mailbox_ids()["Sent"]: True}, "subject": "Lunch?",
            "from": [{"email": "alice@example.com"}], "to": [{"email": "bob@example.com"}],
            "header:Disposition-Notification-To:asText": "alice@example.com",  # §3.2
            "bodyValues": {"1": {"value": "Noon?"}},
            "textBody": [{"partId": "1", "type": "text/plain"}]}}}, "0"],
        ["EmailSubmission/set", {"accountId": "alice", "create": {
            "s": {"identityId": "Iprimary", "emailId": "#e"}}}, "1"]], using)["methodResponses"]
    sent_id, submission_id = created[0][1]["created"]["e"]["id"], created[1][1]["created"]["s"]["id"]
    [received] = bob.call("Email/query", {"accountId": "bob"})["ids"]
    asks = bob.call("Email/get", {"accountId": "bob", "ids": [received], "properties": [
        "header:Disposition-Notification-To:asAddresses"]})["list"][0]
    assert asks["header:Disposition-Notification-To:asAddresses"] == [
        {"name": None, "email": "alice@example.com"}]
    send(bob, {"r": mdn(received)})
    submission = jmap.call("EmailSubmission/get", {"accountId": "alice", "ids": [submission_id]},
                           using)["list"][0]
    assert submission["deliveryStatus"]["bob@example.com"]["displayed"] == "yes"
    [blob_id] = submission["mdnBlobIds"]
    parsed = jmap.call("MDN/parse", {"accountId": "alice", "blobIds": [blob_id]}, USING)
    assert parsed["parsed"][blob_id]["forEmailId"] == sent_id
    assert parsed["parsed"][blob_id]["disposition"] == DISPLAYED
    assert parsed["parsed"][blob_id]["finalRecipient"] == "rfc822; bob@example.com"
    assert len(jmap.call("Email/query", {"accountId": "alice"})["ids"]) == 2  # sent + receipt


def test_client_final_recipient_the_identity_allows_is_used(core, bob, asked):
    """§2 finalRecipient overrides the computed one when the Identity allows it (§5:
    the Identity's address, compared case-insensitively); a sub-address it does not
    name is forbiddenFrom."""
    response = send(bob, {"k": mdn(asked, finalRecipient="RFC822;Bob@Example.COM")})
    assert "finalRecipient" not in response[0][1]["sent"]["k"]
    assert b"Final-Recipient: RFC822;Bob@Example.COM\r\n" in core.outbox[0].raw
    other = import_raw(core, bob, REQUEST.replace(b"plan-1", b"plan-2"),
                       [bob.mailbox_ids()["Inbox"]])
    assert not_sent(bob, {"k": mdn(other, finalRecipient="rfc822; bob+news@example.com")}) == {
        "k": "forbiddenFrom"}


def test_final_recipient_the_identity_does_not_allow_is_forbiddenFrom(core, bob, asked):
    """§2.1 forbiddenFrom, §5: the user may not use that finalRecipient."""
    assert not_sent(bob, {"k": mdn(asked, finalRecipient="rfc822; alice@example.com")}) == {
        "k": "forbiddenFrom"}
    assert core.outbox == [] and keywords(bob, asked) == {}


def test_unknown_email_or_one_asking_no_mdn_is_notFound(core, bob, asked):
    """§2.1 notFound: forEmailId cannot be found, or has no valid
    Disposition-Notification-To header field."""
    plain = import_raw(core, bob, REQUEST.replace(b"Disposition-Notification-To", b"X-Note"),
                       [bob.mailbox_ids()["Inbox"]])
    broken = import_raw(core, bob, REQUEST.replace(b"Carol <carol@elsewhere.example>\r\n\r\n",
                                                   b"not an address\r\n\r\n"),
                        [bob.mailbox_ids()["Inbox"]])
    assert not_sent(bob, {"a": mdn("Enope"), "b": mdn(plain), "c": mdn(broken)}) == {
        "a": "notFound", "b": "notFound", "c": "notFound"}


def test_mdnsent_already_set_is_mdnAlreadySent(core, bob, asked):
    """§2.1 mdnAlreadySent (and the §3.1 example): the Email has $mdnsent."""
    send(bob, {"k": mdn(asked)})
    response = send(bob, {"k": mdn(asked)})
    assert response[0][1]["notSent"]["k"]["type"] == "mdnAlreadySent"
    assert len(response) == 1 and len(core.outbox) == 1  # no second report, no Email/set


def test_two_mdns_for_one_email_in_one_call_send_one(core, bob, asked):
    """§2.1: "The client MUST NOT issue an MDN/send request if the message has the
    $mdnsent keyword set": the second of one call is mdnAlreadySent too."""
    response = send(bob, {"a": mdn(asked), "b": mdn(asked)})
    assert list(response[0][1]["sent"]) == ["a"]
    assert response[0][1]["notSent"]["b"]["type"] == "mdnAlreadySent"
    assert len(core.outbox) == 1


@pytest.mark.parametrize("fields, bad", [
    ({"forEmailId": None}, ["forEmailId"]),              # §2: MUST NOT be null for MDN/send
    ({"disposition": None}, ["disposition"]),
    ({"disposition": {**DISPLAYED, "type": "read"}}, ["disposition"]),
    ({"disposition": {**DISPLAYED, "actionMode": "Manual-Action"}}, ["disposition"]),
    ({"originalMessageId": "<x@y>"}, ["originalMessageId"]),  # server-set
    ({"error": ["x"]}, ["error"]),
    ({"mdnGateway": "dns; x"}, ["mdnGateway"]),
    ({"extension": {"X-A": "b"}}, ["extension"]),        # the §3.1 example's name: unknown
    ({"extensionFields": {"Disposition": "x"}}, ["extensionFields"]),
    ({"extensionFields": {"X-A": "b\r\nBcc: c"}}, ["extensionFields"]),
    ({"includeOriginalMessage": "yes"}, ["includeOriginalMessage"]),
    ({"finalRecipient": "bob@example.com"}, ["finalRecipient"]),
])
def test_invalid_mdn_objects_are_invalidProperties(core, bob, asked, fields, bad):
    """§2.1 invalidProperties: "The record given is invalid in some way"."""
    response = send(bob, {"k": {**mdn(asked), **fields}})
    error = response[0][1]["notSent"]["k"]
    assert (error["type"], error["properties"]) == ("invalidProperties", bad)
    assert core.outbox == []


def test_mdn_that_is_no_object_is_invalidProperties(bob, asked):
    assert not_sent(bob, {"k": "displayed"}) == {"k": "invalidProperties"}


@pytest.mark.parametrize("updates", [
    None,                                                  # no onSuccessUpdateEmail
    {},
    {"#k": {"keywords/$seen": True}},                      # does not set $mdnsent
    {"#k": {"keywords/$MDNSent": True}},                   # §1.2: MUST be lowercase
    {"#k": {"keywords/$mdnsent": None}},
    {"#other": {"keywords/$mdnsent": True}},               # not a creation id of send
    {"Eplain": {"keywords/$mdnsent": True}},               # not a back-reference
    {"#k": ["keywords/$mdnsent"]},
])
def test_send_that_would_not_set_mdnsent_is_rejected(core, bob, asked, updates):
    """§2.1: "the server MUST reject an MDN/send that does not result in setting the
    keyword $mdnsent": invalidArguments, and nothing is sent."""
    response = send(bob, {"k": mdn(asked)}, updates=updates)
    assert response[0][0] == "error" and response[0][1]["type"] == "invalidArguments"
    assert core.outbox == [] and keywords(bob, asked) == {}


def test_a_whole_keywords_patch_setting_mdnsent_is_accepted(core, bob, asked):
    """§2.1: any patch that results in $mdnsent being set will do."""
    response = send(bob, {"k": mdn(asked)}, updates={"#k": {"keywords": {"$mdnsent": True,
                                                                       "$seen": True}}})
    assert response[0][1]["sent"] and keywords(bob, asked) == {"$mdnsent": True, "$seen": True}


def test_unknown_identity_or_account_is_invalidArguments(bob, asked):
    """§2.1: "If the accountId or identityId given cannot be found, the method call is
    rejected with an invalidArguments error"."""
    assert send(bob, {"k": mdn(asked)}, identity="Inope")[0][1]["type"] == "invalidArguments"
    response = bob.request([["MDN/send", {"accountId": "nobody", "identityId": "Iprimary",
                                          "send": {}}, "0"]], USING)["methodResponses"]
    assert response[0][1]["type"] == "invalidArguments"


def test_send_needs_the_mail_capability_in_using(bob, asked):
    """§2.1: using MUST contain both urn:ietf:params:jmap:mdn and ...:mail."""
    assert send(bob, {"k": mdn(asked)}, using=(CORE, MDN))[0][1]["type"] == "unknownMethod"
    assert send(bob, {"k": mdn(asked)}, using=(CORE, MAIL))[0][1]["type"] == "unknownMethod"


def test_user_not_allowed_to_send_is_forbidden(core, bob, asked):
    """§2.1 forbidden: MDN/send would violate a permissions policy."""
    jmapd.forbid_sending(core, "bob", "sending is suspended")
    assert not_sent(bob, {"k": mdn(asked)}) == {"k": "forbidden"}


def test_report_over_the_size_limit_is_tooLarge(core, bob, asked):
    """§2.1 tooLarge: the MDN would exceed the server's maximum message size."""
    core.limits["maxSizeSubmission"] = 300
    response = send(bob, {"k": mdn(asked)})
    error = response[0][1]["notSent"]["k"]
    assert (error["type"], error["maxSize"]) == ("tooLarge", 300)


def test_mdn_to_a_local_address_is_delivered_to_its_inbox(core, jmap, bob):
    """The normal submission path (section 10): a local recipient gets the report."""
    raw = REQUEST.replace(b"Carol <carol@elsewhere.example>", b"alice@example.com")
    asked = import_raw(core, bob, raw, [bob.mailbox_ids()["Inbox"]])
    send(bob, {"k": mdn(asked, textBody="Seen at noon.")})
    [receipt] = jmap.call("Email/query", {"accountId": "alice"})["ids"]
    got = jmap.call("Email/get", {"accountId": "alice", "ids": [receipt],
                                  "properties": ["subject", "header:Return-Path"]})["list"][0]
    assert got["subject"] == "Read: World domination" and got["header:Return-Path"] == " <>"
    assert core.outbox == []
