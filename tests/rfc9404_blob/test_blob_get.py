"""RFC 9404 §4.2 Blob/get: size, a range of the octets as data:asText, data:asBase64 or
data, digests of that range, isEncodingProblem and isTruncated; and §5's rule that
invalid UTF-8 gives null text, never mangled text."""

import base64
import hashlib

import pytest

import jmapd
from conftest import import_raw

CORE, MAIL, BLOB = jmapd.URN_CORE, jmapd.URN_MAIL, jmapd.URN_BLOB
USING = (CORE, BLOB)
FOX = "The quick brown fox jumped over the lazy dog."
B1 = b"The quick brown fox jumped over the \x81\x81 dog."  # §4.2.2: invalid UTF-8


def upload(jmap, **blobs):
    """{name: blobId} for each name=bytes given."""
    created = jmap.call("Blob/upload", {"accountId": "alice", "create": {
        name: {"data": [{"data:asBase64": base64.b64encode(data).decode()}]}
        for name, data in blobs.items()}}, using=USING)["created"]
    return {name: blob["id"] for name, blob in created.items()}


def get(jmap, ids, properties=None, **args):
    if properties is not None:
        args["properties"] = properties
    return jmap.call("Blob/get", {"accountId": "alice", "ids": ids, **args}, using=USING)


def get_one(jmap, blob_id, properties=None, **args):
    result = get(jmap, [blob_id], properties, **args)
    assert result["notFound"] == []
    return {k: v for k, v in result["list"][0].items() if k != "id"}


@pytest.fixture
def blobs(jmap):
    return upload(jmap, fox=FOX.encode(), b1=B1, b2=b"hello world")


# -- §4.2.1 the simple example, with the RFC's own digest values --

def test_simple_example_gives_text_digest_size_and_not_found(jmap, blobs):
    """§4.2.1 R1: data:asText, digest:sha and size of the whole blob; notFound."""
    result = get(jmap, [blobs["fox"], "not-a-blob"], ["data:asText", "digest:sha", "size"])
    assert result == {"accountId": "alice", "notFound": ["not-a-blob"], "list": [{
        "id": blobs["fox"], "data:asText": FOX, "digest:sha": "wIVPufsDxBzOOALLDSIFKebu+U4=",
        "size": 45}]}


def test_simple_example_range_digests_cover_only_the_range(jmap, blobs):
    """§4.2.1 R2: offset 4, length 9: "quick bro", its sha and sha-256; size still 45."""
    assert get_one(jmap, blobs["fox"], ["data:asText", "digest:sha", "digest:sha-256", "size"],
                   offset=4, length=9) == {
        "data:asText": "quick bro", "digest:sha": "QiRAPtfyX8K6tm1iOAtZ87Xj3Ww=",
        "digest:sha-256": "gdg9INW7lwHK6OQ9u0dwDz2ZY/gubi0En0xlFpKt0OA=", "size": 45}


@pytest.mark.parametrize("algorithm,hashlib_name", [("sha-512", "sha512"), ("md5", "md5")])
def test_other_advertised_digests_are_base64_of_the_digest(jmap, blobs, algorithm, hashlib_name):
    """§4.2: digest:<algorithm> is the base64 of the digest of the selected octets."""
    expected = base64.b64encode(hashlib.new(hashlib_name, FOX.encode()[4:13]).digest()).decode()
    assert get_one(jmap, blobs["fox"], [f"digest:{algorithm}"], offset=4, length=9) == {
        f"digest:{algorithm}": expected}


# -- §4.2.2 ranges and encoding problems: G1 to G5 --

def test_g1_default_data_is_base64_for_invalid_utf8(jmap, blobs):
    """§4.2.2 G1: properties default to data and size; b1 -> isEncodingProblem + base64."""
    result = get(jmap, [blobs["b1"], blobs["b2"]])
    assert result["list"] == [
        {"id": blobs["b1"], "isEncodingProblem": True,
         "data:asBase64": "VGhlIHF1aWNrIGJyb3duIGZveCBqdW1wZWQgb3ZlciB0aGUggYEgZG9nLg==",
         "size": 43},
        {"id": blobs["b2"], "data:asText": "hello world", "size": 11}]


def test_g2_as_text_of_invalid_utf8_is_null(jmap, blobs):
    """§4.2.2 G2 and §5: data:asText of non-UTF-8 MUST be null with isEncodingProblem
    (the example leaves the key out; the text says the value MUST be null)."""
    result = get(jmap, [blobs["b1"], blobs["b2"]], ["data:asText", "size"])
    assert result["list"] == [
        {"id": blobs["b1"], "data:asText": None, "isEncodingProblem": True, "size": 43},
        {"id": blobs["b2"], "data:asText": "hello world", "size": 11}]


def test_g3_as_base64_has_no_encoding_problem(jmap, blobs):
    """§4.2.2 G3: only data:asBase64 asked: both values, no isEncodingProblem."""
    result = get(jmap, [blobs["b1"], blobs["b2"]], ["data:asBase64", "size"])
    assert result["list"] == [
        {"id": blobs["b1"], "size": 43,
         "data:asBase64": "VGhlIHF1aWNrIGJyb3duIGZveCBqdW1wZWQgb3ZlciB0aGUggYEgZG9nLg=="},
        {"id": blobs["b2"], "data:asBase64": "aGVsbG8gd29ybGQ=", "size": 11}]


def test_g4_a_valid_range_of_an_invalid_blob_is_text(jmap, blobs):
    """§4.2.2 G4: offset 0, length 5 of both: text, no encoding problem."""
    result = get(jmap, [blobs["b1"], blobs["b2"]], offset=0, length=5)
    assert result["list"] == [{"id": blobs["b1"], "data:asText": "The q", "size": 43},
                              {"id": blobs["b2"], "data:asText": "hello", "size": 11}]


def test_g5_ranges_past_the_end_are_truncated(jmap, blobs):
    """§4.2.2 G5: offset 20, length 100: what is there, and isTruncated for both."""
    result = get(jmap, [blobs["b1"], blobs["b2"]], offset=20, length=100)
    assert result["list"] == [
        {"id": blobs["b1"], "isTruncated": True, "isEncodingProblem": True,
         "data:asBase64": "anVtcGVkIG92ZXIgdGhlIIGBIGRvZy4=", "size": 43},
        {"id": blobs["b2"], "isTruncated": True, "data:asText": "", "size": 11}]


# -- §4.2 the rules behind the examples --

def test_no_length_is_the_rest_without_truncation(jmap, blobs):
    """§4.2: a null length is the remaining octets, with no isTruncated warning..."""
    assert get_one(jmap, blobs["fox"], ["data:asText"], offset=41, length=None) == {
        "data:asText": "dog."}
    assert get_one(jmap, blobs["fox"], ["data:asText"], offset=45) == {"data:asText": ""}


def test_no_length_past_the_end_is_truncated(jmap, blobs):
    """§4.2: ...unless the start offset is past the end of the blob."""
    assert get_one(jmap, blobs["fox"], ["data:asText", "size"], offset=46) == {
        "data:asText": "", "size": 45, "isTruncated": True}


def test_a_digest_of_a_truncated_range_covers_what_is_returned(jmap, blobs):
    """§4.2: a digest is of the octets a data field would return."""
    expected = base64.b64encode(hashlib.sha256(b"dog.").digest()).decode()
    assert get_one(jmap, blobs["fox"], ["digest:sha-256"], offset=41, length=10) == {
        "digest:sha-256": expected, "isTruncated": True}


def test_a_range_cutting_a_multi_octet_character_is_an_encoding_problem(jmap):
    """§4.2: truncating in the middle of a multi-octet sequence is not valid UTF-8."""
    blob = upload(jmap, e="é!".encode())["e"]
    assert get_one(jmap, blob, ["data", "size"], length=1) == {
        "data:asBase64": "ww==", "isEncodingProblem": True, "size": 3}
    assert get_one(jmap, blob, ["data"], length=2) == {"data:asText": "é"}


def test_text_and_base64_together(jmap, blobs):
    """§4.2: any of the request properties; data:asText and data:asBase64 both given."""
    assert get_one(jmap, blobs["b2"], ["data:asText", "data:asBase64", "data"]) == {
        "data:asText": "hello world", "data:asBase64": "aGVsbG8gd29ybGQ="}


def test_size_alone_and_id_always(jmap, blobs):
    """§4.2 (RFC 8620 §5.1): the id is always returned; size alone reads no data."""
    assert get(jmap, [blobs["fox"]], ["size"])["list"] == [{"id": blobs["fox"], "size": 45}]
    assert get(jmap, [blobs["fox"]], ["id"])["list"] == [{"id": blobs["fox"]}]


def test_creation_references_and_repeated_ids(jmap):
    """§4.1.2: ids may name '#creationId' blobs; an unknown one is notFound as given."""
    response = jmap.request([
        ["Blob/upload", {"accountId": "alice", "create": {"a": {"data": [
            {"data:asText": "abc"}]}}}, "0"],
        ["Blob/get", {"accountId": "alice", "ids": ["#a", "#zz", "#a"],
                      "properties": ["size"]}, "1"]], using=USING)
    result = response["methodResponses"][1][1]
    assert (len(result["list"]), result["list"][0]["size"], result["notFound"]) == (1, 3, ["#zz"])


def test_a_body_part_of_a_message_is_a_blob_too(core, jmap):
    """§4.2 with RFC 8621 §4.1.4: an attachment's blobId reads its decoded octets."""
    raw = (b"From: a@example.com\r\nSubject: att\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n"
           b"\r\nbody\r\n--b\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\nAAEC/w==\r\n--b--\r\n")
    email_id = import_raw(core, jmap, raw, [jmap.mailbox_ids()["Inbox"]])
    email = jmap.call("Email/get", {"accountId": "alice", "ids": [email_id],
                                    "properties": ["attachments"]})["list"][0]
    part = email["attachments"][0]["blobId"]
    assert get_one(jmap, part) == {"data:asBase64": "AAEC/w==", "isEncodingProblem": True,
                                   "size": 4}


def test_another_accounts_blob_is_not_found(jmap, bob, blobs):
    """§4.2 with RFC 8620 §6: bob cannot read alice's blob, even knowing its id."""
    result = bob.call("Blob/get", {"accountId": "bob", "ids": [blobs["fox"]]}, using=USING)
    assert (result["list"], result["notFound"]) == ([], [blobs["fox"]])


# -- bad requests --

@pytest.mark.parametrize("properties", [["data:asHtml"], ["digest:sha3-256"], ["digest:"],
                                        ["type"], ["blobId"]])
def test_unknown_properties_are_invalid_arguments(jmap, blobs, properties):
    """§4.2: only the listed properties, and digests the capability advertises."""
    assert jmap.error("Blob/get", {"accountId": "alice", "ids": [blobs["fox"]],
                                   "properties": properties}, using=USING) == "invalidArguments"


@pytest.mark.parametrize("args", [{"ids": None}, {"ids": ["x"], "offset": -1},
                                  {"ids": ["x"], "length": "5"}, {"ids": ["x"], "state": "1"}])
def test_bad_arguments_are_invalid_arguments(jmap, args):
    """§4.2: ids are needed (blobs cannot be listed); offset and length UnsignedInt|null."""
    assert jmap.error("Blob/get", {"accountId": "alice", **args}, using=USING) == \
        "invalidArguments"


def test_more_ids_than_max_objects_in_get_is_request_too_large(core, jmap):
    """RFC 8620 §5.1: requestTooLarge past maxObjectsInGet."""
    core.limits["maxObjectsInGet"] = 2
    assert jmap.error("Blob/get", {"accountId": "alice", "ids": ["a", "b", "c"]},
                      using=USING) == "requestTooLarge"


def test_blob_get_needs_the_blob_capability(jmap):
    """§4: Blob/get is selected by urn:ietf:params:jmap:blob."""
    assert jmap.error("Blob/get", {"accountId": "alice", "ids": []},
                      using=(CORE, MAIL)) == "unknownMethod"
