"""RFC 8621 §4.7 Email/copy and §4.9 Email/parse."""

import jmapd

MESSAGE = (b"From: Carol <carol@example.org>\r\nTo: alice@example.com\r\n"
           b"Subject: Minutes\r\nMessage-ID: <minutes@example.org>\r\n"
           b"Date: Mon, 16 Nov 2026 08:00:00 +0000\r\n\r\nMinutes of the meeting.\r\n")
FORWARD = (b"From: Dave <dave@example.net>\r\nTo: alice@example.com\r\nSubject: Fwd: Minutes\r\n"
           b"Message-ID: <fwd@example.net>\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
           b"Content-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\n"
           b"Content-Type: message/rfc822\r\n\r\n" + MESSAGE + b"\r\n--b--\r\n")


def upload(core, raw, account="alice"):
    return jmapd.upload_blob(core, core.user("alice"), account, raw, "message/rfc822")["blobId"]


def import_one(jmap, core, raw, mailbox, account="alice"):
    result = jmap.call("Email/import", {"accountId": account, "emails": {"m": {
        "blobId": upload(core, raw, account), "mailboxIds": {mailbox: True},
        "receivedAt": "2026-11-17T08:30:00Z", "keywords": {"$seen": True}}}})
    return result["created"]["m"]


def test_parse_returns_the_default_properties_without_storing(jmap, core):
    """§4.9: the default properties; nothing is added to the account."""
    blob = upload(core, MESSAGE)
    state = jmap.call("Email/get", {"accountId": "alice", "ids": []})["state"]
    result = jmap.call("Email/parse", {"accountId": "alice", "blobIds": [blob]})
    email = result["parsed"][blob]
    assert set(email) == set(jmapd.EMAIL_PARSE_PROPERTIES)
    assert email["subject"] == "Minutes"
    assert email["from"] == [{"name": "Carol", "email": "carol@example.org"}]
    assert email["messageId"] == ["minutes@example.org"]
    assert (result["notParsable"], result["notFound"]) == (None, None)
    assert jmap.call("Email/get", {"accountId": "alice", "ids": []})["state"] == state


def test_parse_gives_null_metadata_and_the_blob_size(jmap, core):
    """§4.9: id, mailboxIds, keywords, receivedAt (and threadId here) are null."""
    blob = upload(core, MESSAGE)
    email = jmap.call("Email/parse", {"accountId": "alice", "blobIds": [blob], "properties": [
        "id", "mailboxIds", "keywords", "receivedAt", "threadId", "blobId", "size"]})["parsed"][blob]
    assert email == {"id": None, "mailboxIds": None, "keywords": None, "receivedAt": None,
                     "threadId": None, "blobId": blob, "size": len(MESSAGE)}


def test_parse_reads_an_attached_message_by_its_part_blob(jmap, core):
    """§4.9: a message/rfc822 attachment's blobId parses as an Email."""
    inbox = jmap.mailbox_ids()["Inbox"]
    created = import_one(jmap, core, FORWARD, inbox)
    attachment = jmap.call("Email/get", {"accountId": "alice", "ids": [created["id"]],
                                         "properties": ["attachments"]})["list"][0]["attachments"][0]
    assert attachment["type"] == "message/rfc822"
    parsed = jmap.call("Email/parse", {"accountId": "alice", "blobIds": [attachment["blobId"]],
                                       "properties": ["subject", "bodyValues"],
                                       "fetchAllBodyValues": True})["parsed"]
    email = parsed[attachment["blobId"]]
    assert email["subject"] == "Minutes"
    assert list(email["bodyValues"].values())[0]["value"] == "Minutes of the meeting.\n"


def test_parse_sorts_unknown_and_unparsable_blobs(jmap, core):
    """§4.9: notFound for a blob the account lacks, notParsable for one without headers."""
    not_mail = jmapd.upload_blob(core, core.user("alice"), "alice", b"\x89PNG\r\n\x1a\n", "image/png")
    result = jmap.call("Email/parse", {"accountId": "alice",
                                       "blobIds": [not_mail["blobId"], "Gnope"]})
    assert result == {"accountId": "alice", "parsed": None,
                      "notParsable": [not_mail["blobId"]], "notFound": ["Gnope"]}


def test_parse_refuses_an_unknown_property(jmap, core):
    """§4.9 (as §4.2): an unknown property is invalidArguments."""
    assert jmap.error("Email/parse", {"accountId": "alice", "blobIds": [upload(core, MESSAGE)],
                                      "properties": ["nonesuch"]}) == "invalidArguments"


def add_team_account(core):
    """A second account alice may use (sharing will grant such accounts for real)."""
    core.store.db.execute("INSERT INTO account (id, name, owner) VALUES ('team', 'Team', 'alice')")
    core.call("alice", "Mailbox/set", {"accountId": "team", "create": {
        "i": {"name": "Inbox", "role": "inbox"}}})
    return jmapd.mailbox_paths(core, jmapd.User("alice", "", None, "", "team"))["Inbox"]


def test_copy_between_accounts_creates_an_email_in_the_target(jmap, core):
    """§4.7: the copy gets a new id, the same blob, size and the given mailboxes/keywords."""
    original = import_one(jmap, core, MESSAGE, jmap.mailbox_ids()["Inbox"])
    team_inbox = add_team_account(core)
    result = jmap.call("Email/copy", {"fromAccountId": "alice", "accountId": "team", "create": {
        "c": {"id": original["id"], "mailboxIds": {team_inbox: True}, "keywords": {}}}})
    copy = result["created"]["c"]
    assert copy["id"] != original["id"] and copy["blobId"] == original["blobId"]
    assert copy["size"] == len(MESSAGE) and set(copy) == {"id", "blobId", "threadId", "size"}
    got = jmap.call("Email/get", {"accountId": "team", "ids": [copy["id"]],
                                  "properties": ["subject", "mailboxIds", "keywords", "threadId"]})
    assert got["list"][0] == {"id": copy["id"], "subject": "Minutes",
                              "mailboxIds": {team_inbox: True}, "keywords": {},
                              "threadId": copy["threadId"]}
    assert jmapd.download_blob(core, core.user("alice"), "team", copy["blobId"])[0] == MESSAGE


def test_copy_with_on_success_destroy_original_moves_the_email(jmap, core):
    """§4.7 / RFC 8620 §5.4: the implicit Email/set destroys the original."""
    original = import_one(jmap, core, MESSAGE, jmap.mailbox_ids()["Inbox"])
    team_inbox = add_team_account(core)
    responses = jmap.request([["Email/copy", {
        "fromAccountId": "alice", "accountId": "team", "onSuccessDestroyOriginal": True,
        "create": {"c": {"id": original["id"], "mailboxIds": {team_inbox: True}}}}, "0"]])
    names = [r[0] for r in responses["methodResponses"]]
    assert names == ["Email/copy", "Email/set"]
    assert responses["methodResponses"][1][1]["destroyed"] == [original["id"]]
    assert jmap.call("Email/get", {"accountId": "alice", "ids": [original["id"]]})[
        "notFound"] == [original["id"]]


def test_copy_from_another_users_account_is_fromAccountNotFound(jmap, core):
    """§4.7 / RFC 8620 §5.4: bob's account is not visible to alice."""
    assert jmap.error("Email/copy", {"fromAccountId": "bob", "accountId": "alice",
                                     "create": {"c": {"id": "E1"}}}) == "fromAccountNotFound"
