"""Shared fixtures: a fresh deterministic demo core per test, and real servers.

`core`    JmapCore with the demo users and mailboxes (not the demo mail), FixedClock and
          SequentialIds, copied from a template built once per session (about 1 ms a test).
`jmap`    a small client over `core`: jmap.call("Mailbox/get", {...}) -> response args.
`server`  the same data behind a real HTTP server on 127.0.0.1, port 0.
The jmapd plugin adds `jmap_server` and `jmap_client` (the demo seed, as a client sees it).
"""

import base64
import contextlib
import http.client
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jmapd  # noqa: E402

# The plugin's jmap_server and jmap_client (jmapd.py section 18); skipped, not loaded
# twice, when an installed jmapd already registered it through its pytest11 entry point.
pytest_plugins = ["jmapd"]

CORE = jmapd.URN_CORE
MAIL = jmapd.URN_MAIL


def seed_demo_accounts(core):
    """The demo users and mailbox trees without the demo mail: RFC 8620 suites count
    on exact ids and states (alice's Mailbox state "11"; new ids from M18)."""
    jmapd.SEEDS["empty"](core, "empty")
    for name, folders in jmapd.DEMO_FOLDERS.items():
        jmapd.create_mailbox_tree(core, core.user(name), folders)


@pytest.fixture(scope="session")
def demo_template():
    template = jmapd.JmapCore(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds())
    seed_demo_accounts(template)
    yield template
    template.close()


@pytest.fixture
def core(demo_template):
    fresh = demo_template.clone(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds())
    yield fresh
    fresh.close()


class Jmap:
    """Calls into a core as one user; every helper returns plain JSON values."""

    def __init__(self, core, user="alice"):
        self.core, self.user = core, user
        self.account_id = core.user(user).account_id

    def request(self, calls, using=(CORE, MAIL), created_ids=None):
        calls = [list(c) if len(c) == 3 else [c[0], c[1], str(i)] for i, c in enumerate(calls)]
        request = {"using": list(using), "methodCalls": calls}
        if created_ids is not None:
            request["createdIds"] = created_ids
        return self.core.handle_request(self.user, request)

    def call_raw(self, name, args, using=(CORE, MAIL)):
        """(response name, response arguments) of one call."""
        name, result, _ = self.request([[name, args, "c"]], using)["methodResponses"][0]
        return name, result

    def call(self, name, args, using=(CORE, MAIL)):
        """Response arguments; fails the test on an error response."""
        response_name, result = self.call_raw(name, args, using)
        assert response_name == name, f"{name} answered {response_name}: {result}"
        return result

    def error(self, name, args, using=(CORE, MAIL)):
        """The error type of a call that must fail."""
        response_name, result = self.call_raw(name, args, using)
        assert response_name == "error", f"{name} succeeded: {result}"
        return result["type"]

    def mailbox_ids(self):
        """{name: id} of the account's mailboxes."""
        listed = self.call("Mailbox/get", {"accountId": self.account_id, "ids": None})["list"]
        return {m["name"]: m["id"] for m in listed}


@pytest.fixture
def jmap(core):
    return Jmap(core, "alice")


@pytest.fixture
def bob(core):
    return Jmap(core, "bob")


class Http:
    """Raw HTTP/1.1 against a running server, one keep-alive connection."""

    def __init__(self, server):
        self.server = server
        host, port = server.httpd.server_address[:2]
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=10)

    @staticmethod
    def basic(user="alice", password=None):
        token = base64.b64encode(f"{user}:{password or user}".encode()).decode()
        return {"Authorization": "Basic " + token}

    def send(self, method, path, body=None, headers=None, auth=True):
        all_headers = dict(self.basic() if auth is True else (auth or {}))
        all_headers.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        self.conn.request(method, path, body=body, headers=all_headers)
        response = self.conn.getresponse()
        response.data = response.read()
        return response

    def api(self, calls, using=(CORE, MAIL), **kw):
        return self.send("POST", jmapd.API_PATH, {"using": list(using), "methodCalls": calls}, **kw)

    def close(self):
        self.conn.close()


@contextlib.contextmanager
def serving(template, **options):
    """A real JmapServer (JmapServer options) on a fresh deterministic copy of template."""
    running = jmapd.JmapServer(template.clone(clock=jmapd.FixedClock(),
                                              ids=jmapd.SequentialIds()), **options)
    try:
        yield running
    finally:
        running.stop()


@contextlib.contextmanager
def connected(server):
    """An Http client on one keep-alive connection to server."""
    client = Http(server)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def server(demo_template):
    with serving(demo_template) as running:
        yield running


@pytest.fixture
def web(server):
    with connected(server) as client:
        yield client


def import_raw(core, jmap, raw, mailbox_ids, keywords=(), received=None):
    """Upload raw message octets and Email/import them (RFC 8621 §4.8); the new id."""
    blob = jmapd.upload_blob(core, core.user(jmap.user), jmap.account_id, raw,
                             "message/rfc822")["blobId"]
    email = {"blobId": blob, "mailboxIds": dict.fromkeys(mailbox_ids, True),
             "keywords": dict.fromkeys(keywords, True)}
    if received:
        email["receivedAt"] = received
    result = jmap.call("Email/import", {"accountId": jmap.account_id, "emails": {"k": email}})
    assert result["notCreated"] is None, result["notCreated"]
    return result["created"]["k"]["id"]


class MailCorpus:
    """A test module's imported messages: .ids {key: Email id}, .keys {Email id: key},
    .box (the module's own Mailboxes, {name: id}, or one id). Subclasses build()."""

    RECEIVED = "2026-01-10T09:00:00Z"  # receivedAt when a test adds one without

    def __init__(self, core, jmap, box=None, ids=None):
        self.core, self.jmap = core, jmap
        self.box = box if isinstance(box, str) else dict(box or {})
        self.ids = dict(ids or {})
        self.keys = {email_id: key for key, email_id in self.ids.items()}

    def add(self, key, raw, boxes, keywords=(), received=None):
        email_id = import_raw(self.core, self.jmap, raw, [self.box[b] for b in boxes],
                              keywords, received or self.RECEIVED)
        self.ids[key], self.keys[email_id] = email_id, key
        return email_id

    def set(self, **args):
        result = self.jmap.call("Email/set", {"accountId": self.jmap.account_id, **args})
        assert not (result.get("notUpdated") or result.get("notDestroyed")), result
        return result


def corpus_fixtures(corpus_class):
    """Module fixtures `corpus` (the corpus imported once into a template) and `mail`
    (a fresh clone of it per test, ~1 ms)."""
    @pytest.fixture(scope="module")
    def corpus(demo_template):
        template = demo_template.clone(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds())
        built = corpus_class(template, Jmap(template, "alice")).build()
        yield template, built.box, built.ids
        template.close()

    @pytest.fixture
    def mail(corpus):
        template, box, ids = corpus
        fresh = template.clone(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds())
        yield corpus_class(fresh, Jmap(fresh, "alice"), box, ids)
        fresh.close()
    return corpus, mail
