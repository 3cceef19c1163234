"""RFC 8620 §5.4 (/copy), exercised through a test-only Note type (Mailbox has no /copy).

A user normally sees only the account it owns (Store.accounts_of), so /copy between
two accounts needs a second one: the `team` fixture adds an account row "team" owned
by alice directly in the store. alice's account is at modseq 11 after the demo seed,
so the fixture's Notes N22 and N23 bring her Note state to "13"; "team" starts at
state "0".
"""

import pytest

import jmapd
from conftest import seed_demo_accounts

NOTES = "urn:example:notes"
USING = [jmapd.URN_CORE, NOTES]


class Note(jmapd.DataType):
    """Test-only type: client-set title/done, server-computed titleLength."""
    name = "Note"
    capability = NOTES
    id_prefix = "N"
    methods = ("get", "changes", "set", "copy", "query", "queryChanges")
    properties = {
        "id": jmapd.Prop(jmapd.Id, server_set=True, immutable=True),
        "title": jmapd.Prop(jmapd.String),
        "done": jmapd.Prop(jmapd.Boolean, default=False),
        "titleLength": jmapd.Prop(jmapd.UnsignedInt, server_set=True, computed=True),
    }

    def compute(self, call, account, records):
        for record in records.values():
            record["titleLength"] = len(record.get("title", ""))


def add_account(core, account_id, owner, read_only=False):
    core.store.db.execute("INSERT INTO account (id, name, owner, is_read_only) "
                          "VALUES (?, ?, ?, ?)", (account_id, account_id.title(), owner,
                                                  int(read_only)))


@pytest.fixture
def team(core, jmap):
    """alice with Notes N22 "Buy milk" and N23 "Call mum" (done), and a second account."""
    core.add_datatype(Note())
    add_account(core, "team", "alice")
    created = jmap.call("Note/set", {"accountId": "alice", "create": {
        "milk": {"title": "Buy milk"}, "mum": {"title": "Call mum", "done": True}}},
        using=USING)["created"]
    assert (created["milk"]["id"], created["mum"]["id"]) == ("N22", "N23")
    return jmap


def copy(jmap, **args):
    return jmap.call("Note/copy", {"fromAccountId": "alice", "accountId": "team", **args},
                     using=USING)


def copy_error(jmap, **args):
    return jmap.error("Note/copy", args, using=USING)


def notes(jmap, account):
    result = jmap.call("Note/get", {"accountId": account, "ids": None}, using=USING)
    return result["list"]


def note_state(jmap, account):
    return jmap.call("Note/get", {"accountId": account, "ids": []}, using=USING)["state"]


def test_second_account_is_visible_to_alice(team, core):
    """§1.6.2: the fixture's second account is in alice's session."""
    assert sorted(core.session("alice", "http://x")["accounts"]) == ["alice", "team"]


def test_copy_creates_a_new_record_in_the_target_account(team):
    """§5.4: the copy is written to accountId with the original's values; created holds
    the server-set properties (a new id, titleLength)."""
    result = copy(team, create={"c": {"id": "N22"}})
    assert result == {"fromAccountId": "alice", "accountId": "team",
                      "oldState": "0", "newState": "1",
                      "created": {"c": {"id": "N24", "titleLength": 8}}, "notCreated": None}
    assert notes(team, "team") == [{"id": "N24", "title": "Buy milk", "done": False,
                                    "titleLength": 8}]


def test_copy_leaves_the_original_in_place(team):
    """§5.4: without onSuccessDestroyOriginal the original stays, unchanged."""
    copy(team, create={"c": {"id": "N22"}})
    assert [n["id"] for n in notes(team, "alice")] == ["N22", "N23"]
    assert note_state(team, "alice") == "13"


def test_copy_uses_given_properties_instead_of_the_originals(team):
    """§5.4: other properties in the create object are used instead of the original's."""
    result = copy(team, create={"c": {"id": "N22", "title": "Buy oat milk", "done": True}})
    assert result["created"] == {"c": {"id": "N24", "titleLength": 12}}
    assert notes(team, "team") == [{"id": "N24", "title": "Buy oat milk", "done": True,
                                    "titleLength": 12}]


def test_copy_of_several_records_creates_each(team):
    """§5.4: each entry of create is copied; ids are new in the target account."""
    result = copy(team, create={"a": {"id": "N22"}, "b": {"id": "N23"}})
    assert {k: v["id"] for k, v in result["created"].items()} == {"a": "N24", "b": "N25"}
    assert (result["oldState"], result["newState"]) == ("0", "2")
    assert sorted(n["title"] for n in notes(team, "team")) == ["Buy milk", "Call mum"]


def test_copy_of_a_missing_record_is_not_found(team):
    """§5.4: any create SetError applies: an original that does not exist -> notFound."""
    result = copy(team, create={"c": {"id": "N999"}})
    assert result["created"] is None
    assert result["notCreated"]["c"]["type"] == "notFound"
    assert result["newState"] == "0"


def test_copy_without_an_id_is_invalid_properties(team):
    """§5.4: the Foo object MUST contain an "id" property -> invalidProperties ["id"]."""
    result = copy(team, create={"c": {"title": "No source"}})
    assert result["notCreated"]["c"]["type"] == "invalidProperties"
    assert result["notCreated"]["c"]["properties"] == ["id"]
    assert notes(team, "team") == []


@pytest.mark.parametrize("override, bad", [
    ({"title": 5}, ["title"]),
    ({"done": "yes"}, ["done"]),
    ({"colour": "red"}, ["colour"]),
    ({"titleLength": 3}, ["titleLength"]),
])
def test_copy_with_an_invalid_override_is_invalid_properties(team, override, bad):
    """§5.4: the create SetErrors apply to the overriding properties: wrong types,
    unknown or server-set properties -> invalidProperties."""
    result = copy(team, create={"c": {"id": "N22", **override}})
    assert result["created"] is None
    assert (result["notCreated"]["c"]["type"], result["notCreated"]["c"]["properties"]) \
        == ("invalidProperties", bad)
    assert notes(team, "team") == []


def test_each_copy_is_an_atomic_unit(team):
    """§5.4: each record copy succeeds or fails on its own."""
    result = copy(team, create={"ok": {"id": "N23"}, "bad": {"id": "N999"}})
    assert result["created"] == {"ok": {"id": "N24", "titleLength": 8}}
    assert result["notCreated"]["bad"]["type"] == "notFound"
    assert [n["title"] for n in notes(team, "team")] == ["Call mum"]


def test_copy_with_on_success_destroy_original_destroys_the_originals(team):
    """§5.4: onSuccessDestroyOriginal: after the /copy response, an implicit Note/set
    destroys the originals of the successful copies; its response follows, same call id."""
    responses = team.request([
        ["Note/copy", {"fromAccountId": "alice", "accountId": "team",
                       "onSuccessDestroyOriginal": True,
                       "create": {"c": {"id": "N22"}, "x": {"id": "N999"}}}, "move"],
    ], using=USING)["methodResponses"]
    assert [(name, call_id) for name, _, call_id in responses] == [
        ("Note/copy", "move"), ("Note/set", "move")]
    assert responses[0][1]["created"] == {"c": {"id": "N24", "titleLength": 8}}
    destroyed = responses[1][1]
    assert (destroyed["accountId"], destroyed["destroyed"]) == ("alice", ["N22"])
    assert (destroyed["oldState"], destroyed["newState"]) == ("13", "14")
    assert [n["id"] for n in notes(team, "alice")] == ["N23"]


def test_on_success_destroy_original_without_successes_makes_no_set_call(team):
    """§5.4: the implicit Foo/set destroys "each successfully copied record"; with none
    copied jmapd makes no call and alice's notes are unchanged."""
    responses = team.request([
        ["Note/copy", {"fromAccountId": "alice", "accountId": "team",
                       "onSuccessDestroyOriginal": True,
                       "create": {"x": {"id": "N999"}}}, "move"],
    ], using=USING)["methodResponses"]
    assert [name for name, _, _ in responses] == ["Note/copy"]
    assert [n["id"] for n in notes(team, "alice")] == ["N22", "N23"]


def test_destroy_from_if_in_state_is_passed_to_the_implicit_set(team):
    """§5.4: destroyFromIfInState becomes the implicit Note/set's ifInState: a stale
    state -> that call fails with stateMismatch; the copy stays, the original too."""
    responses = team.request([
        ["Note/copy", {"fromAccountId": "alice", "accountId": "team",
                       "onSuccessDestroyOriginal": True, "destroyFromIfInState": "5",
                       "create": {"c": {"id": "N22"}}}, "move"],
    ], using=USING)["methodResponses"]
    assert responses[0][0] == "Note/copy"
    assert responses[1][0] == "error"
    assert responses[1][1]["type"] == "stateMismatch"
    assert responses[1][2] == "move"
    assert [n["id"] for n in notes(team, "alice")] == ["N22", "N23"]
    assert [n["id"] for n in notes(team, "team")] == ["N24"]


def test_destroy_from_if_in_state_matching_lets_the_destroy_happen(team):
    """§5.4: destroyFromIfInState equal to the from account's state -> destroyed."""
    responses = team.request([
        ["Note/copy", {"fromAccountId": "alice", "accountId": "team",
                       "onSuccessDestroyOriginal": True, "destroyFromIfInState": "13",
                       "create": {"c": {"id": "N23"}}}, "move"],
    ], using=USING)["methodResponses"]
    assert responses[1][0] == "Note/set"
    assert responses[1][1]["destroyed"] == ["N23"]


def test_copy_creation_id_is_usable_later_in_the_request(team):
    """§5.3/§5.4: a copy's creation id maps to the new id for later calls."""
    response = team.request([
        ["Note/copy", {"fromAccountId": "alice", "accountId": "team",
                       "create": {"c": {"id": "N22"}}}],
        ["Note/get", {"accountId": "team", "ids": ["#c"], "properties": ["title"]}],
    ], using=USING, created_ids={})
    assert response["methodResponses"][1][1]["list"] == [{"id": "N24", "title": "Buy milk"}]
    assert response["createdIds"] == {"c": "N24"}


def test_copy_of_a_record_created_earlier_in_the_request_by_creation_id(team):
    """§5.3: the server keeps creation id -> id for the request so it can substitute it
    in later method calls: copying {"id": "#n"} copies the Note just created as N24."""
    responses = team.request([
        ["Note/set", {"accountId": "alice", "create": {"n": {"title": "Fresh"}}}],
        ["Note/copy", {"fromAccountId": "alice", "accountId": "team",
                       "create": {"c": {"id": "#n"}}}],
    ], using=USING)["methodResponses"]
    assert responses[0][1]["created"]["n"]["id"] == "N24"
    assert responses[1][1]["created"] == {"c": {"id": "N25", "titleLength": 5}}


def test_copy_is_a_change_in_the_target_account_only(team):
    """§5.4: the new record shows in the target's Note/changes; the from account's
    state is unchanged."""
    copy(team, create={"c": {"id": "N22"}})
    result = team.call("Note/changes", {"accountId": "team", "sinceState": "0"}, using=USING)
    assert (result["created"], result["newState"]) == (["N24"], "1")
    assert note_state(team, "alice") == "13"


# -- state checks --

def test_if_in_state_mismatch_is_state_mismatch_and_nothing_copied(team):
    """§5.4: ifInState not the target account's state -> stateMismatch."""
    assert copy_error(team, fromAccountId="alice", accountId="team", ifInState="7",
                      create={"c": {"id": "N22"}}) == "stateMismatch"
    assert notes(team, "team") == []


def test_if_in_state_matching_copies(team):
    """§5.4: ifInState equal to the target account's state -> the copy happens."""
    result = copy(team, ifInState="0", create={"c": {"id": "N22"}})
    assert result["created"]["c"]["id"] == "N24"


def test_if_from_in_state_mismatch_is_state_mismatch_and_nothing_copied(team):
    """§5.4: ifFromInState not the from account's state -> stateMismatch."""
    assert copy_error(team, fromAccountId="alice", accountId="team", ifFromInState="11",
                      create={"c": {"id": "N22"}}) == "stateMismatch"
    assert notes(team, "team") == []


def test_if_from_in_state_matching_copies(team):
    """§5.4: ifFromInState equal to the from account's Note state ("13") -> copied."""
    result = copy(team, ifFromInState="13", create={"c": {"id": "N22"}})
    assert result["created"]["c"]["id"] == "N24"


# -- account errors and arguments --

def test_same_from_and_target_account_is_invalid_arguments(team):
    """§5.4: accountId MUST be different to fromAccountId -> invalidArguments."""
    assert copy_error(team, fromAccountId="alice", accountId="alice",
                      create={"c": {"id": "N22"}}) == "invalidArguments"
    assert [n["id"] for n in notes(team, "alice")] == ["N22", "N23"]


@pytest.mark.parametrize("from_account", ["nobody", "bob"])
def test_unknown_from_account_is_from_account_not_found(team, from_account):
    """§5.4: fromAccountId not an account of the user -> fromAccountNotFound."""
    assert copy_error(team, fromAccountId=from_account, accountId="team",
                      create={"c": {"id": "N22"}}) == "fromAccountNotFound"


@pytest.mark.parametrize("account", ["nobody", "bob"])
def test_unknown_target_account_is_account_not_found(team, account):
    """§3.6.2: accountId not an account of the user -> accountNotFound."""
    assert copy_error(team, fromAccountId="alice", accountId=account,
                      create={"c": {"id": "N22"}}) == "accountNotFound"


def without_account_support(core):
    """The Notes capability with no per-account value: no account supports Note."""
    core.capabilities[NOTES] = jmapd.Capability(NOTES, lambda core: {}, None)


def test_from_account_without_the_data_type_is_from_account_not_supported(team, core):
    """§5.4: fromAccountId is a valid account that does not support the data type
    -> fromAccountNotSupportedByMethod."""
    without_account_support(core)
    assert copy_error(team, fromAccountId="alice", accountId="team",
                      create={"c": {"id": "N22"}}) == "fromAccountNotSupportedByMethod"


def test_target_account_without_the_data_type_is_account_not_supported(team, core):
    """§3.6.2: a valid account that does not support the method's data type
    -> accountNotSupportedByMethod (here for Note/get)."""
    without_account_support(core)
    assert team.error("Note/get", {"accountId": "team", "ids": None}, using=USING) \
        == "accountNotSupportedByMethod"


def test_read_only_target_account_is_account_read_only(team, core):
    """§3.6.2: copying into a read-only account -> accountReadOnly."""
    add_account(core, "archive", "alice", read_only=True)
    assert copy_error(team, fromAccountId="alice", accountId="archive",
                      create={"c": {"id": "N22"}}) == "accountReadOnly"


def test_copy_from_a_read_only_account_is_allowed(team, core):
    """§5.4: the from account is only read, so a read-only one is no accountReadOnly:
    the call is answered (the empty "archive" has no N22 -> notFound)."""
    add_account(core, "archive", "alice", read_only=True)
    result = team.call("Note/copy", {"fromAccountId": "archive", "accountId": "team",
                                     "create": {"c": {"id": "N22"}}}, using=USING)
    assert result["created"] is None
    assert result["notCreated"]["c"]["type"] == "notFound"


@pytest.mark.parametrize("args", [
    {"create": None},
    {"create": []},
    {"onSuccessDestroyOriginal": "yes", "create": {}},
    {"ifFromInState": 12, "create": {}},
    {"destroyFromIfInState": 12, "create": {}},
    {"destroy": ["N22"], "create": {}},
])
def test_malformed_copy_arguments_are_invalid_arguments(team, args):
    """§5.4: create is "Id[Foo]" (required), onSuccessDestroyOriginal a Boolean, the
    states Strings; unknown arguments are rejected."""
    assert copy_error(team, fromAccountId="alice", accountId="team", **args) \
        == "invalidArguments"


def test_missing_from_account_id_is_invalid_arguments(team):
    """§5.4: fromAccountId is a required Id argument."""
    assert copy_error(team, accountId="team", create={"c": {"id": "N22"}}) \
        == "invalidArguments"
    assert copy_error(team, fromAccountId=5, accountId="team", create={}) \
        == "invalidArguments"


def test_missing_create_is_invalid_arguments(team):
    """§5.4: create is a required argument."""
    assert copy_error(team, fromAccountId="alice", accountId="team") == "invalidArguments"


def test_copy_without_the_notes_capability_is_unknown_method(team):
    """§3.6.2: a method whose capability is not in "using" -> unknownMethod."""
    assert team.error("Note/copy", {"fromAccountId": "alice", "accountId": "team",
                                    "create": {}}, using=[jmapd.URN_CORE]) == "unknownMethod"


def test_mailbox_has_no_copy_method(jmap):
    """RFC 8621 §2: Mailbox defines no /copy -> unknownMethod."""
    assert jmap.error("Mailbox/copy", {"fromAccountId": "alice", "accountId": "bob",
                                       "create": {}}) == "unknownMethod"


@pytest.fixture
def small_copy_core():
    core = jmapd.JmapCore(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds(),
                          limits={"maxObjectsInSet": 2})
    seed_demo_accounts(core)
    core.add_datatype(Note())
    add_account(core, "team", "alice")
    core.call("alice", "Note/set", {"accountId": "alice", "create": {
        "a": {"title": "A"}, "b": {"title": "B"}}}, using=USING)
    yield core
    core.close()


def test_more_copies_than_max_objects_in_set_is_request_too_large(small_copy_core):
    """§5.3/§5.4: three copies against maxObjectsInSet 2 -> requestTooLarge."""
    with pytest.raises(jmapd.MethodError) as raised:
        small_copy_core.call("alice", "Note/copy", {
            "fromAccountId": "alice", "accountId": "team",
            "create": {"a": {"id": "N22"}, "b": {"id": "N23"}, "c": {"id": "N22"}}},
            using=USING)
    assert raised.value.type == "requestTooLarge"
    assert small_copy_core.call("alice", "Note/get", {"accountId": "team", "ids": None},
                                using=USING)["list"] == []
