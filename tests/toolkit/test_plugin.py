"""The test toolkit (jmapd.py section 18): the stdlib Client, and the pytest plugin run
the way a client project runs it, through pytest's own pytester (in-process, few runs).

The Client is checked against RFC 8620 §2 (session discovery), §3 (requests and errors),
§6 (upload, download) and §7.3 (EventSource) on a real server from the plugin.
"""

import importlib.util
import pathlib
import re
import sys

import pytest

import jmapd

pytest_plugins = ["pytester"]

ROOT = pathlib.Path(jmapd.__file__).parent


@pytest.fixture
def project(pytester, monkeypatch):
    """A fresh client project that copied jmapd.py: no installed plugins are loaded
    (hermetic, and fast: re-importing them in every in-process run costs seconds)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeconftest('pytest_plugins = ["jmapd"]\n')
    return pytester

# A client project's own test file: it copied jmapd.py and wrote pytest_plugins = ["jmapd"].
PROJECT_TESTS = '''
import pytest
import jmapd

MAIL = "urn:ietf:params:jmap:mail"


def mailbox_names(client):
    listed = client.call("Mailbox/get", {"accountId": client.account_id})["list"]
    return sorted(m["name"] for m in listed)


def email_total(client):
    return client.call("Email/query", {"accountId": client.account_id,
                                       "calculateTotal": True})["total"]


def test_default_is_the_demo_seed_as_alice(jmap_server, jmap_client):
    assert jmap_client.session["username"] == "alice"
    assert jmap_client.account_id == "alice"
    assert email_total(jmap_client) == 47
    assert len(mailbox_names(jmap_client)) == 11
    bob = jmap_server.client("bob")
    assert bob.session["username"] == "bob"
    assert "Travel" in mailbox_names(bob)


@pytest.mark.jmapd(seed="generated:20")
def test_marker_seed(jmap_client):
    assert email_total(jmap_client) == 20


@pytest.mark.jmapd(seed="empty", users=["carol", "dave:secret"])
def test_marker_users(jmap_server):
    assert [u.name for u in jmap_server.users] == ["alice", "bob", "carol", "dave"]
    assert jmap_server.client("carol", "carol").session["username"] == "carol"
    assert mailbox_names(jmap_server.client("dave")) == [
        "Archive", "Drafts", "Inbox", "Junk", "Sent", "Trash"]
    with pytest.raises(jmapd.CallError) as refused:
        jmap_server.client("dave", "wrong").session
    assert refused.value.status == 401


@pytest.mark.jmapd(fixed_clock="2024-01-01T00:00:00Z")
def test_marker_fixed_clock(jmap_client):
    inbox = jmap_client.call("Mailbox/query", {"accountId": "alice",
                                               "filter": {"role": "inbox"}})["ids"][0]
    created = jmap_client.call("Email/set", {"accountId": "alice", "create": {"k": {
        "mailboxIds": {inbox: True}, "subject": "now"}}})["created"]["k"]
    got = jmap_client.call("Email/get", {"accountId": "alice", "ids": [created["id"]],
                                         "properties": ["receivedAt"]})["list"][0]
    assert got["receivedAt"] == "2024-01-01T00:00:00Z"


@pytest.mark.jmapd(limits={"maxCallsInRequest": 4})
def test_marker_limits(jmap_client):
    core = jmap_client.session["capabilities"]["urn:ietf:params:jmap:core"]
    assert core["maxCallsInRequest"] == 4
    assert len(jmap_client.request([["Core/echo", {}]] * 4)["methodResponses"]) == 4
    with pytest.raises(jmapd.CallError) as refused:
        jmap_client.request([["Core/echo", {}]] * 5)
    assert refused.value.type == "urn:ietf:params:jmap:error:limit"
    assert refused.value.error["limit"] == "maxCallsInRequest"


def test_isolation_first_writes(jmap_client):
    jmap_client.call("Mailbox/set", {"accountId": "alice",
                                     "create": {"m": {"name": "Leaked?"}}})
    assert "Leaked?" in mailbox_names(jmap_client)


def test_isolation_second_does_not_see_it(jmap_client):
    assert "Leaked?" not in mailbox_names(jmap_client)
    assert len(mailbox_names(jmap_client)) == 11


def test_an_unexpected_method_error_fails_with_its_type(jmap_client):
    jmap_client.call("Mailbox/get", {"accountId": "nobody"})


def test_event_source_sees_a_state_change(jmap_client):
    with jmap_client.events(types=["Mailbox"], timeout=5) as events:
        result = jmap_client.call("Mailbox/set", {"accountId": "alice",
                                                  "create": {"m": {"name": "Pushed"}}})
        change = events.next_state_change()
    assert change == {"@type": "StateChange",
                      "changed": {"alice": {"Mailbox": result["newState"]}}}


@pytest.mark.jmapd(sed="empty")
def test_a_misspelt_option_is_a_setup_error(jmap_server):
    pass
'''

# A second module configures every server of its suite by overriding jmapd_options.
SUITE_OPTIONS_TESTS = '''
import pytest
import jmapd


@pytest.fixture
def jmapd_options():
    return {"seed": "empty", "limits": {"maxObjectsInGet": 3}}


def test_suite_options_apply(jmap_client):
    core = jmap_client.session["capabilities"]["urn:ietf:params:jmap:core"]
    assert core["maxObjectsInGet"] == 3
    ids = jmap_client.call("Mailbox/query", {"accountId": "alice"})["ids"]
    assert len(ids) == 6
    with pytest.raises(jmapd.CallError, match="requestTooLarge"):
        jmap_client.call("Mailbox/get", {"accountId": "alice", "ids": ids})


@pytest.mark.jmapd(seed="demo")
def test_the_marker_overrides_one_suite_option(jmap_client):
    core = jmap_client.session["capabilities"]["urn:ietf:params:jmap:core"]
    assert core["maxObjectsInGet"] == 3
    assert jmap_client.call("Email/query", {"accountId": "alice",
                                            "calculateTotal": True})["total"] == 47
'''


def test_a_project_with_pytest_plugins_jmapd_gets_the_fixtures_and_marker(project):
    """The plugin in a fresh project: jmap_server (demo seed, free port) and jmap_client
    (alice); each marker option takes effect (seed, users, fixed_clock, limits); a write in
    one test is gone in the next; a method error fails the test with its RFC 8620 §3.6.2
    type and description; the EventSource reader sees the state change (§7.3); a
    jmapd_options override configures a module; a misspelt option is a setup error."""
    project.makepyfile(test_project=PROJECT_TESTS, test_suite_options=SUITE_OPTIONS_TESTS)
    result = project.runpytest_inprocess("--strict-markers", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=10, failed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*test_an_unexpected_method_error_fails_with_its_type*",
        "*CallError: Mailbox/get failed: accountNotFound: accountId: no account 'nobody'*",
    ])
    result.stdout.fnmatch_lines([  # the server's request log, shown under the failure
        "*- jmapd requests -*", "*POST /jmap/api -> 200 (alice*",
        '*> ?"Mailbox/get",{"accountId":"nobody"},"c0"?', '*< ?"error",{"type":"accountNotFound"*'])
    result.stdout.fnmatch_lines([
        "*ERROR at setup of test_a_misspelt_option_is_a_setup_error*",
        "jmap_server: unknown jmapd option 'sed'; the options are "
        "seed, users, fixed_clock, limits, deterministic, quirks, pedantic",
        "*= FAILURES =*"], consecutive=True)  # the message alone: no traceback, no chain


def test_an_entry_point_registration_and_pytest_plugins_do_not_register_twice(project):
    """`pip install jmapd` loads the plugin by its pytest11 name "jmapd" (as -p jmapd
    does); a conftest's pytest_plugins = ["jmapd"] then finds it loaded and adds nothing."""
    project.makepyfile('''
        import jmapd

        def test_registered_once(request, jmap_client):
            manager = request.config.pluginmanager
            assert manager.get_plugin("jmapd") is jmapd
            assert [p for p in manager.get_plugins() if p is jmapd] == [jmapd]
            assert jmap_client.call("Core/echo", {"ok": 1}) == {"ok": 1}
    ''')
    result = project.runpytest_inprocess("-p", "jmapd", "-p", "no:cacheprovider",
                                          "-W", "error::pytest.PytestAssertRewriteWarning")
    result.assert_outcomes(passed=1)


def test_pyproject_registers_the_plugin_under_the_name_jmapd():
    """pip install jmapd registers the plugin: entry point group pytest11, name jmapd,
    the same name pytest_plugins uses (so the two never load it twice)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split("[project.entry-points.pytest11]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^jmapd = "jmapd"', section, re.M)


def test_jmapd_imports_without_pytest(monkeypatch):
    """jmapd stays stdlib-only: with no pytest, the Client is there and the fixtures aren't."""
    monkeypatch.setitem(sys.modules, "pytest", None)  # `import pytest` raises ImportError
    spec = importlib.util.spec_from_file_location("jmapd_without_pytest", jmapd.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.pytest is None
    assert isinstance(module.Client, type) and isinstance(module.ServerTemplates, type)
    assert not hasattr(module, "jmap_server") and not hasattr(module, "pytest_configure")


def test_the_plugin_registers_its_marker(pytestconfig):
    """The jmapd marker is registered (so --strict-markers accepts it), options documented."""
    markers = pytestconfig.getini("markers")
    assert any(m.startswith("jmapd(seed='demo', users=(), fixed_clock=None") for m in markers)


# --- the Client, on the repo's own jmap_server --------------------------------------

def test_client_discovers_the_session_from_the_origin(jmap_server):
    """RFC 8620 §2.2: the origin's /.well-known/jmap redirect is followed to the session."""
    client = jmapd.Client(jmap_server.url, "alice", "alice")
    assert client.url == jmap_server.url + "/.well-known/jmap"
    assert client.session["apiUrl"] == jmap_server.url + "/jmap/api"
    assert client.account_id == "alice"


def test_client_with_a_bearer_token(jmap_server):
    """Bearer authentication: the token names the user."""
    client = jmapd.Client(jmap_server.session_url, token="token-bob")
    assert client.session["username"] == "bob"


def test_client_wrong_password_is_a_401_call_error(jmap_server):
    """A refused login raises CallError with the HTTP status (RFC 8620 §2: 401)."""
    with pytest.raises(jmapd.CallError) as refused:
        jmapd.Client(jmap_server.url, "alice", "nope").session
    assert refused.value.status == 401 and refused.value.method is None


def test_client_call_returns_arguments_and_raises_method_errors(jmap_client):
    """§3.6.2: an "error" response raises CallError naming the method, type, description."""
    assert jmap_client.call("Core/echo", {"hello": [1, 2]}) == {"hello": [1, 2]}
    with pytest.raises(jmapd.CallError) as failed:
        jmap_client.call("Mailbox/frobnicate", {})
    assert failed.value.type == "unknownMethod"
    assert failed.value.method == "Mailbox/frobnicate"
    assert str(failed.value).startswith("Mailbox/frobnicate failed: unknownMethod")


def test_client_request_keeps_method_errors_in_the_response(jmap_client):
    """request() returns the whole Response; call ids default to c0, c1, ..."""
    response = jmap_client.request([["Core/echo", {"a": 1}],
                                    ["Mailbox/get", {"accountId": "nobody"}, "mine"]])
    assert [r[0] for r in response["methodResponses"]] == ["Core/echo", "error"]
    assert [r[2] for r in response["methodResponses"]] == ["c0", "mine"]
    assert response["methodResponses"][1][1]["type"] == "accountNotFound"
    assert "sessionState" in response


def test_client_request_level_error_carries_the_problem_details(jmap_client):
    """§3.6.1: an unknown capability in `using` is a 400 with the problem's URN type."""
    with pytest.raises(jmapd.CallError) as refused:
        jmap_client.call("Core/echo", {}, using=["urn:example:nothing"])
    assert refused.value.status == 400
    assert refused.value.type == "urn:ietf:params:jmap:error:unknownCapability"


def test_client_upload_then_download(jmap_client):
    """§6.1 upload, §6.2 download: the same octets come back, typed as asked."""
    uploaded = jmap_client.upload(b"\x00binary\xff", "application/x-test")
    assert uploaded["size"] == 8 and uploaded["type"] == "application/x-test"
    assert jmap_client.download(uploaded["blobId"], "x.bin") == b"\x00binary\xff"
    with pytest.raises(jmapd.CallError) as missing:
        jmap_client.download("Gnothere")
    assert missing.value.status == 404


def test_event_source_times_out_and_stays_usable(jmap_server, jmap_client):
    """§7.3: with no change there is no state event (TimeoutError, not a hang); the
    stream then still delivers the next change, with its id."""
    with jmap_client.events(types="Mailbox") as events:
        with pytest.raises(TimeoutError):
            events.next_event(timeout=0.05)
        bob = jmap_server.client("bob")
        bob.call("Mailbox/set", {"accountId": "bob", "create": {"m": {"name": "Bob's"}}})
        with pytest.raises(TimeoutError):
            events.next_event(timeout=0.05)  # bob's change is not alice's to see
        jmap_client.call("Mailbox/set", {"accountId": "alice", "create": {"m": {"name": "A"}}})
        event = events.next_event(timeout=5)
    assert event.type == "state" and event.id and event.id.split(".")[-1].isdigit()
    assert list(event.data["changed"]) == ["alice"]


def test_event_source_closeafter_state_ends_the_iteration(jmap_client):
    """§7.3 closeafter=state: the server ends the stream after one state event."""
    with jmap_client.events(closeafter="state", ping=0) as events:
        jmap_client.call("Mailbox/set", {"accountId": "alice", "create": {"m": {"name": "B"}}})
        seen = [event.type for event in events]
    assert seen == ["state"]


def test_event_source_bad_query_is_a_call_error(jmap_client):
    """§7.3: closeafter must be state or no: 400, reported before any event."""
    with pytest.raises(jmapd.CallError) as refused:
        jmap_client.events(closeafter="sometimes")
    assert refused.value.status == 400


@pytest.mark.parametrize("block, expected", [
    ("event: state\nid: 7\ndata: {\"a\": 1}", jmapd.Event("state", "7", {"a": 1})),
    ("data: one\ndata: two", jmapd.Event("message", None, "one\ntwo")),
    (": a comment only", None),
    ("event:ping\ndata:{}", jmapd.Event("ping", None, {})),
])
def test_event_stream_blocks_parse_as_the_html_sse_format(block, expected):
    """The text/event-stream fields RFC 8620 §7.3 uses: event, id, data (joined by \\n)."""
    assert jmapd._parse_sse_block(block) == expected


def test_jmap_server_client_for_an_unknown_user_needs_a_password(jmap_server):
    """A client for a name the server lacks is refused at first use (401)."""
    with pytest.raises(jmapd.CallError) as refused:
        jmap_server.client("mallory").session
    assert refused.value.status == 401


@pytest.mark.jmapd(seed=None)
def test_a_server_without_users_has_no_default_client(jmap_server):
    """seed=None: no users, so no client to hand out (a clear ValueError)."""
    assert jmap_server.users == []
    with pytest.raises(ValueError, match="no users"):
        jmap_server.client()


@pytest.mark.jmapd(deterministic=True)
def test_deterministic_gives_sequential_ids_and_the_fixed_clock(jmap_client):
    """deterministic=True: the --deterministic ids and clock, from the template's counter."""
    seeded = jmap_client.call("Mailbox/query", {"accountId": "alice"})["ids"]
    created = jmap_client.call("Mailbox/set", {"accountId": "alice",
                                               "create": {"m": {"name": "Next"}}})["created"]
    assert re.fullmatch(r"M\d+", created["m"]["id"])
    assert created["m"]["id"] not in seeded  # the copy resumes the template's id counter
    inbox = jmap_client.call("Mailbox/query", {"accountId": "alice",
                                               "filter": {"role": "inbox"}})["ids"][0]
    email = jmap_client.call("Email/set", {"accountId": "alice", "create": {"k": {
        "mailboxIds": {inbox: True}, "subject": "x"}}})["created"]["k"]
    got = jmap_client.call("Email/get", {"accountId": "alice", "ids": [email["id"]],
                                         "properties": ["receivedAt"]})["list"][0]
    assert got["receivedAt"] == "2026-01-01T09:00:00Z"


def test_fresh_servers_from_one_template_are_independent():
    """ServerTemplates without pytest: two servers of one template share no data."""
    templates = jmapd.ServerTemplates()
    try:
        with templates.server(seed="empty") as first, templates.server(seed="empty") as second:
            assert first.url != second.url
            first.client().call("Mailbox/set", {"accountId": "alice",
                                                "create": {"m": {"name": "Only here"}}})
            names = [m["name"] for m in second.client().call(
                "Mailbox/get", {"accountId": "alice"})["list"]]
            assert "Only here" not in names and len(names) == 6
        assert len(templates._templates) == 1
    finally:
        templates.close()


def test_client_reconnects_when_the_server_closed_its_kept_alive_connection(jmap_server,
                                                                            jmap_client):
    """A kept-alive connection the server has closed meanwhile (idle timeout, restart) is
    replaced once, transparently: the call succeeds on a new connection."""
    assert jmap_client.call("Core/echo", {"n": 1}) == {"n": 1}
    jmap_server.httpd.close_connections()
    assert jmap_client.call("Core/echo", {"n": 2}) == {"n": 2}
