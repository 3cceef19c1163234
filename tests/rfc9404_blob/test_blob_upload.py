"""RFC 9404 §3.1 (the blob capability) and §4.1 (Blob/upload): blobs made from inline
text, base64 and ranges of other blobs, stored like uploads (RFC 8620 §6.1)."""

import base64
import hashlib

import pytest

import jmapd
from conftest import seed_demo_accounts

CORE, MAIL, BLOB = jmapd.URN_CORE, jmapd.URN_MAIL, jmapd.URN_BLOB
USING = (CORE, BLOB)
FOX = "The quick brown fox jumped over the lazy dog."
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABAQMAAAAl21bKAAAAA1BMVEX/AAAZ4gk3AAAAAXRSTlN/gFy0ywAAAApJRE"
       "FUeJxjYgAAAAYAAzY3fKgAAAAASUVORK5CYII=")


def blob_id_of(data: bytes) -> str:
    return "G" + hashlib.sha256(data).hexdigest()


def upload(jmap, create, account_id="alice"):
    return jmap.call("Blob/upload", {"accountId": account_id, "create": create}, using=USING)


def not_created(jmap, *sources, **upload_object):
    """The SetError of one creation that must fail."""
    result = upload(jmap, {"x": {"data": list(sources), **upload_object}})
    assert result["created"] is None, result
    return result["notCreated"]["x"]


@pytest.fixture
def fox(jmap):
    return upload(jmap, {"b4": {"data": [{"data:asText": FOX}]}})["created"]["b4"]["id"]


# -- §3.1 the capability --

def test_session_capability_is_an_empty_object(core):
    """§3.1: the value in the Session's capabilities MUST be an empty object."""
    assert core.session("alice", "http://x")["capabilities"][BLOB] == {}


def test_account_capability_lists_limits_types_and_digests(core):
    """§3.1: maxSizeBlobSet, maxDataSources (>= 64), supportedTypeNames,
    supportedDigestAlgorithms (lowercase names from the RFC 3230 registry)."""
    account = core.session("alice", "http://x")["accounts"]["alice"]
    assert account["accountCapabilities"][BLOB] == {
        "maxSizeBlobSet": 50_000_000, "maxDataSources": 256,
        "supportedTypeNames": ["Mailbox", "Thread", "Email"],
        "supportedDigestAlgorithms": ["sha-256", "sha-512", "sha", "md5"]}


def test_max_size_blob_set_follows_the_upload_limit():
    """§3.1/§4.1: Blob/upload is restricted by the upload limit, so maxSizeBlobSet is it."""
    core = jmapd.JmapCore(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds(),
                          limits={"maxSizeUpload": 100})
    try:
        seed_demo_accounts(core)
        capability = core.session("alice", "http://x")["accounts"]["alice"]
        assert capability["accountCapabilities"][BLOB]["maxSizeBlobSet"] == 100
        result = core.call("alice", "Blob/upload", {"accountId": "alice", "create": {
            "big": {"data": [{"data:asText": "x" * 60}, {"data:asText": "y" * 41}]},
            "fits": {"data": [{"data:asText": "x" * 100}]}}}, using=USING)
        assert result["notCreated"]["big"]["type"] == "tooLarge"
        assert result["notCreated"]["big"]["maxSize"] == 100
        assert result["created"]["fits"]["size"] == 100
    finally:
        core.close()


# -- §4.1 creating blobs --

def test_simple_example_creates_the_png(jmap):
    """§4.1.1: one data:asBase64 source; created has id, type as given, size 95."""
    created = upload(jmap, {"1": {"data": [{"data:asBase64": PNG}], "type": "image/png"}})
    blob = created["created"]["1"]
    png = base64.b64decode(PNG)
    assert blob == {"id": blob_id_of(png), "blobId": blob_id_of(png), "accountId": "alice",
                    "type": "image/png", "size": 95}
    assert created["notCreated"] is None
    assert "state" not in created and "oldState" not in created  # §4.1: blobs have no state


def test_complex_example_concatenates_text_ranges_and_base64(jmap):
    """§4.1.2: "How" + b4[3:10] + "was t" + b4[1:2] + "at?" -> "How quick was that?"."""
    response = jmap.request([
        ["Blob/upload", {"accountId": "alice", "create": {
            "b4": {"data": [{"data:asText": FOX}]}}}, "S4"],
        ["Blob/upload", {"accountId": "alice", "create": {"cat": {"data": [
            {"data:asText": "How"}, {"blobId": "#b4", "length": 7, "offset": 3},
            {"data:asText": "was t"}, {"blobId": "#b4", "length": 1, "offset": 1},
            {"data:asBase64": "YXQ/"}]}}}, "CAT"],
        ["Blob/get", {"accountId": "alice", "properties": ["data:asText", "size"],
                      "ids": ["#cat"]}, "G4"]], using=USING)
    (_, first, _), (_, second, _), (_, got, _) = response["methodResponses"]
    assert (first["created"]["b4"]["size"], first["created"]["b4"]["type"]) == (
        45, "application/octet-stream")  # no type given: we say octet-stream
    cat = blob_id_of(b"How quick was that?")
    assert second["created"]["cat"]["id"] == cat
    assert got["list"] == [{"id": cat, "data:asText": "How quick was that?", "size": 19}]


def test_a_creation_may_use_a_blob_created_earlier_in_the_same_call(jmap):
    """§4.1: '#creationId' resolves to a blob created before it in the same create map."""
    result = upload(jmap, {"a": {"data": [{"data:asText": "abc"}]},
                           "b": {"data": [{"blobId": "#a", "offset": 1}, {"blobId": "#a"}]}})
    assert result["created"]["b"]["id"] == blob_id_of(b"bcabc")


def test_created_ids_carry_each_new_blob(jmap):
    """§4.1: each success adds to createdIds, which the response returns when given."""
    response = jmap.request([["Blob/upload", {"accountId": "alice", "create": {
        "a": {"data": [{"data:asText": "abc"}]}, "bad": {"data": [{"blobId": "nope"}]}}}, "0"]],
        using=USING, created_ids={"earlier": "M1"})
    assert response["createdIds"] == {"earlier": "M1", "a": blob_id_of(b"abc")}


def test_created_blob_is_available_to_later_calls_without_created_ids(jmap):
    """§4.1: the value must be available to later methods even with no createdIds given."""
    response = jmap.request([
        ["Blob/upload", {"accountId": "alice", "create": {"a": {"data": [
            {"data:asText": "hello"}]}}}, "0"],
        ["Blob/get", {"accountId": "alice", "ids": ["#a"], "properties": ["size"]}, "1"]],
        using=USING)
    assert response["methodResponses"][1][1]["list"] == [{"id": blob_id_of(b"hello"), "size": 5}]
    assert "createdIds" not in response


def test_zero_sources_make_an_empty_blob(jmap):
    """§4.1: zero data sources create an empty blob; a null text or base64 adds nothing."""
    result = upload(jmap, {"e": {"data": []},
                           "n": {"data": [{"data:asText": None}, {"data:asBase64": None}]}})
    assert result["created"]["e"]["size"] == 0
    assert result["created"]["n"]["id"] == blob_id_of(b"")


def test_unpadded_base64_is_read(jmap):
    """§4.1: base64 (RFC 4648) without its padding is no invalid character."""
    assert upload(jmap, {"u": {"data": [{"data:asBase64": "YXQ"}]}})["created"]["u"]["id"] \
        == blob_id_of(b"at")


def test_uploaded_blob_downloads_and_expires_like_an_upload(core, jmap):
    """§4.1: the same lifetime and expiry as an RFC 8620 §6 upload."""
    blob = upload(jmap, {"a": {"data": [{"data:asText": "hi"}], "type": "text/plain"}})
    blob_id = blob["created"]["a"]["id"]
    assert jmapd.download_blob(core, core.user("alice"), "alice", blob_id) == (b"hi", "text/plain")
    core.clock.advance(jmapd.UPLOAD_TTL_SECONDS + 1)
    with pytest.raises(jmapd.RequestError):
        jmapd.download_blob(core, core.user("alice"), "alice", blob_id)


def test_sixty_four_sources_are_accepted(jmap):
    """§3.1/§4.1: a server MUST accept at least 64 DataSourceObjects per creation."""
    result = upload(jmap, {"many": {"data": [{"data:asText": "x"}] * 64}})
    assert result["created"]["many"]["size"] == 64


def test_one_failed_creation_leaves_the_others(jmap):
    """§4.1: notCreated for the bad creation id only; it joins no createdIds."""
    result = upload(jmap, {"good": {"data": [{"data:asText": "ok"}]},
                           "bad": {"data": [{"data:asBase64": "***"}]}})
    assert list(result["created"]) == ["good"] and list(result["notCreated"]) == ["bad"]


# -- §4.1 invalid creations: notCreated, never a guess --

@pytest.mark.parametrize("source", [
    {"data:asBase64": "!!not base64!!"},
    {"data:asBase64": "YW-_"},             # base64url's alphabet is not base64's
    {"data:asBase64": "YWJjZ"},            # 5 characters: no whole octet at the end
    {"data:asBase64": "YWJj ZGVm"},        # wrapped as in the RFC's print, not on the wire
    {"data:asBase64": 12},
    {"data:asText": ["x"]},
    {"data:asText": "\ud800"},             # a lone surrogate has no UTF-8 form
])
def test_invalid_inline_data_is_invalid_properties(jmap, source):
    """§4.1: invalid base64 or UTF-8 MUST result in a notCreated response."""
    error = not_created(jmap, source)
    assert (error["type"], error["properties"]) == ("invalidProperties", ["data"])


@pytest.mark.parametrize("source", [
    {},
    {"data:asText": "a", "data:asBase64": "YQ=="},
    {"data:asText": "a", "blobId": "#b4"},
    {"data:asText": "a", "offset": 0},
    {"blobId": "#b4", "size": 3},
    {"url": "http://example.com/"},
])
def test_a_source_is_exactly_one_kind(jmap, fox, source):
    """§4.1 DataSourceObject: exactly one of data:asText, data:asBase64, or blobId with
    offset and length; anything else is rejected."""
    error = not_created(jmap, source)
    assert (error["type"], error["properties"]) == ("invalidProperties", ["data"])


def test_a_source_that_is_no_object_is_rejected(jmap):
    """§4.1: data is a DataSourceObject[]; a string in it is invalid."""
    assert not_created(jmap, "text")["type"] == "invalidProperties"


@pytest.mark.parametrize("offset,length", [(40, 10), (46, None), (46, 0), (0, 46)])
def test_a_range_past_the_end_is_rejected(jmap, fox, offset, length):
    """§4.1: a range that begins or extends past the end of the blob is invalid."""
    error = not_created(jmap, {"blobId": fox, "offset": offset, "length": length})
    assert (error["type"], error["properties"]) == ("invalidProperties", ["data"])


def test_ranges_that_end_at_the_end_are_satisfied(jmap, fox):
    """§4.1: offset and length MAY be zero; null offset is 0, null length the rest."""
    result = upload(jmap, {"end": {"data": [{"blobId": fox, "offset": 45, "length": 0}]},
                           "tail": {"data": [{"blobId": fox, "offset": 41, "length": None}]},
                           "all": {"data": [{"blobId": fox, "offset": None}]}})
    assert [result["created"][k]["size"] for k in ("end", "tail", "all")] == [0, 4, 45]


@pytest.mark.parametrize("source", [
    {"blobId": "Gx", "offset": -1}, {"blobId": "Gx", "length": "3"},
    {"blobId": "Gx", "offset": 1.5}, {"blobId": 7}, {"blobId": "bad id!"}])
def test_mistyped_blob_sources_are_invalid_properties(jmap, source):
    """§4.1: offset and length are UnsignedInt|null, blobId an Id."""
    assert not_created(jmap, source)["type"] == "invalidProperties"


@pytest.mark.parametrize("reference", ["Gnosuchblob", "#nosuchcreation"])
def test_an_unknown_blob_is_blob_not_found(jmap, reference):
    """§4.1: an invalid reference rejects the creation (blobNotFound, RFC 8621 §4.6's
    type for a missing blob, naming it)."""
    error = not_created(jmap, {"blobId": reference})
    assert (error["type"], error["notFound"]) == ("blobNotFound", [reference])


def test_another_accounts_blob_is_not_found(jmap, bob):
    """§4.1 with RFC 8620 §6: an account reaches only the blobs it holds."""
    bobs = upload(bob, {"b": {"data": [{"data:asText": "bob's"}]}}, "bob")["created"]["b"]["id"]
    assert not_created(jmap, {"blobId": bobs})["type"] == "blobNotFound"


def test_more_sources_than_max_data_sources_is_rejected(jmap):
    """§3.1: maxDataSources is the most per creation."""
    error = not_created(jmap, *[{"data:asText": "x"}] * 257)
    assert (error["type"], error["properties"]) == ("invalidProperties", ["data"])


@pytest.mark.parametrize("media_type", ["not a type", 5, "text/plain\r\nX: y", "tëxt/plain"])
def test_a_bad_media_type_is_invalid_properties(jmap, media_type):
    """§4.1 UploadObject type: String|null, a media type."""
    error = not_created(jmap, {"data:asText": "x"}, type=media_type)
    assert (error["type"], error["properties"]) == ("invalidProperties", ["type"])


def test_unknown_or_missing_upload_object_properties_are_rejected(jmap):
    """§4.1 UploadObject: data (required) and type, nothing else."""
    result = upload(jmap, {"extra": {"data": [], "name": "f.txt"}, "none": {"type": None},
                           "scalar": "abc"})
    assert result["notCreated"]["extra"]["properties"] == ["name"]
    assert result["notCreated"]["none"]["properties"] == ["data"]
    assert result["notCreated"]["scalar"]["type"] == "invalidProperties"


# -- method-level errors (RFC 8620 §3.6.2, §5.3) --

def test_blob_upload_needs_the_blob_capability(jmap):
    """§4: Blob/upload is selected by urn:ietf:params:jmap:blob."""
    assert jmap.error("Blob/upload", {"accountId": "alice", "create": {}},
                      using=(CORE, MAIL)) == "unknownMethod"


@pytest.mark.parametrize("args,error", [
    ({"accountId": "nobody", "create": {}}, "accountNotFound"),
    ({"accountId": "alice"}, "invalidArguments"),
    ({"accountId": "alice", "create": []}, "invalidArguments"),
    ({"accountId": "alice", "create": {}, "update": {}}, "invalidArguments"),
])
def test_bad_arguments_are_method_errors(jmap, args, error):
    """§4.1: accountId and create only; only create is allowed (no update or destroy)."""
    assert jmap.error("Blob/upload", args, using=USING) == error


def test_a_read_only_account_is_account_read_only(core, jmap):
    """RFC 8620 §3.6.2: a blob is a write: accountReadOnly."""
    core.store.db.execute("INSERT INTO account (id, name, owner, is_read_only) "
                          "VALUES ('archive', 'Archive', 'alice', 1)")
    assert jmap.error("Blob/upload", {"accountId": "archive", "create": {}},
                      using=USING) == "accountReadOnly"


def test_more_creations_than_max_objects_in_set_is_request_too_large(core, jmap):
    """RFC 8620 §5.3 (Blob/upload is like a Foo/set): requestTooLarge."""
    core.limits["maxObjectsInSet"] = 2
    assert jmap.error("Blob/upload", {"accountId": "alice", "create": {
        str(i): {"data": []} for i in range(3)}}, using=USING) == "requestTooLarge"


@pytest.mark.parametrize("value", ["YQ=", "YXQ=A", "Y==="])
def test_partial_base64_padding_is_invalid(jmap, value):
    """RFC 4648 §3.2: padding is whole (to four characters) or left out, never partial."""
    error = not_created(jmap, {"data:asBase64": value})
    assert (error["type"], error["properties"]) == ("invalidProperties", ["data"])
