"""RFC 9404 §4.3 Blob/lookup (which Mailboxes, Threads and Emails reference a blob),
§5 (no leak across accounts), §6.2 unknownDataType, and §6.3: a data type that can
reference blobs declares it and is looked up, including types added later."""

import base64

import pytest

import jmapd
from conftest import import_raw

CORE, MAIL, BLOB = jmapd.URN_CORE, jmapd.URN_MAIL, jmapd.URN_BLOB
USING = (CORE, MAIL, BLOB)
TYPES = ["Mailbox", "Thread", "Email"]
MESSAGE = (b"From: a@example.com\r\nTo: alice@example.com\r\nSubject: report\r\n"
           b"Message-ID: <r1@example.com>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n"
           b"\r\nsee attached\r\n--b\r\nContent-Type: application/pdf\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n")


def lookup(jmap, ids, type_names=TYPES, account_id="alice"):
    return jmap.call("Blob/lookup", {"accountId": account_id, "typeNames": type_names,
                                     "ids": ids}, using=USING)


def matched(jmap, blob_id, type_names=TYPES):
    result = lookup(jmap, [blob_id], type_names)
    assert [info["id"] for info in result["list"]] == [blob_id]
    return result["list"][0]["matchedIds"]


@pytest.fixture
def report(core, jmap):
    """The message imported into Inbox and Archive: (email, its blobId, attachment blobId)."""
    boxes = jmap.mailbox_ids()
    email_id = import_raw(core, jmap, MESSAGE, [boxes["Inbox"], boxes["Archive"]])
    email = jmap.call("Email/get", {"accountId": "alice", "ids": [email_id],
                                    "properties": ["blobId", "threadId", "attachments"]})["list"][0]
    return email, email["blobId"], email["attachments"][0]["blobId"]


def test_a_message_blob_is_found_in_its_email_thread_and_mailboxes(jmap, report):
    """§4.3: the Email references its blob; so do its Thread and each Mailbox it is in."""
    email, blob_id, _ = report
    boxes = jmap.mailbox_ids()
    assert matched(jmap, blob_id) == {
        "Mailbox": sorted([boxes["Inbox"], boxes["Archive"]]), "Thread": [email["threadId"]],
        "Email": [email["id"]]}


def test_an_attachment_blob_is_found_through_its_message(jmap, report):
    """§4.3: "you could discover this blobId by looking at this object" - a body part's
    blobId is discovered through the Email's attachments."""
    email, _, attachment = report
    assert matched(jmap, attachment)["Email"] == [email["id"]]
    assert matched(jmap, attachment)["Thread"] == [email["threadId"]]


def test_every_email_holding_the_blob_is_listed(core, jmap, report):
    """§4.3: matchedIds maps the type name to all the ids that reference the blob."""
    email, blob_id, _ = report
    second = import_raw(core, jmap, MESSAGE, [jmap.mailbox_ids()["Drafts"]])
    assert matched(jmap, blob_id, ["Email"]) == {"Email": sorted([email["id"], second])}


def test_only_the_asked_types_are_matched(jmap, report):
    """§4.3: matchedIds has the requested type names, no others."""
    email, blob_id, _ = report
    assert matched(jmap, blob_id, ["Email"]) == {"Email": [email["id"]]}


def test_an_unknown_blob_is_listed_with_empty_arrays(jmap):
    """§4.3: a blob that does not exist still gets an empty array for each type (the
    RFC's example lists it in notFound instead; the text's MUST wins)."""
    result = lookup(jmap, ["not-a-blob"])
    assert result == {"accountId": "alice", "notFound": [],
                      "list": [{"id": "not-a-blob", "matchedIds": {t: [] for t in TYPES}}]}


def test_another_users_lookup_learns_nothing(bob, report):
    """§5: if the user could not discover the blob by queries, a lookup cannot tell."""
    _, blob_id, _ = report
    result = bob.call("Blob/lookup", {"accountId": "bob", "typeNames": TYPES,
                                      "ids": [blob_id]}, using=USING)
    assert result["list"] == [{"id": blob_id, "matchedIds": {t: [] for t in TYPES}}]


def test_a_destroyed_email_no_longer_references_its_blob(jmap, report):
    """§4.3: references are the live objects'."""
    email, blob_id, _ = report
    jmap.call("Email/set", {"accountId": "alice", "destroy": [email["id"]]})
    assert matched(jmap, blob_id) == {t: [] for t in TYPES}


def test_an_upload_alone_is_referenced_by_nothing(jmap):
    """§4.3: an uploaded blob no object uses has empty matches."""
    created = jmap.call("Blob/upload", {"accountId": "alice", "create": {"a": {"data": [
        {"data:asBase64": base64.b64encode(MESSAGE).decode()}]}}}, using=USING)["created"]
    assert matched(jmap, created["a"]["id"]) == {t: [] for t in TYPES}


# -- §6.2 unknownDataType --

@pytest.mark.parametrize("type_name", ["NoSuchType", "Identity", "PushSubscription",
                                       "SearchSnippet", "email"])
def test_a_type_that_cannot_reference_blobs_is_unknown_data_type(jmap, type_name):
    """§4.3: only names whose "Can reference blobs" is true (§6.3) may be given."""
    assert jmap.error("Blob/lookup", {"accountId": "alice", "typeNames": ["Email", type_name],
                                      "ids": ["x"]}, using=USING) == "unknownDataType"


def test_a_type_whose_capability_is_not_used_is_unknown_data_type(jmap):
    """§4.3: the capability defining each type must be used by the request."""
    assert jmap.error("Blob/lookup", {"accountId": "alice", "typeNames": ["Email"],
                                      "ids": ["x"]}, using=(CORE, BLOB)) == "unknownDataType"


@pytest.mark.parametrize("args", [{"typeNames": ["Email"]}, {"ids": ["x"]},
                                  {"typeNames": "Email", "ids": ["x"]},
                                  {"typeNames": ["Email"], "ids": ["not an id!"]}])
def test_bad_arguments_are_invalid_arguments(jmap, args):
    """§4.3: typeNames is a String[], ids an Id[]; both are required."""
    assert jmap.error("Blob/lookup", {"accountId": "alice", **args}, using=USING) == \
        "invalidArguments"


def test_blob_lookup_needs_the_blob_capability(jmap):
    """§4: Blob/lookup is selected by urn:ietf:params:jmap:blob."""
    assert jmap.error("Blob/lookup", {"accountId": "alice", "typeNames": [], "ids": []},
                      using=(CORE, MAIL)) == "unknownMethod"


# -- §6.3: types declare whether they reference blobs --

SCRIPTS = "urn:example:scripts"


class Script(jmapd.DataType):
    """Test-only type whose objects hold a blob, as a later extension's would."""
    name = "Script"
    capability = SCRIPTS
    id_prefix = "S"
    methods = ("get", "set")
    references_blobs = True
    properties = {"id": jmapd.Prop(jmapd.Id, server_set=True, immutable=True),
                  "blobId": jmapd.Prop(jmapd.Id)}

    def after_write(self, context, object_id, record, existing):
        if record is not None:
            context.store.add_blob_ref(context.account.id, record["blobId"],
                                       f"Script/{object_id}", "text/plain", None)


def test_a_type_added_later_registers_itself_for_lookup(core, jmap):
    """§3.1 supportedTypeNames and §4.3: a type declaring references_blobs is listed and
    looked up through the blob refs it holds, with no list to edit."""
    core.add_datatype(Script())
    capability = core.session("alice", "http://x")["accounts"]["alice"]["accountCapabilities"]
    assert capability[BLOB]["supportedTypeNames"] == TYPES + ["Script"]
    blob_id = jmapd.upload_blob(core, core.user("alice"), "alice", b"keep;", None)["blobId"]
    created = jmap.call("Script/set", {"accountId": "alice", "create": {"s": {
        "blobId": blob_id}}}, using=(CORE, SCRIPTS))["created"]["s"]["id"]
    result = jmap.call("Blob/lookup", {"accountId": "alice", "typeNames": ["Script", "Email"],
                                       "ids": [blob_id]}, using=(CORE, BLOB, SCRIPTS, MAIL))
    assert result["list"][0]["matchedIds"] == {"Script": [created], "Email": []}
