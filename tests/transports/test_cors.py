"""CORS for browser clients of the JMAP resources (RFC 8620 §1.7 HTTP resources, §2 session,
§3.1 API, §6 upload and download), per the Fetch standard's CORS protocol: preflight
OPTIONS requests answered without credentials, and Access-Control-Allow-Origin on every
response, errors included.
"""

import json

import pytest

import jmapd
from conftest import connected, serving  # tests/ is on sys.path

BLOB = "G" + "0" * 64
ROUTES = {
    "well-known": "/.well-known/jmap",
    "session": "/jmap/session",
    "api": "/jmap/api",
    "upload": "/jmap/upload/alice/",
    "download": f"/jmap/download/alice/{BLOB}/f.txt?type=text/plain",
    "unknown path": "/no/such/thing",
}
PREFLIGHT = {"Origin": "https://client.example", "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}


def names(header_value):
    """A comma-separated header as a set of lower-case names."""
    return {part.strip().lower() for part in (header_value or "").split(",") if part.strip()}


@pytest.mark.parametrize("path", ROUTES.values(), ids=ROUTES.keys())
def test_a_preflight_on_every_route_is_204_without_credentials(web, path):
    """Fetch CORS preflight: OPTIONS carries no credentials and is answered 2xx (204) with
    Access-Control-Allow-Origin, so the browser goes on to send the real request."""
    response = web.send("OPTIONS", path, headers=PREFLIGHT, auth=False)
    assert response.status == 204
    assert response.data == b""
    assert response.getheader("Access-Control-Allow-Origin") == "*"


@pytest.mark.parametrize("path", ROUTES.values(), ids=ROUTES.keys())
def test_a_preflight_names_authorization_and_content_type_explicitly(web, path):
    """Fetch CORS: '*' in Access-Control-Allow-Headers never covers Authorization, so the
    preflight names Authorization and Content-Type explicitly."""
    response = web.send("OPTIONS", path, headers=PREFLIGHT, auth=False)
    allowed = names(response.getheader("Access-Control-Allow-Headers"))
    assert {"authorization", "content-type"} <= allowed


@pytest.mark.parametrize("path", ROUTES.values(), ids=ROUTES.keys())
def test_a_preflight_allows_get_and_post(web, path):
    """RFC 8620 §3.1, §6.1 (POST), §2, §6.2 (GET): the preflight allows both methods."""
    response = web.send("OPTIONS", path, headers=PREFLIGHT, auth=False)
    assert {"get", "post"} <= names(response.getheader("Access-Control-Allow-Methods"))
    assert response.getheader("Access-Control-Max-Age") == "600"


def test_a_preflight_without_cors_request_headers_is_still_204(web):
    """Fetch CORS: an OPTIONS without Origin (a plain OPTIONS) gets the same 204."""
    response = web.send("OPTIONS", "/jmap/api", auth=False)
    assert response.status == 204
    assert response.getheader("Access-Control-Allow-Origin") == "*"


def test_a_preflight_then_the_request_share_one_connection(web):
    """RFC 7230 §6.3: after a 204 preflight the real request follows on the same connection."""
    assert web.send("OPTIONS", "/jmap/api", headers=PREFLIGHT, auth=False).status == 204
    sock = web.conn.sock
    response = web.api([["Core/echo", {"a": 1}, "0"]], headers={"Origin": "https://client.example"})
    assert response.status == 200
    assert web.conn.sock is sock
    assert response.getheader("Access-Control-Allow-Origin") == "*"


def upload(web, **kw):
    return web.send("POST", "/jmap/upload/alice/", b"cors", headers={"Content-Type": "text/plain"},
                    **kw)


RESPONSES = {
    "200 session": lambda web: web.send("GET", "/jmap/session"),
    "200 api": lambda web: web.api([["Core/echo", {}, "0"]]),
    "201 upload": upload,
    "307 well-known": lambda web: web.send("GET", "/.well-known/jmap", auth=False),
    "400 notJSON": lambda web: web.send("POST", "/jmap/api", b"{",
                                        headers={"Content-Type": "application/json"}),
    "401 session": lambda web: web.send("GET", "/jmap/session", auth=False),
    "401 api": lambda web: web.api([], auth=False),
    "401 upload": lambda web: upload(web, auth=False),
    "404 download": lambda web: web.send("GET", f"/jmap/download/alice/{BLOB}/f?type=a/b"),
    "404 path": lambda web: web.send("GET", "/nope"),
    "405 method": lambda web: web.send("PUT", "/jmap/api", b"{}"),
}


@pytest.mark.parametrize("send", RESPONSES.values(), ids=RESPONSES.keys())
def test_every_response_errors_included_carries_access_control_allow_origin(web, send):
    """Fetch CORS: without Access-Control-Allow-Origin the browser hides the response, so
    every answer has it, 401 and other errors included (the client must see them)."""
    response = send(web)
    assert response.getheader("Access-Control-Allow-Origin") == "*"
    assert response.getheader("Vary") is None


def test_a_401_exposes_www_authenticate_to_the_browser(web):
    """Fetch CORS, RFC 7235 §4.1: WWW-Authenticate is not a safelisted response header, so it
    is listed in Access-Control-Expose-Headers (Content-Disposition too, for downloads)."""
    response = web.send("GET", "/jmap/session", auth=False)
    exposed = names(response.getheader("Access-Control-Expose-Headers"))
    assert {"www-authenticate", "content-disposition", "location"} <= exposed


def test_a_successful_download_carries_access_control_allow_origin(web):
    """RFC 8620 §6.2, Fetch CORS: the download response is readable cross-origin."""
    blob_id = json.loads(upload(web).data)["blobId"]
    response = web.send("GET", f"/jmap/download/alice/{blob_id}/c.txt?type=text/plain")
    assert (response.status, response.data) == (200, b"cors")
    assert response.getheader("Access-Control-Allow-Origin") == "*"


# -- a configured origin ------------------------------------------------------------------------

@pytest.fixture
def app_server(demo_template):
    with serving(demo_template, cors_origin="https://app.example") as running:
        yield running


@pytest.fixture
def app_web(app_server):
    with connected(app_server) as client:
        yield client


def test_a_configured_origin_is_sent_on_the_preflight(app_web):
    """Fetch CORS: cors_origin="https://app.example" is the Allow-Origin value, with
    Vary: Origin (the answer depends on the origin, RFC 7231 §7.1.4)."""
    response = app_web.send("OPTIONS", "/jmap/api",
                            headers={**PREFLIGHT, "Origin": "https://app.example"}, auth=False)
    assert response.status == 204
    assert response.getheader("Access-Control-Allow-Origin") == "https://app.example"
    assert response.getheader("Vary") == "Origin"


@pytest.mark.parametrize("auth,status", [(True, 200), (False, 401)])
def test_a_configured_origin_is_sent_on_normal_and_error_responses(app_web, auth, status):
    """Fetch CORS: the configured origin is on every response, the 401 included."""
    response = app_web.send("GET", "/jmap/session", headers={"Origin": "https://app.example"},
                            auth=auth)
    assert response.status == status
    assert response.getheader("Access-Control-Allow-Origin") == "https://app.example"
    assert response.getheader("Vary") == "Origin"
