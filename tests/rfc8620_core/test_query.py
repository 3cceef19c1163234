"""RFC 8620 §5.5 (/query), exercised through Mailbox/query (filters of RFC 8621 §2.3).

Demo data for alice (state "11"), as id / name / role / sortOrder:
    M1 Inbox inbox 1, M2 Drafts drafts 2, M3 Sent sent 3, M4 Archive archive 4,
    M5 Junk junk 5, M6 Trash trash 6, M13 Projects 0 (children M14 Apollo, M15 Zephyr),
    M16 Receipts 0, M17 Family 0.
"""

import pytest

import jmapd
from conftest import seed_demo_accounts

BY_NAME = ["M14", "M4", "M2", "M17", "M1", "M5", "M13", "M16", "M3", "M6", "M15"]


def query(jmap, **args):
    return jmap.call("Mailbox/query", {"accountId": "alice", **args})


def ids(jmap, **args):
    return query(jmap, **args)["ids"]


def error(jmap, **args):
    return jmap.error("Mailbox/query", {"accountId": "alice", **args})


NAME = [{"property": "name"}]


# -- response shape --

def test_query_without_filter_returns_every_mailbox(jmap):
    """§5.5: filter null -> all objects of the type; position 0; total omitted."""
    result = query(jmap, filter=None, sort=NAME)
    assert result == {"accountId": "alice", "queryState": "11", "canCalculateChanges": True,
                      "position": 0, "ids": BY_NAME}


def test_query_state_is_the_mailbox_state(jmap):
    """§5.5: queryState changes when the results change (a new mailbox)."""
    assert query(jmap)["queryState"] == "11"
    jmap.call("Mailbox/set", {"accountId": "alice", "create": {"k": {"name": "New"}}})
    assert query(jmap)["queryState"] == "12"


def test_sort_null_and_empty_give_one_stable_order(jmap):
    """§5.5: with no comparators the order is server dependent but stable between calls."""
    first = ids(jmap, sort=None)
    assert sorted(first) == sorted(BY_NAME)
    assert ids(jmap, sort=[]) == first == ids(jmap)


def test_total_is_returned_only_when_calculate_total_is_true(jmap):
    """§5.5: total MUST be omitted unless calculateTotal is true."""
    assert "total" not in query(jmap)
    assert "total" not in query(jmap, calculateTotal=False)
    assert query(jmap, calculateTotal=True)["total"] == 11
    assert query(jmap, calculateTotal=True, filter={"hasAnyRole": True}, limit=2)["total"] == 6


def test_can_calculate_changes_is_true(jmap):
    """§5.5: canCalculateChanges tells whether /queryChanges works for this query."""
    assert query(jmap, filter={"name": "o"}, sort=NAME)["canCalculateChanges"] is True


# -- filters --

def test_filter_condition_properties_are_anded(jmap):
    """§5.5/RFC 8621 §2.3: a FilterCondition matches only if all its conditions match."""
    assert ids(jmap, filter={"parentId": None, "hasAnyRole": False}, sort=NAME) \
        == ["M17", "M13", "M16"]


def test_empty_filter_condition_matches_everything(jmap):
    """RFC 8621 §2.3: with zero properties a FilterCondition is true for all objects."""
    assert ids(jmap, filter={}, sort=NAME) == BY_NAME


def test_and_operator_requires_all_conditions(jmap):
    """§5.5: AND: all of the conditions must match."""
    assert ids(jmap, sort=NAME, filter={"operator": "AND", "conditions": [
        {"name": "o"}, {"parentId": None}]}) == ["M1", "M13"]


def test_or_operator_requires_any_condition(jmap):
    """§5.5: OR: at least one of the conditions must match."""
    assert ids(jmap, sort=NAME, filter={"operator": "OR", "conditions": [
        {"role": "inbox"}, {"parentId": "M13"}]}) == ["M14", "M1", "M15"]


def test_not_operator_requires_no_condition(jmap):
    """§5.5: NOT: none of the conditions must match (not just "not all"): neither a
    role nor an "o" in the name leaves Family, Receipts, Zephyr."""
    assert ids(jmap, sort=NAME, filter={"operator": "NOT", "conditions": [
        {"hasAnyRole": True}, {"name": "o"}]}) == ["M17", "M16", "M15"]


def test_not_of_a_null_equality_matches_the_non_null_ones(jmap):
    """§5.5: NOT {parentId: null} is every Mailbox that has a parent."""
    assert ids(jmap, sort=NAME, filter={"operator": "NOT", "conditions": [
        {"parentId": None}]}) == ["M14", "M15"]



def test_not_parent_id_matches_mailboxes_with_a_null_parent(jmap):
    """§5.5: NOT {parentId: "M13"} -> every Mailbox whose parent is not M13, including
    the top-level ones (parentId null)."""
    assert ids(jmap, sort=NAME, filter={"operator": "NOT", "conditions": [
        {"parentId": "M13"}]}) == ["M4", "M2", "M17", "M1", "M5", "M13", "M16", "M3", "M6"]


def test_not_role_matches_mailboxes_without_a_role(jmap):
    """§5.5: NOT {role: "inbox"} -> all but the Inbox, also the ones with role null."""
    assert ids(jmap, sort=NAME, filter={"operator": "NOT", "conditions": [
        {"role": "inbox"}]}) == [m for m in BY_NAME if m != "M1"]


def test_a_condition_or_its_negation_matches_everything(jmap):
    """§5.5: OR(c, NOT(c)) matches every record, whatever c is."""
    assert ids(jmap, sort=NAME, filter={"operator": "OR", "conditions": [
        {"parentId": "M13"}, {"operator": "NOT", "conditions": [{"parentId": "M13"}]}]}) \
        == BY_NAME


def test_operators_nest(jmap):
    """§5.5: conditions may themselves be FilterOperators:
    AND(top level, NOT(OR(name "Inbox", name "Trash")), OR(name "a", name "e"))."""
    assert ids(jmap, sort=NAME, filter={"operator": "AND", "conditions": [
        {"parentId": None},
        {"operator": "NOT", "conditions": [
            {"operator": "OR", "conditions": [{"name": "Inbox"}, {"name": "Trash"}]}]},
        {"operator": "OR", "conditions": [{"name": "a"}, {"name": "e"}]},
    ]}) == ["M4", "M2", "M17", "M13", "M16", "M3"]


def test_unknown_filter_condition_is_unsupported_filter(jmap):
    """§5.5: a condition the server cannot process -> unsupportedFilter."""
    assert error(jmap, filter={"colour": "red"}) == "unsupportedFilter"
    assert error(jmap, filter={"operator": "OR", "conditions": [
        {"name": "a"}, {"colour": "red"}]}) == "unsupportedFilter"
    # without "operator" an object is a FilterCondition, so "conditions" is a property
    assert error(jmap, filter={"conditions": [{"name": "a"}]}) == "unsupportedFilter"


@pytest.mark.parametrize("bad_filter", [
    "name",                                                    # not an object
    [{"name": "a"}],                                           # an array
    {"operator": "XOR", "conditions": [{"name": "a"}]},        # unknown operator
    {"operator": "and", "conditions": [{"name": "a"}]},        # operators are upper case
    {"operator": "AND"},                                       # no conditions
    {"operator": "AND", "conditions": {"name": "a"}},          # conditions not an array
    {"operator": "AND", "conditions": ["name"]},               # condition not an object
    {"operator": "AND", "conditions": [{"name": "a"}], "name": "b"},  # operator + property
    {"name": 5},                                               # wrongly typed value
    {"parentId": 13},
    {"hasAnyRole": "yes"},
    {"isSubscribed": None},
])
def test_malformed_filter_is_invalid_arguments(jmap, bad_filter):
    """§5.5: a filter that is not a FilterOperator/FilterCondition of the declared
    types -> invalidArguments (a FilterCondition MUST NOT have an "operator")."""
    assert error(jmap, filter=bad_filter) == "invalidArguments"


def test_operator_with_empty_conditions_follows_its_definition(jmap):
    """§5.5: conditions is "(FilterOperator|FilterCondition)[]"; AND ("all of the
    conditions must match") and NOT ("none must match") of [] match all, OR of [] none."""
    assert ids(jmap, sort=NAME, filter={"operator": "AND", "conditions": []}) == BY_NAME
    assert ids(jmap, sort=NAME, filter={"operator": "NOT", "conditions": []}) == BY_NAME
    assert ids(jmap, sort=NAME, filter={"operator": "OR", "conditions": []}) == []


# -- sorts and collations --

@pytest.fixture
def fruit(jmap):
    """Children of a new "Fruit" (M22): M23 apple, M24 Banana, M25 cherry,
    M26 Éclair, M27 fig."""
    result = jmap.call("Mailbox/set", {"accountId": "alice", "create": {
        "p": {"name": "Fruit"},
        "a": {"name": "apple", "parentId": "#p"}, "b": {"name": "Banana", "parentId": "#p"},
        "c": {"name": "cherry", "parentId": "#p"}, "e": {"name": "Éclair", "parentId": "#p"},
        "f": {"name": "fig", "parentId": "#p"}}})
    assert {k: v["id"] for k, v in result["created"].items()} == {
        "p": "M22", "a": "M23", "b": "M24", "c": "M25", "e": "M26", "f": "M27"}
    return {"parentId": "M22"}


@pytest.fixture
def numbers(jmap):
    """Children of a new "Numbers" (M22): M23 "10", M24 "9", M25 "100", M26 "abc",
    M27 "010"."""
    result = jmap.call("Mailbox/set", {"accountId": "alice", "create": {
        "p": {"name": "Numbers"},
        "a": {"name": "10", "parentId": "#p"}, "b": {"name": "9", "parentId": "#p"},
        "c": {"name": "100", "parentId": "#p"}, "d": {"name": "abc", "parentId": "#p"},
        "e": {"name": "010", "parentId": "#p"}}})
    assert result["created"]["e"]["id"] == "M27"
    return {"parentId": "M22"}


def test_sort_by_name_ascending_and_descending(jmap):
    """§5.5: isAscending true (default) sorts ascending; false reverses the order."""
    assert ids(jmap, sort=[{"property": "name", "isAscending": True}]) == BY_NAME
    assert ids(jmap, sort=[{"property": "name", "isAscending": False}]) == BY_NAME[::-1]


def test_sort_by_number_ascending_and_descending(jmap):
    """§5.5: a Number sorts lower first; ties go to the next comparator (name)."""
    assert ids(jmap, sort=[{"property": "sortOrder"}, {"property": "name"}]) == [
        "M14", "M17", "M13", "M16", "M15", "M1", "M2", "M3", "M4", "M5", "M6"]
    assert ids(jmap, sort=[{"property": "sortOrder", "isAscending": False},
                           {"property": "name"}]) == [
        "M6", "M5", "M4", "M3", "M2", "M1", "M14", "M17", "M13", "M16", "M15"]


def test_later_comparators_break_ties_of_earlier_ones(jmap):
    """§5.5: equal under the first comparator -> the next one decides (name descending)."""
    assert ids(jmap, filter={"hasAnyRole": False},
               sort=[{"property": "sortOrder"}, {"property": "name", "isAscending": False}]) \
        == ["M15", "M16", "M13", "M17", "M14"]


def test_ascii_casemap_folds_ascii_case_only(jmap, fruit):
    """§5.5 collation i;ascii-casemap (RFC 4790 §9.2): ASCII letters compare case-
    insensitively; "É" is not ASCII and compares by octet, after every ASCII letter."""
    assert ids(jmap, filter=fruit, sort=[{"property": "name",
                                          "collation": "i;ascii-casemap"}]) \
        == ["M23", "M24", "M25", "M27", "M26"]


def test_unicode_casemap_folds_case_and_decomposes(jmap, fruit):
    """§5.5 collation i;unicode-casemap (RFC 5051): "Éclair" sorts as "eclair",
    between "cherry" and "fig"."""
    assert ids(jmap, filter=fruit, sort=[{"property": "name",
                                          "collation": "i;unicode-casemap"}]) \
        == ["M23", "M24", "M25", "M26", "M27"]


def test_collation_descending_reverses_the_collated_order(jmap, fruit):
    """§5.5: isAscending false reverses the comparator's results under any collation."""
    assert ids(jmap, filter=fruit, sort=[{"property": "name", "isAscending": False,
                                          "collation": "i;ascii-casemap"}]) \
        == ["M26", "M27", "M25", "M24", "M23"]


def test_default_collation_is_unicode_aware_and_case_insensitive(jmap, fruit):
    """§5.5: the default collation MUST be unicode-aware and SHOULD be case-insensitive."""
    assert ids(jmap, filter=fruit, sort=[{"property": "name"}]) \
        == ["M23", "M24", "M25", "M26", "M27"]


def test_ascii_numeric_compares_leading_digits_as_numbers(jmap, numbers):
    """§5.5 collation i;ascii-numeric (RFC 4790 §9.1): "9" < "10" = "010" < "100", and a
    string without leading digits is positive infinity (last); ties keep a stable order."""
    ordered = ids(jmap, filter=numbers, sort=[{"property": "name",
                                               "collation": "i;ascii-numeric"}])
    assert ordered[0] == "M24"
    assert sorted(ordered[1:3]) == ["M23", "M27"]
    assert ordered[3:] == ["M25", "M26"]


def test_ascii_numeric_descending(jmap, numbers):
    """§5.5: i;ascii-numeric descending puts non-numbers first, then 100, 10/010, 9."""
    ordered = ids(jmap, filter=numbers, sort=[{"property": "name", "isAscending": False,
                                               "collation": "i;ascii-numeric"}])
    assert ordered[:2] == ["M26", "M25"]
    assert sorted(ordered[2:4]) == ["M23", "M27"]
    assert ordered[4] == "M24"


def test_collation_is_ignored_for_a_number_property(jmap):
    """§5.5: for a non-string property a (known) collation is ignored."""
    assert ids(jmap, sort=[{"property": "sortOrder", "collation": "i;ascii-casemap"},
                           {"property": "name"}]) == \
        ids(jmap, sort=[{"property": "sortOrder"}, {"property": "name"}])


def test_advertised_collations_are_the_supported_ones(core, jmap):
    """§2/§5.5: every collationAlgorithms entry of the session works as a collation."""
    advertised = core.session("alice", "http://x")["capabilities"][jmapd.URN_CORE][
        "collationAlgorithms"]
    assert sorted(advertised) == ["i;ascii-casemap", "i;ascii-numeric", "i;unicode-casemap"]
    for collation in advertised:
        assert len(ids(jmap, sort=[{"property": "name", "collation": collation}])) == 11


@pytest.mark.parametrize("sort", [
    [{"property": "name", "collation": "i;octet"}],
    [{"property": "name", "collation": "en"}],
    [{"property": "totalEmails"}],
    [{"property": "colour"}],
    [{"property": "name"}, {"property": "role"}],
])
def test_unknown_sort_property_or_collation_is_unsupported_sort(jmap, sort):
    """§5.5: a property the server cannot sort on or an unrecognised collation
    -> unsupportedSort."""
    assert error(jmap, sort=sort) == "unsupportedSort"


@pytest.mark.parametrize("sort", [
    {"property": "name"},                              # not an array
    ["name"],                                          # Comparator not an object
    [{"isAscending": True}],                           # no property
    [{"property": 5}],                                 # property not a String
    [{"property": "name", "isAscending": "yes"}],      # isAscending not a Boolean
    [{"property": "name", "collation": 5}],            # collation not a String
])
def test_malformed_sort_is_invalid_arguments(jmap, sort):
    """§5.5: sort is "Comparator[]|null" with property String, isAscending Boolean,
    collation String -> otherwise invalidArguments."""
    assert error(jmap, sort=sort) == "invalidArguments"


# -- windowing: position, anchor, limit --

def test_position_skips_that_many_results(jmap):
    """§5.5: position is the zero-based index of the first id returned."""
    result = query(jmap, sort=NAME, position=3, limit=2)
    assert (result["position"], result["ids"]) == (3, BY_NAME[3:5])


def test_negative_position_counts_from_the_end(jmap):
    """§5.5: a negative position is added to the total: -2 of 11 -> index 9."""
    result = query(jmap, sort=NAME, position=-2)
    assert (result["position"], result["ids"]) == (9, BY_NAME[9:])


def test_negative_position_beyond_the_start_is_clamped_to_zero(jmap):
    """§5.5: if still negative after adding the total, position is clamped to 0."""
    result = query(jmap, sort=NAME, position=-100, limit=3)
    assert (result["position"], result["ids"]) == (0, BY_NAME[:3])


def test_position_at_or_past_the_end_gives_no_ids_and_no_error(jmap):
    """§5.5: position >= total -> empty ids, not an error."""
    assert query(jmap, sort=NAME, position=11)["ids"] == []
    result = query(jmap, sort=NAME, position=50, calculateTotal=True)
    assert (result["ids"], result["total"]) == ([], 11)


def test_limit_caps_the_number_of_ids(jmap):
    """§5.5: limit is the maximum number of results returned."""
    assert query(jmap, sort=NAME, limit=4)["ids"] == BY_NAME[:4]
    assert query(jmap, sort=NAME, limit=0)["ids"] == []
    assert query(jmap, sort=NAME, limit=100)["ids"] == BY_NAME


def test_limit_within_the_server_cap_is_not_echoed(jmap):
    """§5.5: limit is returned only if the server set or changed it."""
    assert "limit" not in query(jmap, limit=4)
    assert "limit" not in query(jmap, limit=None)


@pytest.mark.parametrize("args", [{"limit": -1}, {"limit": 1.5}, {"limit": "3"},
                                  {"position": 1.5}, {"position": "1"},
                                  {"anchorOffset": "1", "anchor": "M1"},
                                  {"anchor": 13}, {"calculateTotal": "yes"}])
def test_malformed_window_arguments_are_invalid_arguments(jmap, args):
    """§5.5: a negative limit MUST be rejected with invalidArguments; so are position/
    anchorOffset that are not Ints, an anchor not an Id, calculateTotal not a Boolean."""
    assert error(jmap, **args) == "invalidArguments"


def test_anchor_starts_the_window_at_the_anchor(jmap):
    """§5.5: the index of the anchor (M17 Family, index 3) is the first result."""
    result = query(jmap, sort=NAME, anchor="M17", limit=2)
    assert (result["position"], result["ids"]) == (3, ["M17", "M1"])


def test_anchor_offset_is_added_to_the_anchor_index(jmap):
    """§5.5: anchorOffset -1 starts one before the anchor; +2 two after it."""
    before = query(jmap, sort=NAME, anchor="M17", anchorOffset=-1, limit=2)
    after = query(jmap, sort=NAME, anchor="M17", anchorOffset=2, limit=2)
    assert (before["position"], before["ids"]) == (2, ["M2", "M17"])
    assert (after["position"], after["ids"]) == (5, ["M5", "M13"])


def test_anchor_offset_before_the_start_is_clamped_to_zero(jmap):
    """§5.5: a negative resulting index is clamped to 0."""
    result = query(jmap, sort=NAME, anchor="M17", anchorOffset=-10, limit=2)
    assert (result["position"], result["ids"]) == (0, ["M14", "M4"])


def test_anchor_offset_past_the_end_gives_no_ids(jmap):
    """§5.5: an index past the end is used like a position: empty ids, no error."""
    result = query(jmap, sort=NAME, anchor="M6", anchorOffset=5)
    assert result["ids"] == []


def test_anchor_makes_position_ignored(jmap):
    """§5.5: if an anchor is given, position MUST be ignored."""
    result = query(jmap, sort=NAME, anchor="M13", position=9, limit=1)
    assert (result["position"], result["ids"]) == (6, ["M13"])


def test_anchor_offset_without_anchor_is_ignored(jmap):
    """§5.5: without an anchor, anchorOffset MUST be ignored."""
    result = query(jmap, sort=NAME, anchorOffset=4, limit=2)
    assert (result["position"], result["ids"]) == (0, BY_NAME[:2])


def test_anchor_null_uses_position(jmap):
    """§5.5: anchor is "Id|null"; null means position applies."""
    result = query(jmap, sort=NAME, anchor=None, position=2, limit=1)
    assert (result["position"], result["ids"]) == (2, [BY_NAME[2]])


def test_missing_anchor_is_anchor_not_found(jmap):
    """§5.5: an anchor not in the results -> anchorNotFound."""
    assert error(jmap, sort=NAME, anchor="M999") == "anchorNotFound"


def test_anchor_filtered_out_is_anchor_not_found(jmap):
    """§5.5: the anchor is looked for after filtering: Inbox is not a child of M13."""
    assert error(jmap, filter={"parentId": "M13"}, anchor="M1") == "anchorNotFound"


def test_anchor_within_a_filtered_sorted_result(jmap):
    """§5.5: the anchor's index is its index in the filtered, sorted results."""
    result = query(jmap, filter={"hasAnyRole": True}, sort=NAME, anchor="M5",
                   anchorOffset=-1, calculateTotal=True)
    assert (result["position"], result["ids"], result["total"]) == (2, ["M1", "M5", "M3", "M6"], 6)


@pytest.fixture
def capped_core():
    core = jmapd.JmapCore(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds(),
                          limits={"maxQueryLimit": 3})
    seed_demo_accounts(core)
    yield core
    core.close()


def capped_query(core, **args):
    return core.call("alice", "Mailbox/query", {"accountId": "alice", "sort": NAME, **args})


def test_limit_over_the_server_maximum_is_clamped_and_returned(capped_core):
    """§5.5: a limit greater than the server maximum is clamped; the new limit is
    returned so the client is aware."""
    result = capped_query(capped_core, limit=10)
    assert (result["ids"], result["limit"]) == (BY_NAME[:3], 3)


def test_null_limit_is_clamped_to_the_server_maximum(capped_core):
    """§5.5: a null limit with more results than the maximum is clamped and returned."""
    result = capped_query(capped_core, limit=None, position=1)
    assert (result["ids"], result["limit"]) == (BY_NAME[1:4], 3)


def test_limit_under_the_server_maximum_is_kept(capped_core):
    """§5.5: a limit within the maximum is used as given and not echoed."""
    result = capped_query(capped_core, limit=2)
    assert result["ids"] == BY_NAME[:2]
    assert "limit" not in result


# -- arguments and accounts --

def test_unknown_argument_is_invalid_arguments(jmap):
    """§3.6.2: an argument /query does not define -> invalidArguments."""
    assert error(jmap, sinceQueryState="11") == "invalidArguments"


def test_query_in_an_account_the_user_cannot_see_is_account_not_found(jmap):
    """§3.6.2: bob's account -> accountNotFound."""
    assert jmap.error("Mailbox/query", {"accountId": "bob"}) == "accountNotFound"


def test_a_wide_or_filter_is_answered_not_serverFail(jmap):
    """§5.5: 900 OR-ed conditions compile to a balanced expression and match."""
    conditions = [{"name": f"nothing{i}"} for i in range(899)] + [{"name": "Inbox"}]
    result = jmap.call("Mailbox/query", {"accountId": "alice",
                                         "filter": {"operator": "OR", "conditions": conditions}})
    assert result["ids"] == [jmap.mailbox_ids()["Inbox"]]


def test_a_filter_of_more_than_1000_nodes_is_unsupportedFilter(jmap):
    """§5.5: a filter the server will not process is unsupportedFilter, never serverFail."""
    conditions = [{"name": f"x{i}"} for i in range(1001)]
    assert jmap.error("Mailbox/query", {"accountId": "alice", "filter": {
        "operator": "OR", "conditions": conditions}}) == "unsupportedFilter"
