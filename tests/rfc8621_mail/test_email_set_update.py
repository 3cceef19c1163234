"""RFC 8621 §4.6 Email/set update and destroy, with RFC 8620 §5.3 PatchObject rules,
RFC 8621 §2.5 onDestroyRemoveEmails, and writers racing on one Email.

Complements test_email_get.py (basic keyword/mailbox patches, immutable properties one
at a time, destroy) and test_thread.py (count arithmetic on a larger corpus)."""

import threading

import pytest

import jmapd
from conftest import Jmap, import_raw

A = "alice"
COUNTS = ("totalEmails", "unreadEmails", "totalThreads", "unreadThreads")


def message(tag, subject="Hello", extra=()):
    headers = [("From", "Carol <carol@example.org>"), ("To", "alice@example.com"),
               ("Subject", subject), ("Message-ID", f"<{tag}@example.org>"),
               ("Date", "Mon, 16 Nov 2026 08:00:00 +0000"), *extra]
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (head + f"\r\nBody of {tag}.\r\n").encode()


@pytest.fixture
def boxes(jmap):
    return jmap.mailbox_ids()


@pytest.fixture
def inbox(boxes):
    return boxes["Inbox"]


@pytest.fixture
def email_id(core, jmap, inbox):
    """One Email in the Inbox with keywords {$seen, old}."""
    return import_raw(core, jmap, message("one"), [inbox], ["$seen", "old"])


def email_set(jmap, **args):
    return jmap.call("Email/set", {"accountId": A, **args})


def update(jmap, email_id, patch):
    """(updated, notUpdated) of one update."""
    result = email_set(jmap, update={email_id: patch})
    return result["updated"], result["notUpdated"]


def props(jmap, email_id, *names):
    got = jmap.call("Email/get", {"accountId": A, "ids": [email_id], "properties": list(names)})
    assert got["notFound"] == [], got
    return {k: v for k, v in got["list"][0].items() if k != "id"}


def state(jmap, type_name="Email"):
    return jmap.call(f"{type_name}/get", {"accountId": A, "ids": []})["state"]


def counts(jmap, mailbox_id):
    got = jmap.call("Mailbox/get", {"accountId": A, "ids": [mailbox_id],
                                    "properties": list(COUNTS)})["list"][0]
    return tuple(got[c] for c in COUNTS)


def modseq(core, state_string):
    assert state_string.startswith(core.state_epoch), state_string
    return int(state_string[len(core.state_epoch):])


# -- RFC 8621 §4.6: keywords, whole replacement and by patch -----------------------------------

def test_4_6_keywords_whole_replacement_replaces_the_set_lower_cased(jmap, email_id):
    """§4.6 "replace the entire set of keywords"; §4.1.1 keywords are stored lower-case."""
    updated, failed = update(jmap, email_id, {"keywords": {"$Flagged": True, "Work": True,
                                                          "WORK": True}})
    assert (updated, failed) == ({email_id: None}, None)
    assert props(jmap, email_id, "keywords") == {"keywords": {"$flagged": True, "work": True}}


def test_4_6_keywords_null_resets_to_the_default_empty_set(jmap, email_id):
    """RFC 8620 §5.3: null sets a property to its default; RFC 8621 §4.1.1 default {}."""
    assert update(jmap, email_id, {"keywords": None}) == ({email_id: None}, None)
    assert props(jmap, email_id, "keywords") == {"keywords": {}}


def test_5_3_null_on_an_absent_keyword_is_a_no_op(jmap, email_id):
    """RFC 8620 §5.3: "If the key is not present in the parent, this a no-op"."""
    before = state(jmap)
    assert update(jmap, email_id, {"keywords/$flagged": None}) == ({email_id: None}, None)
    assert props(jmap, email_id, "keywords") == {"keywords": {"$seen": True, "old": True}}
    assert state(jmap) == before


def test_4_6_null_on_keywords_seen_removes_it_and_changes_unread_counts(jmap, email_id, inbox):
    """§4.6 patch keywords/$seen: null marks it unread; §2 the Mailbox's unread counts follow."""
    assert counts(jmap, inbox) == (1, 0, 1, 0)
    assert update(jmap, email_id, {"keywords/$seen": None}) == ({email_id: None}, None)
    assert props(jmap, email_id, "keywords") == {"keywords": {"old": True}}
    assert counts(jmap, inbox) == (1, 1, 1, 1)
    assert update(jmap, email_id, {"keywords/$Seen": True}) == ({email_id: None}, None)
    assert props(jmap, email_id, "keywords") == {"keywords": {"$seen": True, "old": True}}
    assert counts(jmap, inbox) == (1, 0, 1, 0)


def test_4_1_1_null_on_an_upper_case_keyword_removes_the_keyword(jmap, email_id):
    """§4.1.1: "a keyword is a case-insensitive string": $SEEN is the keyword $seen, so
    removing $SEEN removes it (as adding $SEEN adds $seen)."""
    assert update(jmap, email_id, {"keywords/$SEEN": None}) == ({email_id: None}, None)
    assert props(jmap, email_id, "keywords") == {"keywords": {"old": True}}


def test_4_1_1_a_keyword_of_255_characters_is_accepted(jmap, email_id):
    """§4.1.1: 1-255 characters of %x21-%x7e minus ( ) { ] % * " \\ ; the edges allowed."""
    longest = "k" * 254 + "~"
    edgy = "!#$&'+,-./:;<=>?@[^_`|}"
    assert update(jmap, email_id, {"keywords/" + "k" * 254 + "~0": True,
                                   "keywords/" + edgy.replace("~", "~0").replace("/", "~1"): True}
                  ) == ({email_id: None}, None)
    assert props(jmap, email_id, "keywords") == {"keywords": {
        "$seen": True, "old": True, longest: True, edgy: True}}


@pytest.mark.parametrize("patch", [
    {"keywords": {"bad keyword": True}},
    {"keywords/a(b": True}, {"keywords/a)b": True}, {"keywords/a{b": True},
    {"keywords/a]b": True}, {"keywords/a%b": True}, {"keywords/a*b": True},
    {'keywords/a"b': True}, {"keywords/a\\b": True},
    {"keywords/": True}, {"keywords/" + "k" * 256: True}, {"keywords/caf\u00e9": True},
    {"keywords/tab\tkw": True}, {"keywords/a\x7fb": True},
    {"keywords": {"$seen": "yes"}}, {"keywords/$flagged": False}, {"keywords/$flagged": 1},
    {"keywords/$flagged": {}}, {"keywords": ["$seen"]}, {"keywords": "$seen"},
    {"keywords/$seen": 1},
    {"keywords": {"$seen": 1, "old": 1.0}},
], ids=["space", "lparen", "rparen", "lbrace", "rbracket", "percent", "star", "quote",
        "backslash", "empty", "256-chars", "non-ascii", "tab", "del", "value-string",
        "value-false", "value-1", "value-object", "list", "string", "existing-value-1",
        "existing-values-numbers"])
def test_4_1_1_an_invalid_keyword_or_value_is_invalidProperties(jmap, email_id, patch):
    """§4.1.1 keyword syntax and "The value for each key ... MUST be true"; RFC 8620 §5.3
    invalidProperties naming keywords; the Email is left unchanged."""
    before = state(jmap)
    updated, failed = update(jmap, email_id, patch)
    assert updated is None
    assert failed[email_id]["type"] == "invalidProperties"
    assert failed[email_id]["properties"] == ["keywords"]
    assert props(jmap, email_id, "keywords") == {"keywords": {"$seen": True, "old": True}}
    assert state(jmap) == before


def test_4_6_more_keywords_than_the_limit_is_tooManyKeywords(core, jmap, email_id):
    """§4.6 tooManyKeywords: jmapd's limit is maxKeywordsPerEmail (256, --limit)."""
    core.limits["maxKeywordsPerEmail"] = 3
    assert update(jmap, email_id, {"keywords/a": True})[0] == {email_id: None}
    updated, failed = update(jmap, email_id, {"keywords/b": True})
    assert (updated, failed[email_id]["type"]) == (None, "tooManyKeywords")
    assert props(jmap, email_id, "keywords") == {"keywords": {"$seen": True, "old": True,
                                                              "a": True}}


def test_4_6_more_mailboxes_than_max_mailboxes_per_email_is_tooManyMailboxes(
        core, jmap, email_id, boxes):
    """§4.6 tooManyMailboxes, at the limit the session advertises (§1.3.1)."""
    core.limits["maxMailboxesPerEmail"] = 2
    session = core.session("alice", "http://x")
    assert session["accounts"][A]["accountCapabilities"][jmapd.URN_MAIL][
        "maxMailboxesPerEmail"] == 2
    two = {boxes["Archive"]: True, boxes["Family"]: True}
    assert update(jmap, email_id, {"mailboxIds": two})[0] == {email_id: None}
    updated, failed = update(jmap, email_id, {f"mailboxIds/{boxes['Inbox']}": True})
    assert (updated, failed[email_id]["type"]) == (None, "tooManyMailboxes")


def test_4_6_a_create_over_a_limit_is_refused_too(core, jmap, boxes):
    core.limits["maxKeywordsPerEmail"] = 1
    result = jmap.call("Email/set", {"accountId": A, "create": {"d": {
        "mailboxIds": {boxes["Drafts"]: True}, "keywords": {"$draft": True, "$seen": True},
        "subject": "x"}}})
    assert result["notCreated"]["d"]["type"] == "tooManyKeywords"


# -- RFC 8621 §4.6: mailboxIds -------------------------------------------------------------------

def test_4_6_mailbox_ids_whole_replacement_moves_and_recounts(jmap, email_id, boxes, inbox):
    """§4.6 "replace the entire set of ... Mailboxes"; §2 counts leave one and join others."""
    archive, family = boxes["Archive"], boxes["Family"]
    assert update(jmap, email_id, {"mailboxIds": {archive: True, family: True}}) == (
        {email_id: None}, None)
    assert props(jmap, email_id, "mailboxIds") == {"mailboxIds": {archive: True, family: True}}
    assert [counts(jmap, m) for m in (inbox, archive, family)] == [
        (0, 0, 0, 0), (1, 0, 1, 0), (1, 0, 1, 0)]
    in_archive = jmap.call("Email/query", {"accountId": A, "filter": {"inMailbox": archive}})
    assert in_archive["ids"] == [email_id]


def test_4_6_mailbox_ids_patch_adds_a_second_mailbox(jmap, email_id, boxes, inbox):
    """§4.6 add one Mailbox by patch mailboxIds/{id}; the other membership stays."""
    family = boxes["Family"]
    assert update(jmap, email_id, {f"mailboxIds/{family}": True}) == ({email_id: None}, None)
    assert props(jmap, email_id, "mailboxIds") == {"mailboxIds": {inbox: True, family: True}}
    assert counts(jmap, family) == (1, 0, 1, 0) and counts(jmap, inbox) == (1, 0, 1, 0)


@pytest.mark.parametrize("make_patch", [
    lambda inbox, other: {f"mailboxIds/{inbox}": None},
    lambda inbox, other: {"mailboxIds": {}},
    lambda inbox, other: {"mailboxIds": {"M999": True}},
    lambda inbox, other: {"mailboxIds/M999": True},
    lambda inbox, other: {"mailboxIds": {inbox: True, "M999": True}},
    lambda inbox, other: {f"mailboxIds/{other}": True},
    lambda inbox, other: {f"mailboxIds/{inbox}": False},
    lambda inbox, other: {"mailboxIds": {inbox: 1}},
    lambda inbox, other: {"mailboxIds": [inbox]},
    lambda inbox, other: {"mailboxIds": None},
    lambda inbox, other: {"mailboxIds/#nope": True},
], ids=["patch-out-of-last", "empty", "unknown", "unknown-by-patch", "one-unknown",
        "bobs-mailbox", "value-false", "value-1", "list", "null", "unknown-creation-id"])
def test_4_6_invalid_mailbox_ids_are_invalidProperties(jmap, bob, email_id, inbox, make_patch):
    """§4.1.1 mailboxIds: at least one Mailbox, each an existing one of this account, each
    value true; RFC 8620 §5.3 invalidProperties (foreign key) naming mailboxIds."""
    patch = make_patch(inbox, bob.mailbox_ids()["Inbox"])
    before = state(jmap)
    updated, failed = update(jmap, email_id, patch)
    assert updated is None
    assert failed[email_id]["type"] == "invalidProperties"
    assert failed[email_id]["properties"] == ["mailboxIds"]
    assert props(jmap, email_id, "mailboxIds") == {"mailboxIds": {inbox: True}}
    assert state(jmap) == before


def test_5_3_creation_id_mailbox_references_in_updates(core, jmap, inbox):
    """RFC 8620 §5.3: "#creationId" refers to a Mailbox created earlier in the request,
    both as a mailboxIds/#id patch path and as a key of a whole mailboxIds value."""
    first = import_raw(core, jmap, message("first"), [inbox])
    second = import_raw(core, jmap, message("second", "Other"), [inbox])
    response = jmap.request([
        ["Mailbox/set", {"accountId": A, "create": {"nb": {"name": "New box"}}}, "m"],
        ["Email/set", {"accountId": A, "update": {
            first: {"mailboxIds/#nb": True},
            second: {"mailboxIds": {"#nb": True}}}}, "e"]])["methodResponses"]
    new_box = response[0][1]["created"]["nb"]["id"]
    assert response[1][1]["updated"] == {first: None, second: None}
    assert props(jmap, first, "mailboxIds") == {"mailboxIds": {inbox: True, new_box: True}}
    assert props(jmap, second, "mailboxIds") == {"mailboxIds": {new_box: True}}
    assert counts(jmap, new_box) == (2, 2, 2, 2)


def test_5_3_request_created_ids_resolve_in_an_update(core, jmap, inbox, boxes):
    """RFC 8620 §3.3 createdIds with §5.3: a "#id" from the request's createdIds map, and
    the update's key itself may be a creation id."""
    email_id = import_raw(core, jmap, message("x"), [inbox])
    response = jmap.request([["Email/set", {"accountId": A, "update": {
        "#mine": {"mailboxIds": {"#box": True}}}}, "e"]],
        created_ids={"mine": email_id, "box": boxes["Family"]})
    assert response["methodResponses"][0][1]["updated"] == {email_id: None}
    assert props(jmap, email_id, "mailboxIds") == {"mailboxIds": {boxes["Family"]: True}}


def test_5_3_an_email_created_in_the_same_request_is_updated_by_creation_id(jmap, inbox, boxes):
    """RFC 8620 §5.3: an update keyed "#creationId" of an Email/set create earlier in the
    request; the answer is keyed by the real id."""
    response = jmap.request([
        ["Email/set", {"accountId": A, "create": {"d": {
            "mailboxIds": {inbox: True}, "subject": "Draft"}}}, "c"],
        ["Email/set", {"accountId": A, "update": {"#d": {
            "keywords/$draft": True, f"mailboxIds/{boxes['Drafts']}": True,
            f"mailboxIds/{inbox}": None}}}, "u"]])["methodResponses"]
    created = response[0][1]["created"]["d"]["id"]
    assert (response[1][1]["updated"], response[1][1]["notUpdated"]) == ({created: None}, None)
    assert props(jmap, created, "keywords", "mailboxIds", "subject") == {
        "keywords": {"$draft": True}, "mailboxIds": {boxes["Drafts"]: True}, "subject": "Draft"}


# -- RFC 8620 §5.3: PatchObject rules ------------------------------------------------------------

@pytest.mark.parametrize("patch", [
    {"subject/foo": "x"},                                   # inside a String
    {"receivedAt/x": "y"},                                  # inside a UTCDate
    {"keywords/$seen/x": True},                             # inside true
    {"keywords/absent/x": True},                            # parent does not exist
    {"mailboxIds/M1/x": True},
    {"textBody/0/type": "text/html"},                       # inside an array
    {"foo/bar": 1},                                         # unknown parent
    {"keywords": {}, "keywords/$seen": True},               # one path prefixes another
    {"mailboxIds": {"M4": True}, "mailboxIds/M1": None},
    {"keywords/$flagged": True, "keywords/$flagged/x": True},
    {"": True},
], ids=["in-string", "in-date", "in-true", "absent-parent", "in-mailbox-value", "in-array",
        "unknown-parent", "keywords-and-keyword", "mailboxIds-and-mailbox", "path-and-subpath",
        "empty-path"])
def test_5_3_an_invalid_patch_is_invalidPatch_and_changes_nothing(jmap, email_id, patch):
    """RFC 8620 §5.3: a path inside a non-object, a missing parent, inside an array, or
    two paths where one prefixes the other -> invalidPatch; nothing of it applied."""
    before = state(jmap)
    updated, failed = update(jmap, email_id, patch)
    assert updated is None
    assert failed[email_id]["type"] == "invalidPatch"
    assert props(jmap, email_id, "keywords", "mailboxIds") == {
        "keywords": {"$seen": True, "old": True}, "mailboxIds": {"M1": True}}
    assert state(jmap) == before


def test_5_3_a_patch_that_is_not_an_object_is_invalidPatch(jmap, email_id):
    """RFC 8620 §5.3: update values are PatchObjects (JSON objects)."""
    result = email_set(jmap, update={email_id: ["keywords"]})
    assert result["notUpdated"][email_id]["type"] == "invalidPatch"


def test_5_3_a_patch_of_an_unknown_property_is_invalidProperties(jmap, email_id):
    """RFC 8620 §5.3 invalidProperties: "properties that are invalid according to the type";
    every one listed, the valid part of the patch not applied."""
    updated, failed = update(jmap, email_id, {"foo": 1, "Keywords": {}, "keywords/$flagged": True})
    assert updated is None
    assert (failed[email_id]["type"], sorted(failed[email_id]["properties"])) == (
        "invalidProperties", ["Keywords", "foo"])
    assert props(jmap, email_id, "keywords") == {"keywords": {"$seen": True, "old": True}}


def test_5_3_json_pointer_escapes_in_a_keyword_path(jmap, email_id):
    """RFC 8620 §5.3 paths are JSON Pointers (RFC 6901): ~1 is "/", ~0 is "~"; a null
    patch on the escaped path removes the keyword again."""
    assert update(jmap, email_id, {"keywords/a~1b": True, "keywords/c~0d": True,
                                   "keywords/~01": True}) == ({email_id: None}, None)
    assert props(jmap, email_id, "keywords") == {"keywords": {
        "$seen": True, "old": True, "a/b": True, "c~d": True, "~1": True}}
    assert update(jmap, email_id, {"keywords/a~1b": None, "keywords/~01": None}) == (
        {email_id: None}, None)
    assert props(jmap, email_id, "keywords") == {"keywords": {
        "$seen": True, "old": True, "c~d": True}}


def test_5_3_an_invalid_pointer_escape_is_invalidPatch_for_that_update_only(core, jmap,
                                                                            email_id, inbox):
    """RFC 8620 §5.3: keys are JSON Pointers; "~2" is no RFC 6901 escape, so that patch is
    invalidPatch - and §5.3 "the server MUST continue to the next ... update"."""
    other = import_raw(core, jmap, message("other", "Other"), [inbox])
    name, result = jmap.call_raw("Email/set", {"accountId": A, "update": {
        email_id: {"keywords/a~2b": True}, other: {"keywords/$flagged": True}}})
    assert name == "Email/set", result
    assert result["updated"] == {other: None}
    assert result["notUpdated"][email_id]["type"] == "invalidPatch"
    assert props(jmap, other, "keywords") == {"keywords": {"$flagged": True}}


def test_4_1_immutable_properties_are_all_listed_in_invalidProperties(jmap, email_id):
    """RFC 8620 §5.3: changing immutable/server-set properties is invalidProperties whose
    "properties" lists *all* the invalid ones; the valid keyword patch with them is not
    applied (an update is atomic)."""
    patch = {"id": "Eother", "blobId": "Gother", "threadId": "Tother", "size": 1,
             "receivedAt": "2020-01-01T00:00:00Z", "subject": "changed", "sentAt": None,
             "from": [], "messageId": ["x@y"], "preview": "p", "hasAttachment": True,
             "bodyStructure": None, "textBody": [], "headers": [],
             "keywords/$flagged": True}
    before = state(jmap)
    updated, failed = update(jmap, email_id, patch)
    assert updated is None
    assert failed[email_id]["type"] == "invalidProperties"
    assert sorted(failed[email_id]["properties"]) == sorted(k for k in patch if "/" not in k)
    assert props(jmap, email_id, "keywords", "subject", "receivedAt") == {
        "keywords": {"$seen": True, "old": True}, "subject": "Hello",
        "receivedAt": "2026-01-01T09:00:00Z"}
    assert state(jmap) == before


def test_5_3_stored_server_set_properties_may_repeat_their_current_value(jmap, email_id):
    """RFC 8620 §5.3: "Any server-set properties MAY be included in the patch if their value
    is identical to the current server value"."""
    current = props(jmap, email_id, "blobId", "threadId", "size", "receivedAt")
    assert update(jmap, email_id, {"id": email_id, **current, "keywords/$flagged": True}) == (
        {email_id: None}, None)
    assert props(jmap, email_id, "keywords") == {"keywords": {"$seen": True, "old": True,
                                                              "$flagged": True}}


def test_5_3_computed_server_set_properties_may_repeat_their_current_value(jmap, email_id):
    """RFC 8620 §5.3 / RFC 8621 §4.1.4: preview and hasAttachment are server-set; including
    them with their current value is allowed."""
    current = props(jmap, email_id, "preview", "hasAttachment")
    assert current == {"preview": "Body of one.", "hasAttachment": False}
    assert update(jmap, email_id, current) == ({email_id: None}, None)


def test_5_3_an_entire_email_object_is_a_valid_patch_object(jmap, email_id):
    """RFC 8620 §5.3: "an entire Foo object is also a valid PatchObject ... the server
    processes it the same either way"; here only keywords differ."""
    whole = jmap.call("Email/get", {"accountId": A, "ids": [email_id]})["list"][0]
    whole["keywords"] = {"$flagged": True}
    assert update(jmap, email_id, whole) == ({email_id: None}, None)
    assert props(jmap, email_id, "keywords") == {"keywords": {"$flagged": True}}


def test_5_3_updating_an_unknown_email_is_notFound(jmap, email_id):
    """RFC 8620 §5.3: "If an id given cannot be found, the update ... MUST be rejected with
    a notFound"; the other update in the call still applies."""
    result = email_set(jmap, update={"Enope": {"keywords/$seen": None},
                                     email_id: {"keywords/$flagged": True}})
    assert result["updated"] == {email_id: None}
    assert result["notUpdated"]["Enope"]["type"] == "notFound"


# -- RFC 8621 §4.6 destroy ---------------------------------------------------------------------

def test_4_6_destroy_updates_mailbox_counts_and_the_thread(core, jmap, boxes, inbox):
    """§4.6 destroy "removes it from all Mailboxes"; §2 counts; §3 Thread emailIds."""
    archive = boxes["Archive"]
    a1 = import_raw(core, jmap, message("a1", "Plans"), [inbox], received="2026-01-02T00:00:00Z")
    a2 = import_raw(core, jmap, message("a2", "Re: Plans", [("In-Reply-To", "<a1@example.org>")]),
                    [inbox, archive], ["$seen"], received="2026-01-03T00:00:00Z")
    b1 = import_raw(core, jmap, message("b1", "Other"), [inbox])
    thread = props(jmap, a1, "threadId")["threadId"]
    assert props(jmap, a2, "threadId") == {"threadId": thread}
    assert (counts(jmap, inbox), counts(jmap, archive)) == ((3, 2, 2, 2), (1, 0, 1, 0))

    result = email_set(jmap, destroy=[a1])
    assert (result["destroyed"], result["notDestroyed"]) == ([a1], None)
    assert (counts(jmap, inbox), counts(jmap, archive)) == ((2, 1, 2, 1), (1, 0, 1, 0))
    got = jmap.call("Thread/get", {"accountId": A, "ids": [thread]})
    assert (got["list"], got["notFound"]) == ([{"id": thread, "emailIds": [a2]}], [])

    email_set(jmap, destroy=[a2])
    assert (counts(jmap, inbox), counts(jmap, archive)) == ((1, 1, 1, 1), (0, 0, 0, 0))
    got = jmap.call("Thread/get", {"accountId": A, "ids": [thread]})
    assert (got["list"], got["notFound"]) == ([], [thread])
    assert jmap.call("Email/query", {"accountId": A})["ids"] == [b1]


def test_5_3_destroying_an_unknown_id_is_notFound_and_the_rest_proceeds(jmap, email_id):
    """RFC 8620 §5.3: notFound for an id that cannot be found; the server MUST continue."""
    result = email_set(jmap, destroy=["Enope", email_id])
    assert result["destroyed"] == [email_id]
    assert list(result["notDestroyed"]) == ["Enope"]
    assert result["notDestroyed"]["Enope"]["type"] == "notFound"


def test_5_3_update_and_destroy_of_one_email_is_willDestroy(jmap, email_id, inbox):
    """RFC 8620 §5.3 willDestroy: updated and destroyed in the same /set; destroy wins."""
    result = email_set(jmap, update={email_id: {"keywords/$flagged": True}}, destroy=[email_id])
    assert result["updated"] is None
    assert result["notUpdated"][email_id]["type"] == "willDestroy"
    assert result["destroyed"] == [email_id]
    assert jmap.call("Email/get", {"accountId": A, "ids": [email_id]})["notFound"] == [email_id]
    assert counts(jmap, inbox) == (0, 0, 0, 0)


def test_5_2_changes_after_destroy(core, jmap, email_id, inbox):
    """RFC 8620 §5.2 after a destroy: Email/changes lists it destroyed only; Thread/changes
    destroys its Thread; Mailbox/changes updates only the Inbox's counts. One created AND
    destroyed since the state SHOULD be left out, MAY be in "destroyed" (and "created")."""
    thread = props(jmap, email_id, "threadId")["threadId"]
    since = {t: state(jmap, t) for t in ("Email", "Thread", "Mailbox")}
    short_lived = import_raw(core, jmap, message("brief", "Brief"), [inbox])
    result = email_set(jmap, destroy=[email_id, short_lived])
    assert result["destroyed"] == [email_id, short_lived]
    assert modseq(core, result["newState"]) > modseq(core, result["oldState"])

    emails = jmap.call("Email/changes", {"accountId": A, "sinceState": since["Email"]})
    assert emails["updated"] == []
    assert email_id in emails["destroyed"] and email_id not in emails["created"]
    assert set(emails["destroyed"]) <= {email_id, short_lived}
    assert emails["created"] in ([], [short_lived])
    assert short_lived in emails["destroyed"] or short_lived not in emails["created"]
    assert emails["newState"] == result["newState"] == state(jmap)
    threads = jmap.call("Thread/changes", {"accountId": A, "sinceState": since["Thread"]})
    assert (threads["created"], threads["updated"]) == ([], [])
    assert thread in threads["destroyed"]
    mailboxes = jmap.call("Mailbox/changes", {"accountId": A, "sinceState": since["Mailbox"]})
    assert (mailboxes["created"], mailboxes["updated"], mailboxes["destroyed"]) == (
        [], [inbox], [])
    assert mailboxes["updatedProperties"] == list(COUNTS)


# -- RFC 8621 §2.5 Mailbox/set onDestroyRemoveEmails --------------------------------------------

@pytest.fixture
def family_mail(core, jmap, boxes, inbox):
    """only: in Family alone; shared: in Family and the Inbox ($seen); elsewhere: Inbox."""
    family = boxes["Family"]
    return {"only": import_raw(core, jmap, message("only", "Only"), [family]),
            "shared": import_raw(core, jmap, message("shared", "Shared"), [family, inbox],
                                 ["$seen"]),
            "elsewhere": import_raw(core, jmap, message("elsewhere", "Elsewhere"), [inbox])}


def test_2_5_on_destroy_remove_emails_true_destroys_only_emails_in_no_other_mailbox(
        jmap, boxes, inbox, family_mail):
    """§2.5: "Emails that were in the Mailbox will be removed from it, and if in no other
    Mailboxes, they will be destroyed"."""
    family, ids = boxes["Family"], family_mail
    email_since = state(jmap)
    result = jmap.call("Mailbox/set", {"accountId": A, "destroy": [family],
                                       "onDestroyRemoveEmails": True})
    assert (result["destroyed"], result["notDestroyed"]) == ([family], None)
    got = jmap.call("Email/get", {"accountId": A, "properties": ["mailboxIds", "keywords"],
                                  "ids": [ids["only"], ids["shared"], ids["elsewhere"]]})
    assert got["notFound"] == [ids["only"]]
    assert got["list"] == [
        {"id": ids["shared"], "mailboxIds": {inbox: True}, "keywords": {"$seen": True}},
        {"id": ids["elsewhere"], "mailboxIds": {inbox: True}, "keywords": {}}]
    assert counts(jmap, inbox) == (2, 1, 2, 1)
    changes = jmap.call("Email/changes", {"accountId": A, "sinceState": email_since})
    assert (changes["created"], changes["updated"], changes["destroyed"]) == (
        [], [ids["shared"]], [ids["only"]])
    assert sorted(jmap.call("Email/query", {"accountId": A})["ids"]) == sorted(
        [ids["shared"], ids["elsewhere"]])


def test_2_5_on_destroy_remove_emails_false_is_mailboxHasEmail(jmap, boxes, inbox, family_mail):
    """§2.5: false (explicit) -> mailboxHasEmail; the Mailbox and its Emails are untouched."""
    family = boxes["Family"]
    before = (state(jmap), state(jmap, "Mailbox"))
    result = jmap.call("Mailbox/set", {"accountId": A, "destroy": [family],
                                       "onDestroyRemoveEmails": False})
    assert result["destroyed"] is None
    assert result["notDestroyed"][family]["type"] == "mailboxHasEmail"
    assert (state(jmap), state(jmap, "Mailbox")) == before
    assert counts(jmap, family) == (2, 1, 2, 1)
    assert props(jmap, family_mail["shared"], "mailboxIds") == {
        "mailboxIds": {family: True, inbox: True}}


# -- concurrent writers (RFC 8620 §5.3: atomic updates, ifInState) ------------------------------

def _race(workers, job):
    """Run job(i) in `workers` threads released together; the results in worker order."""
    barrier, results, errors = threading.Barrier(workers), [None] * workers, []

    def run(i):
        try:
            barrier.wait(timeout=10)
            results[i] = job(i)
        except BaseException as error:  # noqa: BLE001 - re-raised in the test thread
            errors.append(error)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return results


def test_5_3_concurrent_keyword_patches_on_one_email_lose_no_update(core, email_id):
    """RFC 8620 §5.3: each update is atomic; 6 writers x 5 patches of different keywords
    on one Email all land, and every newState is a new, strictly larger state."""
    workers, rounds = 6, 5  # under maxConcurrentRequests (8): no request is refused

    def job(worker):
        answers = []
        for n in range(rounds):
            response = core.handle_request("alice", {
                "using": [jmapd.URN_CORE, jmapd.URN_MAIL],
                "methodCalls": [["Email/set", {"accountId": A, "update": {
                    email_id: {f"keywords/w{worker}-{n}": True}}}, "0"]]})
            name, result, _ = response["methodResponses"][0]
            assert name == "Email/set" and result["updated"] == {email_id: None}, result
            answers.append((modseq(core, result["oldState"]), modseq(core, result["newState"])))
        return answers

    pairs = sorted(p for answers in _race(workers, job) for p in answers)
    assert all(new > old for old, new in pairs)
    assert len({new for _, new in pairs}) == workers * rounds
    # serialised: each call started from the state the previous one produced
    assert all(a[1] == b[0] for a, b in zip(pairs, pairs[1:]))
    expected = {"$seen": True, "old": True,
                **{f"w{w}-{n}": True for w in range(workers) for n in range(rounds)}}
    assert props(Jmap(core), email_id, "keywords") == {"keywords": expected}


def test_5_3_concurrent_writers_with_the_same_if_in_state_exactly_one_wins(core, jmap, email_id):
    """RFC 8620 §5.3 ifInState: writers that read the same state race; the first to commit
    wins, every other one is stateMismatch and changes nothing."""
    start = state(jmap)
    workers = 5

    def job(worker):
        response = core.handle_request("alice", {
            "using": [jmapd.URN_CORE, jmapd.URN_MAIL],
            "methodCalls": [["Email/set", {"accountId": A, "ifInState": start, "update": {
                email_id: {"keywords": {f"winner{worker}": True}}}}, "0"]]})
        return response["methodResponses"][0][:2]

    answers = _race(workers, job)
    winners = [i for i, (name, _) in enumerate(answers) if name == "Email/set"]
    assert len(winners) == 1, answers
    assert sorted(r["type"] for name, r in answers if name == "error") == [
        "stateMismatch"] * (workers - 1)
    assert answers[winners[0]][1]["oldState"] == start
    assert props(jmap, email_id, "keywords") == {"keywords": {f"winner{winners[0]}": True}}


def test_5_3_a_stale_if_in_state_is_stateMismatch(jmap, email_id):
    """RFC 8620 §5.3 ifInState: after another write the old state is stale -> stateMismatch,
    nothing applied; the current state is accepted."""
    stale = state(jmap)
    email_set(jmap, update={email_id: {"keywords/$flagged": True}})
    current = state(jmap)
    assert current != stale
    assert jmap.error("Email/set", {"accountId": A, "ifInState": stale,
                                    "update": {email_id: {"keywords": {}}}}) == "stateMismatch"
    assert props(jmap, email_id, "keywords") == {"keywords": {"$seen": True, "old": True,
                                                              "$flagged": True}}
    result = email_set(jmap, ifInState=current, update={email_id: {"keywords": {}}})
    assert (result["oldState"], result["updated"]) == (current, {email_id: None})


def test_5_3_two_paths_to_one_keyword_in_different_case_are_invalidPatch(jmap, email_id):
    """RFC 8621 §4.1.1 case-insensitive keywords: $Flagged and $flagged are one path."""
    updated, failed = update(jmap, email_id, {"keywords/$Flagged": True,
                                              "keywords/$flagged": None})
    assert (updated, failed[email_id]["type"]) == (None, "invalidPatch")
