"""RFC 8620 §3.2-3.6 (Invocations, the Request and Response objects, omitted arguments,
request-level and method-level errors) and §4 (Core/echo), through
JmapCore.handle_request."""

import pytest

import jmapd
from conftest import seed_demo_accounts

CORE, MAIL = jmapd.URN_CORE, jmapd.URN_MAIL
USING = [CORE, MAIL]
MAX = 2**53 - 1


def request_error(core, request, user="alice"):
    """The RequestError a request must raise."""
    with pytest.raises(jmapd.RequestError) as caught:
        core.handle_request(user, request)
    return caught.value


def mailbox_state(jmap):
    return jmap.call("Mailbox/get", {"accountId": "alice", "ids": []})["state"]


@pytest.fixture
def small_core():
    """A demo core that accepts at most two method calls per request."""
    core = jmapd.JmapCore(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds(),
                          limits={"maxCallsInRequest": 2})
    seed_demo_accounts(core)
    yield core
    core.close()


# --- §3.3 / §3.6.1 request-level errors: notRequest -----------------------------------

@pytest.mark.parametrize("request_", [
    None, [], "request", 5, True,
    {"methodCalls": []},                                    # using missing
    {"using": None, "methodCalls": []},
    {"using": CORE, "methodCalls": []},                     # a string, not String[]
    {"using": {CORE: True}, "methodCalls": []},
    {"using": [CORE, 5], "methodCalls": []},
    {"using": [None], "methodCalls": []},
    {"using": [CORE]},                                      # methodCalls missing
    {"using": [CORE], "methodCalls": None},
    {"using": [CORE], "methodCalls": {}},
    {"using": [CORE], "methodCalls": "Core/echo"},
    {"using": [CORE], "methodCalls": ["Core/echo", {}, "c"]},   # one Invocation, unwrapped
], ids=repr)
def test_a_request_not_shaped_like_a_request_object_is_not_request(core, request_):
    """§3.6.1: JSON that does not match the Request type signature (using: String[],
    methodCalls: Invocation[]) is notRequest, status 400."""
    error = request_error(core, request_)
    assert (error.type, error.status) == ("notRequest", 400)
    assert error.problem()["type"] == "urn:ietf:params:jmap:error:notRequest"


@pytest.mark.parametrize("invocation", [
    [],
    ["Core/echo"],
    ["Core/echo", {}],                          # two elements
    ["Core/echo", {}, "c", "extra"],            # four elements
    [None, {}, "c"],
    [5, {}, "c"],
    [["Core/echo"], {}, "c"],
    ["Core/echo", [], "c"],                     # arguments not an object
    ["Core/echo", None, "c"],
    ["Core/echo", "{}", "c"],
    ["Core/echo", {}, 1],                       # method call id not a String
    ["Core/echo", {}, None],
    ["Core/echo", {}, ["c"]],
    {"name": "Core/echo", "arguments": {}, "id": "c"},
    "Core/echo",
    None,
], ids=repr)
def test_an_invocation_of_the_wrong_length_or_types_is_not_request(core, invocation):
    """§3.2, §3.6.1: an Invocation is exactly [String name, String[*] arguments, String
    id]; anything else makes the whole request notRequest."""
    error = request_error(core, {"using": [CORE], "methodCalls": [["Core/echo", {}, "ok"],
                                                                  invocation]})
    assert (error.type, error.status) == ("notRequest", 400)


@pytest.mark.parametrize("created_ids", [
    [], "M1", 5, True,
    {"k": 5},
    {"k": None},
    {"k": ["M1"]},
    {"k": "not an id"},          # values are Ids
    {"k": ""},
    {"bad key": "M1"},           # keys are Ids too
    {"": "M1"},
], ids=repr)
def test_created_ids_of_the_wrong_type_is_not_request(core, created_ids):
    """§3.3: createdIds is Id[Id]; any other value is notRequest."""
    error = request_error(core, {"using": [CORE], "methodCalls": [],
                                 "createdIds": created_ids})
    assert (error.type, error.status) == ("notRequest", 400)


def test_a_malformed_request_runs_none_of_its_calls(core, jmap):
    """§3.6: a request-level error rejects the entire request, even its valid calls."""
    state = mailbox_state(jmap)
    request_error(core, {"using": USING, "methodCalls": [
        ["Mailbox/set", {"accountId": "alice", "create": {"n": {"name": "Never"}}}, "a"],
        ["Core/echo", {}, 7]]})
    assert mailbox_state(jmap) == state
    assert "Never" not in jmap.mailbox_ids()


def test_unknown_properties_of_the_request_object_are_ignored(core):
    """§3.3: the server MUST ignore Request properties it does not understand."""
    response = core.handle_request("alice", {"using": [CORE], "methodCalls": [
        ["Core/echo", {"x": 1}, "c"]], "futureExtension": {"a": 1}, "priority": 5})
    assert response["methodResponses"] == [["Core/echo", {"x": 1}, "c"]]


# --- §3.6.1 unknownCapability -------------------------------------------------------

@pytest.mark.parametrize("using", [
    [CORE, "urn:ietf:params:jmap:nope"],
    ["https://example.com/apis/foobar"],
    [CORE, MAIL, "urn:ietf:params:jmap:calendars-not-here"],
    [CORE, "URN:IETF:PARAMS:JMAP:MAIL"],      # capability URIs are compared exactly
    [""],
])
def test_a_using_entry_the_server_lacks_is_unknown_capability(core, using):
    """§3.6.1: a using entry the server does not support -> unknownCapability (400)."""
    error = request_error(core, {"using": using, "methodCalls": [["Core/echo", {}, "c"]]})
    assert (error.type, error.status) == ("unknownCapability", 400)
    assert error.problem()["type"] == "urn:ietf:params:jmap:error:unknownCapability"


def test_using_may_name_capabilities_no_call_needs(core):
    """§3.3: the client MAY include capabilities its calls do not use."""
    response = core.handle_request("alice", {"using": [CORE, MAIL], "methodCalls": [
        ["Core/echo", {}, "c"]]})
    assert response["methodResponses"] == [["Core/echo", {}, "c"]]


# --- §3.3 using is enforced -------------------------------------------------------

@pytest.mark.parametrize("name, args", [
    ("Mailbox/get", {"accountId": "alice", "ids": None}),
    ("Mailbox/query", {"accountId": "alice"}),
    ("Mailbox/changes", {"accountId": "alice", "sinceState": "0"}),
    ("Mailbox/set", {"accountId": "alice", "create": {"n": {"name": "Sneaky"}}}),
])
def test_a_method_whose_capability_is_not_in_using_is_unknown_method(jmap, name, args):
    """§2, §3.3: clients MUST opt in to a capability in `using`; a mail method with only
    core in using is unknownMethod, and does nothing."""
    assert jmap.error(name, args, using=[CORE]) == "unknownMethod"
    assert "Sneaky" not in jmap.mailbox_ids()


# --- §3.6.1 limit: maxCallsInRequest -------------------------------------------------

def test_more_calls_than_max_calls_in_request_is_a_limit_error(small_core):
    """§3.6.1: exceeding maxCallsInRequest -> limit, with "limit": "maxCallsInRequest"."""
    error = request_error(small_core, {"using": [CORE], "methodCalls": [
        ["Core/echo", {}, "a"], ["Core/echo", {}, "b"], ["Core/echo", {}, "c"]]})
    assert error.type == "limit"
    assert error.members == {"limit": "maxCallsInRequest"}
    problem = error.problem()
    assert problem["type"] == "urn:ietf:params:jmap:error:limit"
    assert problem["limit"] == "maxCallsInRequest"
    assert problem["status"] == error.status == 400


def test_exactly_max_calls_in_request_calls_are_processed(small_core):
    """§3.6.1: the limit is a maximum: maxCallsInRequest calls are accepted."""
    response = small_core.handle_request("alice", {"using": [CORE], "methodCalls": [
        ["Core/echo", {"n": 1}, "a"], ["Core/echo", {"n": 2}, "b"]]})
    assert response["methodResponses"] == [["Core/echo", {"n": 1}, "a"],
                                           ["Core/echo", {"n": 2}, "b"]]


def test_a_request_over_the_call_limit_changes_nothing(small_core):
    """§3.6.1: the request "was not processed": even its first call leaves no trace."""
    request_error(small_core, {"using": USING, "methodCalls": [
        ["Mailbox/set", {"accountId": "alice", "create": {"n": {"name": "Never"}}}, "a"],
        ["Core/echo", {}, "b"], ["Core/echo", {}, "c"]]})
    listed = small_core.call("alice", "Mailbox/get", {"accountId": "alice", "ids": None})["list"]
    assert "Never" not in {mailbox["name"] for mailbox in listed}


# --- §3.4 the Response object -----------------------------------------------------

def test_an_empty_method_calls_array_gives_an_empty_method_responses_array(core):
    """§3.4: methodResponses has one entry per processed call: none for none."""
    response = core.handle_request("alice", {"using": [CORE], "methodCalls": []})
    assert response["methodResponses"] == []
    assert response["sessionState"] == core.session_state("alice")


@pytest.mark.parametrize("call_id", ["c1", "", "#0", "a call id with spaces", "ünïcødé/1",
                                     "0" * 300])
def test_the_method_call_id_is_echoed_verbatim(jmap, call_id):
    """§3.2: the method call id is an arbitrary String, echoed back unchanged."""
    response = jmap.request([["Core/echo", {}, call_id]])
    assert response["methodResponses"] == [["Core/echo", {}, call_id]]


def test_responses_come_in_call_order_each_with_its_own_call_id(jmap):
    """§3.3, §3.4: calls are processed in order; responses are added in that order."""
    response = jmap.request([
        ["Core/echo", {"n": 1}, "first"],
        ["Mailbox/get", {"accountId": "alice", "ids": ["M1"], "properties": ["name"]}, "second"],
        ["Core/echo", {"n": 3}, "first"],      # call ids need not be unique
    ])
    assert response["methodResponses"] == [
        ["Core/echo", {"n": 1}, "first"],
        ["Mailbox/get", {"accountId": "alice", "state": "11",
                         "list": [{"id": "M1", "name": "Inbox"}], "notFound": []}, "second"],
        ["Core/echo", {"n": 3}, "first"],
    ]


def test_an_error_call_keeps_its_call_id_and_the_next_call_still_runs(jmap):
    """§3.6.2: the error goes in at its position; later calls are processed as normal."""
    response = jmap.request([
        ["Mailbox/get", {"accountId": "bob"}, "x"],
        ["Core/echo", {"after": True}, "y"],
        ["Nope/nope", {}, "z"],
        ["Mailbox/get", {"accountId": "alice", "ids": ["M2"], "properties": ["role"]}, "w"],
    ])
    names_and_ids = [(name, call_id) for name, _, call_id in response["methodResponses"]]
    assert names_and_ids == [("error", "x"), ("Core/echo", "y"), ("error", "z"),
                             ("Mailbox/get", "w")]
    assert response["methodResponses"][0][1]["type"] == "accountNotFound"
    assert response["methodResponses"][1][1] == {"after": True}
    assert response["methodResponses"][2][1]["type"] == "unknownMethod"
    assert response["methodResponses"][3][1]["list"] == [{"id": "M2", "role": "drafts"}]


def test_a_method_level_error_is_not_a_request_level_error(core):
    """§3.6.2: method errors MUST NOT generate an HTTP-level error: handle_request
    returns a normal Response."""
    response = core.handle_request("alice", {"using": USING, "methodCalls": [
        ["Mailbox/get", {"accountId": 5}, "c"]]})
    assert response["methodResponses"][0][0] == "error"
    assert set(response) == {"methodResponses", "sessionState"}


def test_every_response_carries_the_session_state(core, jmap):
    """§3.4: sessionState is the current Session state, on success and error alike."""
    for calls in ([["Core/echo", {}, "a"]], [["Nope/nope", {}, "a"]], []):
        response = jmap.request(calls)
        assert response["sessionState"] == core.session_state("alice")
        assert response["sessionState"] == core.session("alice", "http://x")["state"]


# --- §3.3 / §3.4 createdIds ---------------------------------------------------------

def test_created_ids_are_returned_with_given_and_new_entries(jmap):
    """§3.4: with createdIds in the request, the response's createdIds holds all the
    given entries plus one per record created."""
    response = jmap.request([["Mailbox/set", {"accountId": "alice", "create": {
        "new": {"name": "Fresh"}}}, "s"]], created_ids={"pre": "M1"})
    created = response["methodResponses"][0][1]["created"]["new"]["id"]
    assert created == "M22"
    assert response["createdIds"] == {"pre": "M1", "new": "M22"}


def test_an_empty_created_ids_is_returned_even_if_nothing_is_created(jmap):
    """§3.3: createdIds may be an empty object; given, it comes back."""
    response = jmap.request([["Core/echo", {}, "c"]], created_ids={})
    assert response["createdIds"] == {}


def test_created_ids_are_absent_from_the_response_unless_given(jmap):
    """§3.4: createdIds is "only returned if given in the request"."""
    response = jmap.request([["Mailbox/set", {"accountId": "alice", "create": {
        "new": {"name": "Fresh"}}}, "s"]])
    assert response["methodResponses"][0][1]["created"]["new"]["id"] == "M22"
    assert "createdIds" not in response


def test_a_given_created_id_resolves_a_creation_reference(jmap):
    """§3.3: a "#creationId" in a create is looked up in the createdIds passed in."""
    response = jmap.request([
        ["Mailbox/set", {"accountId": "alice", "create": {
            "child": {"name": "Under Inbox", "parentId": "#inbox"}}}, "s"],
        ["Mailbox/get", {"accountId": "alice", "ids": ["#child"],
                         "properties": ["name", "parentId"]}, "g"],
    ], created_ids={"inbox": "M1"})
    assert response["methodResponses"][1][1]["list"] == [
        {"id": "M22", "name": "Under Inbox", "parentId": "M1"}]
    assert response["createdIds"] == {"inbox": "M1", "child": "M22"}


def test_a_creation_id_that_is_not_an_id_is_refused_before_reaching_created_ids(jmap):
    """§3.3, §5.3: create is Id[Foo] and createdIds Id[Id]; a creation id "a b" is
    invalidArguments, so the server never returns a createdIds it would itself refuse."""
    response = jmap.request([["Mailbox/set", {"accountId": "alice", "create": {
        "a b": {"name": "Spaced"}}}, "s"]], created_ids={})
    assert response["methodResponses"][0][1]["type"] == "invalidArguments"
    assert response["createdIds"] == {}
    assert "Spaced" not in jmap.mailbox_ids()


def test_a_failed_create_adds_nothing_to_created_ids(jmap):
    """§3.3: only a *successful* create adds its creation id to createdIds."""
    response = jmap.request([["Mailbox/set", {"accountId": "alice", "create": {
        "bad": {"name": "Inbox"}}}, "s"]], created_ids={"pre": "M1"})   # sibling clash
    assert response["methodResponses"][0][1]["notCreated"]["bad"]["type"] == "invalidProperties"
    assert response["createdIds"] == {"pre": "M1"}


# --- §3.6.2 unknownMethod -------------------------------------------------------------

@pytest.mark.parametrize("name", ["Nope/get", "mailbox/get", "MAILBOX/GET", "Mailbox/get ",
                                  "Mailbox/frobnicate", "Mailbox", "", "Core/Echo", "Core/echo/x"])
def test_a_method_name_the_server_does_not_recognise_is_unknown_method(jmap, name):
    """§3.6.2: an unrecognised (case-sensitively) method name -> unknownMethod."""
    assert jmap.error(name, {"accountId": "alice"}) == "unknownMethod"


# --- §3.6.2 invalidArguments: wrong types for every standard argument ---------------

BAD_ARGUMENTS = [
    # Mailbox/get (§5.1): accountId Id, ids Id[]|null, properties String[]|null
    ("Mailbox/get", {}),
    ("Mailbox/get", {"accountId": None}),
    ("Mailbox/get", {"accountId": 5}),
    ("Mailbox/get", {"accountId": ["alice"]}),
    ("Mailbox/get", {"accountId": True}),
    ("Mailbox/get", {"accountId": "not an id!"}),
    ("Mailbox/get", {"accountId": ""}),
    ("Mailbox/get", {"accountId": "alice", "ids": "M1"}),
    ("Mailbox/get", {"accountId": "alice", "ids": [1]}),
    ("Mailbox/get", {"accountId": "alice", "ids": [None]}),
    ("Mailbox/get", {"accountId": "alice", "ids": {"M1": True}}),
    ("Mailbox/get", {"accountId": "alice", "ids": ["not an id"]}),
    ("Mailbox/get", {"accountId": "alice", "ids": [""]}),
    ("Mailbox/get", {"accountId": "alice", "ids": 1}),
    ("Mailbox/get", {"accountId": "alice", "properties": 5}),
    ("Mailbox/get", {"accountId": "alice", "properties": "name"}),
    ("Mailbox/get", {"accountId": "alice", "properties": [True]}),
    ("Mailbox/get", {"accountId": "alice", "properties": {"name": True}}),
    ("Mailbox/get", {"accountId": "alice", "properties": ["noSuchProperty"]}),
    ("Mailbox/get", {"accountId": "alice", "properties": ["name", "Name"]}),
    # Mailbox/changes (§5.2): sinceState String, maxChanges UnsignedInt|null (> 0)
    ("Mailbox/changes", {"accountId": "alice"}),
    ("Mailbox/changes", {"accountId": "alice", "sinceState": None}),
    ("Mailbox/changes", {"accountId": "alice", "sinceState": 0}),
    ("Mailbox/changes", {"accountId": "alice", "sinceState": ["0"]}),
    ("Mailbox/changes", {"accountId": "alice", "sinceState": "0", "maxChanges": -1}),
    ("Mailbox/changes", {"accountId": "alice", "sinceState": "0", "maxChanges": 0}),
    ("Mailbox/changes", {"accountId": "alice", "sinceState": "0", "maxChanges": "1"}),
    ("Mailbox/changes", {"accountId": "alice", "sinceState": "0", "maxChanges": 1.5}),
    ("Mailbox/changes", {"accountId": "alice", "sinceState": "0", "maxChanges": True}),
    ("Mailbox/changes", {"accountId": "alice", "sinceState": "0", "maxChanges": 2**53}),
    ("Mailbox/changes", {"accountId": 7, "sinceState": "0"}),
    # Mailbox/set (§5.3): ifInState String|null, create Id[Object]|null,
    # update Id[PatchObject]|null, destroy Id[]|null
    ("Mailbox/set", {}),
    ("Mailbox/set", {"accountId": "alice", "ifInState": 11}),
    ("Mailbox/set", {"accountId": "alice", "ifInState": ["11"]}),
    ("Mailbox/set", {"accountId": "alice", "create": []}),
    ("Mailbox/set", {"accountId": "alice", "create": "n"}),
    ("Mailbox/set", {"accountId": "alice", "create": [{"name": "x"}]}),
    ("Mailbox/set", {"accountId": "alice", "create": {"not an id": {"name": "x"}}}),
    ("Mailbox/set", {"accountId": "alice", "create": {"": {"name": "x"}}}),
    ("Mailbox/set", {"accountId": "alice", "update": {"M 1": {"name": "x"}}}),
    ("Mailbox/set", {"accountId": "alice", "destroy": ["M 1"]}),
    ("Mailbox/set", {"accountId": "alice", "update": []}),
    ("Mailbox/set", {"accountId": "alice", "update": "M1"}),
    ("Mailbox/set", {"accountId": "alice", "update": True}),
    ("Mailbox/set", {"accountId": "alice", "destroy": "M1"}),
    ("Mailbox/set", {"accountId": "alice", "destroy": [5]}),
    ("Mailbox/set", {"accountId": "alice", "destroy": {"M1": True}}),
    ("Mailbox/set", {"accountId": "alice", "onDestroyRemoveEmails": "yes"}),
    # Mailbox/query (§5.5): filter, sort Comparator[]|null, position Int, anchor Id|null,
    # anchorOffset Int, limit UnsignedInt|null, calculateTotal Boolean
    ("Mailbox/query", {}),
    ("Mailbox/query", {"accountId": "alice", "filter": []}),
    ("Mailbox/query", {"accountId": "alice", "filter": "name"}),
    ("Mailbox/query", {"accountId": "alice", "filter": 5}),
    ("Mailbox/query", {"accountId": "alice", "sort": {"property": "name"}}),
    ("Mailbox/query", {"accountId": "alice", "sort": "name"}),
    ("Mailbox/query", {"accountId": "alice", "position": "1"}),
    ("Mailbox/query", {"accountId": "alice", "position": True}),
    ("Mailbox/query", {"accountId": "alice", "position": 1.5}),
    ("Mailbox/query", {"accountId": "alice", "position": None}),
    ("Mailbox/query", {"accountId": "alice", "position": 2**53}),
    ("Mailbox/query", {"accountId": "alice", "position": -(2**53)}),
    ("Mailbox/query", {"accountId": "alice", "anchor": 5}),
    ("Mailbox/query", {"accountId": "alice", "anchor": ""}),
    ("Mailbox/query", {"accountId": "alice", "anchor": ["M1"]}),
    ("Mailbox/query", {"accountId": "alice", "anchorOffset": "1"}),
    ("Mailbox/query", {"accountId": "alice", "anchorOffset": False}),
    ("Mailbox/query", {"accountId": "alice", "anchorOffset": 2**53}),
    ("Mailbox/query", {"accountId": "alice", "anchorOffset": None}),
    ("Mailbox/query", {"accountId": "alice", "limit": -1}),
    ("Mailbox/query", {"accountId": "alice", "limit": "10"}),
    ("Mailbox/query", {"accountId": "alice", "limit": True}),
    ("Mailbox/query", {"accountId": "alice", "limit": 2.5}),
    ("Mailbox/query", {"accountId": "alice", "limit": 2**53}),
    ("Mailbox/query", {"accountId": "alice", "calculateTotal": "true"}),
    ("Mailbox/query", {"accountId": "alice", "calculateTotal": 1}),
    ("Mailbox/query", {"accountId": "alice", "calculateTotal": None}),
    ("Mailbox/query", {"accountId": "alice", "sortAsTree": 0}),
]


@pytest.mark.parametrize("name, args", BAD_ARGUMENTS, ids=repr)
def test_a_standard_argument_of_the_wrong_type_is_invalid_arguments(jmap, name, args):
    """§3.6.2: an argument of the wrong type, a missing required one or an invalid value
    -> invalidArguments."""
    response_name, result = jmap.call_raw(name, args)
    assert response_name == "error"
    assert result["type"] == "invalidArguments"
    assert isinstance(result.get("description", ""), str)


@pytest.mark.parametrize("name, args", [
    ("Mailbox/get", {"accountId": "alice", "ids": None, "id": ["M1"]}),
    ("Mailbox/get", {"accountId": "alice", "Ids": ["M1"]}),
    ("Mailbox/changes", {"accountId": "alice", "sinceState": "0", "since": "0"}),
    ("Mailbox/set", {"accountId": "alice", "delete": ["M1"]}),
    ("Mailbox/query", {"accountId": "alice", "offset": 1}),
    ("Mailbox/query", {"accountId": "alice", "collapseThreads": True}),   # Email/query's
], ids=repr)
def test_an_unknown_argument_is_invalid_arguments(jmap, name, args):
    """§3.6.2: an argument the method does not define is invalid -> invalidArguments."""
    assert jmap.error(name, args) == "invalidArguments"


def test_invalid_arguments_stop_the_call_before_any_change(jmap):
    """§3.6.2: after an error no further processing happens in that call, and the
    server's state MUST NOT change: the valid create and destroy do not happen."""
    state = mailbox_state(jmap)
    assert jmap.error("Mailbox/set", {"accountId": "alice", "create": {"n": {"name": "Never"}},
                                      "destroy": ["M17"], "bogus": 1}) == "invalidArguments"
    assert mailbox_state(jmap) == state
    names = jmap.mailbox_ids()
    assert "Never" not in names and names["Family"] == "M17"


@pytest.mark.parametrize("name, args", [
    ("Mailbox/changes", {"accountId": "alice", "sinceState": "0", "maxChanges": MAX}),
    ("Mailbox/changes", {"accountId": "alice", "sinceState": "0", "maxChanges": None}),
    ("Mailbox/query", {"accountId": "alice", "position": MAX}),
    ("Mailbox/query", {"accountId": "alice", "position": -MAX}),
    ("Mailbox/query", {"accountId": "alice", "limit": MAX}),
    ("Mailbox/query", {"accountId": "alice", "limit": 0}),
    ("Mailbox/query", {"accountId": "alice", "anchorOffset": -MAX}),
    ("Mailbox/query", {"accountId": "alice", "filter": None, "sort": None, "anchor": None,
                       "limit": None}),
    ("Mailbox/get", {"accountId": "alice", "ids": None, "properties": None}),
    ("Mailbox/get", {"accountId": "alice", "ids": [], "properties": []}),
    ("Mailbox/set", {"accountId": "alice", "ifInState": None, "create": None,
                     "update": None, "destroy": None}),
], ids=repr)
def test_boundary_values_and_nulls_allowed_by_the_signature_are_accepted(jmap, name, args):
    """§1.3, §3.5: values at the edges of Int/UnsignedInt, and null where the type
    allows it, are valid arguments."""
    response_name, result = jmap.call_raw(name, args)
    assert response_name == name, result
    assert result["accountId"] == "alice"


def test_omitted_arguments_take_their_defaults(jmap):
    """§3.5: an omitted argument is treated as its default (position 0, ids null, ...)."""
    explicit = jmap.call("Mailbox/query", {"accountId": "alice", "filter": None, "sort": None,
                                           "position": 0, "anchor": None, "anchorOffset": 0,
                                           "limit": None, "calculateTotal": False})
    assert jmap.call("Mailbox/query", {"accountId": "alice"}) == explicit
    assert (jmap.call("Mailbox/get", {"accountId": "alice"})
            == jmap.call("Mailbox/get", {"accountId": "alice", "ids": None, "properties": None}))


# --- §3.6.2 accountNotFound ----------------------------------------------------------

@pytest.mark.parametrize("name, args", [
    ("Mailbox/get", {"ids": None}),
    ("Mailbox/changes", {"sinceState": "0"}),
    ("Mailbox/set", {"create": {"n": {"name": "Planted"}}}),
    ("Mailbox/query", {}),
])
@pytest.mark.parametrize("account_id", ["bob", "zzz999", "ALICE", "alice2", "A" * 255])
def test_an_account_the_user_cannot_see_is_account_not_found(jmap, name, args, account_id):
    """§3.6.2: an accountId that is no valid account for this user -> accountNotFound;
    another user's account is not this user's to find."""
    assert jmap.error(name, {"accountId": account_id, **args}) == "accountNotFound"


def test_bob_cannot_reach_alices_account_either(bob):
    """§3.6.2: accountNotFound applies from either side."""
    assert bob.error("Mailbox/get", {"accountId": "alice", "ids": None}) == "accountNotFound"


def test_account_not_found_leaks_nothing_and_changes_nothing(jmap, bob):
    """§3.6.2: the refused /set creates nothing in bob's account."""
    before = bob.call("Mailbox/get", {"accountId": "bob", "ids": []})["state"]
    assert jmap.error("Mailbox/set", {"accountId": "bob", "create": {
        "n": {"name": "Planted"}}}) == "accountNotFound"
    assert bob.call("Mailbox/get", {"accountId": "bob", "ids": []})["state"] == before
    assert "Planted" not in bob.mailbox_ids()


# --- §3.6.2 serverFail -------------------------------------------------------------

def raising(message):
    def handler(call, args):
        raise RuntimeError(message)
    return handler


def test_an_internal_exception_is_server_fail_without_a_traceback(core, jmap, monkeypatch):
    """§3.6.2: an unexpected error -> serverFail with a description; it reveals no
    traceback or internals, and is not a request-level error."""
    monkeypatch.setitem(core.methods, "Mailbox/get",
                        jmapd.MethodSpec("Mailbox/get", raising("secret-sauce at /srv/x.py"),
                                         MAIL))
    response = jmap.request([["Mailbox/get", {"accountId": "alice"}, "boom"],
                             ["Core/echo", {"still": "here"}, "next"]])
    (name, error, call_id), echo = response["methodResponses"]
    assert (name, call_id, error["type"]) == ("error", "boom", "serverFail")
    assert isinstance(error["description"], str) and error["description"]
    for leak in ("Traceback", "RuntimeError", "secret-sauce", "/srv/x.py", "File \"", "line "):
        assert leak not in error["description"]
    assert echo == ["Core/echo", {"still": "here"}, "next"]


def test_server_fail_leaves_no_change_behind(core, jmap, monkeypatch):
    """§3.6.2: after serverFail "the method call made no changes to the server's state":
    writes made before the crash are rolled back."""
    real = core.methods["Mailbox/set"]

    def write_then_crash(call, args):
        real.handler(call, args)
        raise RuntimeError("crash after writing")

    state = mailbox_state(jmap)
    monkeypatch.setitem(core.methods, "Mailbox/set",
                        jmapd.MethodSpec("Mailbox/set", write_then_crash, MAIL))
    assert jmap.error("Mailbox/set", {"accountId": "alice", "create": {
        "n": {"name": "Ghost"}}, "destroy": ["M17"]}) == "serverFail"
    assert mailbox_state(jmap) == state
    names = jmap.mailbox_ids()
    assert "Ghost" not in names and names["Family"] == "M17"


# --- §4 Core/echo --------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    {},
    {"hello": True, "high": 5},
    {"nested": {"list": [1, "two", None, {"three": 3.5}]}, "empty": {}, "null": None},
    {"accountId": "bob", "ids": 5, "unknown": "anything"},    # never validated
    {"ünïcødé": "✓", "": ""},
])
def test_core_echo_returns_exactly_the_arguments_it_is_given(jmap, args):
    """§4: Core/echo returns exactly the same arguments as it is given."""
    response = jmap.request([["Core/echo", args, "b3ff"]], using=[CORE])
    assert response["methodResponses"] == [["Core/echo", args, "b3ff"]]


def test_core_echo_works_with_only_the_core_capability(core):
    """§4: Core/echo is a core method: using the core capability suffices."""
    response = core.handle_request("bob", {"using": [CORE], "methodCalls": [
        ["Core/echo", {"hello": True}, "e"]]})
    assert response["methodResponses"] == [["Core/echo", {"hello": True}, "e"]]
