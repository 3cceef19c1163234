"""RFC 8620 §2 (the Session resource) and §2.2 (autodiscovery through
/.well-known/jmap), through core.session(...) and over HTTP."""

import json
import re
import urllib.parse

import pytest

import jmapd
from conftest import seed_demo_accounts

CORE, MAIL = jmapd.URN_CORE, jmapd.URN_MAIL
BASE = "https://jmap.example.test:8443"
REQUIRED = {"capabilities", "accounts", "primaryAccounts", "username", "apiUrl",
            "downloadUrl", "uploadUrl", "eventSourceUrl", "state"}
CORE_LIMITS = ("maxSizeUpload", "maxConcurrentUpload", "maxSizeRequest",
               "maxConcurrentRequests", "maxCallsInRequest", "maxObjectsInGet",
               "maxObjectsInSet")
SUGGESTED_MINIMUMS = {"maxSizeUpload": 50_000_000, "maxConcurrentUpload": 4,
                      "maxSizeRequest": 10_000_000, "maxConcurrentRequests": 4,
                      "maxCallsInRequest": 16, "maxObjectsInGet": 500, "maxObjectsInSet": 500}


@pytest.fixture
def session(core):
    return core.session("alice", BASE)


def origin(web):
    return f"http://{web.host}:{web.port}"


def template_variables(template):
    return re.findall(r"\{([^{}]*)\}", template)


# --- the Session object from the core ---------------------------------------------

def test_session_has_every_required_property(session):
    """§2: a Session has capabilities, accounts, primaryAccounts, username, apiUrl,
    downloadUrl, uploadUrl, eventSourceUrl and state."""
    assert REQUIRED <= set(session)


def test_session_capabilities_include_core_and_mail(session):
    """§2: capabilities MUST include urn:ietf:params:jmap:core; mail is an empty object
    (RFC 8621 §1.3.1)."""
    assert CORE in session["capabilities"]
    assert session["capabilities"][MAIL] == {}


def test_core_capability_has_exactly_the_limits_and_collation_algorithms(session):
    """§2: the core capability holds the seven limits and collationAlgorithms."""
    assert set(session["capabilities"][CORE]) == set(CORE_LIMITS) | {"collationAlgorithms"}


def test_core_capability_limits_are_the_configured_values(session):
    """§2: each limit is the server's actual limit (jmapd's defaults here)."""
    core_capability = session["capabilities"][CORE]
    assert {name: core_capability[name] for name in CORE_LIMITS} == {
        "maxSizeUpload": 50_000_000, "maxConcurrentUpload": 4, "maxSizeRequest": 10_000_000,
        "maxConcurrentRequests": 8, "maxCallsInRequest": 32, "maxObjectsInGet": 500,
        "maxObjectsInSet": 500}


@pytest.mark.parametrize("name", CORE_LIMITS)
def test_core_capability_limit_is_an_unsigned_int_at_least_the_suggested_minimum(session, name):
    """§2: every limit is an UnsignedInt; the defaults meet the suggested minimums."""
    value = session["capabilities"][CORE][name]
    assert jmapd.UnsignedInt.accepts(value)
    assert value >= SUGGESTED_MINIMUMS[name]


def test_core_capability_collation_algorithms_list_the_rfc4790_collations(session):
    """§2: collationAlgorithms is a String[] of RFC 4790 collation identifiers."""
    assert session["capabilities"][CORE]["collationAlgorithms"] == [
        "i;ascii-casemap", "i;ascii-numeric", "i;unicode-casemap"]


def test_core_capability_reflects_limits_given_to_the_core():
    """§2: a limit configured on the server is the one the session advertises."""
    custom = jmapd.JmapCore(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds(),
                            limits={"maxObjectsInGet": 100, "maxCallsInRequest": 2})
    try:
        seed_demo_accounts(custom)
        core_capability = custom.session("alice", BASE)["capabilities"][CORE]
        assert core_capability["maxObjectsInGet"] == 100
        assert core_capability["maxCallsInRequest"] == 2
        assert core_capability["maxObjectsInSet"] == 500
    finally:
        custom.close()


def test_session_accounts_map_the_personal_account_id_to_its_account_object(session):
    """§2: accounts maps each account id the user can access to name, isPersonal,
    isReadOnly and accountCapabilities."""
    assert list(session["accounts"]) == ["alice"]
    account = session["accounts"]["alice"]
    assert set(account) == {"name", "isPersonal", "isReadOnly", "accountCapabilities"}
    assert account["name"] == "alice@example.com"
    assert account["isPersonal"] is True
    assert account["isReadOnly"] is False


def test_account_capabilities_hold_the_mail_account_limits(session):
    """§2: accountCapabilities has a key per capability usable in the account; the mail
    value is RFC 8621 §1.3.1's object."""
    capabilities = session["accounts"]["alice"]["accountCapabilities"]
    assert capabilities[MAIL] == {
        "maxMailboxesPerEmail": None, "maxMailboxDepth": 10, "maxSizeMailboxName": 255,
        "maxSizeAttachmentsPerEmail": 50_000_000,
        "emailQuerySortOptions": ["receivedAt", "sentAt", "size", "from", "to", "subject",
                                  "hasKeyword", "allInThreadHaveKeyword",
                                  "someInThreadHaveKeyword"],
        "mayCreateTopLevelMailbox": True}


def test_account_capabilities_are_all_advertised_server_capabilities(session):
    """§2: the server advertises the full list of capabilities in `capabilities`, so every
    accountCapabilities key is one of them."""
    for account in session["accounts"].values():
        assert set(account["accountCapabilities"]) <= set(session["capabilities"])


def test_account_ids_are_ids(session):
    """§2 and §1.2: accounts is Id[Account], so each key is an Id."""
    assert all(jmapd.Id.accepts(account_id) for account_id in session["accounts"])


def test_primary_accounts_map_mail_to_the_users_own_account(session):
    """§2: primaryAccounts maps capability URIs to the default account id."""
    assert session["primaryAccounts"][MAIL] == "alice"


def test_primary_accounts_omit_the_core_capability(session):
    """§2: "urn:ietf:params:jmap:core" SHOULD NOT be present in primaryAccounts."""
    assert CORE not in session["primaryAccounts"]


def test_primary_accounts_name_only_listed_accounts_and_their_capabilities(session):
    """§2: primaryAccounts keys are URIs found in accountCapabilities, and each value is
    an account in `accounts` that has that capability."""
    for urn, account_id in session["primaryAccounts"].items():
        assert account_id in session["accounts"]
        assert urn in session["accounts"][account_id]["accountCapabilities"]


def test_session_username_is_the_authenticated_login(core):
    """§2: username is the one associated with the credentials."""
    assert core.session("alice", BASE)["username"] == "alice"
    assert core.session("bob", BASE)["username"] == "bob"


def test_session_api_url_is_absolute_on_the_given_origin(session):
    """§2: apiUrl is the URL to POST API requests to."""
    assert session["apiUrl"] == "https://jmap.example.test:8443/jmap/api"


def test_session_download_url_is_the_exact_template(session):
    """§2: downloadUrl is a level-1 URI Template with accountId, blobId, name and type."""
    assert session["downloadUrl"] == (
        "https://jmap.example.test:8443/jmap/download/{accountId}/{blobId}/{name}?type={type}")


def test_session_upload_url_is_the_exact_template(session):
    """§2: uploadUrl is a level-1 URI Template with the variable accountId."""
    assert session["uploadUrl"] == "https://jmap.example.test:8443/jmap/upload/{accountId}/"


def test_session_event_source_url_is_the_exact_template(session):
    """§2: eventSourceUrl is a level-1 URI Template with types, closeafter and ping."""
    assert session["eventSourceUrl"] == ("https://jmap.example.test:8443/jmap/eventsource"
                                         "?types={types}&closeafter={closeafter}&ping={ping}")


@pytest.mark.parametrize("name, variables", [
    ("downloadUrl", {"accountId", "blobId", "type", "name"}),
    ("uploadUrl", {"accountId"}),
    ("eventSourceUrl", {"types", "closeafter", "ping"}),
])
def test_session_templates_are_level_1_with_exactly_the_required_variables(session, name,
                                                                           variables):
    """§2: level 1 (RFC 6570) means bare {var} expressions, no operators; each template
    MUST contain its variables."""
    found = template_variables(session[name])
    assert set(found) == variables
    assert all(re.fullmatch(r"[A-Za-z]+", variable) for variable in found)


def test_session_download_url_puts_type_in_the_query(session):
    """§2: it is RECOMMENDED to put the "type" variable in the query section."""
    parts = urllib.parse.urlsplit(session["downloadUrl"])
    assert "{type}" not in parts.path
    assert parts.query == "type={type}"


@pytest.mark.parametrize("name", ["apiUrl", "downloadUrl", "uploadUrl", "eventSourceUrl"])
def test_session_urls_are_absolute(session, name):
    """§2: every URL has a scheme and authority, so the client needs no base to use it."""
    parts = urllib.parse.urlsplit(session[name])
    assert (parts.scheme, parts.netloc) == ("https", "jmap.example.test:8443")


def test_session_state_is_the_cores_session_state(core, session):
    """§2: state is a String; the core reports the same value on its own."""
    assert isinstance(session["state"], str) and session["state"]
    assert session["state"] == core.session_state("alice")


def test_session_state_equals_the_session_state_of_an_api_response(jmap, session):
    """§2, §3.4: the Response's sessionState is the Session's current state."""
    response = jmap.request([["Core/echo", {}]])
    assert response["sessionState"] == session["state"]


def test_session_state_is_stable_while_the_session_is_unchanged(core, jmap, session):
    """§2: state changes only if another property changes; mail data is not session data."""
    jmap.call("Mailbox/set", {"accountId": "alice", "create": {"n": {"name": "New"}}})
    assert core.session("alice", BASE)["state"] == session["state"]
    assert core.session("alice", "http://other.test")["state"] == session["state"]


def test_session_state_differs_when_the_session_content_differs(core, session):
    """§2: if any other property differs, the state string differs (other user, other
    limits)."""
    assert core.session("bob", BASE)["state"] != session["state"]
    custom = jmapd.JmapCore(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds(),
                            limits={"maxObjectsInSet": 100})
    try:
        seed_demo_accounts(custom)
        assert custom.session("alice", BASE)["state"] != session["state"]
    finally:
        custom.close()


def test_session_state_is_unaffected_by_another_users_new_account(core):
    """§2: state changes only when this user's Session changes: a new user's account is
    not alice's, so alice's state stays, and the new user's differs from the others'."""
    before = core.session_state("alice")
    core.add_user("carol", "carol")
    assert core.session_state("alice") == before
    assert core.session("carol", BASE)["accounts"].keys() == {"carol"}
    assert core.session_state("carol") not in (before, core.session_state("bob"))


def test_alice_never_sees_bobs_account(core, session):
    """§2: accounts lists only accounts the user has access to: alice's session names
    no account of bob's anywhere, and bob's none of alice's."""
    assert "bob" not in session["accounts"]
    assert "bob" not in session["primaryAccounts"].values()
    assert "bob@example.com" not in json.dumps(session)
    bobs = core.session("bob", BASE)
    assert list(bobs["accounts"]) == ["bob"]
    assert bobs["accounts"]["bob"]["name"] == "bob@example.com"
    assert set(bobs["primaryAccounts"].values()) == {"bob"}
    assert "alice" not in json.dumps(bobs)


# --- the Session resource over HTTP --------------------------------------------

def test_http_session_is_json_and_equals_the_cores_session(web, server):
    """§2: an authenticated GET returns the JSON Session object."""
    response = web.send("GET", "/jmap/session")
    assert response.status == 200
    assert response.getheader("Content-Type").split(";")[0] == "application/json"
    assert json.loads(response.data) == server.core.session("alice", origin(web))


def test_http_session_urls_are_absolute_on_the_servers_origin(web):
    """§2: the URLs the client gets point back at the server it asked."""
    session = json.loads(web.send("GET", "/jmap/session").data)
    base = origin(web)
    assert session["apiUrl"] == base + "/jmap/api"
    assert session["uploadUrl"] == base + "/jmap/upload/{accountId}/"
    assert session["downloadUrl"] == base + "/jmap/download/{accountId}/{blobId}/{name}?type={type}"
    assert session["eventSourceUrl"] == (
        base + "/jmap/eventsource?types={types}&closeafter={closeafter}&ping={ping}")


def test_http_session_state_equals_api_response_session_state(web):
    """§2, §3.4: sessionState of an API response is the Session's state."""
    session = json.loads(web.send("GET", "/jmap/session").data)
    response = web.api([["Core/echo", {"x": 1}, "c"]])
    assert response.status == 200
    assert json.loads(response.data)["sessionState"] == session["state"]


def test_http_session_api_url_accepts_requests(web):
    """§2: apiUrl is where API requests go (§3.1)."""
    session = json.loads(web.send("GET", "/jmap/session").data)
    path = urllib.parse.urlsplit(session["apiUrl"]).path
    response = web.send("POST", path, {"using": [CORE],
                                       "methodCalls": [["Core/echo", {"a": 1}, "e"]]})
    assert response.status == 200
    assert json.loads(response.data)["methodResponses"] == [["Core/echo", {"a": 1}, "e"]]


def test_http_session_for_bob_lists_only_bobs_account(web):
    """§2: the Session depends on the credentials: bob sees only bob's account."""
    session = json.loads(web.send("GET", "/jmap/session", auth=web.basic("bob")).data)
    assert session["username"] == "bob"
    assert list(session["accounts"]) == ["bob"]
    assert session["primaryAccounts"] == {MAIL: "bob", jmapd.URN_SUBMISSION: "bob", jmapd.URN_VACATION: "bob",
                                          jmapd.URN_QUOTA: "bob", jmapd.URN_MDN: "bob"}


def test_http_session_requires_authentication(web):
    """§2: only an authenticated GET returns the Session; without credentials, 401."""
    response = web.send("GET", "/jmap/session", auth=False)
    assert response.status == 401
    assert b"accounts" not in response.data


def test_http_session_with_wrong_password_is_401(web):
    """§2: wrong credentials get no Session."""
    response = web.send("GET", "/jmap/session", auth=web.basic("alice", "wrong"))
    assert response.status == 401


def test_http_session_disables_caching(web):
    """§2: it is RECOMMENDED to disable HTTP caching of the Session altogether."""
    response = web.send("GET", "/jmap/session")
    assert "no-store" in response.getheader("Cache-Control")


@pytest.mark.parametrize("path", ["/.well-known/jmap", "/.well-known/jmap/"])
def test_well_known_jmap_redirects_to_the_session_resource(web, path):
    """§2.2: /.well-known/jmap leads (by redirect) to the Session resource."""
    response = web.send("GET", path, auth=False)
    assert response.status == 307
    assert response.getheader("Location") == origin(web) + "/jmap/session"


def test_following_the_well_known_redirect_gives_the_session(web, server):
    """§2.2: following the redirects from /.well-known/jmap ends at the Session."""
    location = web.send("GET", "/.well-known/jmap").getheader("Location")
    response = web.send("GET", urllib.parse.urlsplit(location).path)
    assert response.status == 200
    assert json.loads(response.data) == server.core.session("alice", origin(web))
