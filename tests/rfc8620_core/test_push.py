"""RFC 8620 §7.1 StateChange and §7.3 EventSource, over a real socket."""

import json
import re
import socket
import threading
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
    assert re.fullmatch(r"[0-9a-f]{6}\.[0-9]+", event_id)  # this run's tag, then the feed number
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


def test_7_3_a_last_event_id_from_this_run_that_is_current_gets_nothing_extra(server, web):
    first = EventStream(server, "types=Mailbox&closeafter=state&ping=0")
    rename_inbox(web, "Seen")
    _, seen_id, _ = first.event()
    first.close()
    again = EventStream(server, "types=Mailbox&closeafter=no&ping=1",
                        headers=f"Last-Event-ID: {seen_id}\r\n")
    assert again.event()[0] == "ping"  # nothing missed: no state event first
    again.close()


@pytest.mark.parametrize("last_id", ["0", "other-run.1", "garbage"])
def test_7_3_a_last_event_id_from_before_a_restart_gets_the_current_state(server, web,
                                                                          last_id):
    """An id another run issued (feed numbers restart) or no id of ours at all: the
    changes since cannot be known, so the client is sent every current state."""
    new_state = rename_inbox(web, "After restart")
    stream = EventStream(server, "types=Mailbox&closeafter=no&ping=0",
                         headers=f"Last-Event-ID: {last_id}\r\n")
    name, _, data = stream.event()
    assert (name, data["changed"]["alice"]["Mailbox"]) == ("state", new_state)
    stream.close()


def test_7_3_pings_keep_their_interval_while_other_users_write(server):
    """§7.3: a ping "whenever this time elapses since the previous event was sent": bob's
    changes, which alice is never sent, must not keep resetting her timer."""
    stream = EventStream(server, "types=*&closeafter=no&ping=1")
    bob = Http(server)
    started = time.monotonic()
    inbox = json.loads(bob.api([["Mailbox/query", {"accountId": "bob", "filter": {
        "role": "inbox"}}, "q"]], auth=Http.basic("bob")).data)["methodResponses"][0][1]["ids"][0]
    for order in range(8):
        answer = bob.api([["Mailbox/set", {"accountId": "bob", "update": {
            inbox: {"sortOrder": order + 10}}}, "u"]], auth=Http.basic("bob"))
        assert json.loads(answer.data)["methodResponses"][0][1]["updated"]
        time.sleep(0.15)
    assert stream.event()[0] == "ping"
    assert time.monotonic() - started < 1.6
    bob.close()
    stream.close()


def test_7_3_a_client_that_goes_away_is_cleaned_up_even_if_never_written_to(server):
    """No leak: a stream for a type that never changes ends when its client closes."""
    before = threading.active_count()
    streams = [EventStream(server, "types=CalendarEvent&closeafter=no&ping=0")
               for _ in range(5)]
    for _ in range(100):
        if len(server.httpd.event_streams) == 5:
            break
        time.sleep(0.01)
    for stream in streams:
        stream.close()
    deadline = time.monotonic() + 3
    while server.httpd.event_streams and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.httpd.event_streams == set()
    assert threading.active_count() <= before + 1


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
    assert int(second_id.split(".")[1]) == int(first_id.split(".")[1]) + 1
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
