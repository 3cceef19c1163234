"""RFC 8620 §5.2 (/changes), exercised through Mailbox/changes; RFC 8621 §2.2
(updatedProperties).

Demo data for alice is at state "11": M1-M6 role mailboxes, M13 Projects (M14 Apollo,
M15 Zephyr), M16 Receipts, M17 Family. New mailboxes get M22, M23, ...; every write
takes the account's next modseq, so each create/update/destroy moves the state by one.
"""

import re

import pytest

import jmapd
from conftest import seed_demo_accounts


def changes(jmap, since, **args):
    return jmap.call("Mailbox/changes", {"accountId": "alice", "sinceState": since, **args})


def mailbox_set(jmap, **args):
    return jmap.call("Mailbox/set", {"accountId": "alice", **args})


def create(jmap, name, **props):
    return mailbox_set(jmap, create={"c": {"name": name, **props}})["created"]["c"]["id"]


def test_no_changes_since_the_current_state(jmap):
    """§5.2: since the current state: nothing changed, newState is that state."""
    assert changes(jmap, "11") == {
        "accountId": "alice", "oldState": "11", "newState": "11", "hasMoreChanges": False,
        "created": [], "updated": [], "destroyed": [], "updatedProperties": None}


def test_created_records_are_listed_in_created(jmap):
    """§5.2: records created since the old state are in created."""
    first, second = create(jmap, "One"), create(jmap, "Two")
    result = changes(jmap, "11")
    assert (first, second) == ("M22", "M23")
    assert result["created"] == ["M22", "M23"]
    assert result["updated"] == []
    assert result["destroyed"] == []
    assert result["newState"] == "13"
    assert result["hasMoreChanges"] is False


def test_updated_records_are_listed_in_updated(jmap):
    """§5.2: records updated since the old state are in updated."""
    mailbox_set(jmap, update={"M16": {"name": "Bills"}, "M17": {"sortOrder": 3}})
    result = changes(jmap, "11")
    assert result["created"] == []
    assert sorted(result["updated"]) == ["M16", "M17"]
    assert result["destroyed"] == []
    assert result["newState"] == "13"


def test_destroyed_records_are_listed_in_destroyed(jmap):
    """§5.2: records destroyed since the old state are in destroyed."""
    mailbox_set(jmap, destroy=["M16"])
    result = changes(jmap, "11")
    assert (result["created"], result["updated"], result["destroyed"]) == ([], [], ["M16"])
    assert result["newState"] == "12"


def test_created_and_destroyed_since_is_omitted_entirely(jmap):
    """§5.2: a record created AND destroyed since the old state SHOULD be left out."""
    new_id = create(jmap, "Ephemeral")
    mailbox_set(jmap, destroy=[new_id])
    result = changes(jmap, "11")
    assert (result["created"], result["updated"], result["destroyed"]) == ([], [], [])
    assert result["newState"] == "13"


def test_created_and_updated_since_is_only_in_created(jmap):
    """§5.2: a record created AND updated since the old state SHOULD be only in created."""
    new_id = create(jmap, "Draft folder")
    mailbox_set(jmap, update={new_id: {"name": "Renamed"}})
    result = changes(jmap, "11")
    assert (result["created"], result["updated"], result["destroyed"]) == (["M22"], [], [])


def test_updated_and_destroyed_since_is_only_in_destroyed(jmap):
    """§5.2: a record updated AND destroyed since the old state SHOULD be only in destroyed."""
    mailbox_set(jmap, update={"M17": {"name": "Kin"}})
    mailbox_set(jmap, destroy=["M17"])
    result = changes(jmap, "11")
    assert (result["created"], result["updated"], result["destroyed"]) == ([], [], ["M17"])


def test_changes_from_an_intermediate_state_see_only_later_writes(jmap):
    """§5.2: changes are relative to sinceState: the create at 12 is not in 12 -> 14."""
    create(jmap, "Early")                                     # state 12
    mailbox_set(jmap, update={"M13": {"name": "Work"}})       # state 13
    mailbox_set(jmap, destroy=["M16"])                        # state 14
    result = changes(jmap, "12")
    assert (result["created"], result["updated"], result["destroyed"]) == ([], ["M13"], ["M16"])
    assert (result["oldState"], result["newState"]) == ("12", "14")


def test_a_no_op_update_is_not_a_change(jmap):
    """§5.2: updating a property to its current value changes nothing."""
    mailbox_set(jmap, update={"M16": {"name": "Receipts"}})
    result = changes(jmap, "11")
    assert (result["updated"], result["newState"]) == ([], "11")


def test_changes_since_state_zero_lists_every_live_record_as_created(jmap):
    """§5.2: "0" is the state before any Mailbox existed; all current ones are created."""
    result = changes(jmap, "0")
    assert result["created"] == ["M1", "M2", "M3", "M4", "M5", "M6",
                                 "M13", "M14", "M15", "M16", "M17"]
    assert result["newState"] == "11"


def test_changes_are_scoped_to_the_account(jmap, bob):
    """§5.2: bob's writes are not changes in alice's account."""
    bob.call("Mailbox/set", {"accountId": "bob", "destroy": ["M21"]})
    result = changes(jmap, "11")
    assert (result["created"], result["updated"], result["destroyed"]) == ([], [], [])


def test_max_changes_limits_the_number_of_ids(jmap):
    """§5.2: the number of ids across created/updated/destroyed MUST NOT exceed maxChanges."""
    for name in ("A", "B", "C", "D", "E"):
        create(jmap, name)
    result = changes(jmap, "11", maxChanges=2)
    assert result["created"] == ["M22", "M23"]
    assert result["updated"] == result["destroyed"] == []
    assert result["hasMoreChanges"] is True
    assert result["newState"] == "13"


def test_max_changes_pages_reach_the_final_state_exactly(jmap):
    """§5.2: with hasMoreChanges the client calls again from the intermediate newState
    until hasMoreChanges is false; the last newState is the current state."""
    create(jmap, "A")                                          # 12: M22
    mailbox_set(jmap, update={"M13": {"name": "Work"}})        # 13
    mailbox_set(jmap, destroy=["M16"])                         # 14
    create(jmap, "B")                                          # 15: M23
    mailbox_set(jmap, update={"M1": {"sortOrder": 9}})         # 16
    pages, since = [], "11"
    while True:
        page = changes(jmap, since, maxChanges=2)
        pages.append(page)
        assert page["oldState"] == since
        assert len(page["created"]) + len(page["updated"]) + len(page["destroyed"]) <= 2
        since = page["newState"]
        if not page["hasMoreChanges"]:
            break
    assert [(p["oldState"], p["newState"], p["hasMoreChanges"]) for p in pages] == [
        ("11", "13", True), ("13", "15", True), ("15", "16", False)]
    assert [p["created"] for p in pages] == [["M22"], ["M23"], []]
    assert [p["updated"] for p in pages] == [["M13"], [], ["M1"]]
    assert [p["destroyed"] for p in pages] == [[], ["M16"], []]
    current = jmap.call("Mailbox/get", {"accountId": "alice", "ids": []})["state"]
    assert since == current == "16"


def test_max_changes_of_one_pages_one_id_at_a_time(jmap):
    """§5.2: maxChanges 1 returns one id per page, each page one step further."""
    mailbox_set(jmap, update={"M13": {"name": "W"}})
    mailbox_set(jmap, update={"M16": {"name": "R"}})
    first = changes(jmap, "11", maxChanges=1)
    second = changes(jmap, first["newState"], maxChanges=1)
    assert (first["updated"], first["newState"], first["hasMoreChanges"]) == (["M13"], "12", True)
    assert (second["updated"], second["newState"], second["hasMoreChanges"]) \
        == (["M16"], "13", False)


def test_max_changes_equal_to_the_number_of_changes_has_no_more(jmap):
    """§5.2: when every change fits, hasMoreChanges is false and newState is current."""
    create(jmap, "A")
    create(jmap, "B")
    result = changes(jmap, "11", maxChanges=2)
    assert (result["created"], result["hasMoreChanges"], result["newState"]) \
        == (["M22", "M23"], False, "13")


def test_paged_changes_report_every_record_created_since_as_created(jmap):
    """§5.2: created lists the records created since the old state. Paging from "11"
    with maxChanges 1: M22 is created at 12, M23 at 13, M22 updated at 14. The first
    page ends at an intermediate state at or after 12, so some page must list M22 in
    created (never only in updated of a later page)."""
    create(jmap, "A")                                          # 12: M22
    create(jmap, "B")                                          # 13: M23
    mailbox_set(jmap, update={"M22": {"name": "A2"}})          # 14
    seen_created, since = [], "11"
    while True:
        page = changes(jmap, since, maxChanges=1)
        seen_created += page["created"]
        since = page["newState"]
        if not page["hasMoreChanges"]:
            break
    assert sorted(seen_created) == ["M22", "M23"]


def test_max_changes_zero_is_invalid_arguments(jmap):
    """§5.2: maxChanges, if given, MUST be greater than 0, else invalidArguments."""
    assert jmap.error("Mailbox/changes", {"accountId": "alice", "sinceState": "11",
                                          "maxChanges": 0}) == "invalidArguments"


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True])
def test_max_changes_that_is_not_a_positive_int_is_invalid_arguments(jmap, bad):
    """§5.2: maxChanges is "UnsignedInt|null"; negative/fractional/String/Boolean are
    invalidArguments."""
    assert jmap.error("Mailbox/changes", {"accountId": "alice", "sinceState": "11",
                                          "maxChanges": bad}) == "invalidArguments"


def test_max_changes_null_is_allowed(jmap):
    """§5.2: maxChanges null: the server chooses how many to return."""
    create(jmap, "A")
    result = changes(jmap, "11", maxChanges=None)
    assert (result["created"], result["hasMoreChanges"]) == (["M22"], False)


def test_missing_since_state_is_invalid_arguments(jmap):
    """§5.2: sinceState is a required String argument."""
    assert jmap.error("Mailbox/changes", {"accountId": "alice"}) == "invalidArguments"
    assert jmap.error("Mailbox/changes", {"accountId": "alice", "sinceState": 11}) \
        == "invalidArguments"


@pytest.mark.parametrize("state", ["bogus", "", "-1", "011", "1.0", " 11", "12", "99999"])
def test_bogus_or_future_state_is_cannot_calculate_changes(jmap, state):
    """§5.2: a state string the server never issued (malformed or in the future)
    -> cannotCalculateChanges."""
    assert jmap.error("Mailbox/changes", {"accountId": "alice", "sinceState": state}) \
        == "cannotCalculateChanges"


def test_unknown_argument_is_invalid_arguments(jmap):
    """§3.6.2: an argument /changes does not define -> invalidArguments."""
    assert jmap.error("Mailbox/changes", {"accountId": "alice", "sinceState": "11",
                                          "upToId": "M1"}) == "invalidArguments"


def test_unknown_account_is_account_not_found(jmap):
    """§3.6.2: an accountId the user cannot see -> accountNotFound."""
    assert jmap.error("Mailbox/changes", {"accountId": "bob", "sinceState": "0"}) \
        == "accountNotFound"


# -- tombstone retention (§5.2: states from the last 30 days SHOULD be calculable) --

def purge_as_at_startup(core):
    with core.store.transaction():
        core.store.purge_tombstones(core.now() - jmapd.TOMBSTONE_TTL_SECONDS)


def test_states_before_a_purged_tombstone_cannot_calculate_changes(core, jmap):
    """§5.2: once the tombstone of M17's destroy (state 12) is forgotten after 31 days,
    states older than it -> cannotCalculateChanges; state 12 itself still works."""
    mailbox_set(jmap, destroy=["M17"])                         # 12
    core.clock.advance(31 * 86400)
    purge_as_at_startup(core)
    for old in ("0", "11"):
        assert jmap.error("Mailbox/changes", {"accountId": "alice", "sinceState": old}) \
            == "cannotCalculateChanges"
    result = changes(jmap, "12")
    assert (result["destroyed"], result["newState"]) == ([], "12")


def test_tombstones_younger_than_thirty_days_are_kept(core, jmap):
    """§5.2: states given within the last 30 days SHOULD stay calculable."""
    mailbox_set(jmap, destroy=["M17"])
    core.clock.advance(29 * 86400)
    purge_as_at_startup(core)
    assert changes(jmap, "11")["destroyed"] == ["M17"]


def test_only_the_purged_tombstones_raise_the_floor(core, jmap):
    """§5.2: a destroy at day 0 (state 12) is purged at day 31, a destroy at day 20
    (state 13) is kept: 12 is calculable and reports M16 destroyed, 11 is not."""
    mailbox_set(jmap, destroy=["M17"])                         # 12, day 0
    core.clock.advance(20 * 86400)
    mailbox_set(jmap, destroy=["M16"])                         # 13, day 20
    core.clock.advance(11 * 86400)
    purge_as_at_startup(core)
    assert jmap.error("Mailbox/changes", {"accountId": "alice", "sinceState": "11"}) \
        == "cannotCalculateChanges"
    assert changes(jmap, "12")["destroyed"] == ["M16"]


def test_tombstone_floor_is_per_account(core, jmap, bob):
    """§5.2: purging alice's old tombstones leaves bob's old states calculable."""
    mailbox_set(jmap, destroy=["M17"])
    core.clock.advance(31 * 86400)
    purge_as_at_startup(core)
    result = bob.call("Mailbox/changes", {"accountId": "bob", "sinceState": "0"})
    assert len(result["created"]) == 10


def test_a_restarted_server_purges_tombstones_older_than_thirty_days(tmp_path):
    """§5.2: a server reopened on its database 31 days later no longer calculates
    changes from states before the purged destroy."""
    path = str(tmp_path / "jmapd.sqlite")
    first = jmapd.JmapCore(path, clock=jmapd.FixedClock(), ids=jmapd.SequentialIds())
    seed_demo_accounts(first)
    first.call("alice", "Mailbox/set", {"accountId": "alice", "destroy": ["M17"]})
    assert first.call("alice", "Mailbox/changes",
                      {"accountId": "alice", "sinceState": "11"})["destroyed"] == ["M17"]
    first.close()
    later = jmapd.FixedClock()
    later.advance(31 * 86400)
    second = jmapd.JmapCore(path, clock=later, ids=jmapd.SequentialIds())
    try:
        with pytest.raises(jmapd.MethodError) as raised:
            second.call("alice", "Mailbox/changes", {"accountId": "alice", "sinceState": "11"})
        assert raised.value.type == "cannotCalculateChanges"
        result = second.call("alice", "Mailbox/changes",
                             {"accountId": "alice", "sinceState": "12"})
        assert (result["newState"], result["destroyed"]) == ("12", [])
    finally:
        second.close()


# -- RFC 8621 §2.2 updatedProperties --

def test_updated_properties_is_null_when_a_name_changes(jmap):
    """RFC 8621 §2.2: not only counts changed (a rename) -> updatedProperties null."""
    mailbox_set(jmap, update={"M16": {"name": "Bills"}})
    result = changes(jmap, "11")
    assert result["updated"] == ["M16"]
    assert result["updatedProperties"] is None


def test_updated_properties_is_null_when_mailboxes_are_created_or_destroyed(jmap):
    """RFC 8621 §2.2: creates and destroys are not count-only changes -> null."""
    create(jmap, "New")
    mailbox_set(jmap, destroy=["M17"])
    result = changes(jmap, "11")
    assert (result["created"], result["destroyed"]) == (["M22"], ["M17"])
    assert result["updatedProperties"] is None


def test_updated_properties_is_present_in_every_mailbox_changes_response(jmap):
    """RFC 8621 §2.2: Mailbox/changes has the extra response argument updatedProperties."""
    assert "updatedProperties" in changes(jmap, "0")


def test_states_of_a_random_id_database_carry_its_epoch():
    """§5.2: a state string from another database (another epoch) cannot be calculated
    from, even when its number exists here too."""
    import jmapd
    first, second = jmapd.JmapCore(), jmapd.JmapCore()
    for core in (first, second):
        seed_demo_accounts(core)
    state = first.call("alice", "Mailbox/get", {"accountId": "alice", "ids": []})["state"]
    assert state.startswith(first.state_epoch) and first.state_epoch != second.state_epoch
    assert re.fullmatch(r"[a-z]{4}11", state)
    with pytest.raises(jmapd.MethodError) as raised:
        second.call("alice", "Mailbox/changes", {"accountId": "alice", "sinceState": state})
    assert raised.value.type == "cannotCalculateChanges"
    assert first.call("alice", "Mailbox/changes", {"accountId": "alice",
                                                   "sinceState": state})["created"] == []
