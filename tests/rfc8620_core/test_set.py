"""RFC 8620 §5.3 (/set), exercised through Mailbox/set and a test-only Note type.

Demo data for alice is at state "11": M1 Inbox ... M6 Trash (roles, sortOrder 1-6),
M13 Projects (children M14 Apollo, M15 Zephyr), M16 Receipts, M17 Family. New objects
get ids M22, M23, ... (Note: N22, ...), and every write moves the state by one.
"""

import pytest

import jmapd
from conftest import seed_demo_accounts

NOTES = "urn:example:notes"
USING_NOTES = [jmapd.URN_CORE, NOTES]
ALL_RIGHTS = dict.fromkeys(jmapd.MAILBOX_RIGHTS, True)
ZERO_COUNTS = {"totalEmails": 0, "unreadEmails": 0, "totalThreads": 0, "unreadThreads": 0}


class Note(jmapd.DataType):
    """Test-only type: client-set title/done/tags/details, server-computed titleLength."""
    name = "Note"
    capability = NOTES
    id_prefix = "N"
    methods = ("get", "changes", "set", "query", "queryChanges")
    properties = {
        "id": jmapd.Prop(jmapd.Id, server_set=True, immutable=True),
        "title": jmapd.Prop(jmapd.String),
        "done": jmapd.Prop(jmapd.Boolean, default=False),
        "tags": jmapd.Prop(jmapd.list_of(jmapd.String), default=[]),
        "details": jmapd.Prop(jmapd.JsonObject, nullable=True, default=None),
        "titleLength": jmapd.Prop(jmapd.UnsignedInt, server_set=True, computed=True),
    }

    def compute(self, call, account, records):
        for record in records.values():
            record["titleLength"] = len(record.get("title", ""))


@pytest.fixture
def notes(core, jmap):
    core.add_datatype(Note())
    return jmap


def mailbox_set(jmap, **args):
    return jmap.call("Mailbox/set", {"accountId": "alice", **args})


def note_set(jmap, **args):
    return jmap.call("Note/set", {"accountId": "alice", **args}, using=USING_NOTES)


def mailbox(jmap, object_id, *properties):
    result = jmap.call("Mailbox/get", {"accountId": "alice", "ids": [object_id],
                                       "properties": list(properties) or None})
    return result["list"][0] if result["list"] else None


def state(jmap):
    return jmap.call("Mailbox/get", {"accountId": "alice", "ids": []})["state"]


# -- response shape --

def test_empty_set_answers_null_maps_and_unchanged_state(jmap):
    """§5.3: created/updated/destroyed/not* are null when there is nothing in them."""
    assert mailbox_set(jmap) == {
        "accountId": "alice", "oldState": "11", "newState": "11",
        "created": None, "updated": None, "destroyed": None,
        "notCreated": None, "notUpdated": None, "notDestroyed": None}


def test_explicit_null_create_update_destroy_are_no_ops(jmap):
    """§5.3: create/update/destroy null -> no objects to create/update/destroy."""
    result = mailbox_set(jmap, create=None, update=None, destroy=None, ifInState=None)
    assert (result["created"], result["updated"], result["destroyed"]) == (None, None, None)
    assert result["newState"] == "11"


def test_create_answers_server_set_and_defaulted_properties_only(jmap):
    """§5.3: created holds the properties the client did not send: server-set ones
    and defaults; the ones the client sent (name, sortOrder) are left out."""
    result = mailbox_set(jmap, create={"k": {"name": "Bills", "sortOrder": 7}})
    assert result["created"] == {"k": {
        "id": "M22", "parentId": None, "role": None, "isSubscribed": True,
        "myRights": ALL_RIGHTS, **ZERO_COUNTS}}
    assert (result["oldState"], result["newState"]) == ("11", "12")
    assert (result["updated"], result["destroyed"], result["notCreated"]) == (None, None, None)
    assert mailbox(jmap, "M22", "name", "sortOrder") == {"id": "M22", "name": "Bills",
                                                         "sortOrder": 7}


def test_create_with_every_client_property_answers_only_server_set_ones(jmap):
    """§5.3: with all defaults sent explicitly, created has only server-set properties."""
    result = mailbox_set(jmap, create={"k": {
        "name": "Bills", "parentId": None, "role": None, "sortOrder": 0, "isSubscribed": False}})
    assert result["created"] == {"k": {"id": "M22", "myRights": ALL_RIGHTS, **ZERO_COUNTS}}


def test_update_answers_null_per_id_when_no_server_set_property_changed(jmap):
    """§5.3: updated maps each updated id to null when nothing changed unrequested."""
    result = mailbox_set(jmap, update={"M16": {"name": "Bills"}, "M17": {"sortOrder": 3}})
    assert result["updated"] == {"M16": None, "M17": None}
    assert (result["oldState"], result["newState"]) == ("11", "13")
    assert mailbox(jmap, "M16", "name") == {"id": "M16", "name": "Bills"}
    assert mailbox(jmap, "M17", "sortOrder") == {"id": "M17", "sortOrder": 3}


def test_update_answers_computed_properties_that_changed(notes):
    """§5.3: updated[id] is an object with any property that changed in a way not
    explicitly requested (here the server-computed titleLength 5 -> 11)."""
    created = note_set(notes, create={"n": {"title": "hello"}})["created"]["n"]
    assert created == {"id": "N22", "done": False, "tags": [], "details": None,
                       "titleLength": 5}
    result = note_set(notes, update={"N22": {"title": "hello world"}})
    assert result["updated"] == {"N22": {"titleLength": 11}}


def test_destroy_answers_the_destroyed_ids(jmap):
    """§5.3: destroyed lists the destroyed ids; the objects are gone."""
    result = mailbox_set(jmap, destroy=["M16", "M17"])
    assert sorted(result["destroyed"]) == ["M16", "M17"]
    assert (result["oldState"], result["newState"]) == ("11", "13")
    assert result["notDestroyed"] is None
    assert mailbox(jmap, "M16") is None


def test_a_repeated_destroy_id_is_destroyed_once(jmap):
    """§5.3: destroying the same id twice in one list destroys it once."""
    result = mailbox_set(jmap, destroy=["M17", "M17"])
    assert (result["destroyed"], result["notDestroyed"], result["newState"]) \
        == (["M17"], None, "12")


def test_create_update_destroy_in_one_call_move_old_to_new_state(jmap):
    """§5.3: oldState is the state before the call, newState the state after it."""
    result = mailbox_set(jmap, create={"k": {"name": "New"}},
                         update={"M16": {"name": "Bills"}}, destroy=["M17"])
    assert result["created"]["k"]["id"] == "M22"
    assert (result["updated"], result["destroyed"]) == ({"M16": None}, ["M17"])
    assert (result["oldState"], result["newState"]) == ("11", "14")
    assert state(jmap) == "14"


def test_a_no_op_update_succeeds_without_changing_state(jmap):
    """§5.3: an update to the current values succeeds; the data (and state) is unchanged."""
    result = mailbox_set(jmap, update={"M16": {"name": "Receipts", "sortOrder": 0}})
    assert (result["updated"], result["newState"]) == ({"M16": None}, "11")


def test_partial_failure_commits_the_rest(jmap):
    """§5.3: a rejected create/update/destroy is reported and the server continues."""
    result = mailbox_set(jmap, create={"ok": {"name": "Fine"}, "bad": {"name": 5}},
                         update={"M16": {"name": "Bills"}, "M999": {"name": "x"}},
                         destroy=["M17", "M998"])
    assert result["created"]["ok"]["id"] == "M22"
    assert result["notCreated"]["bad"]["type"] == "invalidProperties"
    assert result["updated"] == {"M16": None}
    assert result["notUpdated"]["M999"]["type"] == "notFound"
    assert result["destroyed"] == ["M17"]
    assert result["notDestroyed"]["M998"]["type"] == "notFound"
    assert result["newState"] == "14"


# -- ifInState --

def test_if_in_state_matching_applies_the_changes(jmap):
    """§5.3: ifInState equal to the current state -> the changes are applied."""
    result = mailbox_set(jmap, ifInState="11", update={"M16": {"name": "Bills"}})
    assert (result["updated"], result["newState"]) == ({"M16": None}, "12")


def test_if_in_state_mismatch_is_state_mismatch_and_nothing_written(jmap):
    """§5.3: ifInState mismatch -> stateMismatch, nothing written."""
    assert jmap.error("Mailbox/set", {
        "accountId": "alice", "ifInState": "10", "create": {"k": {"name": "New"}},
        "update": {"M16": {"name": "Bills"}}, "destroy": ["M17"]}) == "stateMismatch"
    assert state(jmap) == "11"
    assert mailbox(jmap, "M16", "name") == {"id": "M16", "name": "Receipts"}
    assert mailbox(jmap, "M17", "name") == {"id": "M17", "name": "Family"}
    assert jmap.call("Mailbox/get", {"accountId": "alice", "ids": ["M22"]})["notFound"] \
        == ["M22"]


def test_if_in_state_of_a_stale_state_is_state_mismatch(jmap):
    """§5.3: after another write, the old state string no longer matches."""
    mailbox_set(jmap, update={"M16": {"name": "Bills"}})
    assert jmap.error("Mailbox/set", {"accountId": "alice", "ifInState": "11",
                                      "destroy": ["M17"]}) == "stateMismatch"
    assert mailbox(jmap, "M17", "name") == {"id": "M17", "name": "Family"}


def test_if_in_state_of_wrong_type_is_invalid_arguments(jmap):
    """§5.3: ifInState is "String|null"."""
    assert jmap.error("Mailbox/set", {"accountId": "alice", "ifInState": 11}) \
        == "invalidArguments"


# -- invalidProperties --

def not_created(jmap, obj):
    result = mailbox_set(jmap, create={"k": obj})
    assert result["created"] is None, result
    assert result["newState"] == "11"
    return result["notCreated"]["k"]


def not_updated(jmap, object_id, patch):
    before = mailbox(jmap, object_id)
    result = mailbox_set(jmap, update={object_id: patch})
    assert result["updated"] is None, result
    assert result["newState"] == "11"
    assert mailbox(jmap, object_id) == before
    return result["notUpdated"][object_id]


@pytest.mark.parametrize("obj, bad", [
    ({"name": 5}, ["name"]),
    ({"name": None}, ["name"]),
    ({"name": "x", "sortOrder": "1"}, ["sortOrder"]),
    ({"name": "x", "sortOrder": 1.5}, ["sortOrder"]),
    ({"name": "x", "isSubscribed": "yes"}, ["isSubscribed"]),
    ({"name": "x", "isSubscribed": None}, ["isSubscribed"]),
    ({"name": "x", "parentId": 13}, ["parentId"]),
    ({"name": "x", "role": 1}, ["role"]),
])
def test_create_with_a_wrongly_typed_property_is_invalid_properties(jmap, obj, bad):
    """§5.3: a property invalid per the type's definition -> invalidProperties naming it."""
    error = not_created(jmap, obj)
    assert (error["type"], error["properties"]) == ("invalidProperties", bad)


def test_invalid_properties_lists_all_offending_properties(jmap):
    """§5.3: the SetError's properties lists *all* the invalid properties."""
    error = not_created(jmap, {"name": 5, "sortOrder": -1, "isSubscribed": "no", "colour": 1})
    assert error["type"] == "invalidProperties"
    assert error["properties"] == ["colour", "isSubscribed", "name", "sortOrder"]
    assert isinstance(error["description"], str)


def test_create_with_an_unknown_property_is_invalid_properties(jmap):
    """§5.3: a property the type does not have -> invalidProperties."""
    error = not_created(jmap, {"name": "x", "colour": "red"})
    assert (error["type"], error["properties"]) == ("invalidProperties", ["colour"])


def test_create_without_a_required_property_is_invalid_properties(jmap):
    """§5.3: name has no default, so it must be given -> invalidProperties ["name"]."""
    error = not_created(jmap, {"sortOrder": 1})
    assert (error["type"], error["properties"]) == ("invalidProperties", ["name"])


@pytest.mark.parametrize("server_set", [
    {"id": "M500"}, {"totalEmails": 0}, {"unreadThreads": 0}, {"myRights": ALL_RIGHTS}])
def test_create_with_a_server_set_property_is_invalid_properties(jmap, server_set):
    """§5.3: the client MUST omit server-set properties on create -> invalidProperties."""
    error = not_created(jmap, {"name": "x", **server_set})
    assert (error["type"], error["properties"]) == ("invalidProperties", list(server_set))


def test_create_that_is_not_an_object_is_invalid_properties(jmap):
    """§5.3: each value of create is a Foo object; a String is invalidProperties."""
    assert not_created(jmap, "Bills")["type"] == "invalidProperties"


def test_update_with_a_wrongly_typed_property_is_invalid_properties(jmap):
    """§5.3: a patch giving an invalid value -> invalidProperties; nothing written."""
    error = not_updated(jmap, "M16", {"sortOrder": "high"})
    assert (error["type"], error["properties"]) == ("invalidProperties", ["sortOrder"])


def test_update_with_an_unknown_property_is_invalid_properties(jmap):
    """§5.3: a patch setting a property the type lacks -> invalidProperties."""
    error = not_updated(jmap, "M16", {"colour": "red"})
    assert (error["type"], error["properties"]) == ("invalidProperties", ["colour"])


@pytest.mark.parametrize("patch, bad", [
    ({"id": "M500"}, ["id"]),
    ({"totalEmails": 3}, ["totalEmails"]),
    ({"myRights": {**ALL_RIGHTS, "mayDelete": False}}, ["myRights"]),
    ({"myRights/mayDelete": False}, ["myRights"]),
])
def test_update_changing_a_server_set_property_is_invalid_properties(jmap, patch, bad):
    """§5.3: a server-set property in a patch with a value different from the current
    one -> invalidProperties; nothing written."""
    error = not_updated(jmap, "M16", patch)
    assert (error["type"], error["properties"]) == ("invalidProperties", bad)


def test_update_repeating_server_set_values_is_allowed(jmap):
    """§5.3: server-set properties MAY be in the patch if identical to the current value."""
    result = mailbox_set(jmap, update={"M16": {
        "id": "M16", "totalEmails": 0, "unreadEmails": 0, "myRights": ALL_RIGHTS,
        "name": "Bills"}})
    assert result["updated"] == {"M16": None}
    assert mailbox(jmap, "M16", "name") == {"id": "M16", "name": "Bills"}


def test_a_whole_object_is_a_valid_patch(jmap):
    """§5.3: an entire Foo object (as /get returned it) is also a valid PatchObject."""
    whole = mailbox(jmap, "M16")
    result = mailbox_set(jmap, update={"M16": {**whole, "name": "Bills"}})
    assert result["updated"] == {"M16": None}
    assert mailbox(jmap, "M16") == {**whole, "name": "Bills"}


def test_update_to_a_missing_foreign_key_is_invalid_properties(jmap):
    """§5.3: a reference to a record that does not exist -> invalidProperties."""
    error = not_updated(jmap, "M16", {"parentId": "M999"})
    assert (error["type"], error["properties"]) == ("invalidProperties", ["parentId"])


def test_update_removing_a_required_property_is_invalid_properties(jmap):
    """§5.3: null removes a property without default; name is required -> invalid."""
    error = not_updated(jmap, "M16", {"name": None})
    assert (error["type"], error["properties"]) == ("invalidProperties", ["name"])


def test_null_patch_value_resets_a_property_to_its_default(jmap):
    """§5.3: a null patch value sets the property to its default (sortOrder 0,
    isSubscribed true, parentId null)."""
    mailbox_set(jmap, update={"M14": {"sortOrder": 4, "isSubscribed": False}})
    result = mailbox_set(jmap, update={"M14": {"sortOrder": None, "isSubscribed": None,
                                               "parentId": None}})
    assert result["updated"] == {"M14": None}
    assert mailbox(jmap, "M14", "sortOrder", "isSubscribed", "parentId") == {
        "id": "M14", "sortOrder": 0, "isSubscribed": True, "parentId": None}


def test_null_for_an_absent_nested_key_is_a_no_op(jmap):
    """§5.3: null for a key not present in the parent is a no-op."""
    result = mailbox_set(jmap, update={"M16": {"myRights/noSuchRight": None}})
    assert (result["updated"], result["newState"]) == ({"M16": None}, "11")


# -- notFound, willDestroy --

def test_update_of_a_missing_id_is_not_found(jmap):
    """§5.3: an update whose id cannot be found -> notFound."""
    result = mailbox_set(jmap, update={"M999": {"name": "x"}, "M7": {"name": "x"}})
    assert {k: v["type"] for k, v in result["notUpdated"].items()} \
        == {"M999": "notFound", "M7": "notFound"}
    assert result["updated"] is None


def test_destroy_of_a_missing_id_is_not_found(jmap):
    """§5.3: a destroy whose id cannot be found (never existed, bob's) -> notFound."""
    result = mailbox_set(jmap, destroy=["M999", "M7"])
    assert {k: v["type"] for k, v in result["notDestroyed"].items()} \
        == {"M999": "notFound", "M7": "notFound"}
    assert result["destroyed"] is None


def test_destroy_of_an_already_destroyed_id_is_not_found(jmap):
    """§5.3: a second destroy of the same record -> notFound."""
    mailbox_set(jmap, destroy=["M17"])
    result = mailbox_set(jmap, destroy=["M17"])
    assert result["notDestroyed"]["M17"]["type"] == "notFound"
    assert result["newState"] == "12"


def test_update_of_a_destroyed_id_is_not_found(jmap):
    """§5.3: an update of a record destroyed earlier -> notFound."""
    mailbox_set(jmap, destroy=["M17"])
    result = mailbox_set(jmap, update={"M17": {"name": "Back"}})
    assert result["notUpdated"]["M17"]["type"] == "notFound"


def test_update_and_destroy_of_one_id_is_will_destroy(jmap):
    """§5.3: an object both updated and destroyed in one call: the update is skipped
    with willDestroy, the destroy happens."""
    result = mailbox_set(jmap, update={"M17": {"name": "Kin"}}, destroy=["M17"])
    assert result["notUpdated"]["M17"]["type"] == "willDestroy"
    assert (result["updated"], result["destroyed"]) == (None, ["M17"])


# -- invalidPatch --

@pytest.mark.parametrize("patch", [
    {"myRights/noSuch/deeper": True},     # a parent part does not exist
    {"nothing/here": 1},                  # the first part does not exist
    {"name/first": "x"},                  # the parent is a String, not an object
])
def test_patch_with_a_missing_parent_path_is_invalid_patch(jmap, patch):
    """§5.3: all parts prior to the last MUST already exist -> invalidPatch."""
    assert not_updated(jmap, "M16", patch)["type"] == "invalidPatch"


def test_patch_where_one_path_prefixes_another_is_invalid_patch(jmap):
    """§5.3: no path may be a prefix of another ("myRights", "myRights/mayDelete")."""
    error = not_updated(jmap, "M16", {"myRights": ALL_RIGHTS, "myRights/mayDelete": True})
    assert error["type"] == "invalidPatch"


def test_patch_with_an_empty_key_is_invalid_patch(jmap):
    """§5.3: "" is not a path to any property -> invalidPatch."""
    assert not_updated(jmap, "M16", {"": "x"})["type"] == "invalidPatch"


def test_patch_that_is_not_an_object_is_invalid_patch(jmap):
    """§5.3: the value of update is a PatchObject; a String is invalidPatch."""
    assert not_updated(jmap, "M16", "rename")["type"] == "invalidPatch"


def test_patch_pointing_into_an_array_is_invalid_patch(notes):
    """§5.3: a pointer MUST NOT reference inside an array ("tags/0") -> invalidPatch."""
    note_set(notes, create={"n": {"title": "t", "tags": ["a", "b"]}})
    result = note_set(notes, update={"N22": {"tags/0": "z"}})
    assert result["notUpdated"]["N22"]["type"] == "invalidPatch"
    assert result["updated"] is None
    got = notes.call("Note/get", {"accountId": "alice", "ids": ["N22"],
                                  "properties": ["tags"]}, using=USING_NOTES)
    assert got["list"] == [{"id": "N22", "tags": ["a", "b"]}]


def test_patch_replacing_a_whole_array_is_allowed(notes):
    """§5.3: an array is replaced in its entirety."""
    note_set(notes, create={"n": {"title": "t", "tags": ["a", "b"]}})
    result = note_set(notes, update={"N22": {"tags": ["z"]}})
    assert result["updated"] == {"N22": None}
    got = notes.call("Note/get", {"accountId": "alice", "ids": ["N22"],
                                  "properties": ["tags"]}, using=USING_NOTES)
    assert got["list"] == [{"id": "N22", "tags": ["z"]}]


def test_patch_sets_and_removes_keys_inside_an_object(notes):
    """§5.3: "details/a" sets a nested key; null removes a nested key without default."""
    note_set(notes, create={"n": {"title": "t", "details": {"a": 1, "b": 2}}})
    result = note_set(notes, update={"N22": {"details/a": 5, "details/b": None,
                                             "details/c": [1]}})
    assert result["updated"] == {"N22": None}
    got = notes.call("Note/get", {"accountId": "alice", "ids": ["N22"],
                                  "properties": ["details"]}, using=USING_NOTES)
    assert got["list"] == [{"id": "N22", "details": {"a": 5, "c": [1]}}]


def test_patch_keys_use_json_pointer_escapes(notes):
    """§5.3: keys are JSON Pointers: "~1" is "/" and "~0" is "~" in a key."""
    note_set(notes, create={"n": {"title": "t", "details": {}}})
    note_set(notes, update={"N22": {"details/a~1b": 1, "details/c~0d": 2}})
    got = notes.call("Note/get", {"accountId": "alice", "ids": ["N22"],
                                  "properties": ["details"]}, using=USING_NOTES)
    assert got["list"] == [{"id": "N22", "details": {"a/b": 1, "c~d": 2}}]


def test_patch_into_a_null_property_is_invalid_patch(notes):
    """§5.3: "details/a" needs details to exist as an object; it is null -> invalidPatch."""
    note_set(notes, create={"n": {"title": "t"}})
    result = note_set(notes, update={"N22": {"details/a": 1}})
    assert result["notUpdated"]["N22"]["type"] == "invalidPatch"


# -- atomicity of one record --

def test_a_failed_update_writes_nothing_of_that_record(jmap):
    """§5.3: the server MUST NOT commit part of an update to a single record: a valid
    name with an invalid sortOrder leaves the name unchanged."""
    error = not_updated(jmap, "M16", {"name": "Bills", "sortOrder": -1})
    assert (error["type"], error["properties"]) == ("invalidProperties", ["sortOrder"])
    assert mailbox(jmap, "M16", "name", "sortOrder") == {"id": "M16", "name": "Receipts",
                                                         "sortOrder": 0}


def test_an_update_failing_validation_writes_nothing_of_that_record(jmap):
    """§5.3: an update rejected by a type rule (sibling name taken) is not partly
    applied: the sortOrder in the same patch is not stored."""
    error = not_updated(jmap, "M16", {"name": "Family", "sortOrder": 9})
    assert (error["type"], error["properties"]) == ("invalidProperties", ["name"])
    assert mailbox(jmap, "M16", "name", "sortOrder") == {"id": "M16", "name": "Receipts",
                                                         "sortOrder": 0}


def test_a_failed_update_does_not_affect_other_records(jmap):
    """§5.3: each update is its own atomic unit: M17's succeeds beside M16's failure."""
    result = mailbox_set(jmap, update={"M16": {"name": "x", "sortOrder": -1},
                                       "M17": {"name": "Kin"}})
    assert result["updated"] == {"M17": None}
    assert result["notUpdated"]["M16"]["type"] == "invalidProperties"
    assert mailbox(jmap, "M16", "name") == {"id": "M16", "name": "Receipts"}


# -- creation ids --

def test_forward_creation_reference_in_the_same_call(jmap):
    """§5.3: the server MUST order creates so a "#id" reference to a record created in
    the same call works, even when it is listed first."""
    result = mailbox_set(jmap, create={"child": {"name": "Child", "parentId": "#parent"},
                                       "parent": {"name": "Parent"}})
    assert result["notCreated"] is None
    parent, child = result["created"]["parent"]["id"], result["created"]["child"]["id"]
    assert (parent, child) == ("M22", "M23")
    assert "parentId" not in result["created"]["child"]
    assert mailbox(jmap, child, "parentId") == {"id": "M23", "parentId": "M22"}


def test_chained_forward_creation_references(jmap):
    """§5.3: a chain c -> b -> a of references in one call is created parents first."""
    result = mailbox_set(jmap, create={"c": {"name": "C", "parentId": "#b"},
                                       "b": {"name": "B", "parentId": "#a"},
                                       "a": {"name": "A"}})
    ids = {k: v["id"] for k, v in result["created"].items()}
    assert ids == {"a": "M22", "b": "M23", "c": "M24"}
    assert mailbox(jmap, "M24", "parentId") == {"id": "M24", "parentId": "M23"}
    assert mailbox(jmap, "M23", "parentId") == {"id": "M23", "parentId": "M22"}


def test_update_may_use_a_creation_id_of_the_same_call(jmap):
    """§5.3: creates happen before their creation ids are referenced by an update, as
    a foreign key (parentId "#p") or as the key of the update ("#q")."""
    result = mailbox_set(jmap, create={"p": {"name": "P"}, "q": {"name": "Q"}},
                         update={"M16": {"parentId": "#p"}, "#q": {"sortOrder": 4}})
    assert result["notUpdated"] is None
    assert len(result["updated"]) == 2
    assert mailbox(jmap, "M16", "parentId") == {"id": "M16", "parentId": "M22"}
    assert mailbox(jmap, "M23", "sortOrder") == {"id": "M23", "sortOrder": 4}


def test_destroy_may_use_a_creation_id_of_the_same_call(jmap):
    """§5.3: a record created in the call can be destroyed by "#id" in the same call."""
    result = mailbox_set(jmap, create={"t": {"name": "Temp"}}, destroy=["#t"])
    assert result["created"]["t"]["id"] == "M22"
    assert result["notDestroyed"] is None
    assert len(result["destroyed"]) == 1
    assert mailbox(jmap, "M22") is None


def test_updated_is_keyed_by_the_real_id_when_the_update_used_a_creation_id(jmap):
    """§5.3: the keys of updated are the ids of the updated Foos; "#q" is not an Id,
    the record it names is M23."""
    result = mailbox_set(jmap, create={"q": {"name": "Q"}}, update={"#q": {"sortOrder": 4}})
    assert result["created"]["q"]["id"] == "M22"
    assert result["updated"] == {"M22": None}


def test_destroyed_lists_the_real_id_when_the_destroy_used_a_creation_id(jmap):
    """§5.3: destroyed is "Id[]", the ids of the destroyed records; "#t" is not an Id,
    the record it names is M22."""
    result = mailbox_set(jmap, create={"t": {"name": "Temp"}}, destroy=["#t"])
    assert result["destroyed"] == ["M22"]


def test_creation_id_is_usable_in_later_calls_of_the_request(jmap):
    """§5.3: the server keeps creation id -> id for the request: a later call's create
    parentId "#p", update key "#p" and destroy "#q" all resolve."""
    responses = jmap.request([
        ["Mailbox/set", {"accountId": "alice", "create": {"p": {"name": "P"},
                                                          "q": {"name": "Q"}}}],
        ["Mailbox/set", {"accountId": "alice", "create": {"c": {"name": "C", "parentId": "#p"}},
                         "update": {"#p": {"sortOrder": 2}}, "destroy": ["#q"]}],
    ])["methodResponses"]
    second = responses[1][1]
    assert second["created"]["c"]["id"] == "M24"
    assert second["notUpdated"] is None and second["notDestroyed"] is None
    assert mailbox(jmap, "M23") is None
    assert mailbox(jmap, "M24", "parentId") == {"id": "M24", "parentId": "M22"}
    assert mailbox(jmap, "M22", "sortOrder") == {"id": "M22", "sortOrder": 2}


def test_request_created_ids_seed_the_creation_id_map(jmap):
    """§3.3/§5.3: createdIds passed with the request are usable as "#id" references,
    and the final map comes back in the response."""
    response = jmap.request([
        ["Mailbox/set", {"accountId": "alice", "create": {
            "kid": {"name": "Kid", "parentId": "#proj"}}}],
    ], created_ids={"proj": "M13"})
    created = response["methodResponses"][0][1]["created"]
    assert created["kid"]["id"] == "M22"
    assert response["createdIds"] == {"proj": "M13", "kid": "M22"}
    assert mailbox(jmap, "M22", "parentId") == {"id": "M22", "parentId": "M13"}


def test_reused_creation_id_maps_to_the_most_recent_record(jmap):
    """§5.3: if a creation id is reused, it maps to the most recently created item."""
    responses = jmap.request([
        ["Mailbox/set", {"accountId": "alice", "create": {"x": {"name": "First"}}}],
        ["Mailbox/set", {"accountId": "alice", "create": {"x": {"name": "Second"}}}],
        ["Mailbox/get", {"accountId": "alice", "ids": ["#x"], "properties": ["name"]}],
    ], created_ids={})
    assert responses["methodResponses"][2][1]["list"] == [{"id": "M23", "name": "Second"}]
    assert responses["createdIds"] == {"x": "M23"}


def test_unknown_creation_reference_is_invalid_properties(jmap):
    """§5.3: "#nope" names no created record: the foreign key is invalid."""
    error = not_created(jmap, {"name": "Orphan", "parentId": "#nope"})
    assert (error["type"], error["properties"]) == ("invalidProperties", ["parentId"])


def test_reference_to_a_failed_create_is_invalid_properties(jmap):
    """§5.3: a reference to a create that failed in the same call does not resolve."""
    result = mailbox_set(jmap, create={"p": {"name": ""}, "c": {"name": "C", "parentId": "#p"}})
    assert result["created"] is None
    assert result["notCreated"]["p"]["type"] == "invalidProperties"
    assert result["notCreated"]["c"]["properties"] == ["parentId"]


def test_update_of_an_unknown_creation_id_is_not_found(jmap):
    """§5.3: an update keyed by an unresolvable "#id" finds nothing -> notFound."""
    result = mailbox_set(jmap, update={"#nope": {"name": "x"}}, destroy=["#gone"])
    assert result["notUpdated"]["#nope"]["type"] == "notFound"
    assert result["notDestroyed"]["#gone"]["type"] == "notFound"


# -- argument errors and limits --

@pytest.mark.parametrize("args", [
    {"create": []}, {"update": ["M16"]}, {"destroy": "M16"}, {"destroy": [16]},
    {"onDestroyRemoveEmails": "yes"}, {"unknown": 1},
])
def test_malformed_set_arguments_are_invalid_arguments(jmap, args):
    """§5.3: create is Id[Foo]|null, update Id[PatchObject]|null, destroy Id[]|null;
    other shapes, and unknown arguments, are invalidArguments; nothing written."""
    assert jmap.error("Mailbox/set", {"accountId": "alice", **args}) == "invalidArguments"
    assert state(jmap) == "11"


def test_set_in_an_account_the_user_cannot_see_is_account_not_found(jmap):
    """§3.6.2: bob's account is not alice's to write -> accountNotFound."""
    assert jmap.error("Mailbox/set", {"accountId": "bob", "destroy": ["M7"]}) \
        == "accountNotFound"


def test_set_without_permission_is_forbidden_and_writes_nothing(core, jmap, monkeypatch):
    """§3.6.2 forbidden: the call would violate a permissions policy. jmapd lets only
    an account's owner act on it; with bob's account made visible to alice (as sharing
    would), her Mailbox/set there is forbidden and nothing is written."""
    monkeypatch.setattr(core, "visible_account",
                        lambda user, account_id: core.store.account(account_id))
    assert jmap.error("Mailbox/set", {"accountId": "bob", "destroy": ["M21"]}) == "forbidden"
    assert jmap.error("Mailbox/get", {"accountId": "bob", "ids": None}) == "forbidden"
    monkeypatch.undo()
    bobs = core.call("bob", "Mailbox/get", {"accountId": "bob", "ids": ["M21"]})
    assert [m["name"] for m in bobs["list"]] == ["Travel"]


@pytest.fixture
def small_set_core():
    core = jmapd.JmapCore(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds(),
                          limits={"maxObjectsInSet": 3})
    seed_demo_accounts(core)
    yield core
    core.close()


def test_more_than_max_objects_in_set_is_request_too_large(small_set_core):
    """§5.3: creates + updates + destroys over maxObjectsInSet (3) -> requestTooLarge,
    and nothing is written."""
    with pytest.raises(jmapd.MethodError) as raised:
        small_set_core.call("alice", "Mailbox/set", {
            "accountId": "alice", "create": {"a": {"name": "A"}, "b": {"name": "B"}},
            "update": {"M16": {"name": "Bills"}}, "destroy": ["M17"]})
    assert raised.value.type == "requestTooLarge"
    listed = small_set_core.call("alice", "Mailbox/get", {
        "accountId": "alice", "ids": ["M16", "M17", "M22"], "properties": ["name"]})
    assert listed["list"] == [{"id": "M16", "name": "Receipts"}, {"id": "M17", "name": "Family"}]
    assert listed["state"] == "11"


def test_exactly_max_objects_in_set_is_allowed(small_set_core):
    """§5.3: three objects against maxObjectsInSet 3 is within the limit."""
    result = small_set_core.call("alice", "Mailbox/set", {
        "accountId": "alice", "create": {"a": {"name": "A"}},
        "update": {"M16": {"name": "Bills"}}, "destroy": ["M17"]})
    assert (result["created"]["a"]["id"], result["updated"], result["destroyed"]) \
        == ("M22", {"M16": None}, ["M17"])
