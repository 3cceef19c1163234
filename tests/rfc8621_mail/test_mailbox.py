"""RFC 8621 §2 (Mailbox), §2.1-2.5 (Mailbox/get, /changes, /query, /queryChanges, /set),
with the mail account capability of §1.3.1 (maxMailboxDepth, maxSizeMailboxName).

Demo data for alice (state "11"), as id / name / role / sortOrder / parent:
    M1 Inbox inbox 1, M2 Drafts drafts 2, M3 Sent sent 3, M4 Archive archive 4,
    M5 Junk junk 5, M6 Trash trash 6, M13 Projects 0, M14 Apollo 0 (in M13),
    M15 Zephyr 0 (in M13), M16 Receipts 0, M17 Family 0.
New mailboxes get ids M22, M23, ...
"""

import pytest

import jmapd

ALL_RIGHTS = {right: True for right in (
    "mayReadItems", "mayAddItems", "mayRemoveItems", "maySetSeen", "maySetKeywords",
    "mayCreateChild", "mayRename", "mayDelete", "maySubmit")}
ZERO_COUNTS = {"totalEmails": 0, "unreadEmails": 0, "totalThreads": 0, "unreadThreads": 0}
ROLES = {"M1": "inbox", "M2": "drafts", "M3": "sent", "M4": "archive", "M5": "junk",
         "M6": "trash"}


def get(jmap, ids=None, properties=None):
    return jmap.call("Mailbox/get", {"accountId": "alice", "ids": ids,
                                     "properties": properties})["list"]


def one(jmap, object_id, *properties):
    found = get(jmap, [object_id], list(properties) or None)
    return found[0] if found else None


def mailbox_set(jmap, **args):
    return jmap.call("Mailbox/set", {"accountId": "alice", **args})


def create(jmap, **props):
    """The SetError of one create that must fail (state checked unchanged), or the id."""
    before = jmap.call("Mailbox/get", {"accountId": "alice", "ids": []})["state"]
    result = mailbox_set(jmap, create={"k": props})
    if result["created"]:
        return result["created"]["k"]["id"]
    assert result["newState"] == before
    return result["notCreated"]["k"]


def update(jmap, object_id, patch):
    """None if the update succeeded, else its SetError (with nothing written)."""
    before = one(jmap, object_id)
    result = mailbox_set(jmap, update={object_id: patch})
    if result["updated"]:
        return None
    assert one(jmap, object_id) == before
    return result["notUpdated"][object_id]


def query(jmap, **args):
    return jmap.call("Mailbox/query", {"accountId": "alice", **args})["ids"]


def invalid(error):
    assert error["type"] == "invalidProperties", error
    return error["properties"]


# -- §2 properties, §2.1 Mailbox/get --

def test_a_mailbox_has_all_rfc_8621_properties(jmap):
    """§2: id, name, parentId, role, sortOrder, the four counts, myRights, isSubscribed."""
    assert one(jmap, "M1") == {
        "id": "M1", "name": "Inbox", "parentId": None, "role": "inbox", "sortOrder": 1,
        **ZERO_COUNTS, "myRights": ALL_RIGHTS, "isSubscribed": True}


def test_the_demo_tree_has_the_documented_mailboxes(jmap):
    """§2.1: Mailbox/get with ids null fetches all at once."""
    listed = {m["id"]: (m["name"], m["parentId"], m["role"])
              for m in get(jmap, properties=["name", "parentId", "role"])}
    assert listed == {
        "M1": ("Inbox", None, "inbox"), "M2": ("Drafts", None, "drafts"),
        "M3": ("Sent", None, "sent"), "M4": ("Archive", None, "archive"),
        "M5": ("Junk", None, "junk"), "M6": ("Trash", None, "trash"),
        "M13": ("Projects", None, None), "M14": ("Apollo", "M13", None),
        "M15": ("Zephyr", "M13", None), "M16": ("Receipts", None, None),
        "M17": ("Family", None, None)}


def test_counts_are_zero_without_emails(jmap):
    """§2: totalEmails/unreadEmails/totalThreads/unreadThreads count Emails; none exist."""
    for mailbox in get(jmap, properties=list(ZERO_COUNTS)):
        assert {k: v for k, v in mailbox.items() if k != "id"} == ZERO_COUNTS


def test_owner_has_every_right_on_each_mailbox(jmap):
    """§2 myRights: the owner of the account may do everything on its Mailboxes."""
    for mailbox in get(jmap, properties=["myRights"]):
        assert mailbox["myRights"] == ALL_RIGHTS


def test_new_mailbox_gets_the_defaults(jmap):
    """§2: parentId null, role null, sortOrder 0 by default; isSubscribed defaults to
    true for a Mailbox the user creates; counts 0; the owner's full myRights."""
    new_id = create(jmap, name="Bills")
    assert new_id == "M22"
    assert one(jmap, "M22") == {
        "id": "M22", "name": "Bills", "parentId": None, "role": None, "sortOrder": 0,
        **ZERO_COUNTS, "myRights": ALL_RIGHTS, "isSubscribed": True}


def test_is_subscribed_can_be_set_and_cleared(jmap):
    """§2: isSubscribed is a client-settable Boolean."""
    assert create(jmap, name="Quiet", isSubscribed=False) == "M22"
    assert one(jmap, "M22", "isSubscribed") == {"id": "M22", "isSubscribed": False}
    assert update(jmap, "M22", {"isSubscribed": True}) is None
    assert one(jmap, "M22", "isSubscribed") == {"id": "M22", "isSubscribed": True}


@pytest.mark.parametrize("prop", [*ZERO_COUNTS, "myRights"])
def test_server_set_properties_cannot_be_changed(jmap, prop):
    """§2: the counts and myRights are server-set -> invalidProperties on a new value."""
    value = {"mayDelete": False} if prop == "myRights" else 5
    assert invalid(update(jmap, "M16", {prop: value})) == [prop]


def test_mail_account_capability_declares_the_mailbox_limits(core):
    """§1.3.1: the account's mail capability carries maxMailboxDepth and
    maxSizeMailboxName (>= 100)."""
    session = core.session("alice", "http://x")
    mail = session["accounts"]["alice"]["accountCapabilities"][jmapd.URN_MAIL]
    assert (mail["maxMailboxDepth"], mail["maxSizeMailboxName"]) == (10, 255)
    assert mail["mayCreateTopLevelMailbox"] is True


# -- roles --

def test_a_role_from_the_registry_is_accepted(jmap):
    """§2 role: a lowercased IANA mailbox attribute name, e.g. "flagged"."""
    assert create(jmap, name="Starred", role="flagged") == "M22"
    assert one(jmap, "M22", "role") == {"id": "M22", "role": "flagged"}


@pytest.mark.parametrize("role", ["Inbox", "INBOX", "spam", "\\Junk", "", "foo"])
def test_an_unregistered_or_not_lowercased_role_is_invalid(jmap, role):
    """§2 role: MUST be a registry name converted to lowercase -> invalidProperties."""
    assert invalid(create(jmap, name="X", role=role)) == ["role"]


def test_a_second_mailbox_with_a_taken_role_is_invalid(jmap):
    """§2: there MUST NOT be two Mailboxes in the account with the same role."""
    assert invalid(create(jmap, name="Inbox 2", role="inbox")) == ["role"]


def test_updating_to_a_taken_role_is_invalid(jmap):
    """§2: giving Family the trash role while Trash has it -> invalidProperties."""
    assert invalid(update(jmap, "M17", {"role": "trash"})) == ["role"]


def test_two_creates_with_one_new_role_in_one_call_give_it_to_one(jmap):
    """§2: no two Mailboxes share a role, even when both are created in one call."""
    result = mailbox_set(jmap, create={"a": {"name": "Stars", "role": "flagged"},
                                       "b": {"name": "More stars", "role": "flagged"}})
    assert result["created"]["a"]["id"] == "M22"
    assert invalid(result["notCreated"]["b"]) == ["role"]


def test_a_role_can_be_moved_once_released(jmap):
    """§2: after Trash gives up its role (null), Family may take it."""
    assert update(jmap, "M6", {"role": None}) is None
    assert update(jmap, "M17", {"role": "trash"}) is None
    assert one(jmap, "M17", "role") == {"id": "M17", "role": "trash"}


def test_a_role_of_a_destroyed_mailbox_is_free_again(jmap):
    """§2: the role uniqueness counts only existing Mailboxes."""
    mailbox_set(jmap, destroy=["M5"])
    assert create(jmap, name="Spam", role="junk") == "M22"


def test_keeping_ones_own_role_is_allowed(jmap):
    """§2: an update repeating the Mailbox's own role is no conflict."""
    assert update(jmap, "M1", {"role": "inbox", "name": "Incoming"}) is None


def test_a_role_in_another_account_does_not_conflict(jmap, bob):
    """§2: the role is unique per account: bob's new flagged does not block alice's."""
    bob.call("Mailbox/set", {"accountId": "bob", "create": {"f": {"name": "F",
                                                                  "role": "flagged"}}})
    assert create(jmap, name="Flagged", role="flagged") == "M23"


# -- parentId trees --

def test_a_child_mailbox_names_its_parent(jmap):
    """§2 parentId: the parent's id; children of Projects are Apollo and Zephyr."""
    assert create(jmap, name="Hermes", parentId="M13") == "M22"
    assert one(jmap, "M22", "parentId") == {"id": "M22", "parentId": "M13"}
    assert sorted(query(jmap, filter={"parentId": "M13"})) == ["M14", "M15", "M22"]


def test_a_parent_that_does_not_exist_is_invalid(jmap):
    """§2 parentId: must be a Mailbox of the account (M999 none, M7 bob's)."""
    assert invalid(create(jmap, name="Lost", parentId="M999")) == ["parentId"]
    assert invalid(create(jmap, name="Lost", parentId="M7")) == ["parentId"]


def test_a_destroyed_parent_is_invalid(jmap):
    """§2 parentId: a destroyed Mailbox cannot be a parent."""
    mailbox_set(jmap, destroy=["M17"])
    assert invalid(create(jmap, name="Kid", parentId="M17")) == ["parentId"]


def test_a_mailbox_can_be_moved_to_another_parent_and_to_the_top(jmap):
    """§2 parentId is mutable: Apollo under Receipts, then top-level (null)."""
    assert update(jmap, "M14", {"parentId": "M16"}) is None
    assert one(jmap, "M14", "parentId") == {"id": "M14", "parentId": "M16"}
    assert update(jmap, "M14", {"parentId": None}) is None
    assert one(jmap, "M14", "parentId") == {"id": "M14", "parentId": None}


def test_a_mailbox_cannot_be_its_own_parent(jmap):
    """§2: there MUST NOT be a loop (Projects under Projects)."""
    assert invalid(update(jmap, "M13", {"parentId": "M13"})) == ["parentId"]


def test_a_mailbox_cannot_move_under_its_child(jmap):
    """§2: Projects under its child Apollo would be a loop -> invalidProperties."""
    assert invalid(update(jmap, "M13", {"parentId": "M14"})) == ["parentId"]


def test_a_mailbox_cannot_move_under_a_deeper_descendant(jmap):
    """§2: Projects under its grandchild (M22 in Apollo) would be a loop."""
    assert create(jmap, name="Deep", parentId="M14") == "M22"
    assert invalid(update(jmap, "M13", {"parentId": "M22"})) == ["parentId"]


def test_two_updates_in_one_call_cannot_form_a_loop(jmap):
    """§2: Receipts under Family and Family under Receipts in one call: the first move
    is made, the second would close a loop -> invalidProperties ["parentId"]."""
    result = mailbox_set(jmap, update={"M16": {"parentId": "M17"},
                                       "M17": {"parentId": "M16"}})
    assert result["updated"] == {"M16": None}
    assert invalid(result["notUpdated"]["M17"]) == ["parentId"]
    assert one(jmap, "M17", "parentId") == {"id": "M17", "parentId": None}


def chain(jmap, length, parent=None):
    """Create `length` nested Mailboxes L1/L2/... under parent in one call."""
    creates = {}
    for level in range(1, length + 1):
        up = f"#l{level - 1}" if level > 1 else parent
        creates[f"l{level}"] = {"name": f"L{level}", "parentId": up}
    return mailbox_set(jmap, create=creates)


def test_max_mailbox_depth_levels_are_allowed(jmap):
    """§1.3.1 maxMailboxDepth 10: a Mailbox with 9 ancestors is allowed."""
    result = chain(jmap, 10)
    assert result["notCreated"] is None
    assert result["created"]["l10"]["id"] == "M31"
    assert one(jmap, "M31", "parentId") == {"id": "M31", "parentId": "M30"}


def test_a_mailbox_deeper_than_max_mailbox_depth_is_invalid(jmap):
    """§1.3.1: maxMailboxDepth is one more than the maximum number of ancestors: the
    11th level (10 ancestors) -> invalidProperties ["parentId"]."""
    result = chain(jmap, 11)
    assert len(result["created"]) == 10
    assert invalid(result["notCreated"]["l11"]) == ["parentId"]


def test_moving_a_subtree_too_deep_is_invalid(jmap):
    """§1.3.1: moving Projects (which has a child) under level 9 would put Apollo at
    level 11 -> invalidProperties; under level 8 it fits exactly."""
    result = chain(jmap, 9)
    level = {k: v["id"] for k, v in result["created"].items()}
    assert invalid(update(jmap, "M13", {"parentId": level["l9"]})) == ["parentId"]
    assert update(jmap, "M13", {"parentId": level["l8"]}) is None


# -- names --

def test_sibling_names_must_be_unique_on_create(jmap):
    """§2: no two sibling Mailboxes with the same parent and the same name."""
    assert invalid(create(jmap, name="Apollo", parentId="M13")) == ["name"]
    assert invalid(create(jmap, name="Inbox")) == ["name"]


def test_same_name_under_another_parent_is_allowed(jmap):
    """§2: the name is unique among siblings only: "Apollo" at the top level is fine,
    and so is "Inbox" under Projects."""
    assert create(jmap, name="Apollo") == "M22"
    assert create(jmap, name="Inbox", parentId="M13") == "M23"


def test_a_rename_to_a_siblings_name_is_invalid(jmap):
    """§2: renaming Zephyr to Apollo (its sibling) -> invalidProperties ["name"]."""
    assert invalid(update(jmap, "M15", {"name": "Apollo"})) == ["name"]


def test_a_move_next_to_a_namesake_is_invalid(jmap):
    """§2: moving Apollo to the top level where a top-level "Apollo" exists -> invalid."""
    assert create(jmap, name="Apollo") == "M22"
    assert invalid(update(jmap, "M14", {"parentId": None})) == ["name"]


def test_a_name_of_a_destroyed_sibling_is_free_again(jmap):
    """§2: only existing siblings count."""
    mailbox_set(jmap, destroy=["M17"])
    assert create(jmap, name="Family") == "M22"


def test_two_creates_with_one_name_in_one_call_give_it_to_one(jmap):
    """§2: siblings created in one call cannot share a name either."""
    result = mailbox_set(jmap, create={"a": {"name": "Dup"}, "b": {"name": "Dup"}})
    assert result["created"]["a"]["id"] == "M22"
    assert invalid(result["notCreated"]["b"]) == ["name"]


def test_names_differing_only_in_case_are_distinct(jmap):
    """§2: "inbox" is not the same name as "Inbox"."""
    assert create(jmap, name="inbox") == "M22"


def test_an_empty_name_is_invalid(jmap):
    """§2 name: at least 1 character -> "" is invalidProperties ["name"]."""
    assert invalid(create(jmap, name="")) == ["name"]
    assert invalid(update(jmap, "M16", {"name": ""})) == ["name"]


@pytest.mark.parametrize("name", ["a\x00b", "tab\there", "new\nline", "bell\x07",
                                  "del\x7f", "c1\x85control"])
def test_a_name_with_control_characters_is_invalid(jmap, name):
    """§2 name: a Net-Unicode string; servers MAY reject control characters
    -> invalidProperties ["name"]."""
    assert invalid(create(jmap, name=name)) == ["name"]


def test_a_name_of_max_size_mailbox_name_octets_is_allowed(jmap):
    """§1.3.1 maxSizeMailboxName (255) is in UTF-8 octets: 255 ASCII, or 127 two-octet
    characters (254 octets), fit."""
    assert create(jmap, name="a" * 255) == "M22"
    assert create(jmap, name="é" * 127) == "M23"


def test_a_name_longer_than_max_size_mailbox_name_octets_is_invalid(jmap):
    """§1.3.1: 256 ASCII octets, or 128 "é" (256 octets though 128 characters), exceed
    maxSizeMailboxName -> invalidProperties ["name"]."""
    assert invalid(create(jmap, name="a" * 256)) == ["name"]
    assert invalid(create(jmap, name="é" * 128)) == ["name"]


def test_a_non_ascii_name_is_kept_exactly(jmap):
    """§2 name: any Unicode text is a name."""
    assert create(jmap, name="Ρεσεψιόν 📬") == "M22"
    assert one(jmap, "M22", "name") == {"id": "M22", "name": "Ρεσεψιόν 📬"}


# -- sortOrder --

@pytest.mark.parametrize("value", [0, 1, 2**31 - 1])
def test_sort_order_in_range_is_accepted(jmap, value):
    """§2 sortOrder: an integer with 0 <= sortOrder < 2^31."""
    assert create(jmap, name="S", sortOrder=value) == "M22"
    assert one(jmap, "M22", "sortOrder") == {"id": "M22", "sortOrder": value}


@pytest.mark.parametrize("value", [-1, 2**31, 2**53, 1.5, "1", True, None])
def test_sort_order_out_of_range_or_not_an_integer_is_invalid(jmap, value):
    """§2 sortOrder: outside 0 <= sortOrder < 2^31 (or not an UnsignedInt)
    -> invalidProperties ["sortOrder"]."""
    assert invalid(create(jmap, name="S", sortOrder=value)) == ["sortOrder"]
    if value is not None:  # null in a patch resets to the default 0
        assert invalid(update(jmap, "M16", {"sortOrder": value})) == ["sortOrder"]


# -- §2.3 Mailbox/query --

NAME = [{"property": "name"}]


def test_filter_parent_id(jmap):
    """§2.3 parentId: matches the given value exactly; null matches top-level ones."""
    assert query(jmap, filter={"parentId": "M13"}, sort=NAME) == ["M14", "M15"]
    assert query(jmap, filter={"parentId": None}, sort=NAME) == [
        "M4", "M2", "M17", "M1", "M5", "M13", "M16", "M3", "M6"]
    assert query(jmap, filter={"parentId": "M999"}) == []


def test_filter_name_contains(jmap):
    """§2.3 name: the name contains the given string."""
    assert query(jmap, filter={"name": "o"}, sort=NAME) == ["M14", "M1", "M13"]
    assert query(jmap, filter={"name": "Rec"}) == ["M16"]
    assert query(jmap, filter={"name": "Receipts"}) == ["M16"]
    assert query(jmap, filter={"name": "xyz"}) == []


def test_filter_role(jmap):
    """§2.3 role: matches the given value exactly; null matches role-less ones."""
    assert query(jmap, filter={"role": "trash"}) == ["M6"]
    assert query(jmap, filter={"role": None}, sort=NAME) == ["M14", "M17", "M13", "M16", "M15"]
    assert query(jmap, filter={"role": "flagged"}) == []


def test_filter_has_any_role(jmap):
    """§2.3 hasAnyRole: true matches Mailboxes with a non-null role, false the others."""
    assert sorted(query(jmap, filter={"hasAnyRole": True})) == sorted(ROLES)
    assert sorted(query(jmap, filter={"hasAnyRole": False})) == [
        "M13", "M14", "M15", "M16", "M17"]


def test_filter_is_subscribed(jmap):
    """§2.3 isSubscribed: must be identical to the given value."""
    mailbox_set(jmap, update={"M5": {"isSubscribed": False}, "M17": {"isSubscribed": False}})
    assert query(jmap, filter={"isSubscribed": False}, sort=NAME) == ["M17", "M5"]
    assert len(query(jmap, filter={"isSubscribed": True})) == 9


def test_sort_by_sort_order_then_name(jmap):
    """§2.3: sortOrder MUST be supported for sorting; name breaks ties."""
    assert query(jmap, sort=[{"property": "sortOrder"}, {"property": "name"}]) == [
        "M14", "M17", "M13", "M16", "M15", "M1", "M2", "M3", "M4", "M5", "M6"]


def test_sort_by_name(jmap):
    """§2.3: name MUST be supported for sorting."""
    assert query(jmap, sort=NAME) == [
        "M14", "M4", "M2", "M17", "M1", "M5", "M13", "M16", "M3", "M6", "M15"]
    assert query(jmap, sort=[{"property": "name", "isAscending": False}])[:3] == [
        "M15", "M6", "M3"]


@pytest.mark.parametrize("prop", ["role", "parentId", "totalEmails", "isSubscribed", "id"])
def test_sort_by_other_properties_is_unsupported_sort(jmap, prop):
    """§2.3: only sortOrder and name are required; jmapd sorts on nothing else."""
    assert jmap.error("Mailbox/query", {"accountId": "alice", "sort": [{"property": prop}]}) \
        == "unsupportedSort"


def test_sort_as_tree_puts_children_right_after_their_parent(jmap):
    """§2.3 sortAsTree: ancestors come first, each set of siblings sorted by the
    comparators: Family, Projects, Apollo, Zephyr, Receipts, then the role mailboxes."""
    assert query(jmap, sortAsTree=True,
                 sort=[{"property": "sortOrder"}, {"property": "name"}]) == [
        "M17", "M13", "M14", "M15", "M16", "M1", "M2", "M3", "M4", "M5", "M6"]


def test_sort_as_tree_sorts_by_nearest_ancestors_with_a_common_parent(jmap):
    """§2.3 sortAsTree: a child of Projects sorts with Projects against its siblings,
    even when its own name (Aardvark) would come first; descending reverses siblings."""
    assert create(jmap, name="Aardvark", parentId="M15") == "M22"
    ordered = query(jmap, sortAsTree=True, sort=NAME)
    assert ordered == ["M4", "M2", "M17", "M1", "M5", "M13", "M14", "M15", "M22",
                       "M16", "M3", "M6"]
    assert query(jmap, sortAsTree=True, sort=[{"property": "name", "isAscending": False}]) \
        == ["M6", "M3", "M16", "M13", "M15", "M22", "M14", "M5", "M1", "M17", "M2", "M4"]


def test_filter_as_tree_drops_mailboxes_whose_ancestors_do_not_match(jmap):
    """§2.3 filterAsTree: a Mailbox is included only if all its ancestors are too.
    "Apollo" alone matches only Apollo, whose parent Projects does not match -> none;
    with "o", Apollo's parent Projects matches too, so Apollo stays."""
    assert query(jmap, filter={"name": "Apollo"}) == ["M14"]
    assert query(jmap, filter={"name": "Apollo"}, filterAsTree=True) == []
    assert query(jmap, filter={"name": "o"}, filterAsTree=True, sort=NAME) \
        == ["M14", "M1", "M13"]
    assert query(jmap, filter={"name": "Zephyr"}, filterAsTree=True) == []


def test_filter_as_tree_keeps_children_of_matching_parents(jmap):
    """§2.3 filterAsTree: Projects and Apollo both match; Zephyr does not."""
    tree_filter = {"operator": "OR", "conditions": [{"name": "Projects"}, {"name": "Apollo"}]}
    assert query(jmap, filter=tree_filter, filterAsTree=True, sort=NAME) == ["M14", "M13"]


def test_filter_as_tree_with_sort_as_tree(jmap):
    """§2.3: both tree arguments together: matching subtrees in tree order."""
    assert create(jmap, name="Archive 2024", parentId="M4") == "M22"
    assert create(jmap, name="Q1", parentId="M22") == "M23"
    tree_filter = {"operator": "OR", "conditions": [{"name": "Archive"}, {"name": "Q1"},
                                                    {"name": "Apollo"}]}
    assert query(jmap, filter=tree_filter, filterAsTree=True, sortAsTree=True, sort=NAME) \
        == ["M4", "M22", "M23"]


def test_sort_as_tree_with_a_filter_keeps_the_tree_order_of_matches(jmap):
    """§2.3: sortAsTree orders the filtered results as the tree would."""
    assert query(jmap, filter={"hasAnyRole": False}, sortAsTree=True, sort=NAME) \
        == ["M17", "M13", "M14", "M15", "M16"]


@pytest.mark.parametrize("arg", ["sortAsTree", "filterAsTree"])
def test_tree_arguments_must_be_booleans(jmap, arg):
    """§2.3: sortAsTree and filterAsTree are Booleans (default false)."""
    assert jmap.error("Mailbox/query", {"accountId": "alice", arg: "yes"}) \
        == "invalidArguments"


def test_tree_arguments_false_are_the_default(jmap):
    """§2.3: sortAsTree/filterAsTree false give the plain query results."""
    assert query(jmap, sort=NAME, sortAsTree=False, filterAsTree=False) == query(jmap,
                                                                                  sort=NAME)


# -- §2.5 Mailbox/set destroy --

def test_destroying_a_mailbox_with_a_child_is_mailbox_has_child(jmap):
    """§2.5: a Mailbox that still has a child -> mailboxHasChild; nothing destroyed."""
    result = mailbox_set(jmap, destroy=["M13"])
    assert result["notDestroyed"]["M13"]["type"] == "mailboxHasChild"
    assert result["destroyed"] is None
    assert one(jmap, "M13", "name") == {"id": "M13", "name": "Projects"}


def test_destroying_a_parent_and_all_its_children_in_one_call_succeeds(jmap):
    """§2.5/RFC 8620 §5.3: the final state is valid, so destroying Projects together
    with Apollo and Zephyr works, whatever their order in the list."""
    result = mailbox_set(jmap, destroy=["M13", "M14", "M15"])
    assert result["notDestroyed"] is None
    assert sorted(result["destroyed"]) == ["M13", "M14", "M15"]
    assert jmap.call("Mailbox/get", {"accountId": "alice", "ids": ["M13", "M14", "M15"]}
                     )["notFound"] == ["M13", "M14", "M15"]


def test_destroying_a_parent_with_only_some_children_is_mailbox_has_child(jmap):
    """§2.5: Zephyr remains, so Projects cannot go; Apollo is destroyed."""
    result = mailbox_set(jmap, destroy=["M13", "M14"])
    assert result["destroyed"] == ["M14"]
    assert result["notDestroyed"]["M13"]["type"] == "mailboxHasChild"


def test_destroying_a_three_level_subtree_in_one_call_succeeds(jmap):
    """§2.5: grandparent, parent and child listed top-down are all destroyed."""
    assert create(jmap, name="Deep", parentId="M14") == "M22"
    result = mailbox_set(jmap, destroy=["M13", "M14", "M22", "M15"])
    assert result["notDestroyed"] is None
    assert sorted(result["destroyed"]) == ["M13", "M14", "M15", "M22"]


def test_destroy_with_on_destroy_remove_emails_is_accepted(jmap):
    """§2.5 onDestroyRemoveEmails: a Boolean argument (default false)."""
    result = mailbox_set(jmap, destroy=["M17"], onDestroyRemoveEmails=True)
    assert (result["destroyed"], result["notDestroyed"]) == (["M17"], None)
    result = mailbox_set(jmap, destroy=["M16"], onDestroyRemoveEmails=False)
    assert (result["destroyed"], result["notDestroyed"]) == (["M16"], None)


class MailboxWithEmails(jmapd.Mailbox):
    """Mailbox as jmapd declares it, but Family (M17) holds 2 Emails: Email is not
    implemented yet, so its count hook is stubbed to exercise the §2.5 rule."""

    def email_count(self, context, object_id):
        return 2 if object_id == "M17" else 0


def test_destroying_a_mailbox_with_emails_is_mailbox_has_email(core, jmap):
    """§2.5: onDestroyRemoveEmails false (the default) and Emails in the Mailbox
    -> mailboxHasEmail; nothing destroyed."""
    core.add_datatype(MailboxWithEmails())
    result = mailbox_set(jmap, destroy=["M17", "M16"])
    assert result["notDestroyed"]["M17"]["type"] == "mailboxHasEmail"
    assert result["destroyed"] == ["M16"]
    result = mailbox_set(jmap, destroy=["M17"], onDestroyRemoveEmails=False)
    assert result["notDestroyed"]["M17"]["type"] == "mailboxHasEmail"
    assert result["destroyed"] is None
    assert one(jmap, "M17", "name") == {"id": "M17", "name": "Family"}


def test_on_destroy_remove_emails_true_destroys_a_mailbox_with_emails(core, jmap):
    """§2.5: onDestroyRemoveEmails true -> the Mailbox with Emails is destroyed."""
    core.add_datatype(MailboxWithEmails())
    result = mailbox_set(jmap, destroy=["M17"], onDestroyRemoveEmails=True)
    assert (result["destroyed"], result["notDestroyed"]) == (["M17"], None)


def test_mailbox_has_child_comes_before_mailbox_has_email(core, jmap):
    """§2.5: a Mailbox with a child cannot be destroyed even with onDestroyRemoveEmails."""
    core.add_datatype(MailboxWithEmails())
    assert create(jmap, name="Kids", parentId="M17") == "M22"
    result = mailbox_set(jmap, destroy=["M17"], onDestroyRemoveEmails=True)
    assert result["notDestroyed"]["M17"]["type"] == "mailboxHasChild"


def test_on_destroy_remove_emails_must_be_a_boolean(jmap):
    """§2.5: onDestroyRemoveEmails is a Boolean -> otherwise invalidArguments."""
    assert jmap.error("Mailbox/set", {"accountId": "alice", "destroy": ["M17"],
                                      "onDestroyRemoveEmails": 1}) == "invalidArguments"
    assert one(jmap, "M17", "name") == {"id": "M17", "name": "Family"}


def test_a_role_mailbox_can_be_destroyed(jmap):
    """§2: an account is not required to have Mailboxes with any particular roles."""
    result = mailbox_set(jmap, destroy=["M5"])
    assert result["destroyed"] == ["M5"]
    assert query(jmap, filter={"role": "junk"}) == []


def test_a_child_can_be_moved_out_and_its_parent_destroyed_in_one_call(jmap):
    """§2.5/RFC 8620 §5.3: updates run before destroys: moving Apollo and Zephyr to
    the top lets Projects be destroyed in the same call."""
    result = mailbox_set(jmap, update={"M14": {"parentId": None}, "M15": {"parentId": None}},
                         destroy=["M13"])
    assert (result["destroyed"], result["notDestroyed"]) == (["M13"], None)


# -- §2.2 Mailbox/changes, §2.4 Mailbox/queryChanges --

def test_changes_report_mailbox_updates_with_null_updated_properties(jmap):
    """§2.2: a rename is not a counts-only change, so updatedProperties is null."""
    mailbox_set(jmap, update={"M13": {"name": "Work"}})
    result = jmap.call("Mailbox/changes", {"accountId": "alice", "sinceState": "11"})
    assert (result["updated"], result["updatedProperties"]) == (["M13"], None)


def test_changes_report_subscription_changes_with_null_updated_properties(jmap):
    """§2.2: isSubscribed is not a count: updatedProperties stays null."""
    mailbox_set(jmap, update={"M2": {"isSubscribed": False}})
    result = jmap.call("Mailbox/changes", {"accountId": "alice", "sinceState": "11"})
    assert (result["updated"], result["updatedProperties"]) == (["M2"], None)


def test_updated_properties_back_reference_fetches_everything_when_null(jmap):
    """§2.2: "#properties" referencing a null updatedProperties gives all properties."""
    mailbox_set(jmap, update={"M13": {"name": "Work"}})
    responses = jmap.request([
        ["Mailbox/changes", {"accountId": "alice", "sinceState": "11"}, "0"],
        ["Mailbox/get", {"accountId": "alice",
                         "#ids": {"resultOf": "0", "name": "Mailbox/changes",
                                  "path": "/updated"},
                         "#properties": {"resultOf": "0", "name": "Mailbox/changes",
                                         "path": "/updatedProperties"}}, "1"],
    ])["methodResponses"]
    assert responses[1][0] == "Mailbox/get"
    assert responses[1][1]["list"] == [{
        "id": "M13", "name": "Work", "parentId": None, "role": None, "sortOrder": 0,
        **ZERO_COUNTS, "myRights": ALL_RIGHTS, "isSubscribed": True}]


def test_query_changes_follow_a_sort_order_change(jmap):
    """§2.4: Mailbox/queryChanges is the standard method: Trash to sortOrder 0 moves it
    in a sortOrder query."""
    sort = [{"property": "sortOrder"}, {"property": "name"}]
    old = query(jmap, sort=sort)
    mailbox_set(jmap, update={"M6": {"sortOrder": 0}})
    result = jmap.call("Mailbox/queryChanges", {"accountId": "alice", "sort": sort,
                                                "sinceQueryState": "11"})
    assert result["removed"] == ["M6"]
    assert result["added"] == [{"id": "M6", "index": 4}]
    spliced = [i for i in old if i not in result["removed"]]
    spliced.insert(4, "M6")
    assert spliced == query(jmap, sort=sort)


# -- isolation between accounts --

def test_bob_cannot_see_or_touch_alices_mailboxes(bob):
    """§2/RFC 8620 §3.6.2: alice's account is not bob's: accountNotFound."""
    assert bob.error("Mailbox/get", {"accountId": "alice"}) == "accountNotFound"
    assert bob.error("Mailbox/set", {"accountId": "alice", "destroy": ["M1"]}) \
        == "accountNotFound"
    result = bob.call("Mailbox/set", {"accountId": "bob", "destroy": ["M1"]})
    assert result["notDestroyed"]["M1"]["type"] == "notFound"
