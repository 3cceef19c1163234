"""draft-baum-jmap-rest-01: the rest capability (§1.2.1), apiUrlRest (§1.3), and POSTs
to it (§2): one method call named by the URL, arguments as URL variables (arrays as
comma-separated values) or in a Request object body, call id "", and the errors of
the ordinary API (RFC 8620 §3.6)."""

import json
import urllib.parse

import pytest

import jmapd

CORE, MAIL = jmapd.URN_CORE, jmapd.URN_MAIL
REST = "urn:ietf:params:jmap:rest"


def fill(template, method, **variables):
    """What a client does with apiUrlRest: each <variable> replaced, encoded."""
    url = template.replace("<methodCall>", method)
    for name in jmapd.REST_VARIABLES:
        url = url.replace(f"<{name}>", urllib.parse.quote(variables.get(name, ""), safe=","))
    return url


def rest(web, method, query="", body=None, headers=None, auth=True):
    path = jmapd.REST_PREFIX + method + ("?" + query if query else "")
    return web.send("POST", path, body, headers=headers, auth=auth)


def answer(response):
    assert response.status == 200, response.data
    assert response.getheader("Content-Type") == "application/json"
    return json.loads(response.data)


def only_call(response):
    """[name, arguments, call id] of the one method response."""
    (invocation,) = answer(response)["methodResponses"]
    return invocation


def api_call(web, name, args, using=(CORE, MAIL)):
    """The same call through the ordinary API, for comparison."""
    return json.loads(web.api([[name, args, ""]], using=using).data)["methodResponses"]


# -- §1.2.1, §1.3 the session --

def test_capability_is_empty_in_the_session_and_each_account(core):
    """§1.2.1: an empty object in capabilities and in accountCapabilities."""
    session = core.session("alice", "http://x")
    assert session["capabilities"][REST] == {}
    assert session["accounts"]["alice"]["accountCapabilities"][REST] == {}


def test_api_url_rest_is_a_template_with_method_call(core):
    """§1.3: apiUrlRest MUST contain methodCall; using, accountId and ids may be given."""
    assert core.session("alice", "http://h:1")["apiUrlRest"] == (
        "http://h:1/jmap/rest/<methodCall>?using=<using>&accountId=<accountId>&ids=<ids>")


# -- §2 calls --

def test_a_body_less_post_of_the_filled_template_calls_the_method(web):
    """§2: all arguments as URL variables, no body, no Content-Type; call id ""."""
    template = json.loads(web.send("GET", "/jmap/session").data)["apiUrlRest"]
    url = fill(template, "Mailbox/get", using=f"{CORE},{MAIL}", accountId="alice")
    response = web.send("POST", urllib.parse.urlsplit(url)._replace(scheme="", netloc="").geturl())
    name, result, call_id = only_call(response)
    assert (name, call_id) == ("Mailbox/get", "")
    assert [result] == [r[1] for r in api_call(web, "Mailbox/get", {"accountId": "alice",
                                                                     "ids": None})]
    assert len(result["list"]) == 11 and result["notFound"] == []


def test_the_response_is_a_response_object(web):
    """§2: the body is a Response object (RFC 8620 §3.4) with sessionState."""
    body = answer(rest(web, "Core/echo", "using=" + CORE + "&hello=world"))
    session = json.loads(web.send("GET", "/jmap/session").data)
    assert body == {"methodResponses": [["Core/echo", {"hello": "world"}, ""]],
                    "sessionState": session["state"]}


def test_an_array_is_comma_separated(web):
    """§1.3: an array variable is a comma-separated list; a single value is one item."""
    boxes = {m["name"]: m["id"] for m in api_call(web, "Mailbox/get", {
        "accountId": "alice", "ids": None})[0][1]["list"]}
    _, result, _ = only_call(rest(web, "Mailbox/get", f"accountId=alice&ids={boxes['Inbox']},"
                                  f"{boxes['Trash']},Mnone&properties=name"))
    assert result["list"] == [{"id": boxes["Inbox"], "name": "Inbox"},
                              {"id": boxes["Trash"], "name": "Trash"}]
    assert result["notFound"] == ["Mnone"]
    _, result, _ = only_call(rest(web, "Mailbox/get", f"accountId=alice&ids={boxes['Inbox']}"))
    assert [m["id"] for m in result["list"]] == [boxes["Inbox"]]


def test_numbers_and_booleans_are_read_as_the_method_needs(web):
    """§1.3: Number and Boolean variables, e.g. /query's limit and calculateTotal."""
    _, result, _ = only_call(rest(web, "Mailbox/query",
                                  "accountId=alice&limit=2&position=1&calculateTotal=true"))
    assert (len(result["ids"]), result["position"], result["total"]) == (2, 1, 11)


def test_text_stays_text_where_any_value_is_allowed(web):
    """§1.3: a String variable is its text; Core/echo takes anything, so it echoes text."""
    _, result, _ = only_call(rest(web, "Core/echo", "n=5&flag=true&list=a,b&t=caf%C3%A9+au+lait"))
    assert result == {"n": "5", "flag": "true", "list": "a,b", "t": "café au lait"}


def test_using_defaults_to_the_methods_capability(web):
    """jmapd: with no using anywhere, core plus the capability that selects the method."""
    assert only_call(rest(web, "Mailbox/get", "accountId=alice"))[0] == "Mailbox/get"


def test_empty_variables_count_as_not_given(web):
    """jmapd: a template variable left empty is omitted (ids= means ids null: all)."""
    _, result, _ = only_call(rest(web, "Mailbox/get", "using=&accountId=alice&ids="))
    assert len(result["list"]) == 11


def test_a_trailing_slash_and_an_encoded_method_name_work(web):
    """§2 example: POST /api/ContactCard/get/?...; the name may also be percent-encoded."""
    assert only_call(rest(web, "Mailbox/get/", "accountId=alice"))[0] == "Mailbox/get"
    assert only_call(rest(web, "Mailbox%2Fget", "accountId=alice"))[0] == "Mailbox/get"


def test_a_request_object_body_supplies_what_the_url_leaves_out(web):
    """§2: the body is a Request object; URL variables MAY be omitted from it. The call
    id is "" whatever the body's invocation says."""
    body = {"using": [CORE, MAIL], "methodCalls": [["Mailbox/set", {"create": {
        "n": {"name": "From REST"}}}, "mine"]]}
    name, result, call_id = only_call(rest(web, "Mailbox/set", "accountId=alice", body))
    assert (name, call_id, list(result["created"])) == ("Mailbox/set", "", ["n"])


def test_the_body_wins_over_the_url(web):
    """jmapd: an argument given in both places is the body's."""
    body = {"methodCalls": [["Core/echo", {"a": "body"}, ""]]}
    assert only_call(rest(web, "Core/echo", f"using={CORE}&a=url&b=url", body))[1] == {
        "a": "body", "b": "url"}


def test_a_body_with_only_using(web):
    """§2: methodCalls may be omitted when the URL supplies all arguments."""
    body = {"using": [CORE, MAIL]}
    assert only_call(rest(web, "Mailbox/get", "accountId=alice", body))[0] == "Mailbox/get"


# -- errors are those of the ordinary API --

def test_a_method_error_is_the_apis(web):
    """RFC 8620 §3.6.2 through REST: the same ["error", {...}] the API gives."""
    _, error, call_id = only_call(rest(web, "Mailbox/get", "accountId=nobody"))
    assert [["error", error, call_id]] == api_call(web, "Mailbox/get", {"accountId": "nobody"})
    assert error["type"] == "accountNotFound"


@pytest.mark.parametrize("method,query,error", [
    ("Mailbox/get", "", "invalidArguments"),                    # accountId missing
    ("Mailbox/get", "accountId=alice&limit=3", "invalidArguments"),
    ("Mailbox/get", f"using={CORE}&accountId=alice", "unknownMethod"),
    ("Foo/bar", "", "unknownMethod"),
    ("Mailbox", "", "unknownMethod"),
    ("Mailbox/get", "accountId=alice&ids=bad%20id", "invalidArguments"),
])
def test_method_errors(web, method, query, error):
    """RFC 8620 §3.6.2: arguments and names are checked as in the ordinary API."""
    name, result, call_id = only_call(rest(web, method, query))
    assert (name, result["type"], call_id) == ("error", error, "")


def test_an_unknown_capability_is_the_apis_problem(web):
    """RFC 8620 §3.6.1: unknownCapability as problem details, as the API answers it."""
    response = rest(web, "Core/echo", "using=urn:example:nope")
    ordinary = web.api([["Core/echo", {}, ""]], using=("urn:example:nope",))
    assert response.status == ordinary.status == 400
    assert response.getheader("Content-Type") == "application/problem+json"
    assert json.loads(response.data)["type"] == json.loads(ordinary.data)["type"] == \
        "urn:ietf:params:jmap:error:unknownCapability"


@pytest.mark.parametrize("body,headers,error", [
    (b"{not json", {"Content-Type": "application/json"}, "notJSON"),
    (b'{"using": []}', {"Content-Type": "text/plain"}, "notJSON"),   # §2: MUST be JSON
    (b'[1]', {"Content-Type": "application/json"}, "notRequest"),
    ({"using": [CORE], "methodCalls": [["Core/echo", {}, "a"], ["Core/echo", {}, "b"]]},
     None, "notRequest"),                                           # §2: no batching
    ({"using": [CORE], "methodCalls": [["Mailbox/get", {}, "a"]]}, None, "notRequest"),
    ({"using": [CORE], "methodCalls": [["Core/echo", [], "a"]]}, None, "notRequest"),
    ({"using": "core"}, None, "notRequest"),
])
def test_request_errors(web, body, headers, error):
    """RFC 8620 §3.6.1: a bad body is the ordinary request error, as problem details."""
    response = rest(web, "Core/echo", "", body, headers)
    assert response.status == 400
    assert json.loads(response.data)["type"] == "urn:ietf:params:jmap:error:" + error


def test_a_variable_given_twice_is_not_request(web):
    """§1.3: one value per variable (an array is comma-separated, not repeated)."""
    response = rest(web, "Mailbox/get", "accountId=alice&ids=M1&ids=M2")
    assert json.loads(response.data)["type"] == "urn:ietf:params:jmap:error:notRequest"


def test_authentication_and_method_are_the_apis(web):
    """§2: authenticated POST requests: 401 without credentials, 405 for GET."""
    assert rest(web, "Mailbox/get", "accountId=alice", auth=False).status == 401
    response = web.send("GET", jmapd.REST_PREFIX + "Mailbox/get?accountId=alice")
    assert response.status == 405 and "POST" in response.getheader("Allow")


# -- the URL value reader (sans-IO) --

@pytest.mark.parametrize("text,type_,value", [
    ("5", jmapd.UnsignedInt, 5), ("-3", jmapd.Int, -3), ("true", jmapd.Boolean, True),
    ("false", jmapd.Boolean, False), ("a,b", jmapd.list_of(jmapd.Id), ["a", "b"]),
    ("a", jmapd.list_of(jmapd.Id), ["a"]), ("1,2", jmapd.list_of(jmapd.Int), [1, 2]),
    ("5", jmapd.String, "5"), ("x", jmapd.UnsignedInt, "x"),
])
def test_url_values_take_the_type_asked_for(text, type_, value):
    """§1.3: a variable is a String, Number, Boolean or an array of them."""
    read = jmapd.UrlValue(text).read_as(type_)
    assert read == value and type(read) is type(value)
