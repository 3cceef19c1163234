"""RFC 8620 §5.6 (/queryChanges), exercised through Mailbox/queryChanges, plus a
test-only Note type whose sort is on an immutable property (for upToId).

The query used throughout is the top-level Mailboxes of alice sorted by name; at the
demo state "11" it is: M4 Archive, M2 Drafts, M17 Family, M1 Inbox, M5 Junk,
M13 Projects, M16 Receipts, M3 Sent, M6 Trash. New mailboxes get ids M22, M23, ...
"""

import pytest

import jmapd

FILTER = {"parentId": None}
SORT = [{"property": "name"}]
OLD = ["M4", "M2", "M17", "M1", "M5", "M13", "M16", "M3", "M6"]


def query_ids(jmap, filter_=FILTER, sort=SORT):
    return jmap.call("Mailbox/query", {"accountId": "alice", "filter": filter_,
                                       "sort": sort})["ids"]


def query_changes(jmap, since="11", filter_=FILTER, sort=SORT, **args):
    return jmap.call("Mailbox/queryChanges", {"accountId": "alice", "filter": filter_,
                                              "sort": sort, "sinceQueryState": since, **args})


def mailbox_set(jmap, **args):
    return jmap.call("Mailbox/set", {"accountId": "alice", **args})


def splice(old, result):
    """The §5.6 client algorithm: splice out removed, splice in added by index."""
    cached = [i for i in old if i not in result["removed"]]
    for item in sorted(result["added"], key=lambda a: a["index"]):
        cached.insert(item["index"], item["id"])
    return cached


def test_query_state_matches_the_old_results(jmap):
    """§5.6: the query used below has the documented results at queryState "11"."""
    result = jmap.call("Mailbox/query", {"accountId": "alice", "filter": FILTER,
                                         "sort": SORT})
    assert (result["ids"], result["queryState"]) == (OLD, "11")


def test_no_changes_since_the_current_query_state(jmap):
    """§5.6: nothing changed -> empty removed and added, newQueryState is the old one."""
    assert query_changes(jmap) == {"accountId": "alice", "oldQueryState": "11",
                                   "newQueryState": "11", "removed": [], "added": []}


def test_created_match_is_added_at_its_index(jmap):
    """§5.6: a new Mailbox in the results is in added with its index in the new state."""
    mailbox_set(jmap, create={"b": {"name": "Bills"}})             # M22, state 12
    result = query_changes(jmap)
    assert result == {"accountId": "alice", "oldQueryState": "11", "newQueryState": "12",
                      "removed": [], "added": [{"id": "M22", "index": 1}]}
    assert splice(OLD, result) == query_ids(jmap)


def test_rename_moves_the_mailbox_to_its_new_sort_position(jmap):
    """§5.6: with a sort on a mutable property (name), a renamed Mailbox is removed and
    added again at its new index."""
    mailbox_set(jmap, update={"M17": {"name": "Zoo"}})
    result = query_changes(jmap)
    assert result["removed"] == ["M17"]
    assert result["added"] == [{"id": "M17", "index": 8}]
    assert splice(OLD, result) == query_ids(jmap) == [
        "M4", "M2", "M1", "M5", "M13", "M16", "M3", "M6", "M17"]


def test_destroyed_match_is_removed(jmap):
    """§5.6: a Mailbox destroyed since is in removed and not in added."""
    mailbox_set(jmap, destroy=["M16"])
    result = query_changes(jmap)
    assert (result["removed"], result["added"]) == (["M16"], [])
    assert splice(OLD, result) == query_ids(jmap)


def test_update_that_leaves_the_filter_is_removed(jmap):
    """§5.6: a Mailbox that stops matching (moved under Projects) is removed."""
    mailbox_set(jmap, update={"M16": {"parentId": "M13"}})
    result = query_changes(jmap)
    assert (result["removed"], result["added"]) == (["M16"], [])
    assert splice(OLD, result) == query_ids(jmap)


def test_update_that_enters_the_filter_is_added(jmap):
    """§5.6: a Mailbox that starts matching (Apollo moved to the top) is added; an extra
    removed id for it is allowed ("MAY return the ids of extra Foos")."""
    mailbox_set(jmap, update={"M14": {"parentId": None}})
    result = query_changes(jmap)
    assert result["added"] == [{"id": "M14", "index": 0}]
    assert set(result["removed"]) <= {"M14"}
    assert splice(OLD, result) == query_ids(jmap)


def test_change_outside_the_results_adds_nothing(jmap):
    """§5.6: a new child of Projects is not in the top-level results: nothing added,
    and it was never in the old results either, so it is not removed."""
    mailbox_set(jmap, create={"c": {"name": "Child", "parentId": "M13"}})
    result = query_changes(jmap)
    assert (result["removed"], result["added"], result["newQueryState"]) == ([], [], "12")


def test_created_and_destroyed_since_is_neither_removed_nor_added(jmap):
    """§5.6: a Mailbox created and destroyed since was in neither the old nor the new
    results."""
    mailbox_set(jmap, create={"t": {"name": "Temp"}})
    mailbox_set(jmap, destroy=["M22"])
    result = query_changes(jmap)
    assert (result["removed"], result["added"], result["newQueryState"]) == ([], [], "13")


def test_combined_changes_splice_into_the_new_results(jmap):
    """§5.6: create, rename and destroy since the old state: splicing removed and added
    into the old results gives exactly the new results."""
    mailbox_set(jmap, create={"b": {"name": "Bills"}})             # 12: M22
    mailbox_set(jmap, update={"M17": {"name": "Zoo"}})             # 13
    mailbox_set(jmap, destroy=["M16"])                             # 14
    result = query_changes(jmap)
    assert sorted(result["removed"]) == ["M16", "M17"]
    assert result["added"] == [{"id": "M22", "index": 1}, {"id": "M17", "index": 8}]
    assert result["newQueryState"] == "14"
    assert splice(OLD, result) == query_ids(jmap) == [
        "M4", "M22", "M2", "M1", "M5", "M13", "M3", "M6", "M17"]


def test_added_is_sorted_by_index(jmap):
    """§5.6: the added array MUST be sorted by index, lowest first (whatever the order
    of creation)."""
    mailbox_set(jmap, create={"z": {"name": "Zzz"}})               # M22
    mailbox_set(jmap, create={"a": {"name": "Aaa"}})               # M23
    result = query_changes(jmap)
    assert result["added"] == [{"id": "M23", "index": 0}, {"id": "M22", "index": 10}]


def test_changes_from_an_intermediate_query_state(jmap):
    """§5.6: changes are relative to sinceQueryState: from "12" only the later rename."""
    mailbox_set(jmap, create={"b": {"name": "Bills"}})             # 12
    between = query_ids(jmap)
    mailbox_set(jmap, update={"M17": {"name": "Zoo"}})             # 13
    result = query_changes(jmap, since="12")
    assert (result["oldQueryState"], result["newQueryState"]) == ("12", "13")
    assert (result["removed"], result["added"]) == (["M17"], [{"id": "M17", "index": 9}])
    assert splice(between, result) == query_ids(jmap)


def test_query_changes_without_filter_or_sort(jmap):
    """§5.6: filter and sort may be null, as in the /query they repeat."""
    mailbox_set(jmap, destroy=["M17"])
    result = jmap.call("Mailbox/queryChanges", {"accountId": "alice",
                                                "sinceQueryState": "11"})
    assert (result["removed"], result["added"]) == (["M17"], [])


# -- maxChanges, calculateTotal, upToId --

def test_more_changes_than_max_changes_is_too_many_changes(jmap):
    """§5.6: each removed and added item counts; 2 changes > maxChanges 1
    -> tooManyChanges."""
    mailbox_set(jmap, update={"M17": {"name": "Zoo"}})
    assert jmap.error("Mailbox/queryChanges", {
        "accountId": "alice", "filter": FILTER, "sort": SORT, "sinceQueryState": "11",
        "maxChanges": 1}) == "tooManyChanges"


def test_changes_within_max_changes_are_returned(jmap):
    """§5.6: 2 changes with maxChanges 2 -> the normal response."""
    mailbox_set(jmap, update={"M17": {"name": "Zoo"}})
    result = query_changes(jmap, maxChanges=2)
    assert (result["removed"], result["added"]) == (["M17"], [{"id": "M17", "index": 8}])


@pytest.mark.parametrize("bad", [-1, "2", 1.5])
def test_malformed_max_changes_is_invalid_arguments(jmap, bad):
    """§5.6: maxChanges is "UnsignedInt|null"."""
    assert jmap.error("Mailbox/queryChanges", {"accountId": "alice", "sinceQueryState": "11",
                                               "maxChanges": bad}) == "invalidArguments"


def test_total_is_returned_only_when_calculate_total_is_true(jmap):
    """§5.6: total (of the new results) only if calculateTotal is true."""
    mailbox_set(jmap, create={"b": {"name": "Bills"}})
    assert "total" not in query_changes(jmap)
    assert "total" not in query_changes(jmap, calculateTotal=False)
    assert query_changes(jmap, calculateTotal=True)["total"] == 10


def test_up_to_id_is_accepted_and_ignored_for_a_mutable_sort(jmap):
    """§5.6: upToId is ignored when filter or sort use mutable properties (name)."""
    mailbox_set(jmap, create={"b": {"name": "Bills"}})
    mailbox_set(jmap, update={"M17": {"name": "Zoo"}})
    with_up_to = query_changes(jmap, upToId="M4")
    assert with_up_to == query_changes(jmap)
    assert with_up_to["added"] == [{"id": "M22", "index": 1}, {"id": "M17", "index": 9}]


def test_up_to_id_not_in_the_results_is_accepted(jmap):
    """§5.6: upToId is "Id|null"; one not in the results changes nothing."""
    mailbox_set(jmap, create={"b": {"name": "Bills"}})
    assert query_changes(jmap, upToId="M999")["added"] == [{"id": "M22", "index": 1}]
    assert query_changes(jmap, upToId=None)["added"] == [{"id": "M22", "index": 1}]


def test_malformed_up_to_id_is_invalid_arguments(jmap):
    """§5.6: upToId must be an Id."""
    assert jmap.error("Mailbox/queryChanges", {"accountId": "alice", "sinceQueryState": "11",
                                               "upToId": 4}) == "invalidArguments"


class Ranked(jmapd.DataType):
    """Test-only type sorted and filtered on an immutable property."""
    name = "Ranked"
    capability = "urn:example:ranked"
    id_prefix = "R"
    properties = {
        "id": jmapd.Prop(jmapd.Id, server_set=True, immutable=True),
        "rank": jmapd.Prop(jmapd.UnsignedInt, immutable=True),
    }
    filters = {"rank": jmapd.Filter("equals", "rank", jmapd.UnsignedInt)}
    sorts = {"rank": jmapd.Sort("rank")}
    immutable_query_properties = frozenset({"rank"})


def test_up_to_id_omits_later_additions_for_an_immutable_sort(core, jmap):
    """§5.6: with sort and filter only on immutable properties and upToId in the results,
    added ids with a higher index than upToId SHOULD be omitted."""
    core.add_datatype(Ranked())
    using = [jmapd.URN_CORE, "urn:example:ranked"]
    created = jmap.call("Ranked/set", {"accountId": "alice", "create": {
        str(rank): {"rank": rank} for rank in (10, 20, 30, 40)}}, using=using)["created"]
    assert {k: v["id"] for k, v in created.items()} == {
        "10": "R22", "20": "R23", "30": "R24", "40": "R25"}
    since = jmap.call("Ranked/query", {"accountId": "alice", "sort": [{"property": "rank"}]},
                      using=using)["queryState"]
    jmap.call("Ranked/set", {"accountId": "alice", "create": {
        "15": {"rank": 15}, "35": {"rank": 35}}}, using=using)        # R26, R27
    args = {"accountId": "alice", "sort": [{"property": "rank"}], "sinceQueryState": since}
    everything = jmap.call("Ranked/queryChanges", args, using=using)
    up_to = jmap.call("Ranked/queryChanges", {**args, "upToId": "R23"}, using=using)
    assert everything["added"] == [{"id": "R26", "index": 1}, {"id": "R27", "index": 4}]
    assert up_to["added"] == [{"id": "R26", "index": 1}]


# -- errors --

@pytest.mark.parametrize("state", ["bogus", "", "-1", "012", "12", "99999"])
def test_bad_since_query_state_is_cannot_calculate_changes(jmap, state):
    """§5.6: a queryState the server never issued (malformed or in the future)
    -> cannotCalculateChanges."""
    assert jmap.error("Mailbox/queryChanges", {"accountId": "alice", "filter": FILTER,
                                               "sort": SORT, "sinceQueryState": state}) \
        == "cannotCalculateChanges"


def test_query_state_older_than_the_change_history_is_cannot_calculate_changes(core, jmap):
    """§5.6: once the tombstone of a destroy is purged (31 days later), older query states
    -> cannotCalculateChanges."""
    mailbox_set(jmap, destroy=["M17"])                             # 12
    core.clock.advance(31 * 86400)
    with core.store.transaction():
        core.store.purge_tombstones(core.now() - jmapd.TOMBSTONE_TTL_SECONDS)
    assert jmap.error("Mailbox/queryChanges", {"accountId": "alice", "filter": FILTER,
                                               "sort": SORT, "sinceQueryState": "11"}) \
        == "cannotCalculateChanges"
    assert query_changes(jmap, since="12")["removed"] == []


def test_missing_since_query_state_is_invalid_arguments(jmap):
    """§5.6: sinceQueryState is a required String."""
    assert jmap.error("Mailbox/queryChanges", {"accountId": "alice"}) == "invalidArguments"
    assert jmap.error("Mailbox/queryChanges", {"accountId": "alice",
                                               "sinceQueryState": 11}) == "invalidArguments"


def test_malformed_filter_is_invalid_arguments(jmap):
    """§5.6/§5.5: the filter is checked as in /query."""
    assert jmap.error("Mailbox/queryChanges", {"accountId": "alice", "sinceQueryState": "11",
                                               "filter": {"operator": "XOR",
                                                          "conditions": [{}]}}) \
        == "invalidArguments"


def test_unknown_filter_condition_is_unsupported_filter(jmap):
    """§5.6/§5.5: an unknown condition -> unsupportedFilter."""
    assert jmap.error("Mailbox/queryChanges", {"accountId": "alice", "sinceQueryState": "11",
                                               "filter": {"colour": "red"}}) \
        == "unsupportedFilter"


def test_unknown_sort_property_is_unsupported_sort(jmap):
    """§5.6/§5.5: an unsortable property -> unsupportedSort."""
    assert jmap.error("Mailbox/queryChanges", {"accountId": "alice", "sinceQueryState": "11",
                                               "sort": [{"property": "role"}]}) \
        == "unsupportedSort"


def test_window_arguments_of_query_are_invalid_arguments(jmap):
    """§5.6: /queryChanges takes no position, anchor or limit -> invalidArguments."""
    for extra in ({"position": 0}, {"anchor": "M1"}, {"limit": 5}):
        assert jmap.error("Mailbox/queryChanges", {"accountId": "alice",
                                                   "sinceQueryState": "11", **extra}) \
            == "invalidArguments"


def test_query_changes_in_an_account_the_user_cannot_see_is_account_not_found(jmap):
    """§3.6.2: bob's account -> accountNotFound."""
    assert jmap.error("Mailbox/queryChanges", {"accountId": "bob", "sinceQueryState": "0"}) \
        == "accountNotFound"


def test_tree_sorted_query_changes_report_the_moved_subtree(jmap):
    """§5.6 with RFC 8621 §2.3 sortAsTree: renaming a parent moves its children too, so
    they are reported (removed and re-added at their new index)."""
    args = {"accountId": "alice", "sort": [{"property": "name"}], "sortAsTree": True}
    before = jmap.call("Mailbox/query", args)
    names = jmap.mailbox_ids()
    jmap.call("Mailbox/set", {"accountId": "alice", "update": {names["Projects"]: {"name": "ZZZ"}}})
    after = jmap.call("Mailbox/query", args)["ids"]
    changes = jmap.call("Mailbox/queryChanges", {**args, "sinceQueryState": before["queryState"]})
    moved = {names["Projects"], names["Apollo"], names["Zephyr"]}
    assert set(changes["removed"]) == moved
    assert changes["added"] == [{"id": i, "index": after.index(i)} for i in after if i in moved]
    rebuilt = [i for i in before["ids"] if i not in changes["removed"]]
    for entry in changes["added"]:
        rebuilt.insert(entry["index"], entry["id"])
    assert rebuilt == after


def test_up_to_id_is_ignored_for_a_tree_sorted_query(jmap):
    """§5.6: upToId only trims when filter and sort are immutable; sortAsTree orders by
    the mutable parentId, so every added entry is reported."""
    args = {"accountId": "alice", "sortAsTree": True}
    before = jmap.call("Mailbox/query", args)
    jmap.call("Mailbox/set", {"accountId": "alice", "create": {"n": {"name": "New"}}})
    changes = jmap.call("Mailbox/queryChanges", {**args, "sinceQueryState": before["queryState"],
                                                 "upToId": before["ids"][0]})
    assert [entry["id"] for entry in changes["added"]] == ["M22"]
