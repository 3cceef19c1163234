"""Binary data: RFC 8620 §6 (blobs), §6.1 (uploading), §6.2 (downloading, with RFC 6266
Content-Disposition and RFC 8246 immutable caching) and §6.3 (Blob/copy), plus the upload
limit of §2 (maxSizeUpload) reported as a §3.6.1 limit problem.
"""

import base64
import json
import socket
import urllib.parse

import pytest

import jmapd
from conftest import Http  # the shared keep-alive client (tests/ is on sys.path)
from conftest import seed_demo_accounts

CORE = jmapd.URN_CORE
BOB = Http.basic("bob", "bob")


def upload(web, data, content_type="text/plain", account_id="alice", auth=True):
    headers = {} if content_type is None else {"Content-Type": content_type}
    return web.send("POST", f"/jmap/upload/{account_id}/", data, headers=headers, auth=auth)


def uploaded(web, data, content_type="text/plain", account_id="alice", auth=True):
    """The upload response object of a successful upload."""
    response = upload(web, data, content_type, account_id, auth)
    assert response.status == 201, response.data
    return json.loads(response.data)


def download(web, blob_id, name="f.bin", type_="application/octet-stream", account_id="alice",
             auth=True):
    query = "" if type_ is None else "?type=" + urllib.parse.quote(type_, safe="/")
    return web.send("GET", f"/jmap/download/{account_id}/{blob_id}/{name}{query}", auth=auth)


def raw_get(server, path: bytes) -> tuple[int, list[bytes], bytes]:
    """GET a raw (unencoded) path as alice: (status, header lines, body)."""
    host, port = server.httpd.server_address[:2]
    auth = base64.b64encode(b"alice:alice")
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: h\r\nAuthorization: Basic " + auth
                     + b"\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    return int(status_line.split()[1]), header_lines, body


def header(lines, name: bytes) -> list[bytes]:
    return [line.split(b":", 1)[1].strip() for line in lines
            if line.split(b":", 1)[0].lower() == name.lower()]


def call(web, name, args):
    response = web.api([[name, args, "c"]], using=(CORE,))
    assert response.status == 200
    return json.loads(response.data)["methodResponses"][0][:2]


# -- §6.1 uploading ----------------------------------------------------------------------------

def test_an_upload_answers_201_with_account_id_blob_id_type_and_size(web):
    """RFC 8620 §6.1: a successful upload returns exactly {accountId, blobId, type, size}."""
    response = upload(web, b"hello world", "text/plain")
    assert response.status == 201
    assert response.getheader("Content-Type") == "application/json"
    body = json.loads(response.data)
    assert set(body) == {"accountId", "blobId", "type", "size"}
    assert body["accountId"] == "alice"
    assert body["type"] == "text/plain"
    assert body["size"] == 11
    assert jmapd.ID_PATTERN.fullmatch(body["blobId"])


def test_uploading_the_same_content_twice_gives_the_same_blob_id(web):
    """RFC 8620 §6.1: identical content may return the existing blobId; jmapd always does."""
    first = uploaded(web, b"same bytes", "text/plain")
    second = uploaded(web, b"same bytes", "application/octet-stream")
    assert second["blobId"] == first["blobId"]
    assert second["type"] == "application/octet-stream"
    assert uploaded(web, b"other bytes")["blobId"] != first["blobId"]


def test_the_same_content_in_two_accounts_is_two_private_uploads(web):
    """RFC 8620 §6.1: unreferenced blobs are accessible only to the uploader, even when another
    user uploaded the very same octets."""
    alices = uploaded(web, b"shared octets")
    bobs = uploaded(web, b"shared octets", account_id="bob", auth=BOB)
    assert bobs["accountId"] == "bob"
    assert download(web, bobs["blobId"], account_id="bob").status == 404
    assert download(web, alices["blobId"], account_id="bob", auth=BOB).status == 200


@pytest.mark.parametrize("content_type", [None, ""], ids=["missing", "empty"])
def test_an_upload_without_a_content_type_is_application_octet_stream(web, content_type):
    """RFC 8620 §6.1 type: with no media type given, the blob is application/octet-stream."""
    assert uploaded(web, b"\x00\x01\x02", content_type)["type"] == "application/octet-stream"


def test_the_upload_type_keeps_its_parameters(web):
    """RFC 8620 §6.1 type: the media type as set in the Content-Type header of the upload."""
    body = uploaded(web, b"caf\xc3\xa9", "text/plain; charset=utf-8")
    assert body["type"] == "text/plain; charset=utf-8"


def test_an_upload_with_a_malformed_content_type_is_400(web):
    """RFC 8620 §6.1, RFC 6838 §4.2: a Content-Type that is no media type is refused."""
    response = upload(web, b"x", "not a media type")
    assert response.status == 400
    assert response.getheader("Content-Type") == "application/problem+json"


def test_an_empty_upload_is_a_blob_of_size_zero(web):
    """RFC 8620 §6.1 size: zero octets is a valid file."""
    body = uploaded(web, b"")
    assert body["size"] == 0
    response = download(web, body["blobId"])
    assert (response.status, response.data) == (200, b"")


def test_an_upload_url_without_the_trailing_slash_works(web):
    """RFC 8620 §6.1: uploadUrl is .../upload/{accountId}/; the slash-less form is accepted."""
    response = web.send("POST", "/jmap/upload/alice", b"x", headers={"Content-Type": "text/plain"})
    assert response.status == 201
    assert json.loads(response.data)["accountId"] == "alice"


def test_a_chunked_upload_is_stored_whole(web, server):
    """RFC 8620 §6.1, RFC 7230 §4.1: an upload sent with chunked framing is one blob."""
    host, port = server.httpd.server_address[:2]
    auth = base64.b64encode(b"alice:alice")
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"POST /jmap/upload/alice/ HTTP/1.1\r\nHost: h\r\nAuthorization: Basic "
                     + auth + b"\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 201 ")
    body = json.loads(received.partition(b"\r\n\r\n")[2])
    assert body["size"] == 11
    assert download(web, body["blobId"]).data == b"hello world"


def test_an_upload_beyond_maxConcurrentUpload_is_a_limit_problem(web, server):
    """RFC 8620 §2 maxConcurrentUpload, §3.6.1 limit: with every upload slot taken, an upload
    is refused with limit "maxConcurrentUpload"; once a slot frees, uploads work again."""
    slots = jmapd.DEFAULT_LIMITS["maxConcurrentUpload"]
    for _ in range(slots):
        assert server.core.upload_slots.acquire(blocking=False)
    try:
        response = upload(web, b"waiting")
        assert response.status == 429
        problem = json.loads(response.data)
        assert (problem["type"], problem["limit"], problem["status"]) == (
            "urn:ietf:params:jmap:error:limit", "maxConcurrentUpload", 429)
    finally:
        for _ in range(slots):
            server.core.upload_slots.release()
    assert uploaded(web, b"waiting")["size"] == 7


@pytest.fixture
def small_upload_web():
    core = jmapd.JmapCore(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds(),
                          limits={"maxSizeUpload": 100})
    seed_demo_accounts(core)
    server = jmapd.JmapServer(core)
    client = Http(server)
    yield client
    client.close()
    server.stop()


def test_an_upload_over_maxSizeUpload_is_a_413_limit_problem(small_upload_web):
    """RFC 8620 §2 maxSizeUpload, §3.6.1 limit: a larger upload is refused with a problem
    whose limit is "maxSizeUpload"; the connection stays usable."""
    response = upload(small_upload_web, b"x" * 101)
    assert response.status == 413
    assert response.getheader("Content-Type") == "application/problem+json"
    problem = json.loads(response.data)
    assert problem["type"] == "urn:ietf:params:jmap:error:limit"
    assert problem["limit"] == "maxSizeUpload"
    assert problem["status"] == 413
    sock = small_upload_web.conn.sock
    assert uploaded(small_upload_web, b"x" * 100)["size"] == 100
    assert small_upload_web.conn.sock is sock


def test_the_session_advertises_the_configured_maxSizeUpload(small_upload_web):
    """RFC 8620 §2: the core capability carries maxSizeUpload."""
    session = json.loads(small_upload_web.send("GET", "/jmap/session").data)
    assert session["capabilities"][CORE]["maxSizeUpload"] == 100


# -- §6.2 downloading ----------------------------------------------------------------------------

def test_a_download_returns_the_uploaded_octets_with_the_requested_type(web):
    """RFC 8620 §6.2: the content, with Content-Type from the type variable (not the upload's)."""
    blob_id = uploaded(web, b"\x89PNG\r\n\x1a\n", "application/octet-stream")["blobId"]
    response = download(web, blob_id, "image.png", "image/png")
    assert response.status == 200
    assert response.data == b"\x89PNG\r\n\x1a\n"
    assert response.getheader("Content-Type") == "image/png"
    assert response.getheader("Content-Length") == "8"


def test_a_download_type_with_parameters_is_sent_as_given(web):
    """RFC 8620 §6.2 type: the type for the server to set in the Content-Type header."""
    blob_id = uploaded(web, b"hi")["blobId"]
    response = download(web, blob_id, "a.txt", "text/plain; charset=utf-8")
    assert response.getheader("Content-Type") == "text/plain; charset=utf-8"


def test_a_download_without_a_type_uses_the_uploaded_type(web):
    """RFC 8620 §6.2: jmapd falls back to the type the blob was uploaded with."""
    blob_id = uploaded(web, b"<p>", "text/html")["blobId"]
    assert download(web, blob_id, "p.html", None).getheader("Content-Type") == "text/html"


def test_a_successful_download_is_cacheable_as_immutable(web):
    """RFC 8620 §6.2, RFC 8246: blob data is immutable, so the long private immutable cache."""
    blob_id = uploaded(web, b"cache me")["blobId"]
    response = download(web, blob_id)
    assert response.getheader("Cache-Control") == "private, immutable, max-age=31536000"


def test_a_download_names_the_file_in_content_disposition(web):
    """RFC 8620 §6.2 name: the server MUST return the name as the filename (RFC 6266)."""
    blob_id = uploaded(web, b"report")["blobId"]
    response = download(web, blob_id, "report.txt", "text/plain")
    assert response.getheader("Content-Disposition") == 'attachment; filename="report.txt"'


def test_a_non_ascii_name_is_sent_as_utf8_filename_star(web):
    """RFC 8620 §6.2 name, RFC 6266 §4.3, RFC 8187: a non-ASCII name goes in filename* as
    UTF-8''percent-encoded, after an ASCII fallback filename."""
    blob_id = uploaded(web, b"cv")["blobId"]
    response = download(web, blob_id, "r%C3%A9sum%C3%A9%20%E2%82%AC.pdf", "application/pdf")
    assert response.status == 200
    assert response.getheader("Content-Disposition") == (
        "attachment; filename=\"r_sum_ _.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%E2%82%AC.pdf")


def test_a_raw_utf8_name_segment_is_accepted_like_a_percent_encoded_one(web, server):
    """RFC 8620 §6.2, RFC 3986 §2.1: the name segment may arrive percent-encoded or as raw
    UTF-8 octets; both give the same file name."""
    blob_id = uploaded(web, b"cv")["blobId"]
    encoded = download(web, blob_id, "r%C3%A9sum%C3%A9.pdf", "application/pdf")
    status, lines, body = raw_get(server, f"/jmap/download/alice/{blob_id}/résumé.pdf"
                                  "?type=application/pdf".encode())
    assert (status, body) == (200, b"cv")
    assert header(lines, b"Content-Disposition") == [
        encoded.getheader("Content-Disposition").encode()]
    assert encoded.getheader("Content-Disposition").endswith(
        "filename*=UTF-8''r%C3%A9sum%C3%A9.pdf")


def test_a_percent_encoded_blob_id_and_account_id_are_decoded(web):
    """RFC 6570 §3.2.1, RFC 3986 §2.1: percent-encoded path segments are decoded before use."""
    blob_id = uploaded(web, b"enc")["blobId"]
    encoded_id = "".join(f"%{ord(ch):02X}" for ch in blob_id[:4]) + blob_id[4:]
    response = web.send("GET", f"/jmap/download/%61lice/{encoded_id}/f.txt?type=text/plain")
    assert (response.status, response.data) == (200, b"enc")


def test_a_name_with_quotes_and_backslashes_cannot_break_the_filename(web):
    """RFC 6266 §4.1: '"' and '\\' would end or escape the quoted filename; they are replaced
    in the fallback and kept in filename*."""
    blob_id = uploaded(web, b"q")["blobId"]
    response = download(web, blob_id, "a%22b%5Cc.txt")
    assert response.getheader("Content-Disposition") == (
        "attachment; filename=\"a_b_c.txt\"; filename*=UTF-8''a%22b%5Cc.txt")


def test_a_type_with_cr_lf_is_400_and_injects_no_header(web, server):
    """RFC 7230 §3.2.4 (no CR/LF in a field value), RFC 8620 §6.2: a type that would split
    the Content-Type header is refused with 400 and no injected header."""
    blob_id = uploaded(web, b"inject")["blobId"]
    response = download(web, blob_id, "f.txt", "text/plain\r\nX-Injected: 1")
    assert response.status == 400
    assert response.getheader("X-Injected") is None
    assert response.getheader("Content-Type") == "application/problem+json"
    status, lines, _ = raw_get(server, f"/jmap/download/alice/{blob_id}/f.txt"
                               "?type=text/plain%0D%0AX-Injected:%201".encode())
    assert status == 400
    assert header(lines, b"X-Injected") == []


def test_a_name_with_cr_lf_appears_only_percent_encoded(web, server):
    """RFC 7230 §3.2.4, RFC 6266: a name with %0D%0A cannot inject a header; the CR LF
    shows up only percent-encoded in filename*."""
    blob_id = uploaded(web, b"inject")["blobId"]
    status, lines, body = raw_get(server, f"/jmap/download/alice/{blob_id}/"
                                  "a%0D%0AX-Injected:%201.txt?type=text/plain".encode())
    assert (status, body) == (200, b"inject")
    assert header(lines, b"X-Injected") == []
    assert header(lines, b"Content-Disposition") == [
        b"attachment; filename=\"a__X-Injected: 1.txt\"; "
        b"filename*=UTF-8''a%0D%0AX-Injected%3A%201.txt"]


def test_a_download_of_an_unknown_blob_is_404_problem(web):
    """RFC 8620 §6.2: a blobId the account does not hold is 404, as problem details."""
    response = download(web, "G" + "0" * 64)
    assert response.status == 404
    assert response.getheader("Content-Type") == "application/problem+json"
    assert json.loads(response.data)["status"] == 404


def test_a_download_of_another_accounts_blob_is_404(web):
    """RFC 8620 §6.1-6.2: bob's upload is not downloadable by alice, in any account path."""
    blob_id = uploaded(web, b"bob only", account_id="bob", auth=BOB)["blobId"]
    assert download(web, blob_id, account_id="bob").status == 404
    assert download(web, blob_id, account_id="alice").status == 404
    assert download(web, blob_id, account_id="bob", auth=BOB).data == b"bob only"


def test_a_download_with_an_empty_name_is_named_by_its_blob_id(web):
    """RFC 6266: with no name, the Content-Disposition filename falls back to the blobId."""
    blob_id = uploaded(web, b"unnamed")["blobId"]
    response = web.send("GET", f"/jmap/download/alice/{blob_id}/?type=text/plain")
    assert response.status == 200
    assert response.getheader("Content-Disposition") == f'attachment; filename="{blob_id}"'


# -- §6 upload expiry ---------------------------------------------------------------------------

def test_an_upload_is_still_downloadable_after_an_hour(web, server):
    """RFC 8620 §6: an unreferenced blob MUST NOT be deleted for at least 1 hour."""
    blob_id = uploaded(web, b"keep")["blobId"]
    server.core.clock.advance(3600 + 1)
    assert download(web, blob_id).status == 200


def test_an_unreferenced_upload_expires_after_the_upload_ttl(web, server):
    """RFC 8620 §6: an unreferenced blob MAY be deleted; jmapd drops it after UPLOAD_TTL_SECONDS,
    and the download then answers 404."""
    blob_id = uploaded(web, b"expire")["blobId"]
    server.core.clock.advance(jmapd.UPLOAD_TTL_SECONDS - 1)
    assert download(web, blob_id).status == 200
    server.core.clock.advance(2)
    response = download(web, blob_id)
    assert response.status == 404
    assert response.getheader("Content-Type") == "application/problem+json"


def test_reuploading_the_same_content_resets_the_expiry(web, server):
    """RFC 8620 §6: if reuploaded, the same blobId MAY be returned, but this SHOULD reset the
    expiry time."""
    blob_id = uploaded(web, b"again")["blobId"]
    server.core.clock.advance(jmapd.UPLOAD_TTL_SECONDS - 60)
    assert uploaded(web, b"again")["blobId"] == blob_id
    server.core.clock.advance(120)
    assert download(web, blob_id).data == b"again"


# -- §6.3 Blob/copy ------------------------------------------------------------------------


def test_blob_copy_from_an_account_the_user_cannot_see_is_fromAccountNotFound(web):
    """RFC 8620 §6.3: fromAccountId not a valid account (for this user) -> fromAccountNotFound."""
    blob_id = uploaded(web, b"bob's", account_id="bob", auth=BOB)["blobId"]
    name, result = call(web, "Blob/copy", {"fromAccountId": "bob", "accountId": "alice",
                                           "blobIds": [blob_id]})
    assert (name, result["type"]) == ("error", "fromAccountNotFound")


def test_blob_copy_into_an_account_the_user_cannot_see_is_accountNotFound(web):
    """RFC 8620 §3.6.2, §6.3: accountId not one of the user's accounts -> accountNotFound."""
    blob_id = uploaded(web, b"mine")["blobId"]
    name, result = call(web, "Blob/copy", {"fromAccountId": "alice", "accountId": "bob",
                                           "blobIds": [blob_id]})
    assert (name, result["type"]) == ("error", "accountNotFound")


def test_blob_copy_of_an_unknown_blob_is_notCopied_notFound(web):
    """RFC 8620 §6.3: a blobId that cannot be found is in notCopied with a notFound SetError."""
    unknown = "G" + "0" * 64
    name, result = call(web, "Blob/copy", {"fromAccountId": "alice", "accountId": "alice",
                                           "blobIds": [unknown]})
    assert name == "Blob/copy", result
    assert result["fromAccountId"] == "alice" and result["accountId"] == "alice"
    assert result["copied"] is None
    assert result["notCopied"][unknown]["type"] == "notFound"


def test_blob_copy_of_an_existing_blob_is_copied(web):
    """RFC 8620 §6.3: copied maps the blobId in the fromAccount to its id in the account;
    notCopied is null when none failed."""
    blob_id = uploaded(web, b"copy me")["blobId"]
    name, result = call(web, "Blob/copy", {"fromAccountId": "alice", "accountId": "alice",
                                           "blobIds": [blob_id]})
    assert name == "Blob/copy", result
    assert result == {"fromAccountId": "alice", "accountId": "alice",
                      "copied": {blob_id: blob_id}, "notCopied": None}
    assert download(web, result["copied"][blob_id]).data == b"copy me"
