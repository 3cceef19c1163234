"""Authentication of every JMAP resource: RFC 8620 §1.7 ("All HTTP requests MUST be
authenticated"), RFC 7235 §3.1 (401 with a WWW-Authenticate challenge), RFC 7617 (Basic),
RFC 6750 (Bearer), and the account boundary of §1.6.2, §3.6.2 (accountNotFound) and
§6.1-6.2 (upload and download only in the user's own accounts).
"""

import base64
import http.client
import json
import socket

import pytest

import jmapd

CORE = jmapd.URN_CORE
MAIL = jmapd.URN_MAIL
CHALLENGES = ['Basic realm="jmapd", charset="UTF-8"', 'Bearer realm="jmapd"']


def basic(credentials: bytes) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(credentials).decode()}


def bearer(token: str) -> dict:
    return {"Authorization": "Bearer " + token}


def assert_unauthorized(response):
    """401 problem details with both challenges (RFC 7235 §3.1, RFC 7807)."""
    assert response.status == 401, response.data[:300]
    assert response.msg.get_all("WWW-Authenticate") == CHALLENGES
    assert response.getheader("Content-Type") == "application/problem+json"
    problem = json.loads(response.data)
    assert (problem["type"], problem["status"], problem["title"]) == \
        ("about:blank", 401, "Unauthorized")
    return problem


def upload(web, account_id, data, auth):
    response = web.send("POST", f"/jmap/upload/{account_id}/", data,
                        headers={"Content-Type": "text/plain"}, auth=auth)
    return response


def raw_exchange(server, request: bytes) -> tuple[int, bytes]:
    """Send raw request bytes on a new connection; (status, whole response)."""
    with socket.create_connection(server.httpd.server_address[:2], timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return int(received.split(b" ", 2)[1]), received


RESOURCES = {
    "session": ("GET", "/jmap/session", None),
    "api": ("POST", "/jmap/api", json.dumps({"using": [CORE], "methodCalls": []}).encode()),
    "upload": ("POST", "/jmap/upload/alice/", b"hello"),
    "download": ("GET", "/jmap/download/alice/Gnope/file.txt?type=text/plain", None),
}


# -- RFC 8620 §1.7: no credentials, no access -------------------------------------------------

@pytest.mark.parametrize("method,path,body", RESOURCES.values(), ids=RESOURCES.keys())
def test_a_request_without_credentials_is_401_with_a_challenge(web, method, path, body):
    """RFC 8620 §1.7: all HTTP requests MUST be authenticated; RFC 7235 §3.1: the 401 carries
    WWW-Authenticate challenges (Basic and Bearer)."""
    response = web.send(method, path, body, headers={"Content-Type": "application/json"},
                        auth=False)
    problem = assert_unauthorized(response)
    assert problem["detail"] == "authentication required"


@pytest.mark.parametrize("method,path,body", RESOURCES.values(), ids=RESOURCES.keys())
def test_a_request_with_a_wrong_password_is_401_on_every_resource(web, method, path, body):
    """RFC 8620 §1.7, RFC 7617: Basic credentials with a wrong password are refused."""
    response = web.send(method, path, body, headers={"Content-Type": "application/json"},
                        auth=basic(b"alice:wrong"))
    assert_unauthorized(response)


def test_the_session_answers_the_user_with_the_right_basic_credentials(web):
    """RFC 8620 §2, RFC 7617: alice:alice fetches alice's session."""
    response = web.send("GET", "/jmap/session", auth=basic(b"alice:alice"))
    assert response.status == 200
    session = json.loads(response.data)
    assert session["username"] == "alice"
    assert list(session["accounts"]) == ["alice"]


def test_an_unknown_user_and_a_wrong_password_get_the_same_answer(web):
    """RFC 8620 §1.7: an unknown user is refused like a wrong password, so the answer does
    not reveal which user names exist."""
    unknown = assert_unauthorized(web.send("GET", "/jmap/session", auth=basic(b"mallory:alice")))
    wrong = assert_unauthorized(web.send("GET", "/jmap/session", auth=basic(b"alice:bob")))
    assert unknown == wrong
    assert unknown["detail"] == "missing or wrong credentials"


@pytest.mark.parametrize("credentials", [b"alice:", b":alice", b"Alice:alice", b"alice:Alice",
                                         b"alice:alice ", b"alice", b"bob:alice"])
def test_near_miss_basic_credentials_are_401(web, credentials):
    """RFC 7617 §2: user-id and password are compared exactly (no case folding, no trimming,
    the colon required)."""
    assert_unauthorized(web.send("GET", "/jmap/session", auth=basic(credentials)))


# -- RFC 6750: Bearer ------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_bearer_token_authenticates_its_user_whatever_the_scheme_case(web, scheme):
    """RFC 6750 §2.1, RFC 7235 §2.1: 'Bearer token-alice' is alice; the scheme name is
    case-insensitive."""
    response = web.send("GET", "/jmap/session", auth={"Authorization": f"{scheme} token-alice"})
    assert response.status == 200
    assert json.loads(response.data)["username"] == "alice"


def test_bobs_bearer_token_is_bob(web):
    """RFC 6750 §2.1: each token names its own user."""
    response = web.send("GET", "/jmap/session", auth=bearer("token-bob"))
    assert response.status == 200
    assert json.loads(response.data)["username"] == "bob"


def test_a_bearer_token_works_for_the_api(web):
    """RFC 8620 §3.1, RFC 6750: the API accepts Bearer credentials."""
    response = web.api([["Core/echo", {"x": 1}, "0"]], auth=bearer("token-alice"))
    assert response.status == 200
    assert json.loads(response.data)["methodResponses"] == [["Core/echo", {"x": 1}, "0"]]


@pytest.mark.parametrize("token", ["token-mallory", "token-alicex", "TOKEN-ALICE", "alice", ""])
def test_a_wrong_bearer_token_is_401(web, token):
    """RFC 6750 §3.1: an unknown token is refused with 401 and a challenge."""
    assert_unauthorized(web.send("GET", "/jmap/session", auth=bearer(token)))


def test_a_password_is_not_a_bearer_token_and_a_token_is_not_a_password(web):
    """RFC 6750, RFC 7617: the two schemes check different secrets."""
    assert_unauthorized(web.send("GET", "/jmap/session", auth=bearer("alice")))
    assert_unauthorized(web.send("GET", "/jmap/session", auth=basic(b"alice:token-alice")))


@pytest.mark.parametrize("header", ["Digest username=alice", "Negotiate abc", "token-alice",
                                    "Basic", "Bearer", ""])
def test_an_unknown_scheme_or_a_scheme_without_credentials_is_401(web, header):
    """RFC 7235 §2.1: only Basic and Bearer are offered; anything else is refused."""
    assert_unauthorized(web.send("GET", "/jmap/session", auth={"Authorization": header}))


# -- malformed credentials ------------------------------------------------------------------

@pytest.mark.parametrize("credentials", [
    b"alice\x00:alice", b"alice:alice\x00", b"al\x01ice:alice", b"alice:ali\x7fce",
    b"alice:alice\r\n", b"alice\t:alice",
], ids=["NUL in user", "NUL in password", "SOH in user", "DEL in password", "CRLF", "TAB"])
def test_basic_credentials_with_control_characters_are_401(web, credentials):
    """RFC 7617 §2.1: user-id and password must not contain control characters; such
    credentials are refused, never truncated at the control character."""
    assert_unauthorized(web.send("GET", "/jmap/session", auth=basic(credentials)))


@pytest.mark.parametrize("header", [
    b"Bearer token-alice\x00",
    b"Bearer token-\x00alice",
    b"Basic " + base64.b64encode(b"alice:alice") + b"\x00",
    b"Basic\x00" + base64.b64encode(b"alice:alice"),
], ids=["NUL after token", "NUL inside token", "NUL after basic", "NUL after scheme"])
def test_a_raw_authorization_header_with_nul_is_401(server, header):
    """RFC 7230 §3.2.6, RFC 8620 §1.7: a header value with NUL is not valid credentials, even
    when the rest would be."""
    host = "%s:%d" % server.httpd.server_address[:2]
    status, received = raw_exchange(server, b"GET /jmap/session HTTP/1.1\r\nHost: "
                                    + host.encode() + b"\r\nAuthorization: " + header
                                    + b"\r\n\r\n")
    assert status == 401
    assert b"WWW-Authenticate: Basic" in received


@pytest.mark.parametrize("credentials", [
    "!!!notbase64", "YWxpY2U6YWxpY2U",  # alice:alice without its padding
    "YWxp Y2U6YWxpY2U=", "YWxpY2U6YWxpY2U=YQ==", "/w==",  # 0xFF: not UTF-8
    base64.b64encode("alice:alice".encode("utf-16")).decode(),
], ids=["not base64", "missing padding", "space inside", "data after padding",
        "not UTF-8", "UTF-16"])
def test_malformed_base64_basic_credentials_are_401(web, credentials):
    """RFC 7617 §2: the credentials are base64 (RFC 4648) of UTF-8 'user-id:password';
    anything else is refused."""
    assert_unauthorized(web.send("GET", "/jmap/session",
                                 auth={"Authorization": "Basic " + credentials}))


def test_basic_credentials_with_surrounding_spaces_are_accepted(web):
    """RFC 7235 §2.1: whitespace around the credentials (OWS) does not change them."""
    token = base64.b64encode(b"alice:alice").decode()
    response = web.send("GET", "/jmap/session", auth={"Authorization": f"Basic   {token}  "})
    assert response.status == 200
    assert json.loads(response.data)["username"] == "alice"


def test_a_utf8_password_authenticates(server):
    """RFC 7617 §2.1 (charset="UTF-8"): user-id and password are UTF-8 before base64."""
    server.core.add_user("zoë", "pässwörd")
    conn = http.client.HTTPConnection(*server.httpd.server_address[:2], timeout=5)
    conn.request("GET", "/jmap/session", headers=basic("zoë:pässwörd".encode()))
    response = conn.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["username"] == "zoë"
    conn.close()


# -- RFC 8620 §1.6.2, §3.6.2, §6: the account boundary ------------------------------------

def test_alice_cannot_read_bobs_account_through_the_api(web):
    """RFC 8620 §3.6.2 accountNotFound: bob's account is not one alice can see."""
    response = web.api([["Mailbox/get", {"accountId": "bob", "ids": None}, "0"]])
    assert response.status == 200
    name, result, call_id = json.loads(response.data)["methodResponses"][0]
    assert (name, result["type"], call_id) == ("error", "accountNotFound", "0")


def test_alices_session_lists_only_her_account(web):
    """RFC 8620 §2 accounts: only the accounts the user can access are listed."""
    session = json.loads(web.send("GET", "/jmap/session").data)
    assert list(session["accounts"]) == ["alice"]
    assert session["primaryAccounts"] == {MAIL: "alice", jmapd.URN_SUBMISSION: "alice", jmapd.URN_VACATION: "alice",
                                          jmapd.URN_QUOTA: "alice", jmapd.URN_MDN: "alice"}


def test_alice_cannot_upload_into_bobs_account(web):
    """RFC 8620 §6.1: the upload resource is per account; alice has no bob account (404)."""
    response = upload(web, "bob", b"intruder", auth=basic(b"alice:alice"))
    assert response.status == 404
    assert json.loads(response.data)["type"] == "about:blank"


def test_alice_cannot_upload_into_an_unknown_account(web):
    """RFC 8620 §6.1: an account id that names no account is 404."""
    assert upload(web, "nobody", b"x", auth=basic(b"alice:alice")).status == 404


def test_alice_cannot_download_bobs_blob_by_either_account_id(web):
    """RFC 8620 §6.1-6.2: an unreferenced blob is only accessible to its uploader; alice gets
    404 through bob's account id and through her own."""
    uploaded = upload(web, "bob", b"bob's secret", auth=basic(b"bob:bob"))
    assert uploaded.status == 201
    blob_id = json.loads(uploaded.data)["blobId"]
    for account_id in ("bob", "alice"):
        response = web.send("GET", f"/jmap/download/{account_id}/{blob_id}/s.txt?type=text/plain")
        assert response.status == 404
        assert b"secret" not in response.data
    bobs = web.send("GET", f"/jmap/download/bob/{blob_id}/s.txt?type=text/plain",
                    auth=basic(b"bob:bob"))
    assert (bobs.status, bobs.data) == (200, b"bob's secret")


def test_a_user_added_later_can_log_in_at_once(server, web):
    """RFC 8620 §1.7: a login created on the running core authenticates by password and token."""
    server.core.add_user("carol", "pw")
    response = web.send("GET", "/jmap/session", auth=basic(b"carol:pw"))
    assert response.status == 200 and json.loads(response.data)["username"] == "carol"
    response = web.send("GET", "/jmap/session", auth=bearer("token-carol"))
    assert response.status == 200 and json.loads(response.data)["username"] == "carol"
