"""The jmapd command line (jmapd.py section 17): --help and --version, and a real server in a
subprocess that serves the RFC 8620 §2 session and §3.1 API, takes --db, --seed, --user,
--limit (RFC 8620 §2 core capability limits) and --trace, and stops on SIGINT.
"""

import base64
import fcntl
import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time

import pytest

import jmapd

JMAPD = os.path.abspath(jmapd.__file__)
CORE = jmapd.URN_CORE
MAIL = jmapd.URN_MAIL
READY_LINE = "Ctrl-C stops the server."
SETTLE_SECONDS = 0.1
PIPE_SIZE = 4096  # the smallest pipe buffer Linux allows (one page)


def run(*args, timeout=10):
    """Run jmapd to completion (for options that exit at once)."""
    return subprocess.run([sys.executable, JMAPD, *args], capture_output=True, text=True,
                          timeout=timeout)


class Jmapd:
    """`python jmapd.py --port 0 ...` in a subprocess, with its banner read."""

    def __init__(self, *args, cwd=None):
        self.process = subprocess.Popen([sys.executable, JMAPD, "--port", "0", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, cwd=cwd)
        self.watchdog = threading.Timer(15, self.process.kill)  # a hang fails, never blocks
        self.watchdog.start()
        lines = []
        for line in self.process.stdout:
            lines.append(line)
            if line.strip() == READY_LINE:
                break
        self.banner = "".join(lines)
        match = re.search(r"http://127\.0\.0\.1:(\d+)", self.banner)
        assert match, f"no URL in the banner: {self.banner!r} {self.process.stderr.read()!r}"
        self.url, self.port = match.group(0), int(match.group(1))
        self.stderr = None

    def request(self, method, path, body=None, user="alice", password=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if user:
            token = base64.b64encode(f"{user}:{password or user}".encode()).decode()
            headers["Authorization"] = "Basic " + token
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers=headers)
        response = conn.getresponse()
        response.data = response.read()
        conn.close()
        return response

    def session(self, user="alice", password=None):
        response = self.request("GET", "/jmap/session", user=user, password=password)
        assert response.status == 200, response.data
        return json.loads(response.data)

    def call(self, name, args, user="alice", password=None):
        response = self.request("POST", "/jmap/api", {"using": [CORE, MAIL],
                                                      "methodCalls": [[name, args, "0"]]},
                                user=user, password=password)
        assert response.status == 200, response.data
        return json.loads(response.data)["methodResponses"][0]

    def stop(self):
        """SIGINT, as Ctrl-C would; returns the exit code.

        jmapd prints its banner before it enters the try that catches KeyboardInterrupt, so
        a SIGINT landing while the main thread is still inside that print exits -2 with a
        traceback (seen under load). The pause lets the main thread reach its wait loop.
        """
        time.sleep(SETTLE_SECONDS)
        self.process.send_signal(signal.SIGINT)
        self.stdout_rest, self.stderr = self.process.communicate(timeout=10)
        self.watchdog.cancel()
        return self.process.returncode

    def kill(self):
        self.watchdog.cancel()
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def start():
    started = []

    def start_jmapd(*args, **kw):
        started.append(Jmapd(*args, **kw))
        return started[-1]
    yield start_jmapd
    for process in started:
        process.kill()


# -- options that exit at once ---------------------------------------------------------------

def test_help_shows_examples_and_every_option():
    """jmapd CLI --help: the usage names every option and ends with runnable examples."""
    result = run("--help")
    assert result.returncode == 0
    for option in ("--host", "--port", "--db", "--seed", "--user", "--trace", "--log-level",
                   "--version", "--limit", "--cors-origin", "--allow-http-push", "--push-ca"):
        assert option in result.stdout, option
    assert "examples:" in result.stdout
    assert "python jmapd.py --seed demo" in result.stdout
    assert "python jmapd.py --limit maxObjectsInGet=5" in result.stdout


def test_version_prints_the_version():
    """jmapd CLI --version: 'jmapd X.Y.Z', the module's __version__."""
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout == f"jmapd {jmapd.__version__}\n"


@pytest.mark.parametrize("limit,message", [
    ("bogus=5", "unknown limit 'bogus'"),
    ("maxObjectsInGet=0", "--limit maxObjectsInGet: the value must be a positive integer"),
    ("maxObjectsInGet=five", "--limit maxObjectsInGet: the value must be a positive integer"),
], ids=["unknown name", "zero", "not a number"])
def test_a_bad_limit_exits_1_with_a_message(limit, message):
    """jmapd CLI --limit NAME=VALUE: an unknown name or a value that is no positive integer
    exits 1 with a one-line message on stderr (no traceback)."""
    result = run("--port", "0", "--limit", limit)
    assert result.returncode == 1
    assert result.stderr.startswith("jmapd: " + message)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_seed_that_is_neither_a_name_nor_a_file_exits_1():
    """jmapd CLI --seed: an unknown seed name that is no file exits 1 with a message."""
    result = run("--port", "0", "--seed", "no-such-seed.json")
    assert result.returncode == 1
    assert result.stderr.startswith("jmapd: no seed named 'no-such-seed.json'")
    assert "Traceback" not in result.stderr


# -- a running server ----------------------------------------------------------------------------

def test_the_server_prints_its_url_users_and_a_curl_line_serves_and_stops_on_sigint(start):
    """jmapd CLI, RFC 8620 §2: the banner shows the URL, alice and bob with their passwords
    and a curl line; the session answers; SIGINT stops it with exit code 0, port freed."""
    server = start("--seed", "demo")
    assert server.banner.startswith(f"jmapd {jmapd.__version__} serving {server.url}\n")
    assert "alice (password alice, token token-alice, account alice)" in server.banner
    assert "bob (password bob, token token-bob, account bob)" in server.banner
    assert f"curl -sL -u alice:alice {server.url}/.well-known/jmap" in server.banner
    session = server.session()
    assert session["username"] == "alice"
    assert session["apiUrl"] == server.url + "/jmap/api"
    well_known = server.request("GET", "/.well-known/jmap", user=None)
    assert well_known.status == 307
    assert well_known.getheader("Location") == server.url + "/jmap/session"
    assert server.stop() == 0, server.stderr
    assert "Traceback" not in server.stderr
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


def test_a_db_file_keeps_a_created_mailbox_across_a_restart(start, tmp_path):
    """jmapd CLI --db FILE: state persists; a restart on the same file serves the mailbox
    created before, and the seed is not applied a second time."""
    db = str(tmp_path / "mail.sqlite")
    first = start("--db", db)
    name, result, _ = first.call("Mailbox/set", {"accountId": "alice",
                                                 "create": {"k": {"name": "Persisted"}}})
    assert name == "Mailbox/set" and "k" in result["created"], result
    created_id = result["created"]["k"]["id"]
    assert first.stop() == 0, first.stderr
    second = start("--db", db)
    _, listed, _ = second.call("Mailbox/get", {"accountId": "alice", "ids": None})
    names = [mailbox["name"] for mailbox in listed["list"]]
    assert names.count("Persisted") == 1 and names.count("Inbox") == 1
    assert {m["id"] for m in listed["list"] if m["name"] == "Persisted"} == {created_id}
    assert second.stop() == 0, second.stderr


def test_user_adds_a_login_with_a_password_and_token(start):
    """jmapd CLI --user carol:secret: carol logs in with Basic carol:secret, next to alice."""
    server = start("--user", "carol:secret")
    assert "carol (password secret, token token-carol" in server.banner
    assert server.session("carol", "secret")["username"] == "carol"
    assert server.session("alice")["username"] == "alice"
    assert server.request("GET", "/jmap/session", user="carol", password="wrong").status == 401
    assert server.stop() == 0, server.stderr


def test_limit_shows_up_in_the_session_and_is_enforced(start):
    """jmapd CLI --limit maxObjectsInGet=5, RFC 8620 §2 core capability, §5.1 requestTooLarge:
    the session advertises 5 and a /get of 6 ids is refused."""
    server = start("--limit", "maxObjectsInGet=5")
    assert server.session()["capabilities"][CORE]["maxObjectsInGet"] == 5
    name, result, _ = server.call("Mailbox/get", {"accountId": "alice",
                                                  "ids": [f"x{i}" for i in range(6)]})
    assert (name, result["type"]) == ("error", "requestTooLarge")
    assert server.stop() == 0, server.stderr


def test_a_json_seed_file_defines_the_users_and_their_mailboxes(start, tmp_path):
    """jmapd CLI --seed FILE: a JSON seed gives exactly its users and mailboxes (no demo users)."""
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps({"users": [{"name": "carol", "password": "pw", "mailboxes": [
        {"name": "Inbox", "role": "inbox"}]}]}))
    server = start("--seed", str(seed_file))
    assert "carol (password pw" in server.banner
    assert "alice" not in server.banner
    _, listed, _ = server.call("Mailbox/get", {"accountId": "carol", "ids": None},
                               user="carol", password="pw")
    assert [(m["name"], m["role"]) for m in listed["list"]] == [("Inbox", "inbox")]
    assert server.request("GET", "/jmap/session", user="alice").status == 401
    assert server.stop() == 0, server.stderr


def test_allow_http_push_accepts_a_loopback_receiver_and_says_so(start):
    """RFC 8620 §7.2 wants https://; --allow-http-push (dev only) lifts it for loopback."""
    plain = start("--seed", "demo")
    server = start("--seed", "demo", "--allow-http-push")
    assert "http:// urls allowed for loopback receivers" in server.banner
    assert "http://" not in plain.banner.split("users:")[1].split("try:")[0]
    create = {"create": {"k": {"deviceClientId": "d", "url": "http://127.0.0.1:9/push"}}}
    refused = plain.call("PushSubscription/set", create)[1]["notCreated"]["k"]
    assert (refused["type"], refused["properties"]) == ("invalidProperties", ["url"])
    created = server.call("PushSubscription/set", create)[1]["created"]["k"]
    assert created["id"]
    assert plain.stop() == 0 and server.stop() == 0


def test_a_push_ca_file_that_is_missing_exits_1(tmp_path):
    """--push-ca names a PEM file; a missing one stops the start with a message."""
    result = run("--port", "0", "--push-ca", str(tmp_path / "nope.pem"))
    assert result.returncode == 1
    assert result.stderr.startswith("jmapd: ")


def test_trace_prints_each_request_and_response_to_stderr(start):
    """jmapd CLI --trace: the JMAP request and response JSON are pretty-printed on stderr."""
    server = start("--trace")
    name, result, _ = server.call("Core/echo", {"hello": "trace"})
    assert (name, result) == ("Core/echo", {"hello": "trace"})
    assert server.stop() == 0, server.stderr
    assert "--- request (POST /jmap/api)" in server.stderr
    assert "--- response (POST /jmap/api)" in server.stderr
    assert '"hello": "trace"' in server.stderr
    assert '"methodCalls": [' in server.stderr


@pytest.mark.skipif(not hasattr(fcntl, "F_SETPIPE_SZ"), reason="needs Linux pipe sizing")
def test_sigint_while_the_banner_is_still_being_written_stops_cleanly():
    """jmapd CLI: Ctrl-C stops the server with exit code 0 at any moment after start-up,
    also while a slow reader of stdout (e.g. `jmapd | less`) holds up the banner."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    assert fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ) == PIPE_SIZE
    long_users = [f"--user={'u' * 250}{i}:pw" for i in range(8)]  # a banner over PIPE_SIZE
    process = subprocess.Popen([sys.executable, JMAPD, "--port", "0", *long_users],
                               stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    watchdog = threading.Timer(15, process.kill)
    watchdog.start()
    try:
        while pipe_fill(read_end) < PIPE_SIZE:  # full: the banner's write is blocked
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        banner = b""
        while chunk := os.read(read_end, 65536):
            banner += chunk
        stderr = process.stderr.read()
        assert process.wait(10) == 0, stderr
        assert "Traceback" not in stderr
    finally:
        watchdog.cancel()
        os.close(read_end)
        if process.poll() is None:
            process.kill()
        process.wait()
    assert banner.startswith(b"jmapd ")


def pipe_fill(fd):
    """Octets waiting in a pipe (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
