"""RFC 8620 §7.1 StateChange and §7.3 EventSource, over a real socket."""

import json
import socket
import time

import pytest

import jmapd

from conftest import Http


class EventStream:
    """A minimal text/event-stream reader on a raw socket."""

    def __init__(self, server, query, auth=True, headers=""):
        host, port = server.httpd.server_address[:2]
        self.sock = socket.create_connection((host, port), timeout=5)
        credentials = Http.basic()["Authorization"] if auth else None
        request = (f"GET {jmapd.EVENTSOURCE_PATH}?{query} HTTP/1.1\r\nHost: x\r\n"
                   + (f"Authorization: {credentials}\r\n" if credentials else "") + headers + "\r\n")
        self.sock.sendall(request.encode())
        self.buffer = b""
        head = self._until(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1])
        self.headers = head.decode().lower()

    def _until(self, marker):
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("closed")
            self.buffer += chunk
        item, self.buffer = self.buffer.split(marker, 1)
        return item

    def event(self):
        """(name, id or None, data) of the next event."""
        fields = dict(line.split(": ", 1) for line in self._until(b"\n\n").decode().splitlines())
        return fields["event"], fields.get("id"), json.loads(fields["data"])

    def closed(self):
        try:
            return self.sock.recv(1) == b""
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def rename_inbox(web, name):
    ids = json.loads(web.api([["Mailbox/query", {"accountId": "alice",
                                                 "filter": {"role": "inbox"}}, "q"]]).data)
    inbox = ids["methodResponses"][0][1]["ids"][0]
    result = json.loads(web.api([["Mailbox/set", {"accountId": "alice", "update": {
        inbox: {"name": name}}}, "s"]]).data)
    return result["methodResponses"][0][1]["newState"]


def test_a_change_is_pushed_as_a_state_event(server, web):
    """§7.3: a "state" event whose data is the StateChange (§7.1) with the new state."""
    stream = EventStream(server, "types=*&closeafter=no&ping=0")
    assert stream.status == 200 and "content-type: text/event-stream" in stream.headers
    new_state = rename_inbox(web, "In")
    name, event_id, data = stream.event()
    assert (name, data) == ("state", {"@type": "StateChange",
                                      "changed": {"alice": {"Mailbox": new_state}}})
    assert event_id.isdigit()
    stream.close()


def test_types_limit_what_is_pushed(server, web):
    """§7.3 types: only the listed types are pushed."""
    stream = EventStream(server, "types=Email&closeafter=no&ping=1")
    rename_inbox(web, "In")
    name, event_id, data = stream.event()
    assert (name, event_id, data) == ("ping", None, {"interval": 1})  # no Mailbox event
    stream.close()


def test_closeafter_state_ends_the_response_after_one_event(server, web):
    """§7.3 closeafter=state: the server ends the response after a state event."""
    stream = EventStream(server, "types=*&closeafter=state&ping=0")
    rename_inbox(web, "In")
    assert stream.event()[0] == "state"
    stream.sock.settimeout(2)
    assert stream.closed()


def test_ping_events_carry_the_interval_and_no_id(server):
    """§7.3 ping: {"interval": N}, no new event id."""
    stream = EventStream(server, "types=*&closeafter=no&ping=1")
    start = time.monotonic()
    assert stream.event() == ("ping", None, {"interval": 1})
    assert 0.5 < time.monotonic() - start < 3
    stream.close()


def test_another_users_changes_are_not_pushed(server, web):
    """§7.1: a StateChange only names accounts the user can see."""
    stream = EventStream(server, "types=*&closeafter=no&ping=1")
    server.core.call("bob", "Mailbox/set", {"accountId": "bob", "create": {"n": {"name": "X"}}})
    assert stream.event()[0] == "ping"
    stream.close()


def test_a_stale_last_event_id_gets_the_current_state_at_once(server, web):
    """§7.3: a reconnecting client that missed changes is sent them on connection."""
    new_state = rename_inbox(web, "In")
    stream = EventStream(server, "types=Mailbox&closeafter=no&ping=0",
                         headers="Last-Event-ID: 0\r\n")
    name, _, data = stream.event()
    assert name == "state" and data["changed"]["alice"]["Mailbox"] == new_state
    stream.close()


def test_the_event_source_requires_credentials(server):
    """§1.7: 401 without credentials."""
    stream = EventStream(server, "types=*&closeafter=no&ping=0", auth=False)
    assert stream.status == 401
    stream.close()


def test_7_1_the_changes_of_one_request_arrive_as_one_state_change(server, web):
    """The issue's rule over §7.1: two writes in one request are pushed once, with the
    state after both; the next request is a new event."""
    stream = EventStream(server, "types=*&closeafter=no&ping=0")
    boxes = json.loads(web.api([["Mailbox/set", {"accountId": "alice", "create": {
        "a": {"name": "One"}}}, "1"], ["Mailbox/set", {"accountId": "alice", "create": {
            "b": {"name": "Two"}}}, "2"]]).data)["methodResponses"]
    name, first_id, data = stream.event()
    assert (name, data["changed"]) == ("state", {"alice": {"Mailbox": boxes[1][1]["newState"]}})
    rename_inbox(web, "Inbox again")
    _, second_id, _ = stream.event()
    assert int(second_id) == int(first_id) + 1
    stream.close()


def test_a_browser_event_source_may_authenticate_with_access_token(server, web):
    """Browsers' EventSource sends no Authorization: the Bearer token in the query works
    (a documented development convenience), a wrong one is 401."""
    stream = EventStream(server, "types=Mailbox&closeafter=state&ping=0&access_token=token-alice",
                         auth=False)
    assert stream.status == 200
    rename_inbox(web, "Inbox (token)")
    name, _, data = stream.event()
    assert (name, list(data["changed"])) == ("state", ["alice"])
    stream.close()
    wrong = EventStream(server, "types=*&closeafter=no&ping=0&access_token=token-nobody",
                        auth=False)
    assert wrong.status == 401
    wrong.close()


@pytest.mark.parametrize("query", ["types=*&closeafter=maybe&ping=0",
                                   "types=*&closeafter=no&ping=-1",
                                   "types=&closeafter=no&ping=0"])
def test_bad_event_source_variables_are_400(server, query):
    """§7.3: closeafter is state|no, ping a non-negative integer, types non-empty."""
    stream = EventStream(server, query)
    assert stream.status == 400
    stream.close()


def test_stopping_the_server_ends_open_streams(demo_template):
    """A stopping server wakes and ends its event streams promptly."""
    running = jmapd.JmapServer(demo_template.clone())
    stream = EventStream(running, "types=*&closeafter=no&ping=0")
    start = time.monotonic()
    running.stop()
    stream.sock.settimeout(3)
    assert stream.closed() and time.monotonic() - start < 2
