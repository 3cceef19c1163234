"""Quirk profiles (jmapd.py section 15.7): each documented deviation of a real server
reaches the client exactly as its public report describes it, alone or in a profile,
through serve(), the CLI, the pytest marker and the control API; backendinfo
(draft-baum-jmap-backend-info §1.2.1) names the imitated product. Strict RFC 8620 stays
the default.
"""

import json

import pytest

import jmapd
from conftest import Jmap

CORE, MAIL, SUBMISSION = jmapd.URN_CORE, jmapd.URN_MAIL, jmapd.URN_SUBMISSION
BACKEND_INFO = jmapd.URN_BACKEND_INFO
P = jmapd.CONTROL_PREFIX


def quirky(core, spec):
    core.controls.set_quirks(spec)
    return Jmap(core, "alice")


def mailbox_state(jmap):
    return jmap.call("Mailbox/get", {"accountId": "alice", "ids": []})["state"]


def add_mailbox(jmap, name="Quirky"):
    return jmap.call("Mailbox/set", {"accountId": "alice", "create": {"k": {"name": name}}})


def control(web, method, name, body=None):
    """(status, JSON) of one control API request, sent without credentials."""
    response = web.send(method, P + name, body, auth={})
    return response.status, json.loads(response.data)


# --- the catalogue and its parsing ----------------------------------------------------

def test_every_quirk_cites_a_public_report_and_every_profile_names_known_quirks():
    assert len(jmapd.QUIRKS) == 10
    for quirk in jmapd.QUIRKS.values():
        assert quirk.sources and all(s.startswith("https://github.com/") for s in quirk.sources)
        assert quirk.servers and quirk.behaviour
    for product, names in jmapd.QUIRK_PROFILES.values():
        assert product and set(names) <= set(jmapd.QUIRKS)
    assert set(jmapd.QUIRK_PROFILES) == {"cyrus", "fastmail", "stalwart", "james"}


def test_profiles_and_single_quirks_mix_and_an_unknown_name_is_refused():
    mixed = jmapd.parse_quirks("stalwart, no-query-changes")
    assert mixed.names == {"download-url-accept", "changes-old-state-not-echoed",
                           "no-query-changes"}
    assert mixed.product == "Stalwart"  # one profile: its product
    assert jmapd.parse_quirks(["cyrus", "james"]).product is None  # two families: none
    assert jmapd.parse_quirks(None).names == frozenset()
    assert jmapd.parse_quirks("").names == frozenset()
    with pytest.raises(ValueError, match="unknown quirk 'cyrsu'.*profiles are cyrus"):
        jmapd.parse_quirks("cyrsu")
    with pytest.raises(ValueError, match="quirks: names"):
        jmapd.parse_quirks([3])


def test_strict_rfc_is_the_default(core):
    """RFC 8620 §2: the Session has eventSourceUrl and a downloadUrl with ?type=."""
    session = core.session("alice", "http://x")
    assert core.quirks.names == frozenset()
    assert session["eventSourceUrl"].startswith("http://x/")
    assert session["downloadUrl"].endswith("?type={type}")
    assert session["capabilities"][BACKEND_INFO]["product"]["name"] == "jmapd"


# --- the Session (RFC 8620 §2) and backendinfo ---------------------------------------

def test_no_event_source_url_leaves_it_out_of_the_session(core):
    """cyrus-imapd#3272: Cyrus listed no eventSourceUrl; Fastmail has no event source."""
    quirky(core, "no-event-source-url")
    session = core.session("alice", "http://x")
    assert "eventSourceUrl" not in session
    assert {"apiUrl", "downloadUrl", "uploadUrl", "state"} <= set(session)


def test_download_url_accept_renames_the_type_variable_and_serves_by_it(jmap_server):
    """stalwart#1862: Stalwart's downloadUrl ends ?accept={type}; the blob comes back
    typed by that variable, while ?type= alone is then no type at all."""
    jmap_server.core.controls.set_quirks("download-url-accept")
    client = jmap_server.client()
    assert client.session["downloadUrl"].endswith("/{name}?accept={type}")
    blob = client.upload(b"hello", "text/plain")["blobId"]
    assert client.download(blob, "a.txt", type="text/x-quirk") == b"hello"
    url = f"{jmapd.DOWNLOAD_PREFIX}alice/{blob}/a.txt"
    status, headers, _ = client.send("GET", jmap_server.url + url + "?accept=text/x-quirk")
    assert (status, headers["Content-Type"]) == (200, "text/x-quirk")
    status, headers, _ = client.send("GET", jmap_server.url + url + "?type=text/x-quirk")
    assert (status, headers["Content-Type"]) == (200, "text/plain")  # the upload's type


def test_a_profile_names_its_product_in_backendinfo(core):
    """draft-baum-jmap-backend-info §1.2.1: product is the imitated product; apiBackend
    stays jmapd, and environment lists the quirks in force."""
    quirky(core, "cyrus")
    info = core.session("alice", "http://x")["capabilities"][BACKEND_INFO]
    assert info["product"] == {"name": "Cyrus IMAP", "version": None}
    assert info["apiBackend"] == {"name": "jmapd", "version": jmapd.__version__}
    assert info["environment"].endswith("; jmapd quirks: invalid-since-state,"
                                        "lenient-get-properties,no-event-source-url,"
                                        "no-query-changes,set-without-old-state")


def test_single_quirks_keep_jmapd_as_the_product(core):
    quirky(core, "no-query-changes")
    info = core.session("alice", "http://x")["capabilities"][BACKEND_INFO]
    assert info["product"]["name"] == "jmapd"
    assert info["environment"].endswith("; jmapd quirks: no-query-changes")


def test_changing_quirks_changes_the_session_state(core):
    """RFC 8620 §2: the Session's state changes when its content does."""
    plain = core.session_state("alice")
    quirky(core, "fastmail")
    assert core.session_state("alice") != plain
    assert core.handle_request("alice", {"using": [CORE], "methodCalls": []})[
        "sessionState"] == core.session_state("alice")
    core.controls.set_quirks(None)
    assert core.session_state("alice") == plain


# --- method calls ---------------------------------------------------------------------

def test_no_query_changes_answers_cannot_calculate_changes(core):
    """cyrus-imapd#2465, james-project#4799: queryChanges always cannotCalculateChanges;
    the /query itself is answered as before."""
    jmap = quirky(core, "no-query-changes")
    query = jmap.call("Mailbox/query", {"accountId": "alice"})
    assert query["canCalculateChanges"] is True and query["ids"]
    name, result = jmap.call_raw("Mailbox/queryChanges", {
        "accountId": "alice", "sinceQueryState": query["queryState"]})
    assert (name, result) == ("error", {"type": "cannotCalculateChanges"})
    assert jmap.error("Email/queryChanges", {"accountId": "alice",
                                             "sinceQueryState": "0"}) == "cannotCalculateChanges"


def test_invalid_since_state_answers_invalid_arguments_for_a_state_never_issued(core):
    """cyrus-imapd#4205: before 2022 Cyrus refused an invalid sinceState with
    invalidArguments; a state it issued still works."""
    jmap = quirky(core, "invalid-since-state")
    name, result = jmap.call_raw("Mailbox/changes", {"accountId": "alice",
                                                     "sinceState": "bogus"})
    assert (name, result["type"]) == ("error", "invalidArguments")
    assert "bogus" in result["description"]
    state = mailbox_state(jmap)
    assert jmap.call("Mailbox/changes", {"accountId": "alice", "sinceState": state})[
        "created"] == []


def test_invalid_since_state_leaves_an_expired_state_cannot_calculate_changes(core):
    """A state the server issued but forgot is still RFC 8620 §5.2's error."""
    jmap = quirky(core, "invalid-since-state")
    old = mailbox_state(jmap)
    add_mailbox(jmap)
    core.controls.faults.expire_states("Mailbox")
    assert jmap.error("Mailbox/changes", {"accountId": "alice",
                                          "sinceState": old}) == "cannotCalculateChanges"


def test_lenient_get_properties_ignores_unknown_names(core):
    """cyrus-imapd#1846: unknown properties are dropped, known ones still returned."""
    jmap = quirky(core, "lenient-get-properties")
    listed = jmap.call("Mailbox/get", {"accountId": "alice", "ids": None,
                                       "properties": ["name", "thisfieldisfake"]})["list"]
    assert listed and all(set(m) == {"id", "name"} for m in listed)
    only_junk = jmap.call("Mailbox/get", {"accountId": "alice", "ids": None,
                                          "properties": ["datex"]})["list"]
    assert all(set(m) == {"id"} for m in only_junk)


def test_strict_get_properties_refuses_unknown_names(jmap):
    assert jmap.error("Mailbox/get", {"accountId": "alice",
                                      "properties": ["thisfieldisfake"]}) == "invalidArguments"


def test_set_without_old_state_answers_new_state_only(core):
    """cyrus-imapd#2260: Mailbox/set answered newState but no oldState."""
    jmap = quirky(core, "set-without-old-state")
    result = add_mailbox(jmap)
    assert "oldState" not in result
    assert result["newState"] == mailbox_state(jmap) and result["created"]["k"]["id"]


def test_changes_old_state_not_echoed(core):
    """stalwart jmap-server#56: oldState was not the client's sinceState."""
    jmap = quirky(core, "changes-old-state-not-echoed")
    since = mailbox_state(jmap)
    created = add_mailbox(jmap)["created"]["k"]["id"]
    result = jmap.call("Mailbox/changes", {"accountId": "alice", "sinceState": since})
    assert result["created"] == [created]
    assert result["oldState"] != since and result["oldState"] == result["newState"]


def test_implicit_cannot_calculate_answers_has_more_changes_with_no_progress(core):
    """iNPUTmice/jmap#47: Apache James answered Email/changes with hasMoreChanges true,
    newState == oldState and no ids, again on every call, instead of the error."""
    jmap = quirky(core, "implicit-cannot-calculate")
    old = mailbox_state(jmap)
    add_mailbox(jmap)
    core.controls.faults.expire_states("Mailbox")
    for _ in range(2):
        name, result = jmap.call_raw("Mailbox/changes", {"accountId": "alice",
                                                         "sinceState": old})
        assert (name, result) == ("Mailbox/changes", {
            "accountId": "alice", "oldState": old, "newState": old, "hasMoreChanges": True,
            "created": [], "updated": [], "destroyed": []})


def test_implicit_cannot_calculate_also_shapes_an_armed_fault(core):
    """A cannot_calculate_changes fault (15.1) answers the way this server would."""
    jmap = quirky(core, "james")
    core.controls.faults.cannot_calculate_changes("Mailbox", times=1)
    state = mailbox_state(jmap)
    result = jmap.call("Mailbox/changes", {"accountId": "alice", "sinceState": state})
    assert (result["hasMoreChanges"], result["newState"]) == (True, state)


def test_no_push_subscription_makes_its_methods_unknown(core):
    """fastmail/JMAP-Samples#8: Fastmail implements no PushSubscription."""
    jmap = quirky(core, "fastmail")
    name, result = jmap.call_raw("PushSubscription/get", {}, using=(CORE,))
    assert (name, result["type"]) == ("error", "unknownMethod")
    assert jmap.error("PushSubscription/set", {"create": {}}, using=(CORE,)) == "unknownMethod"
    assert jmap.call("Mailbox/get", {"accountId": "alice", "ids": []})["list"] == []


def test_the_cyrus_profile_is_all_of_its_quirks_at_once(core):
    jmap = quirky(core, "cyrus")
    assert "eventSourceUrl" not in core.session("alice", "http://x")
    assert "oldState" not in add_mailbox(jmap)
    assert jmap.error("Mailbox/queryChanges", {"accountId": "alice",
                                               "sinceQueryState": "0"}) == "cannotCalculateChanges"


# --- over HTTP: the event source, serve(), the marker, the control API, the CLI -------

def test_event_source_no_content_answers_204(jmap_server):
    """cyrus-imapd#3286: Cyrus's stub answered 204, which makes an EventSource stop
    (HTML SSE: no reconnect), with no body and no Content-Length (RFC 9110 §8.6)."""
    jmap_server.core.controls.set_quirks("event-source-no-content")
    client = jmap_server.client()
    url = client.session["eventSourceUrl"].replace("{types}", "*").replace(
        "{closeafter}", "no").replace("{ping}", "0")
    status, headers, body = client.send("GET", url)
    assert (status, body) == (204, b"")
    assert "Content-Length" not in headers


def test_serve_takes_quirks():
    with jmapd.serve("empty", users=["nobody:x"], quirks="stalwart") as server:
        assert server.core.quirks.product == "Stalwart"
        assert server.core.session("nobody", server.url)["downloadUrl"].endswith(
            "?accept={type}")
    with pytest.raises(ValueError, match="unknown quirk"):
        jmapd.serve("empty", quirks="nope")


@pytest.mark.jmapd(quirks="fastmail")
def test_the_marker_option_imitates_a_server(jmap_server, jmap_client):
    assert "eventSourceUrl" not in jmap_client.session
    info = jmap_client.session["capabilities"][BACKEND_INFO]
    assert info["product"]["name"] == "Fastmail"
    with pytest.raises(jmapd.CallError, match="unknownMethod"):
        jmap_client.call("PushSubscription/get", {})


def test_the_control_api_lists_and_sets_quirks(web):
    status, listed = control(web, "GET", "/quirks")
    assert status == 200
    assert (listed["quirks"], listed["pedantic"]) == ([], False)
    assert listed["catalogue"]["profiles"]["james"]["product"] == "Apache James"
    assert listed["catalogue"]["quirks"]["no-query-changes"]["sources"][0].startswith(
        "https://github.com/cyrusimap/")
    status, active = control(web, "POST", "/quirks", {"quirks": "james"})
    assert (status, active["product"], active["profiles"]) == (200, "Apache James", ["james"])
    assert active["quirks"] == ["implicit-cannot-calculate", "no-query-changes"]
    status, active = control(web, "POST", "/quirks", {"quirks": ["download-url-accept"]})
    assert (status, active["quirks"], active["product"]) == (200, ["download-url-accept"], None)
    session = json.loads(web.send("GET", jmapd.SESSION_PATH).data)
    assert session["downloadUrl"].endswith("?accept={type}")
    assert control(web, "POST", "/quirks", {"quirks": None})[1]["quirks"] == []


@pytest.mark.parametrize("body", [{}, {"quirks": "nope"}, {"quirks": 3}, {"other": 1},
                                  {"pedantic": "yes"}])
def test_the_control_api_refuses_bad_quirk_requests(web, body):
    status, problem = control(web, "POST", "/quirks", body)
    assert (status, problem["status"]) == (400, 400)
    assert control(web, "GET", "/quirks")[1]["quirks"] == []  # nothing changed


def test_the_cli_takes_quirks_and_refuses_an_unknown_one(capsys):
    options = jmapd.build_arg_parser().parse_args(["--quirks", "cyrus,download-url-accept"])
    assert options.quirks == "cyrus,download-url-accept"
    assert jmapd.main(["--port", "0", "--seed", "empty", "--quirks", "nope"]) == 1
    assert "unknown quirk 'nope'" in capsys.readouterr().err


def test_describe_server_names_the_quirks():
    with jmapd.serve("empty", quirks="no-query-changes") as server:
        assert "  quirks:  no-query-changes" in jmapd.describe_server(server)


@pytest.mark.jmapd(quirks="james")
def test_readme_a_forgotten_state_looks_like_james_over_http(jmap_server, jmap_client):
    state = jmap_client.call("Email/get", {"accountId": "alice", "ids": []})["state"]
    jmap_server.deliver({"from": "carol@example.org", "to": "alice", "text": "Hi"})
    jmap_server.faults.expire_states("Email")
    changes = jmap_client.call("Email/changes", {"accountId": "alice", "sinceState": state})
    assert changes["hasMoreChanges"] and changes["newState"] == state
    assert (changes["created"], changes["updated"], changes["destroyed"]) == ([], [], [])
