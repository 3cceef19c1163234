"""RFC 8620 §3.7 (references to previous method results), with RFC 6901 JSON Pointer,
through JmapCore.handle_request; RFC 8621 §2.2 for the Mailbox/changes
updatedProperties pattern."""

import pytest

import jmapd

CORE, MAIL = jmapd.URN_CORE, jmapd.URN_MAIL

SOURCE = {
    "a": {"b/c": 1, "m~n": 2, "~/": 3, "": 4, "0": "zero"},
    "list": [{"id": "x1", "tags": ["t1", "t2"]}, {"id": "x2", "tags": ["t3"]},
             {"id": "x3", "tags": []}],
    "nested": [[1, 2], [3]],
    "scalar": "text",
    "nothing": None,
}


def ref(path, result_of="src", name="Core/echo"):
    return {"resultOf": result_of, "name": name, "path": path}


def echo_from_source(jmap, reference_args, source=SOURCE):
    """Core/echo SOURCE as "src", then Core/echo reference_args; the second response."""
    response = jmap.request([["Core/echo", source, "src"],
                             ["Core/echo", reference_args, "use"]])
    return response["methodResponses"][1]


def resolved(jmap, path):
    """The value a reference to SOURCE at path resolves to."""
    name, args, call_id = echo_from_source(jmap, {"#v": ref(path)})
    assert (name, call_id) == ("Core/echo", "use"), args
    assert set(args) == {"v"}
    return args["v"]


def failure(jmap, reference_args, source=SOURCE):
    name, args, call_id = echo_from_source(jmap, reference_args, source)
    assert (name, call_id) == ("error", "use"), args
    return args["type"]


# --- resolution ---------------------------------------------------------------

@pytest.mark.parametrize("path, expected", [
    ("/scalar", "text"),
    ("/nothing", None),
    ("/a/0", "zero"),
    ("/list/0/id", "x1"),
    ("/list/2/tags", []),
    ("/list/1/tags/0", "t3"),
    ("/nested/1", [3]),
])
def test_a_reference_path_selects_a_value_in_the_earlier_response(jmap, path, expected):
    """§3.7: path is a JSON Pointer into the arguments of the referenced response."""
    assert resolved(jmap, path) == expected


@pytest.mark.parametrize("path, expected", [
    ("/a/b~1c", 1),     # ~1 is "/"
    ("/a/m~0n", 2),     # ~0 is "~"
    ("/a/~0~1", 3),     # both, unescaped in the right order
    ("/a/", 4),         # the empty member name
])
def test_a_reference_path_unescapes_tilde_zero_and_tilde_one(jmap, path, expected):
    """§3.7 (RFC 6901 §4): "~1" stands for "/" and "~0" for "~" in a token."""
    assert resolved(jmap, path) == expected


def test_an_empty_path_references_the_whole_arguments_object(jmap):
    """§3.7 (RFC 6901 §5): the pointer "" is the whole document, the response arguments."""
    assert resolved(jmap, "") == SOURCE


def test_a_star_maps_the_rest_of_the_path_over_an_array(jmap):
    """§3.7: "*" applies the rest of the pointer to every item, in order."""
    assert resolved(jmap, "/list/*/id") == ["x1", "x2", "x3"]


def test_a_star_flattens_array_results_into_one_array(jmap):
    """§3.7: array results of the items are concatenated, e.g. /list/*/emailIds."""
    assert resolved(jmap, "/list/*/tags") == ["t1", "t2", "t3"]
    assert resolved(jmap, "/nested/*") == [1, 2, 3]


def test_a_star_over_an_empty_array_is_an_empty_array(jmap):
    """§3.7: mapping over no items gives an empty array."""
    assert resolved(jmap, "/list/2/tags/*") == []


def test_a_reference_uses_the_first_response_with_that_call_id(jmap):
    """§3.7 step 1: the *first* response with an identical method call id is used."""
    response = jmap.request([["Core/echo", {"v": "first"}, "dup"],
                             ["Core/echo", {"v": "second"}, "dup"],
                             ["Core/echo", {"#v": ref("/v", "dup")}, "use"]])
    assert response["methodResponses"][2] == ["Core/echo", {"v": "first"}, "use"]


def test_a_reference_can_read_an_earlier_error_response(jmap):
    """§3.7 step 2: the response name must be identical to "name"; an error response is
    named "error", and its arguments are its type and description."""
    response = jmap.request([["Nope/nope", {}, "bad"],
                             ["Core/echo", {"#t": ref("/type", "bad", "error")}, "use"]])
    assert response["methodResponses"][1] == ["Core/echo", {"t": "unknownMethod"}, "use"]


def test_references_resolve_only_top_level_argument_names(jmap):
    """§3.7: only argument names beginning with "#" are references; a "#" key nested
    inside an argument's value is data and is echoed as is."""
    args = {"filter": {"#inMailbox": ref("/scalar")}, "list": [{"#x": ref("/scalar")}]}
    assert echo_from_source(jmap, args) == ["Core/echo", args, "use"]


def test_several_references_and_plain_arguments_combine(jmap):
    """§3.7: every "#" argument is resolved; other arguments are kept."""
    name, args, _ = echo_from_source(jmap, {"#ids": ref("/list/*/id"), "#one": ref("/a/0"),
                                            "plain": True})
    assert (name, args) == ("Core/echo", {"ids": ["x1", "x2", "x3"], "one": "zero",
                                          "plain": True})


def test_a_reference_may_point_at_a_response_from_any_earlier_call(jmap):
    """§3.7: resultOf names any previous call in the request, not only the last one."""
    response = jmap.request([["Core/echo", {"v": 1}, "a"], ["Core/echo", {"v": 2}, "b"],
                             ["Core/echo", {"#v": ref("/v", "a")}, "c"]])
    assert response["methodResponses"][2] == ["Core/echo", {"v": 1}, "c"]


# --- failures: invalidResultReference ---------------------------------------------

@pytest.mark.parametrize("reference", [
    ref("/scalar", result_of="nope"),
    ref("/scalar", result_of=""),
    ref("/scalar", result_of="SRC"),          # call ids are compared exactly
])
def test_a_reference_to_an_unknown_call_id_is_invalid_result_reference(jmap, reference):
    """§3.7 step 1: no previous response with that method call id -> evaluation fails."""
    assert failure(jmap, {"#v": reference}) == "invalidResultReference"


def test_a_reference_to_a_later_call_is_invalid_result_reference(jmap):
    """§3.7: only previously processed method calls count, not later ones."""
    response = jmap.request([["Core/echo", {"#v": ref("/v", "later")}, "now"],
                             ["Core/echo", {"v": 1}, "later"]])
    assert response["methodResponses"][0][1]["type"] == "invalidResultReference"
    assert response["methodResponses"][1] == ["Core/echo", {"v": 1}, "later"]


def test_a_reference_to_its_own_call_id_is_invalid_result_reference(jmap):
    """§3.7: a call's own id names no *previous* response."""
    response = jmap.request([["Core/echo", {"#v": ref("/v", "self")}, "self"]])
    assert response["methodResponses"][0][0] == "error"
    assert response["methodResponses"][0][1]["type"] == "invalidResultReference"
    assert response["methodResponses"][0][2] == "self"


@pytest.mark.parametrize("name", ["Mailbox/get", "core/echo", "Core/echo ", "", "error"])
def test_a_reference_whose_name_differs_is_invalid_result_reference(jmap, name):
    """§3.7 step 2: the response name must be identical to the reference's name."""
    assert failure(jmap, {"#v": ref("/scalar", name=name)}) == "invalidResultReference"


def test_a_reference_naming_the_method_of_a_failed_call_is_invalid_result_reference(jmap):
    """§3.7 step 2: a call that failed answered "error", not its method name."""
    response = jmap.request([["Mailbox/get", {"accountId": "bob"}, "g"],
                             ["Core/echo", {"#v": ref("/list", "g", "Mailbox/get")}, "use"]])
    assert response["methodResponses"][1][1]["type"] == "invalidResultReference"


@pytest.mark.parametrize("path", [
    "/missing",
    "/scalar/x",          # into a string
    "/nothing/x",         # into null
    "/list/3",            # past the end
    "/list/-",            # never exists
    "/list/01",           # leading zero
    "/list/-1",
    "/list/x",
    "/list/*/missing",    # an item without the member
    "/a/*",               # "*" is not special on an object without a "*" member
    "/scalar/*",
    "scalar",             # no leading "/"
    "/a/b/c",             # "b/c" is one member: must be written b~1c
    "/A",                 # member names are case-sensitive
])
def test_a_path_that_does_not_resolve_is_invalid_result_reference(jmap, path):
    """§3.7 step 3 (RFC 6901 §7): a pointer to a nonexistent value, or malformed, makes
    evaluation fail -> invalidResultReference."""
    assert failure(jmap, {"#v": ref(path)}) == "invalidResultReference"


def test_a_path_with_an_invalid_tilde_escape_is_invalid_result_reference(jmap):
    """§3.7 (RFC 6901 §3, §7): "~" must be followed by "0" or "1"; "/a~2" is invalid
    pointer syntax, even if the response has a member literally named "a~2"."""
    assert failure(jmap, {"#v": ref("/a~2")}, source={"a~2": 1}) == "invalidResultReference"


@pytest.mark.parametrize("reference", [
    "src",
    None,
    5,
    ["src", "Core/echo", "/scalar"],
    {},
    {"resultOf": "src", "name": "Core/echo"},                   # no path
    {"resultOf": "src", "path": "/scalar"},                     # no name
    {"name": "Core/echo", "path": "/scalar"},                   # no resultOf
    {"resultOf": "src", "name": "Core/echo", "path": None},
    {"resultOf": "src", "name": "Core/echo", "path": ["scalar"]},
    {"resultOf": 0, "name": "Core/echo", "path": "/scalar"},
    {"resultOf": "src", "name": None, "path": "/scalar"},
], ids=repr)
def test_a_malformed_reference_object_is_invalid_result_reference(jmap, reference):
    """§3.7: a "#" argument's value is a ResultReference {resultOf, name, path: String};
    anything else cannot resolve -> invalidResultReference."""
    assert failure(jmap, {"#v": reference}) == "invalidResultReference"


def test_one_failing_reference_rejects_the_whole_method(jmap):
    """§3.7: "If any result reference fails to resolve, the whole method MUST be
    rejected": no partial arguments, no partial result."""
    name, args, _ = echo_from_source(jmap, {"#good": ref("/scalar"), "#bad": ref("/missing"),
                                            "plain": 1})
    assert name == "error"
    assert set(args) <= {"type", "description"}
    assert args["type"] == "invalidResultReference"


def test_a_failed_reference_in_a_set_changes_nothing(jmap):
    """§3.7, §3.6.2: the rejected /set neither creates nor destroys."""
    before = jmap.call("Mailbox/get", {"accountId": "alice", "ids": []})["state"]
    response = jmap.request([
        ["Mailbox/query", {"accountId": "alice"}, "q"],
        ["Mailbox/set", {"accountId": "alice", "create": {"n": {"name": "Never"}},
                         "#destroy": ref("/idz", "q", "Mailbox/query")}, "s"],
    ])
    assert response["methodResponses"][1][1]["type"] == "invalidResultReference"
    assert jmap.call("Mailbox/get", {"accountId": "alice", "ids": []})["state"] == before
    assert "Never" not in jmap.mailbox_ids()


def test_later_calls_run_after_a_failed_reference(jmap):
    """§3.6.2: a failed reference is a method error; the request goes on."""
    response = jmap.request([["Core/echo", {"#v": ref("/v", "none")}, "a"],
                             ["Core/echo", {"ok": True}, "b"]])
    assert response["methodResponses"][1] == ["Core/echo", {"ok": True}, "b"]


# --- both forms: invalidArguments --------------------------------------------------

@pytest.mark.parametrize("args", [
    {"v": "plain", "#v": ref("/scalar")},
    {"#v": ref("/scalar"), "v": "plain"},
    {"v": None, "#v": ref("/scalar")},
    {"v": "plain", "#v": ref("/missing")},      # even if the reference would fail
])
def test_an_argument_in_both_plain_and_referenced_form_is_invalid_arguments(jmap, args):
    """§3.7: the same argument name in normal and referenced form ("foo" and "#foo")
    MUST give invalidArguments."""
    assert failure(jmap, args) == "invalidArguments"


def test_both_forms_of_ids_in_mailbox_get_is_invalid_arguments(jmap):
    """§3.7: the rule holds for a standard method too."""
    response = jmap.request([
        ["Mailbox/query", {"accountId": "alice"}, "q"],
        ["Mailbox/get", {"accountId": "alice", "ids": ["M1"],
                         "#ids": ref("/ids", "q", "Mailbox/query")}, "g"],
    ])
    assert response["methodResponses"][1][0] == "error"
    assert response["methodResponses"][1][1]["type"] == "invalidArguments"


# --- references between standard methods --------------------------------------------

def test_mailbox_get_takes_its_ids_from_a_mailbox_query(jmap):
    """§3.7: "#ids" from /query's "/ids" feeds /get, in the query's order."""
    response = jmap.request([
        ["Mailbox/query", {"accountId": "alice", "filter": {"parentId": "M13"},
                           "sort": [{"property": "name", "isAscending": False}]}, "q"],
        ["Mailbox/get", {"accountId": "alice", "properties": ["name", "parentId"],
                         "#ids": ref("/ids", "q", "Mailbox/query")}, "g"],
    ])
    (_, query, _), (name, got, call_id) = response["methodResponses"]
    assert query["ids"] == ["M15", "M14"]
    assert (name, call_id) == ("Mailbox/get", "g")
    assert got["list"] == [{"id": "M15", "name": "Zephyr", "parentId": "M13"},
                           {"id": "M14", "name": "Apollo", "parentId": "M13"}]
    assert got["notFound"] == []


def test_a_chain_of_references_through_get_reaches_parent_mailboxes(jmap):
    """§3.7: "/list/*/parentId" of one /get becomes the ids of the next."""
    response = jmap.request([
        ["Mailbox/query", {"accountId": "alice", "filter": {"name": "Zephyr"}}, "q"],
        ["Mailbox/get", {"accountId": "alice", "properties": ["parentId"],
                         "#ids": ref("/ids", "q", "Mailbox/query")}, "child"],
        ["Mailbox/get", {"accountId": "alice", "properties": ["name"],
                         "#ids": ref("/list/*/parentId", "child", "Mailbox/get")}, "parent"],
    ])
    assert response["methodResponses"][2][1]["list"] == [{"id": "M13", "name": "Projects"}]


def test_a_referenced_value_of_the_wrong_type_is_invalid_arguments(jmap):
    """§3.7: the resolved value is used as the real argument, so it is type-checked:
    a number as "ids" -> invalidArguments."""
    response = jmap.request([
        ["Mailbox/query", {"accountId": "alice"}, "q"],
        ["Mailbox/get", {"accountId": "alice",
                         "#ids": ref("/position", "q", "Mailbox/query")}, "g"],
    ])
    assert response["methodResponses"][1][1]["type"] == "invalidArguments"


def test_a_referenced_account_id_is_checked_like_a_given_one(jmap):
    """§3.7, §3.6.2: a referenced accountId of another user -> accountNotFound."""
    response = jmap.request([
        ["Core/echo", {"account": "bob"}, "e"],
        ["Mailbox/get", {"#accountId": ref("/account", "e"), "ids": None}, "g"],
    ])
    assert response["methodResponses"][1][1]["type"] == "accountNotFound"


def test_changes_created_ids_feed_mailbox_get(jmap):
    """§3.7's own example: "#ids" from Foo/changes "/created" feeds Foo/get."""
    state = jmap.call("Mailbox/get", {"accountId": "alice", "ids": []})["state"]
    jmap.call("Mailbox/set", {"accountId": "alice", "create": {"n": {"name": "Later"}}})
    response = jmap.request([
        ["Mailbox/changes", {"accountId": "alice", "sinceState": state}, "t0"],
        ["Mailbox/get", {"accountId": "alice", "properties": ["name"],
                         "#ids": ref("/created", "t0", "Mailbox/changes")}, "t1"],
    ])
    assert response["methodResponses"][0][1]["created"] == ["M22"]
    assert response["methodResponses"][1][1]["list"] == [{"id": "M22", "name": "Later"}]


def changes_then_get_updated(jmap, state):
    """Mailbox/changes, then Mailbox/get of its /updated ids with its /updatedProperties."""
    return jmap.request([
        ["Mailbox/changes", {"accountId": "alice", "sinceState": state}, "c"],
        ["Mailbox/get", {"accountId": "alice",
                         "#ids": ref("/updated", "c", "Mailbox/changes"),
                         "#properties": ref("/updatedProperties", "c", "Mailbox/changes")},
         "g"],
    ])


def test_changes_updated_properties_reference_selects_the_counts_in_get(core, jmap):
    """§3.7, RFC 8621 §2.2: after a counts-only change, "/updatedProperties" referenced
    into Mailbox/get "properties" fetches only the ids and the four counts."""
    state = jmap.call("Mailbox/get", {"accountId": "alice", "ids": []})["state"]
    with core.store.transaction():   # what an Email arriving in the Inbox does to it
        inbox = core.store.get_objects("alice", "Mailbox", ["M1"])["M1"]
        core.store.update_object("alice", "Mailbox", "M1", inbox, core.now(),
                                 content_changed=False)
    response = changes_then_get_updated(jmap, state)
    (_, changes, _), (name, got, _) = response["methodResponses"]
    assert changes["updated"] == ["M1"]
    assert changes["updatedProperties"] == ["totalEmails", "unreadEmails", "totalThreads",
                                            "unreadThreads"]
    assert name == "Mailbox/get"
    assert got["list"] == [{"id": "M1", "totalEmails": 0, "unreadEmails": 0,
                            "totalThreads": 0, "unreadThreads": 0}]


def test_a_null_updated_properties_reference_fetches_all_properties(jmap):
    """§3.7, RFC 8621 §2.2: updatedProperties null (a real change) referenced as
    "properties" means null, i.e. every property."""
    state = jmap.call("Mailbox/get", {"accountId": "alice", "ids": []})["state"]
    jmap.call("Mailbox/set", {"accountId": "alice", "update": {"M17": {"name": "Kin"}}})
    response = changes_then_get_updated(jmap, state)
    (_, changes, _), (_, got, _) = response["methodResponses"]
    assert changes["updated"] == ["M17"] and changes["updatedProperties"] is None
    assert [m["name"] for m in got["list"]] == ["Kin"]
    assert set(got["list"][0]) == {"id", "name", "parentId", "role", "sortOrder", "totalEmails",
                                   "unreadEmails", "totalThreads", "unreadThreads", "myRights",
                                   "isSubscribed"}
