"""Embedding jmapd: `jmapd.serve()` starts a real server in a background thread (jmapd.py
section 14) that serves the RFC 8620 §2 session (and §2.2 well-known URI) and §3.1 API;
seeds from section 16 ("demo", "empty"), extra logins, independent servers, clean stop.
"""

import base64
import http.client
import json
import re
import socket
import time

import pytest

import jmapd

CORE = jmapd.URN_CORE
MAIL = jmapd.URN_MAIL
STANDARD = [("Inbox", "inbox"), ("Drafts", "drafts"), ("Sent", "sent"), ("Archive", "archive"),
            ("Junk", "junk"), ("Trash", "trash")]


def port_of(server):
    return int(server.url.rsplit(":", 1)[1])


def request(server, method, path, body=None, user="alice", password=None):
    conn = http.client.HTTPConnection("127.0.0.1", port_of(server), timeout=5)
    headers = {}
    if user:
        headers["Authorization"] = "Basic " + base64.b64encode(
            f"{user}:{password or user}".encode()).decode()
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body)
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.data = response.read()
    conn.close()
    return response


def call(server, name, args, user="alice", password=None):
    response = request(server, "POST", "/jmap/api", {"using": [CORE, MAIL],
                                                      "methodCalls": [[name, args, "0"]]},
                       user, password)
    assert response.status == 200, response.data
    return json.loads(response.data)["methodResponses"][0][:2]


def mailboxes(server, user="alice", password=None):
    account_id = server.user(user).account_id
    name, result = call(server, "Mailbox/get", {"accountId": account_id, "ids": None},
                        user, password)
    assert name == "Mailbox/get", result
    return sorted((m["name"], m["role"]) for m in result["list"])


def test_serve_gives_the_url_session_url_and_users():
    """serve(seed="demo"): url is http://127.0.0.1:PORT, session_url the RFC 8620 §2.2
    well-known URI on it, users the demo logins with name, password and account_id."""
    with jmapd.serve(seed="demo") as server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
        assert port_of(server) > 0
        assert server.session_url == server.url + "/.well-known/jmap"
        assert [(u.name, u.password, u.account_id) for u in server.users] == [
            ("alice", "alice", "alice"), ("bob", "bob", "bob")]
        assert all(isinstance(u, jmapd.User) for u in server.users)
        assert [u.token for u in server.users] == ["token-alice", "token-bob"]


def test_the_session_url_redirects_to_a_session_that_points_at_the_server():
    """RFC 8620 §2.2: session_url answers 307 to the session resource, whose apiUrl is on
    the same server."""
    with jmapd.serve(seed="demo") as server:
        redirect = request(server, "GET", "/.well-known/jmap", user=None)
        assert redirect.status == 307
        assert redirect.getheader("Location") == server.url + "/jmap/session"
        session = json.loads(request(server, "GET", "/jmap/session").data)
        assert session["apiUrl"] == server.url + "/jmap/api"
        assert session["uploadUrl"] == server.url + "/jmap/upload/{accountId}/"


def test_the_demo_seed_has_nested_folders_besides_the_standard_mailboxes():
    """serve(seed="demo"), RFC 8621 §2: alice has the six role mailboxes and her folders."""
    with jmapd.serve(seed="demo") as server:
        names = [name for name, _ in mailboxes(server)]
        assert {"Inbox", "Projects", "Apollo", "Zephyr", "Receipts", "Family"} <= set(names)


def test_the_empty_seed_has_only_the_six_standard_mailboxes():
    """serve(seed="empty"), RFC 8621 §2 roles: each demo user has exactly Inbox, Drafts,
    Sent, Archive, Junk and Trash, with those roles."""
    with jmapd.serve(seed="empty") as server:
        assert mailboxes(server, "alice") == sorted(STANDARD)
        assert mailboxes(server, "bob") == sorted(STANDARD)


def test_serve_with_users_adds_a_login():
    """serve(users=["carol:pw"]): carol logs in with pw and owns a personal account with the
    standard mailboxes; the demo users are still there."""
    with jmapd.serve(seed="demo", users=["carol:pw"]) as server:
        assert [u.name for u in server.users] == ["alice", "bob", "carol"]
        carol = server.user("carol")
        assert (carol.password, carol.account_id) == ("pw", "carol")
        session = json.loads(request(server, "GET", "/jmap/session", user="carol",
                                     password="pw").data)
        assert session["username"] == "carol"
        assert list(session["accounts"]) == ["carol"]
        assert mailboxes(server, "carol", "pw") == sorted(STANDARD)
        assert request(server, "GET", "/jmap/session", user="carol", password="x").status == 401


def test_serve_with_limits_advertises_them():
    """serve(limits=...), RFC 8620 §2: the core capability shows the configured limit."""
    with jmapd.serve(seed="demo", limits={"maxObjectsInGet": 5}) as server:
        session = json.loads(request(server, "GET", "/jmap/session").data)
        assert session["capabilities"][CORE]["maxObjectsInGet"] == 5


def test_stop_closes_the_port_and_frees_it_for_a_new_server():
    """serve().stop(): the port refuses connections afterwards and a new server can bind it."""
    server = jmapd.serve(seed="demo")
    port = port_of(server)
    assert request(server, "GET", "/jmap/session").status == 200
    server.stop()
    assert not server.thread.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with jmapd.serve(seed="empty", port=port) as again:
        assert port_of(again) == port
        assert request(again, "GET", "/jmap/session").status == 200


def test_stop_closes_an_idle_keep_alive_connection_promptly():
    """serve().stop(): an open keep-alive connection does not hold the server; it is closed."""
    server = jmapd.serve(seed="demo")
    conn = http.client.HTTPConnection("127.0.0.1", port_of(server), timeout=5)
    token = base64.b64encode(b"alice:alice").decode()
    conn.request("GET", "/jmap/session", headers={"Authorization": "Basic " + token})
    assert conn.getresponse().read()
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    assert conn.sock.recv(1) == b""  # the server closed its end
    conn.close()


def test_two_servers_in_one_process_are_independent():
    """serve() twice: two ports, two stores; a mailbox created on one is absent on the other,
    and stopping one leaves the other serving."""
    with jmapd.serve(seed="demo") as first, jmapd.serve(seed="demo") as second:
        assert first.url != second.url
        name, result = call(first, "Mailbox/set", {"accountId": "alice",
                                                   "create": {"k": {"name": "OnlyHere"}}})
        assert name == "Mailbox/set" and "k" in result["created"], result
        assert "OnlyHere" in [n for n, _ in mailboxes(first)]
        assert "OnlyHere" not in [n for n, _ in mailboxes(second)]
        first.stop()
        assert request(second, "GET", "/jmap/session").status == 200


def test_serve_with_a_db_file_keeps_data_across_servers(tmp_path):
    """serve(db=FILE): a second server on the same file sees what the first created."""
    db = str(tmp_path / "serve.sqlite")
    with jmapd.serve(seed="demo", db=db) as first:
        name, result = call(first, "Mailbox/set", {"accountId": "alice",
                                                   "create": {"k": {"name": "Kept"}}})
        assert name == "Mailbox/set" and "k" in result["created"], result
    with jmapd.serve(seed="demo", db=db) as second:
        assert [n for n, _ in mailboxes(second)].count("Kept") == 1
