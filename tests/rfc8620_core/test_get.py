"""RFC 8620 §5.1 (/get), exercised through Mailbox/get on the demo account.

Demo data for alice (state "11"): M1 Inbox, M2 Drafts, M3 Sent, M4 Archive, M5 Junk,
M6 Trash, M13 Projects (children M14 Apollo, M15 Zephyr), M16 Receipts, M17 Family.
"""

import pytest

import jmapd
from conftest import seed_demo_accounts

ALICE_IDS = ["M1", "M2", "M3", "M4", "M5", "M6", "M13", "M14", "M15", "M16", "M17"]
MAILBOX_PROPERTIES = ["id", "name", "parentId", "role", "sortOrder", "totalEmails",
                      "unreadEmails", "totalThreads", "unreadThreads", "myRights",
                      "isSubscribed"]


def get(jmap, **args):
    return jmap.call("Mailbox/get", {"accountId": "alice", **args})


def test_null_ids_returns_every_mailbox_of_the_account(jmap):
    """§5.1: ids null -> all records of the type; notFound is empty."""
    result = get(jmap, ids=None)
    assert sorted(m["id"] for m in result["list"]) == sorted(ALICE_IDS)
    assert result["notFound"] == []
    assert result["accountId"] == "alice"


def test_omitted_ids_behaves_like_null_ids(jmap):
    """§5.1: ids is "Id[]|null"; leaving it out is null, i.e. all records."""
    result = jmap.call("Mailbox/get", {"accountId": "alice"})
    assert sorted(m["id"] for m in result["list"]) == sorted(ALICE_IDS)


def test_empty_ids_returns_empty_list_and_empty_not_found(jmap):
    """§5.1: list is the empty array if "ids" was an empty array; notFound too."""
    result = get(jmap, ids=[])
    assert result["list"] == []
    assert result["notFound"] == []


def test_requested_ids_are_returned_with_all_properties(jmap):
    """§5.1: properties null -> all properties of each object."""
    result = get(jmap, ids=["M13"], properties=None)
    assert result["list"] == [{
        "id": "M13", "name": "Projects", "parentId": None, "role": None, "sortOrder": 0,
        "totalEmails": 0, "unreadEmails": 0, "totalThreads": 0, "unreadThreads": 0,
        "myRights": dict.fromkeys(jmapd.MAILBOX_RIGHTS, True), "isSubscribed": True}]
    assert sorted(result["list"][0]) == sorted(MAILBOX_PROPERTIES)


def test_properties_filter_returns_only_those_plus_id(jmap):
    """§5.1: only the listed properties are returned; id is *always* returned."""
    result = get(jmap, ids=["M1", "M14"], properties=["name", "parentId"])
    assert sorted(result["list"], key=lambda m: m["id"]) == [
        {"id": "M1", "name": "Inbox", "parentId": None},
        {"id": "M14", "name": "Apollo", "parentId": "M13"}]


def test_empty_properties_list_returns_only_ids(jmap):
    """§5.1: properties [] -> each object carries only its id."""
    result = get(jmap, ids=["M2", "M3"], properties=[])
    assert sorted(result["list"], key=lambda m: m["id"]) == [{"id": "M2"}, {"id": "M3"}]


def test_explicit_id_property_is_returned_once(jmap):
    """§5.1: asking for "id" explicitly gives just the id, not a duplicate key."""
    result = get(jmap, ids=["M2"], properties=["id"])
    assert result["list"] == [{"id": "M2"}]


def test_unknown_property_is_rejected_with_invalid_arguments(jmap):
    """§5.1: an invalid property requested -> the call is rejected: invalidArguments."""
    assert jmap.error("Mailbox/get", {"accountId": "alice", "ids": ["M1"],
                                      "properties": ["name", "colour"]}) == "invalidArguments"


def test_properties_of_wrong_type_are_rejected(jmap):
    """§5.1: properties is "String[]|null"; a String or a number array is invalidArguments."""
    assert jmap.error("Mailbox/get", {"accountId": "alice", "properties": "name"}) \
        == "invalidArguments"
    assert jmap.error("Mailbox/get", {"accountId": "alice", "properties": [1]}) \
        == "invalidArguments"


def test_ids_of_wrong_type_are_rejected(jmap):
    """§5.1: ids is "Id[]|null"; a bare String is invalidArguments."""
    assert jmap.error("Mailbox/get", {"accountId": "alice", "ids": "M1"}) == "invalidArguments"
    assert jmap.error("Mailbox/get", {"accountId": "alice", "ids": [1]}) == "invalidArguments"


def test_missing_ids_are_reported_in_not_found(jmap):
    """§5.1: notFound lists the requested ids that do not exist; found ones are in list."""
    result = get(jmap, ids=["M1", "M999", "nope"], properties=["name"])
    assert result["list"] == [{"id": "M1", "name": "Inbox"}]
    assert result["notFound"] == ["M999", "nope"]


def test_another_accounts_ids_are_not_found(jmap):
    """§5.1: bob's Inbox M7 is not a record of alice's account -> notFound."""
    result = get(jmap, ids=["M7"])
    assert result["list"] == []
    assert result["notFound"] == ["M7"]


def test_destroyed_ids_are_not_found(jmap):
    """§5.1: a destroyed record does not exist any more -> notFound."""
    jmap.call("Mailbox/set", {"accountId": "alice", "destroy": ["M17"]})
    result = get(jmap, ids=["M17"])
    assert result["list"] == []
    assert result["notFound"] == ["M17"]


def test_duplicate_found_id_is_listed_once(jmap):
    """§5.1: an id given more than once is included only once in list."""
    result = get(jmap, ids=["M1", "M1", "M1"], properties=["name"])
    assert result["list"] == [{"id": "M1", "name": "Inbox"}]
    assert result["notFound"] == []


def test_duplicate_missing_id_is_listed_once_in_not_found(jmap):
    """§5.1: an id given more than once is included only once in notFound."""
    result = get(jmap, ids=["M999", "M999"])
    assert result["list"] == []
    assert result["notFound"] == ["M999"]


def test_state_is_the_type_state_string(jmap):
    """§5.1: state is a String representing all Mailbox data of the account."""
    state = get(jmap, ids=[])["state"]
    assert isinstance(state, str)
    assert state == "11"


def test_state_is_for_all_data_not_just_the_returned_objects(jmap):
    """§5.1: the same state whatever subset of ids is asked for."""
    states = {get(jmap, ids=ids)["state"] for ids in (None, [], ["M1"], ["M999"])}
    assert states == {"11"}


def test_state_is_stable_while_nothing_changes(jmap):
    """§5.1: unchanged data SHOULD give the same state on later requests."""
    assert get(jmap, ids=[])["state"] == get(jmap, ids=[])["state"] == "11"


def test_state_changes_when_data_changes(jmap):
    """§5.1: if the data changes, the state string MUST change."""
    before = get(jmap, ids=[])["state"]
    jmap.call("Mailbox/set", {"accountId": "alice", "update": {"M16": {"name": "Bills"}}})
    after = get(jmap, ids=["M16"], properties=["name"])
    assert before == "11"
    assert after["state"] == "12"
    assert after["list"] == [{"id": "M16", "name": "Bills"}]


def test_state_is_per_account(bob, jmap):
    """§5.1: the state covers one account's data; bob's writes leave alice's state alone."""
    bob.call("Mailbox/set", {"accountId": "bob", "update": {"M21": {"name": "Trips"}}})
    assert get(jmap, ids=[])["state"] == "11"
    assert bob.call("Mailbox/get", {"accountId": "bob", "ids": []})["state"] == "11"


def test_unknown_account_is_account_not_found(jmap):
    """§3.6.2: an accountId the user cannot see -> accountNotFound."""
    assert jmap.error("Mailbox/get", {"accountId": "nobody", "ids": None}) == "accountNotFound"
    assert jmap.error("Mailbox/get", {"accountId": "bob", "ids": None}) == "accountNotFound"


def test_missing_account_id_is_invalid_arguments(jmap):
    """§5.1: accountId is a required argument -> invalidArguments without it."""
    assert jmap.error("Mailbox/get", {"ids": None}) == "invalidArguments"


def test_unknown_argument_is_invalid_arguments(jmap):
    """§3.6.2: an argument the method does not know -> invalidArguments."""
    assert jmap.error("Mailbox/get", {"accountId": "alice", "ids": None, "sort": []}) \
        == "invalidArguments"


def test_creation_id_reference_is_resolved_in_a_later_call(jmap):
    """§5.3: a creation id "#x" from an earlier call stands for the new id in later calls."""
    response = jmap.request([
        ["Mailbox/set", {"accountId": "alice", "create": {"x": {"name": "New"}}}],
        ["Mailbox/get", {"accountId": "alice", "ids": ["#x"], "properties": ["name"]}],
    ])["methodResponses"]
    assert response[1][1]["list"] == [{"id": "M22", "name": "New"}]
    assert response[1][1]["notFound"] == []


def test_unknown_creation_id_reference_is_not_found(jmap):
    """§5.1: "#nope" names no created record -> it is reported in notFound."""
    result = get(jmap, ids=["#nope"])
    assert result["list"] == []
    assert result["notFound"] == ["#nope"]


@pytest.fixture
def small_get_core():
    core = jmapd.JmapCore(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds(),
                          limits={"maxObjectsInGet": 3})
    seed_demo_accounts(core)
    yield core
    core.close()


def _call(core, name, args):
    response = core.handle_request("alice", {
        "using": [jmapd.URN_CORE, jmapd.URN_MAIL], "methodCalls": [[name, args, "0"]]})
    return response["methodResponses"][0][:2]


def test_more_ids_than_max_objects_in_get_is_request_too_large(small_get_core):
    """§5.1: more ids than maxObjectsInGet (3) -> requestTooLarge."""
    name, result = _call(small_get_core, "Mailbox/get",
                         {"accountId": "alice", "ids": ["M1", "M2", "M3", "M4"]})
    assert (name, result["type"]) == ("error", "requestTooLarge")


def test_exactly_max_objects_in_get_ids_is_allowed(small_get_core):
    """§5.1: maxObjectsInGet (3) ids is within the limit."""
    name, result = _call(small_get_core, "Mailbox/get",
                         {"accountId": "alice", "ids": ["M1", "M2", "M999"], "properties": []})
    assert name == "Mailbox/get"
    assert result["list"] == [{"id": "M1"}, {"id": "M2"}]
    assert result["notFound"] == ["M999"]


def test_duplicate_ids_count_once_towards_max_objects_in_get(small_get_core):
    """§5.1: a repeated id is one object: 5 copies of 2 ids fit a limit of 3."""
    name, result = _call(small_get_core, "Mailbox/get", {
        "accountId": "alice", "ids": ["M1", "M2", "M1", "M2", "M1"], "properties": []})
    assert name == "Mailbox/get"
    assert result["list"] == [{"id": "M1"}, {"id": "M2"}]


def test_null_ids_over_max_objects_in_get_is_request_too_large(small_get_core):
    """§5.1: ids null returns all records only if they do not exceed maxObjectsInGet:
    11 mailboxes against a limit of 3 -> requestTooLarge."""
    name, result = _call(small_get_core, "Mailbox/get", {"accountId": "alice", "ids": None})
    assert (name, result["type"]) == ("error", "requestTooLarge")


def test_max_objects_in_get_is_advertised_in_the_session(small_get_core):
    """§2: the core capability advertises maxObjectsInGet."""
    session = small_get_core.session("alice", "http://localhost")
    assert session["capabilities"][jmapd.URN_CORE]["maxObjectsInGet"] == 3
