"""RFC 8620 §5.3 atomicity under parallel HTTP writers: no lost update, states only grow."""

import http.client
import json
import threading

import jmapd

from conftest import CORE, MAIL, Http

THREADS, PER_THREAD = 8, 20


def _post(conn, calls):
    body = json.dumps({"using": [CORE, MAIL], "methodCalls": calls})
    conn.request("POST", jmapd.API_PATH, body, {**Http.basic(), "Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    return json.loads(response.read())["methodResponses"]


def _run_in_threads(server, work):
    host, port = server.httpd.server_address[:2]
    errors = []

    def worker(index):
        conn = http.client.HTTPConnection(host, port, timeout=20)
        try:
            work(conn, index)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            conn.close()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_parallel_creates_lose_nothing_and_states_only_grow(server, web):
    """§5.3/§5.2: 160 creates from 8 connections all land; /changes lists exactly them."""
    start = web.api([["Mailbox/get", {"accountId": "alice", "ids": []}, "g"]])
    start_state = json.loads(start.data)["methodResponses"][0][1]["state"]
    seen_states = {}

    def work(conn, index):
        states = []
        for n in range(PER_THREAD):
            result = _post(conn, [["Mailbox/set", {"accountId": "alice", "create": {
                "x": {"name": f"t{index}-{n}"}}}, "s"]])[0][1]
            assert result["created"] is not None, result
            states.append(int(result["newState"]))
        seen_states[index] = states
    _run_in_threads(server, work)
    for states in seen_states.values():
        assert states == sorted(states) and len(set(states)) == PER_THREAD
    every_state = [s for states in seen_states.values() for s in states]
    assert len(set(every_state)) == THREADS * PER_THREAD  # each create its own state
    changes = json.loads(web.api([["Mailbox/changes", {
        "accountId": "alice", "sinceState": start_state}, "c"]]).data)["methodResponses"][0][1]
    assert len(changes["created"]) == THREADS * PER_THREAD
    assert changes["updated"] == [] and changes["destroyed"] == []
    assert int(changes["newState"]) == int(start_state) + THREADS * PER_THREAD


def test_parallel_updates_of_one_mailbox_all_apply_in_some_order(server, web):
    """§5.3: concurrent updates of one record are serialised; each gets a distinct state."""
    ids = json.loads(web.api([["Mailbox/query", {"accountId": "alice",
                                                 "filter": {"role": "inbox"}}, "q"]]).data)
    inbox = ids["methodResponses"][0][1]["ids"][0]
    new_states = []
    lock = threading.Lock()

    def work(conn, index):
        for n in range(PER_THREAD):
            result = _post(conn, [["Mailbox/set", {"accountId": "alice", "update": {
                inbox: {"sortOrder": index * 1000 + n}}}, "u"]])[0][1]
            assert inbox in result["updated"], result
            with lock:
                new_states.append(int(result["newState"]))
    _run_in_threads(server, work)
    assert len(set(new_states)) == THREADS * PER_THREAD
    final = json.loads(web.api([["Mailbox/get", {"accountId": "alice", "ids": [inbox],
                                                 "properties": ["sortOrder"]}, "g"]]).data)
    got = final["methodResponses"][0][1]
    assert got["list"][0]["sortOrder"] % 1000 == PER_THREAD - 1  # some thread's last write
    assert int(got["state"]) == max(new_states)
