"""Email: RFC 8621 §4.1.1 (metadata), §4.1.2 (header field parsed forms: Raw, Text,
Addresses, GroupedAddresses, MessageIds, Date, URLs), §4.1.3 (header:{name}[:as{form}][:all]
properties), §4.1.4 (body parts, textBody/htmlBody/attachments, hasAttachment, preview),
§4.2 (Email/get: default properties, bodyProperties, fetch*BodyValues, maxBodyValueBytes),
§4.3 (Email/changes), §4.6 (Email/set updates and destroy) and §4.8 (Email/import).

Every Email here is imported from raw octets built in the test (CRLF line ends) into alice's
Inbox (M1); nothing here depends on which Emails the fixture account already holds.
"""

import base64

import pytest

import jmapd

INBOX = "M1"
ARCHIVE = "M4"
RECEIVED_AT = "2026-01-01T10:00:00Z"


# -- helpers -----------------------------------------------------------------------------------

def crlf(text: str | bytes) -> bytes:
    """A message as octets with CRLF line ends (str is UTF-8 encoded)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def simple(headers: str = "", body: str = "Hello.\n") -> bytes:
    """A minimal message: From and Subject, any extra header lines, then a body."""
    return crlf("From: alice@example.com\nSubject: test\n" + headers + "\n" + body)


def upload(core, data: bytes, media_type: str = "message/rfc822") -> str:
    return jmapd.upload_blob(core, core.user("alice"), "alice", data, media_type)["blobId"]


def import_result(jmap, core, data: bytes, **entry) -> dict:
    """The whole Email/import response for one message (creation id "k")."""
    fields = {"blobId": upload(core, data), "mailboxIds": {INBOX: True}, "keywords": {},
              "receivedAt": RECEIVED_AT}
    fields.update(entry)
    fields = {k: v for k, v in fields.items() if v is not None}
    return jmap.call("Email/import", {"accountId": "alice", "emails": {"k": fields}})


def imported(jmap, core, data: bytes, **entry) -> str:
    """The id of a freshly imported Email."""
    result = import_result(jmap, core, data, **entry)
    assert result["notCreated"] is None, result["notCreated"]
    return result["created"]["k"]["id"]


def get(jmap, email_id: str, properties=None, **args) -> dict:
    found = jmap.call("Email/get", {"accountId": "alice", "ids": [email_id],
                                    "properties": properties, **args})["list"]
    assert len(found) == 1
    return found[0]


def prop(jmap, core, data: bytes, name: str, **args):
    """One property of a message imported for the purpose."""
    return get(jmap, imported(jmap, core, data), [name], **args)[name]


def header_prop(jmap, core, headers: str, name: str):
    return prop(jmap, core, simple(headers), name)


def not_created(jmap, core, entry: dict) -> dict:
    result = jmap.call("Email/import", {"accountId": "alice", "emails": {"k": entry}})
    assert result["created"] is None
    return result["notCreated"]["k"]


def email_state(jmap) -> str:
    return jmap.call("Email/get", {"accountId": "alice", "ids": []})["state"]


def download(core, blob_id: str) -> tuple[bytes, str]:
    return jmapd.download_blob(core, core.user("alice"), "alice", blob_id)


def email_set(jmap, **args) -> dict:
    return jmap.call("Email/set", {"accountId": "alice", **args})


RFC_ADDRESS_LIST = ('"  James Smythe" <james@example.com>, Friends:\n'
                    '  jane@example.com, =?UTF-8?Q?John_Sm=C3=AEth?=\n'
                    '  <john@example.com>;')


# -- §4.1.1 metadata ---------------------------------------------------------------------------

def test_the_email_blob_id_downloads_the_exact_imported_octets(jmap, core):
    """§4.1.1: blobId is the raw message; downloading it gives back the imported octets."""
    data = simple(body="Exactly these octets.\n")
    email = get(jmap, imported(jmap, core, data), ["blobId"])
    content, media_type = download(core, email["blobId"])
    assert content == data
    assert media_type in ("message/rfc822", "message/global")


def test_size_is_the_number_of_octets_of_the_raw_message(jmap, core):
    """§4.1.1: size is the octet count of the raw message, UTF-8 octets counted as octets."""
    data = simple(body="Grüße, 日本\n")
    email_id = imported(jmap, core, data)
    assert get(jmap, email_id, ["size"])["size"] == len(data)
    assert len(data) == 59


def test_the_import_answer_carries_id_blob_id_thread_id_and_size(jmap, core):
    """§4.8: created holds the id, blobId, threadId and size of each new Email."""
    data = simple()
    blob_id = upload(core, data)
    result = jmap.call("Email/import", {"accountId": "alice", "emails": {"k": {
        "blobId": blob_id, "mailboxIds": {INBOX: True}}}})
    created = result["created"]["k"]
    assert set(created) == {"id", "blobId", "threadId", "size"}
    assert created["blobId"] == blob_id
    assert created["size"] == len(data)
    email = get(jmap, created["id"], ["threadId", "blobId"])
    assert email == {"id": created["id"], "threadId": created["threadId"], "blobId": blob_id}


def test_received_at_is_the_date_given_on_import(jmap, core):
    """§4.8: the EmailImport receivedAt is the Email's receivedAt."""
    email_id = imported(jmap, core, simple(), receivedAt="2024-02-29T23:59:59Z")
    assert get(jmap, email_id, ["receivedAt"])["receivedAt"] == "2024-02-29T23:59:59Z"


def test_received_at_defaults_to_the_most_recent_received_header(jmap, core):
    """§4.8: without receivedAt, the date of the most recent (topmost) Received header,
    converted to UTC."""
    data = crlf("Received: from relay by mx; Tue, 2 Dec 2025 10:00:00 +0100\n"
                "Received: from origin by relay; Mon, 1 Dec 2025 08:00:00 +0000\n"
                "From: a@example.com\nSubject: s\n\nbody\n")
    email_id = imported(jmap, core, data, receivedAt=None)
    assert get(jmap, email_id, ["receivedAt"])["receivedAt"] == "2025-12-02T09:00:00Z"


def test_received_at_defaults_to_the_import_time_without_a_received_header(jmap, core):
    """§4.8: with neither receivedAt nor a Received header, the time of import."""
    core.clock.advance(3600)
    email_id = imported(jmap, core, simple(), receivedAt=None)
    assert get(jmap, email_id, ["receivedAt"])["receivedAt"] == "2026-01-01T10:00:00Z"


def test_keywords_are_stored_lower_case(jmap, core):
    """§4.1.1: keywords are case-insensitive and MUST be returned lower-case."""
    email_id = imported(jmap, core, simple(), keywords={"$Seen": True, "Work": True,
                                                          "$FLAGGED": True})
    assert get(jmap, email_id, ["keywords"])["keywords"] == {
        "$seen": True, "work": True, "$flagged": True}


def test_mailbox_ids_are_those_given_on_import(jmap, core):
    """§4.8: the new Email is in exactly the given Mailboxes."""
    email_id = imported(jmap, core, simple(), mailboxIds={INBOX: True, ARCHIVE: True})
    assert get(jmap, email_id, ["mailboxIds"])["mailboxIds"] == {INBOX: True, ARCHIVE: True}


# -- §4.1.2.1 Raw ------------------------------------------------------------------------------

def test_as_raw_keeps_the_leading_space_and_the_folding(jmap, core):
    """§4.1.2.1: Raw is every octet after the colon up to the final CRLF: the leading
    space and the CRLF of each folded line are kept."""
    value = header_prop(jmap, core, "X-Folded:  first\n\tsecond\n  third\n", "header:X-Folded")
    assert value == "  first\r\n\tsecond\r\n  third"


def test_as_raw_without_a_space_after_the_colon_has_no_leading_space(jmap, core):
    """§4.1.2.1: Raw starts at the first octet after the colon, space or not."""
    assert header_prop(jmap, core, "X-Tight:value\n", "header:X-Tight:asRaw") == "value"


def test_as_raw_keeps_encoded_words_undecoded(jmap, core):
    """§4.1.2.1: Raw performs no RFC 2047 decoding."""
    value = header_prop(jmap, core, "X-Enc: =?UTF-8?Q?caf=C3=A9?=\n", "header:X-Enc:asRaw")
    assert value == " =?UTF-8?Q?caf=C3=A9?="


def test_headers_lists_every_field_in_order_with_its_case_and_raw_value(jmap, core):
    """§4.1.3: headers is every header field in message order, names as capitalised in
    the message, values in Raw form."""
    data = crlf("from: a@example.com\nSUBJECT:  Hi\nX-Multi: 1\nX-Multi: 2\n\nbody\n")
    headers = prop(jmap, core, data, "headers")
    assert headers == [{"name": "from", "value": " a@example.com"},
                       {"name": "SUBJECT", "value": "  Hi"},
                       {"name": "X-Multi", "value": " 1"}, {"name": "X-Multi", "value": " 2"}]


# -- §4.1.2.2 Text -----------------------------------------------------------------------------

def test_as_text_unfolds_and_removes_leading_spaces(jmap, core):
    """§4.1.2.2: Text is unfolded, the final CRLF gone and leading spaces removed."""
    value = header_prop(jmap, core, "Subject:   Hello\n  folded\n\tworld\n", "header:Subject:asText")
    assert value == "Hello  folded\tworld"


def test_as_text_decodes_q_and_b_encoded_words(jmap, core):
    """§4.1.2.2: syntactically correct RFC 2047 encoded words are decoded (Q and B,
    any known charset)."""
    value = header_prop(jmap, core, "Subject: =?ISO-8859-1?Q?caf=E9?= and =?utf-8?b?w6k=?=\n",
                        "subject")
    assert value == "café and é"


def test_as_text_joins_adjacent_encoded_words_without_the_space_between(jmap, core):
    """§4.1.2.2 (RFC 2047 §6.2): white space between adjacent encoded words is dropped,
    even across a fold."""
    value = header_prop(jmap, core, "Subject: =?UTF-8?Q?Hello_?= =?UTF-8?Q?W?=\n"
                                    " =?UTF-8?B?b3JsZA==?= !\n", "subject")
    assert value == "Hello World !"


def test_as_text_does_not_decode_misplaced_encoded_words(jmap, core):
    """§4.1.2.2: text that looks like an encoded word but is not delimited by white space
    MUST NOT be decoded."""
    value = header_prop(jmap, core, "Subject: foo=?UTF-8?Q?bar?= =?UTF-8?Q?baz?=qux\n",
                        "subject")
    assert value == "foo=?UTF-8?Q?bar?= =?UTF-8?Q?baz?=qux"


def test_as_text_does_not_decode_an_encoded_word_touching_a_quote(jmap, core):
    """§4.1.2.2: in unstructured text (Subject) an encoded word must be separated from
    adjacent text by white space (RFC 2047 §5(1)); a quote mark next to it is misplacement."""
    value = header_prop(jmap, core, 'Subject: "=?UTF-8?Q?quoted?="\n', "subject")
    assert value == '"=?UTF-8?Q?quoted?="'


def test_as_text_drops_encoded_control_characters_and_normalises_to_nfc(jmap, core):
    """§4.1.2.2: NUL and control characters encoded per RFC 2047 are dropped; the result is
    NFC (e + combining acute -> é)."""
    value = header_prop(jmap, core, "Subject: x =?UTF-8?Q?a=00b=07c_e=CC=81?= y\n", "subject")
    assert value == "x abc é y"


def test_as_text_of_raw_utf8_is_kept(jmap, core):
    """§4.1.2.2 (RFC 6532): UTF-8 header octets are text as they are."""
    assert header_prop(jmap, core, "Subject: Grüße 日本\n", "subject") == "Grüße 日本"


def test_as_text_leaves_an_encoded_word_in_an_unknown_charset(jmap, core):
    """§4.1.2.2: only encoded words "with a known character set" are decoded; an unknown
    one stays as written (or, failing, becomes U+FFFD)."""
    value = header_prop(jmap, core, "Subject: =?x-unknown?Q?abc?=\n", "subject")
    assert value in ("=?x-unknown?Q?abc?=", "\ufffd")


# -- §4.1.2.3 Addresses, §4.1.2.4 GroupedAddresses --------------------------------------------

def test_as_addresses_parses_the_rfc_example_with_the_group_flattened(jmap, core):
    """§4.1.2.3: the RFC's own example; quoted names trimmed, encoded words decoded, the
    group flattened."""
    value = header_prop(jmap, core, f"To: {RFC_ADDRESS_LIST}\n", "header:To:asAddresses")
    assert value == [{"name": "James Smythe", "email": "james@example.com"},
                     {"name": None, "email": "jane@example.com"},
                     {"name": "John Sm\u00eeth", "email": "john@example.com"}]


def test_as_grouped_addresses_parses_the_rfc_example(jmap, core):
    """§4.1.2.4: the RFC's own example; ungrouped mailboxes get a group with name null."""
    value = header_prop(jmap, core, f"To: {RFC_ADDRESS_LIST}\n", "header:To:asGroupedAddresses")
    assert value == [
        {"name": None, "addresses": [{"name": "James Smythe", "email": "james@example.com"}]},
        {"name": "Friends", "addresses": [
            {"name": None, "email": "jane@example.com"},
            {"name": "John Sm\u00eeth", "email": "john@example.com"}]}]


def test_the_to_property_equals_header_to_as_addresses(jmap, core):
    """§4.1.3: "to" is identical to header:To:asAddresses."""
    email_id = imported(jmap, core, simple(f"To: {RFC_ADDRESS_LIST}\n"))
    email = get(jmap, email_id, ["to", "header:To:asAddresses"])
    assert email["to"] == email["header:To:asAddresses"]
    assert [a["email"] for a in email["to"]] == ["james@example.com", "jane@example.com",
                                                 "john@example.com"]


def test_as_addresses_takes_a_trailing_comment_as_the_name(jmap, core):
    """§4.1.2.3: with no display-name, a comment right after the addr-spec is the name."""
    value = header_prop(jmap, core, "Cc: john@example.com (John Doe), bare@example.com\n", "cc")
    assert value == [{"name": "John Doe", "email": "john@example.com"},
                     {"name": None, "email": "bare@example.com"}]


def test_as_addresses_decodes_quoted_pairs_in_names(jmap, core):
    """§4.1.2.3: a quoted-string name loses its DQUOTEs and its quoted-pairs are decoded."""
    value = header_prop(jmap, core, 'From: "Smith, \\"Jo\\"" <jo@example.com>\n', "from")
    assert value == [{"name": 'Smith, "Jo"', "email": "jo@example.com"}]


def test_as_addresses_of_a_group_with_no_members_is_empty(jmap, core):
    """§4.1.2.3/§4.1.2.4: "undisclosed-recipients:;" has no mailbox, but one (empty) group."""
    email_id = imported(jmap, core, simple("To: undisclosed-recipients:;\n"))
    email = get(jmap, email_id, ["to", "header:To:asGroupedAddresses"])
    assert email["to"] == []
    assert email["header:To:asGroupedAddresses"] == [
        {"name": "undisclosed-recipients", "addresses": []}]


def test_as_grouped_addresses_collects_mailboxes_after_a_group_in_a_new_null_group(jmap, core):
    """§4.1.2.4: consecutive ungrouped mailboxes share one group object with name null."""
    value = header_prop(jmap, core, "To: a@x.test, Team: b@x.test;, c@x.test, d@x.test\n",
                        "header:To:asGroupedAddresses")
    assert value == [
        {"name": None, "addresses": [{"name": None, "email": "a@x.test"}]},
        {"name": "Team", "addresses": [{"name": None, "email": "b@x.test"}]},
        {"name": None, "addresses": [{"name": None, "email": "c@x.test"},
                                     {"name": None, "email": "d@x.test"}]}]


def test_as_addresses_keeps_a_quoted_local_part_as_written(jmap, core):
    """§4.1.2.3: email is the addr-spec; a quoted-string local-part keeps its quotes."""
    value = header_prop(jmap, core, 'From: "john doe"@example.com\n', "from")
    assert value == [{"name": None, "email": '"john doe"@example.com'}]


# -- §4.1.2.5 MessageIds -----------------------------------------------------------------------

def test_as_message_ids_strips_angle_brackets_and_cfws(jmap, core):
    """§4.1.2.5: msg-ids without CFWS and without the surrounding <>."""
    email_id = imported(jmap, core, simple(
        "Message-ID: <one@example.com>\n"
        "References: <a@example.com> (first)\n <b@example.com>\t<c@example.com>\n"))
    email = get(jmap, email_id, ["messageId", "references", "header:References:asMessageIds"])
    assert email["messageId"] == ["one@example.com"]
    assert email["references"] == ["a@example.com", "b@example.com", "c@example.com"]
    assert email["header:References:asMessageIds"] == email["references"]


def test_as_message_ids_is_null_for_garbage(jmap, core):
    """§4.1.2.5: if the field does not parse as msg-ids, the value is null."""
    email_id = imported(jmap, core, simple("Message-ID: not a message id\n"
                                           "In-Reply-To: <ok@example.com> trailing junk\n"))
    email = get(jmap, email_id, ["messageId", "inReplyTo"])
    assert email["messageId"] is None
    assert email["inReplyTo"] is None


# -- §4.1.2.6 Date -----------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("Tue, 2 Dec 2025 10:00:00 +0100", "2025-12-02T10:00:00+01:00"),
    ("2 Dec 2025 10:00 -0530", "2025-12-02T10:00:00-05:30"),
    ("Tue, 2 Dec 2025 10:00:00 +0000 (UTC)", "2025-12-02T10:00:00Z"),
    ("Tue, 2 Dec 2025 10:00:00 GMT", "2025-12-02T10:00:00Z"),
    ("Tue, 2 Dec 2025 10:00:00 EST", "2025-12-02T10:00:00-05:00"),
])
def test_as_date_keeps_the_time_zone_offset(jmap, core, raw, expected):
    """§4.1.2.6: a date-time becomes a Date with its offset (obsolete zone names mapped)."""
    email_id = imported(jmap, core, simple(f"Date: {raw}\n"))
    email = get(jmap, email_id, ["sentAt", "header:Date:asDate"])
    assert email == {"id": email_id, "sentAt": expected, "header:Date:asDate": expected}


@pytest.mark.parametrize("raw", ["yesterday", "Tue, 31 Feb 2025 10:00:00 +0000",
                                 "Tue, 2 Dec 2025 25:00:00 +0000"])
def test_as_date_is_null_for_garbage(jmap, core, raw):
    """§4.1.2.6: if the field does not parse as a date-time (or names no real moment),
    the value is null."""
    assert header_prop(jmap, core, f"Date: {raw}\n", "sentAt") is None


# -- §4.1.2.7 URLs -----------------------------------------------------------------------------

def test_as_urls_lists_the_bracketed_urls_without_comments(jmap, core):
    """§4.1.2.7 (RFC 2369): the <URL>s, brackets and comments removed."""
    value = header_prop(jmap, core, "List-Unsubscribe: <mailto:list@example.com?subject=unsub>"
                                    " (Unsubscribe),\n <https://example.com/unsub>\n",
                        "header:List-Unsubscribe:asURLs")
    assert value == ["mailto:list@example.com?subject=unsub", "https://example.com/unsub"]


def test_as_urls_is_null_when_there_is_no_url(jmap, core):
    """§4.1.2.7: if parsing fails the value is null (RFC 2369's "List-Post: NO")."""
    assert header_prop(jmap, core, "List-Post: NO (posting not allowed)\n",
                       "header:List-Post:asURLs") is None


# -- §4.1.3 header:{name} properties -----------------------------------------------------------

def test_header_all_lists_every_instance_in_order(jmap, core):
    """§4.1.3: :all gives one item per instance, in message order, in the asked form."""
    email_id = imported(jmap, core, simple("X-Tag: =?UTF-8?Q?one?=\nX-Tag: two\nX-Tag:three\n"))
    email = get(jmap, email_id, ["header:X-Tag:all", "header:X-Tag:asText:all"])
    assert email["header:X-Tag:all"] == [" =?UTF-8?Q?one?=", " two", "three"]
    assert email["header:X-Tag:asText:all"] == ["one", "two", "three"]


def test_header_without_all_is_the_last_instance(jmap, core):
    """§4.1.3: without :all the value is that of the last instance."""
    email_id = imported(jmap, core, simple("X-Tag: one\nX-Tag: two\n"
                                           "Resent-To: first@x.test\nResent-To: last@x.test\n"))
    email = get(jmap, email_id, ["header:X-Tag", "header:Resent-To:asAddresses",
                                 "header:Resent-To:asAddresses:all"])
    assert email["header:X-Tag"] == " two"
    assert email["header:Resent-To:asAddresses"] == [{"name": None, "email": "last@x.test"}]
    assert email["header:Resent-To:asAddresses:all"] == [
        [{"name": None, "email": "first@x.test"}], [{"name": None, "email": "last@x.test"}]]


def test_an_absent_header_is_null_or_an_empty_list_with_all(jmap, core):
    """§4.1.3: no such field: null for a single instance, [] with :all; the convenience
    properties are null too."""
    email_id = imported(jmap, core, simple())
    email = get(jmap, email_id, ["header:X-Missing", "header:X-Missing:asText:all", "cc",
                                 "messageId", "sentAt", "header:Date:asDate"])
    assert email == {"id": email_id, "header:X-Missing": None, "header:X-Missing:asText:all": [],
                     "cc": None, "messageId": None, "sentAt": None, "header:Date:asDate": None}


def test_header_names_match_case_insensitively_and_keep_the_requested_case(jmap, core):
    """§4.1.3/§4.2: names match case-insensitively; the response property name is spelled
    exactly as requested."""
    email_id = imported(jmap, core, simple("X-Spam-Score: 5\n"))
    email = get(jmap, email_id, ["header:x-spam-score", "header:X-SPAM-SCORE:asText",
                                 "header:subject"])
    assert email == {"id": email_id, "header:x-spam-score": " 5",
                     "header:X-SPAM-SCORE:asText": "5", "header:subject": " test"}


def test_any_form_is_allowed_on_a_header_no_rfc_defines(jmap, core):
    """§4.1.2: a field not defined in RFC 5322 or RFC 2369 may be fetched in every form."""
    email_id = imported(jmap, core, simple("X-Origin: <id@x.test>\n"))
    email = get(jmap, email_id, ["header:X-Origin:asMessageIds", "header:X-Origin:asURLs",
                                 "header:X-Origin:asAddresses", "header:X-Origin:asDate"])
    assert email["header:X-Origin:asMessageIds"] == ["id@x.test"]
    assert email["header:X-Origin:asURLs"] == ["id@x.test"]
    assert email["header:X-Origin:asAddresses"] == [{"name": None, "email": "id@x.test"}]
    assert email["header:X-Origin:asDate"] is None


@pytest.mark.parametrize("name", [
    "header:From:asDate", "header:Subject:asAddresses", "header:From:asText",
    "header:Date:asText", "header:Message-ID:asURLs", "header:List-Post:asText",
    "header:Subject:asGroupedAddresses", "header:Received:asDate",
])
def test_a_forbidden_parsed_form_is_invalid_arguments(jmap, core, name):
    """§4.2: fetching a form the field does not allow (e.g. header:From:asDate) MUST be
    rejected with invalidArguments."""
    email_id = imported(jmap, core, simple())
    assert jmap.error("Email/get", {"accountId": "alice", "ids": [email_id],
                                    "properties": [name]}) == "invalidArguments"


@pytest.mark.parametrize("name", ["header:Subject:asNothing", "header:X:all:asText",
                                  "header:", "header:Sub ject", "subjectt"])
def test_a_malformed_or_unknown_property_is_invalid_arguments(jmap, core, name):
    """§4.1.3/RFC 8620 §5.1: an unknown form, suffixes out of order, a bad field name or an
    unknown property is invalidArguments."""
    email_id = imported(jmap, core, simple())
    assert jmap.error("Email/get", {"accountId": "alice", "ids": [email_id],
                                    "properties": [name]}) == "invalidArguments"


# -- §4.2 Email/get ----------------------------------------------------------------------------

def test_the_default_properties_are_exactly_those_of_section_4_2(jmap, core):
    """§4.2: with properties null the RFC's default list is returned, not "all"."""
    email_id = imported(jmap, core, simple())
    email = jmap.call("Email/get", {"accountId": "alice", "ids": [email_id]})["list"][0]
    assert sorted(email) == sorted([
        "id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt",
        "messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc",
        "replyTo", "subject", "sentAt", "hasAttachment", "preview", "bodyValues",
        "textBody", "htmlBody", "attachments"])
    assert email["bodyValues"] == {}


def test_the_default_body_properties_are_exactly_those_of_section_4_2(jmap, core):
    """§4.2: EmailBodyParts default to partId, blobId, size, name, type, charset,
    disposition, cid, language, location."""
    email_id = imported(jmap, core, simple())
    part = get(jmap, email_id, ["textBody"])["textBody"][0]
    assert part == {"partId": "1", "blobId": part["blobId"], "size": 8, "name": None,
                    "type": "text/plain", "charset": "us-ascii", "disposition": None,
                    "cid": None, "language": None, "location": None}


def test_body_properties_select_part_fields_and_header_properties(jmap, core):
    """§4.2/§4.1.4: bodyProperties may list EmailBodyPart fields and header:* forms."""
    data = crlf("From: a@x.test\nSubject: s\nContent-Type: text/plain; charset=utf-8\n"
                "Content-Language: en, de\nContent-ID: <c1@x.test>\n"
                "Content-Location: https://x.test/body\n\nhi\n")
    email_id = imported(jmap, core, data)
    part = get(jmap, email_id, ["textBody"], bodyProperties=[
        "type", "header:Content-Type", "header:content-type:asText", "language", "cid",
        "location", "headers"])["textBody"][0]
    assert part == {
        "type": "text/plain", "header:Content-Type": " text/plain; charset=utf-8",
        "header:content-type:asText": "text/plain; charset=utf-8", "language": ["en", "de"],
        "cid": "c1@x.test", "location": "https://x.test/body",
        "headers": [{"name": "From", "value": " a@x.test"}, {"name": "Subject", "value": " s"},
                    {"name": "Content-Type", "value": " text/plain; charset=utf-8"},
                    {"name": "Content-Language", "value": " en, de"},
                    {"name": "Content-ID", "value": " <c1@x.test>"},
                    {"name": "Content-Location", "value": " https://x.test/body"}]}


@pytest.mark.parametrize("bad", ["nonsense", "header:From:asDate", "threadId"])
def test_an_unknown_body_property_is_invalid_arguments(jmap, core, bad):
    """§4.2: bodyProperties naming no EmailBodyPart property is invalidArguments."""
    email_id = imported(jmap, core, simple())
    assert jmap.error("Email/get", {"accountId": "alice", "ids": [email_id],
                                    "properties": ["textBody"],
                                    "bodyProperties": ["partId", bad]}) == "invalidArguments"


ALTERNATIVE = crlf(
    "From: a@x.test\nSubject: alt\nContent-Type: multipart/mixed; boundary=m\n\n"
    "--m\nContent-Type: multipart/alternative; boundary=a\n\n"
    "--a\nContent-Type: text/plain; charset=utf-8\n\nplain €\n"
    "--a\nContent-Type: text/html; charset=utf-8\n\n<p>html €</p>\n"
    "--a--\n"
    "--m\nContent-Type: text/csv; name=data.csv\nContent-Disposition: attachment\n\na,b\n"
    "--m\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n"
    "Content-Disposition: attachment; filename=x.png\n\niVBORw0K\n"
    "--m--\n")


def body_values(jmap, core, **args) -> dict:
    email_id = imported(jmap, core, ALTERNATIVE)
    return get(jmap, email_id, ["bodyValues"], **args)["bodyValues"]


def test_body_values_are_empty_unless_fetched(jmap, core):
    """§4.2: all fetch*BodyValues default to false, so bodyValues is {}."""
    assert body_values(jmap, core) == {}


def test_fetch_text_body_values_gives_the_text_body_parts(jmap, core):
    """§4.2: fetchTextBodyValues includes the text/* parts of textBody, CRLF as LF."""
    assert body_values(jmap, core, fetchTextBodyValues=True) == {
        "1": {"value": "plain €", "isEncodingProblem": False, "isTruncated": False}}


def test_fetch_html_body_values_gives_the_html_body_parts(jmap, core):
    """§4.2: fetchHTMLBodyValues includes the text/* parts of htmlBody."""
    assert body_values(jmap, core, fetchHTMLBodyValues=True) == {
        "2": {"value": "<p>html €</p>", "isEncodingProblem": False, "isTruncated": False}}


def test_fetch_all_body_values_gives_every_text_part_but_no_other(jmap, core):
    """§4.2: fetchAllBodyValues includes every text/* part of bodyStructure (the text/csv
    attachment too), never the image."""
    values = body_values(jmap, core, fetchAllBodyValues=True)
    assert values == {
        "1": {"value": "plain €", "isEncodingProblem": False, "isTruncated": False},
        "2": {"value": "<p>html €</p>", "isEncodingProblem": False, "isTruncated": False},
        "3": {"value": "a,b", "isEncodingProblem": False, "isTruncated": False}}


def test_body_values_replace_crlf_with_lf(jmap, core):
    """§4.1.4 bodyValues: any CRLF in the value is replaced by a single LF."""
    email_id = imported(jmap, core, simple(body="line one\nline two\n\nend\n"))
    values = get(jmap, email_id, ["bodyValues"], fetchTextBodyValues=True)["bodyValues"]
    assert values == {"1": {"value": "line one\nline two\n\nend\n", "isEncodingProblem": False,
                            "isTruncated": False}}


def test_max_body_value_bytes_never_cuts_inside_a_utf8_character(jmap, core):
    """§4.2: the truncated value is at most maxBodyValueBytes octets of valid UTF-8,
    never ending mid code point (€ is three octets)."""
    email_id = imported(jmap, core, crlf("From: a@x.test\nSubject: s\n"
                                         "Content-Type: text/plain; charset=utf-8\n\nab€€cd"))
    for limit, expected in [(2, "ab"), (3, "ab"), (4, "ab"), (5, "ab€"), (8, "ab€€")]:
        value = get(jmap, email_id, ["bodyValues"], fetchTextBodyValues=True,
                    maxBodyValueBytes=limit)["bodyValues"]["1"]
        assert value == {"value": expected, "isEncodingProblem": False, "isTruncated": True}
        assert len(value["value"].encode("utf-8")) <= limit


def test_max_body_value_bytes_larger_than_the_value_does_not_truncate(jmap, core):
    """§4.2: a value within maxBodyValueBytes is whole and isTruncated is false."""
    email_id = imported(jmap, core, simple(body="short"))
    value = get(jmap, email_id, ["bodyValues"], fetchTextBodyValues=True,
                maxBodyValueBytes=100)["bodyValues"]["1"]
    assert value == {"value": "short", "isEncodingProblem": False, "isTruncated": False}


def test_max_body_value_bytes_does_not_cut_inside_an_html_tag(jmap, core):
    """§4.2: an HTML value SHOULD NOT be truncated inside a tag such as <a href=...>."""
    email_id = imported(jmap, core, crlf(
        'From: a@x.test\nSubject: s\nContent-Type: text/html\n\n'
        '<p>Hello <a href="https://example.com">link</a></p>'))
    value = get(jmap, email_id, ["bodyValues"], fetchHTMLBodyValues=True,
                maxBodyValueBytes=25)["bodyValues"]["1"]
    assert value == {"value": "<p>Hello ", "isEncodingProblem": False, "isTruncated": True}


def test_an_unknown_charset_is_an_encoding_problem(jmap, core):
    """§4.1.4: isEncodingProblem is true when the charset is unknown; the server decodes
    as best it can (here as UTF-8)."""
    email_id = imported(jmap, core, crlf("From: a@x.test\nSubject: s\n"
                                         "Content-Type: text/plain; charset=x-unknown\n\n"
                                         "caf\u00e9"))
    email = get(jmap, email_id, ["bodyValues", "textBody"], fetchTextBodyValues=True)
    assert email["textBody"][0]["charset"] == "x-unknown"
    assert email["bodyValues"]["1"] == {"value": "café", "isEncodingProblem": True,
                                        "isTruncated": False}


def test_invalid_octets_in_the_charset_are_an_encoding_problem_and_become_u_fffd(jmap, core):
    """§4.1.4: malformed sections set isEncodingProblem and are replaced by U+FFFD."""
    email_id = imported(jmap, core, crlf(b"From: a@x.test\nSubject: s\n"
                                         b"Content-Type: text/plain; charset=utf-8\n\n"
                                         b"caf\xe9!"))
    value = get(jmap, email_id, ["bodyValues"], fetchTextBodyValues=True)["bodyValues"]["1"]
    assert value == {"value": "caf\ufffd!", "isEncodingProblem": True, "isTruncated": False}


def test_an_unknown_transfer_encoding_is_an_encoding_problem_left_undecoded(jmap, core):
    """§4.1.4: an unknown Content-Transfer-Encoding is treated as none, and flagged."""
    email_id = imported(jmap, core, crlf("From: a@x.test\nSubject: s\n"
                                         "Content-Transfer-Encoding: x-rot13\n\nuryyb"))
    email = get(jmap, email_id, ["bodyValues", "textBody"], fetchTextBodyValues=True)
    assert email["bodyValues"]["1"] == {"value": "uryyb", "isEncodingProblem": True,
                                        "isTruncated": False}
    assert email["textBody"][0]["size"] == 5


# -- §4.1.4 the RFC's example structure ---------------------------------------------------------

def rfc_example_message() -> bytes:
    """§4.1.4's list-manager example: A..K as in the RFC (there is no I)."""
    def leaf(letter, content_type, disposition=None, body=None, base64_body=None):
        lines = [f"Content-Type: {content_type}", f"X-Part: {letter}"]
        if disposition:
            lines.append(f"Content-Disposition: {disposition}")
        if base64_body is not None:
            lines.append("Content-Transfer-Encoding: base64")
            body = base64.b64encode(base64_body).decode()
        return "\n".join(lines) + "\n\n" + (body if body is not None else f"Part {letter}") + "\n"

    def multipart(subtype, boundary, *parts):
        inner = "".join(f"--{boundary}\n{p}" for p in parts)
        return f"Content-Type: multipart/{subtype}; boundary={boundary}\n\n{inner}--{boundary}--\n"

    # 12 octets each, so the base64 needs no padding
    jpeg = {letter: b"\xff\xd8\xff\xe0JPEG:" + letter.encode() + b"::" for letter in "CFG"}
    structure = multipart(
        "mixed", "outer",
        leaf("A", "text/plain", "inline"),
        multipart(
            "mixed", "inner",
            multipart(
                "alternative", "alt",
                multipart("mixed", "deep",
                          leaf("B", "text/plain", "inline"),
                          leaf("C", "image/jpeg", "inline", base64_body=jpeg["C"]),
                          leaf("D", "text/plain", "inline")),
                multipart("related", "rel",
                          leaf("E", "text/html", body="<p>Part E</p>"),
                          leaf("F", "image/jpeg", base64_body=jpeg["F"]))),
            leaf("G", "image/jpeg", "attachment", base64_body=jpeg["G"]),
            leaf("H", "application/x-excel", body="cells"),
            leaf("J", "message/rfc822",
                 body="From: inner@x.test\nSubject: inner\n\nInner body.")),
        leaf("K", "text/plain", "inline"))
    return crlf("From: list@x.test\nSubject: Example\nMIME-Version: 1.0\n" + structure)


def rfc_example(jmap, core) -> dict:
    email_id = imported(jmap, core, rfc_example_message())
    return get(jmap, email_id, ["textBody", "htmlBody", "attachments", "hasAttachment",
                                "bodyStructure", "preview"],
               bodyProperties=["partId", "type", "header:X-Part:asText", "blobId", "size"])


def letters(parts: list[dict]) -> list[str]:
    return [p["header:X-Part:asText"] for p in parts]


def test_the_rfc_example_gives_the_rfc_text_body(jmap, core):
    """§4.1.4: the example decomposes to textBody [A, B, C, D, K]."""
    assert letters(rfc_example(jmap, core)["textBody"]) == ["A", "B", "C", "D", "K"]


def test_the_rfc_example_gives_the_rfc_html_body(jmap, core):
    """§4.1.4: the example decomposes to htmlBody [A, E, K]."""
    assert letters(rfc_example(jmap, core)["htmlBody"]) == ["A", "E", "K"]


def test_the_rfc_example_gives_the_rfc_attachments(jmap, core):
    """§4.1.4: the example decomposes to attachments [C, F, G, H, J]."""
    email = rfc_example(jmap, core)
    assert letters(email["attachments"]) == ["C", "F", "G", "H", "J"]
    assert [p["type"] for p in email["attachments"]] == [
        "image/jpeg", "image/jpeg", "image/jpeg", "application/x-excel", "message/rfc822"]
    assert email["hasAttachment"] is True


def test_the_rfc_example_body_structure_numbers_leaves_depth_first(jmap, core):
    """§4.1.4: multipart parts have partId and blobId null and subParts; leaves have ids and
    no subParts; message/rfc822 is not recursed into."""
    root = rfc_example(jmap, core)["bodyStructure"]

    def shape(part):
        if part["subParts"] is None:
            return part["partId"], part["header:X-Part:asText"], part["type"]
        assert part["partId"] is None and part["blobId"] is None
        return part["type"], [shape(sub) for sub in part["subParts"]]

    assert shape(root) == ("multipart/mixed", [
        ("1", "A", "text/plain"),
        ("multipart/mixed", [
            ("multipart/alternative", [
                ("multipart/mixed", [("2", "B", "text/plain"), ("3", "C", "image/jpeg"),
                                     ("4", "D", "text/plain")]),
                ("multipart/related", [("5", "E", "text/html"), ("6", "F", "image/jpeg")])]),
            ("7", "G", "image/jpeg"), ("8", "H", "application/x-excel"),
            ("9", "J", "message/rfc822")]),
        ("10", "K", "text/plain")])


def test_the_size_of_a_part_is_its_decoded_octet_count(jmap, core):
    """§4.1.4: size is the octet count after transfer decoding (12 octets of "JPEG"); the
    CRLF before a boundary delimiter belongs to the delimiter, not the part."""
    email = rfc_example(jmap, core)
    sizes = {p["header:X-Part:asText"]: p["size"] for p in email["attachments"]}
    assert sizes == {"C": 12, "F": 12, "G": 12, "H": 5, "J": 49}


def test_part_blob_ids_download_the_decoded_content(jmap, core):
    """§4.1.4: a part's blobId is its content after transfer decoding, downloadable with
    the part's type."""
    email = rfc_example(jmap, core)
    by_letter = {p["header:X-Part:asText"]: p for p in email["attachments"] + email["textBody"]}
    assert download(core, by_letter["G"]["blobId"]) == (b"\xff\xd8\xff\xe0JPEG:G::",
                                                        "image/jpeg")
    assert download(core, by_letter["A"]["blobId"]) == (b"Part A", "text/plain")
    assert download(core, by_letter["J"]["blobId"]) == (
        b"From: inner@x.test\r\nSubject: inner\r\n\r\nInner body.", "message/rfc822")


def test_a_padded_base64_part_decodes_to_every_octet(jmap, core):
    """§4.1.4: blobId is the content after transfer decoding: "SGVsbG8=" is "Hello"."""
    email_id = imported(jmap, core, crlf(
        "From: a@x.test\nSubject: s\nContent-Type: multipart/mixed; boundary=b\n\n"
        "--b\nContent-Type: text/plain\n\nsee attached\n"
        "--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
        "SGVsbG8=\n--b--\n"))
    part = get(jmap, email_id, ["attachments"])["attachments"][0]
    assert part["size"] == 5
    assert download(core, part["blobId"])[0] == b"Hello"


def test_the_same_decoded_content_has_the_same_part_blob_id(jmap, core):
    """§4.1.4: parts with identical decoded octets may share a blobId (jmapd hashes)."""
    encoded = base64.b64encode(b"same content").decode()
    email_id = imported(jmap, core, crlf(
        "From: a@x.test\nSubject: s\nContent-Type: multipart/mixed; boundary=b\n\n"
        "--b\nContent-Type: application/octet-stream\n\nsame content\n"
        "--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
        f"{encoded}\n--b--\n"))
    first, second = get(jmap, email_id, ["attachments"])["attachments"]
    assert first["blobId"] == second["blobId"]
    assert download(core, first["blobId"])[0] == b"same content"


def test_has_attachment_is_false_for_a_plain_message(jmap, core):
    """§4.1.4: no attachments, so hasAttachment is false."""
    assert prop(jmap, core, simple(), "hasAttachment") is False


def test_has_attachment_ignores_inline_attachments(jmap, core):
    """§4.1.4: hasAttachment SHOULD be true only if an attachment is not
    "Content-Disposition: inline"."""
    data = crlf("From: a@x.test\nSubject: s\nContent-Type: multipart/alternative; boundary=b\n\n"
                "--b\nContent-Type: text/plain\n\nplain\n"
                "--b\nContent-Type: image/png\nContent-Disposition: inline\n\npng\n--b--\n")
    email_id = imported(jmap, core, data)
    email = get(jmap, email_id, ["attachments", "hasAttachment"], bodyProperties=["partId"])
    assert email == {"id": email_id, "attachments": [{"partId": "2"}], "hasAttachment": False}


def test_a_named_text_part_after_the_first_is_an_attachment(jmap, core):
    """§4.1.4 algorithm: a text part with a filename that is not first is an attachment."""
    data = crlf("From: a@x.test\nSubject: s\nContent-Type: multipart/mixed; boundary=b\n\n"
                "--b\nContent-Type: text/plain\n\nbody\n"
                "--b\nContent-Type: text/plain; name=notes.txt\n\nnotes\n--b--\n")
    email_id = imported(jmap, core, data)
    email = get(jmap, email_id, ["textBody", "attachments"], bodyProperties=["partId", "name"])
    assert email["textBody"] == [{"partId": "1", "name": None}]
    assert email["attachments"] == [{"partId": "2", "name": "notes.txt"}]


# -- §4.1.4 preview ----------------------------------------------------------------------------

def test_preview_skips_quoted_lines_and_collapses_white_space(jmap, core):
    """§4.1.4: preview is plain text of the body; quoted lines skipped, white space
    collapsed."""
    body = "> quoted line\n>> deeper\nHello   there,\n\n  how\tare you?\n"
    assert prop(jmap, core, simple(body=body), "preview") == "Hello there, how are you?"


def test_preview_is_at_most_256_characters(jmap, core):
    """§4.1.4: preview MUST NOT be more than 256 characters."""
    body = ("word€ " * 200) + "\n"
    preview = prop(jmap, core, crlf("From: a@x.test\nSubject: s\n"
                                    "Content-Type: text/plain; charset=utf-8\n\n" + body),
                   "preview")
    assert len(preview) == 256
    assert preview.startswith("word€ word€ ")


def test_preview_of_an_html_only_message_is_its_visible_text(jmap, core):
    """§4.1.4: preview is a plaintext fragment: tags and entities do not show."""
    data = crlf("From: a@x.test\nSubject: s\nContent-Type: text/html\n\n"
                "<html><head><title>T</title></head><body><p>Hi &amp; welcome</p></body></html>")
    assert prop(jmap, core, data, "preview") == "Hi & welcome"


# -- §4.8 Email/import errors ------------------------------------------------------------------

def test_importing_an_unknown_blob_is_invalid_properties(jmap, core):
    """§4.8: a blobId not found is invalidProperties naming blobId."""
    error = not_created(jmap, core, {"blobId": "Gnosuchblob", "mailboxIds": {INBOX: True}})
    assert error["type"] == "invalidProperties"
    assert error["properties"] == ["blobId"]


def test_importing_without_mailbox_ids_is_invalid_properties(jmap, core):
    """§4.8: mailboxIds missing is invalidProperties."""
    error = not_created(jmap, core, {"blobId": upload(core, simple())})
    assert error["type"] == "invalidProperties"
    assert error["properties"] == ["mailboxIds"]


def test_importing_into_no_mailbox_is_invalid_properties(jmap, core):
    """§4.8: "At least one Mailbox MUST be given": mailboxIds {} is invalidProperties."""
    error = not_created(jmap, core, {"blobId": upload(core, simple()), "mailboxIds": {}})
    assert error["type"] == "invalidProperties"
    assert error["properties"] == ["mailboxIds"]


def test_importing_into_an_unknown_mailbox_is_invalid_properties(jmap, core):
    """§4.8: a Mailbox id not found is invalidProperties; nothing is created."""
    before = email_state(jmap)
    error = not_created(jmap, core, {"blobId": upload(core, simple()),
                                     "mailboxIds": {INBOX: True, "M999": True}})
    assert error["type"] == "invalidProperties"
    assert error["properties"] == ["mailboxIds"]
    assert email_state(jmap) == before


@pytest.mark.parametrize("keywords", [{"bad keyword": True}, {"$seen": False},
                                      {"a(b": True}, {"": True}])
def test_importing_with_an_invalid_keyword_is_invalid_properties(jmap, core, keywords):
    """§4.8: invalid keywords (forbidden characters, a value other than true) are
    invalidProperties."""
    error = not_created(jmap, core, {"blobId": upload(core, simple()),
                                     "mailboxIds": {INBOX: True}, "keywords": keywords})
    assert error["type"] == "invalidProperties"
    assert error["properties"] == ["keywords"]


def test_importing_with_a_stale_if_in_state_is_state_mismatch(jmap, core):
    """§4.8: ifInState not matching the Email state aborts the call with stateMismatch."""
    blob_id = upload(core, simple())
    entry = {"blobId": blob_id, "mailboxIds": {INBOX: True}}
    before = email_state(jmap)
    assert jmap.error("Email/import", {"accountId": "alice", "ifInState": before + "9",
                                       "emails": {"k": entry}}) == "stateMismatch"
    assert email_state(jmap) == before
    result = jmap.call("Email/import", {"accountId": "alice", "ifInState": before,
                                        "emails": {"k": entry}})
    assert result["oldState"] == before
    assert result["newState"] == email_state(jmap) != before
    assert result["created"]["k"]["id"]


def test_importing_a_blob_with_no_header_is_invalid_email(jmap, core):
    """§4.8: a blob that is not an RFC 5322 message may be rejected with invalidEmail."""
    blob_id = upload(core, b"just some text, no header at all\r\n", "text/plain")
    error = not_created(jmap, core, {"blobId": blob_id, "mailboxIds": {INBOX: True}})
    assert error["type"] == "invalidEmail"


def test_one_failed_import_does_not_stop_the_others(jmap, core):
    """§4.8: each import is atomic and succeeds or fails on its own."""
    good = upload(core, simple())
    result = jmap.call("Email/import", {"accountId": "alice", "emails": {
        "good": {"blobId": good, "mailboxIds": {INBOX: True}},
        "bad": {"blobId": good, "mailboxIds": {"M999": True}}}})
    assert list(result["created"]) == ["good"]
    assert list(result["notCreated"]) == ["bad"]


# -- §4.6 Email/set updates and destroy ---------------------------------------------------------

def test_keywords_update_by_patch_adds_lower_case_and_removes(jmap, core):
    """§4.6/§4.1.1: keywords/{k} patches add (stored lower-case) and null removes."""
    email_id = imported(jmap, core, simple(), keywords={"$seen": True, "old": True})
    result = email_set(jmap, update={email_id: {"keywords/$Flagged": True, "keywords/old": None}})
    assert email_id in result["updated"]
    assert get(jmap, email_id, ["keywords"])["keywords"] == {"$seen": True, "$flagged": True}


def test_mailbox_ids_update_by_patch_moves_the_email(jmap, core):
    """§4.6: mailboxIds/{id} patches add and remove Mailboxes."""
    email_id = imported(jmap, core, simple())
    result = email_set(jmap, update={email_id: {f"mailboxIds/{ARCHIVE}": True,
                                                f"mailboxIds/{INBOX}": None}})
    assert email_id in result["updated"]
    assert get(jmap, email_id, ["mailboxIds"])["mailboxIds"] == {ARCHIVE: True}


def test_updating_mailbox_ids_to_empty_is_invalid_properties(jmap, core):
    """§4.1.1: an Email is in at least one Mailbox: mailboxIds {} is invalidProperties."""
    email_id = imported(jmap, core, simple())
    result = email_set(jmap, update={email_id: {"mailboxIds": {}}})
    assert result["notUpdated"][email_id]["type"] == "invalidProperties"
    assert result["notUpdated"][email_id]["properties"] == ["mailboxIds"]
    assert get(jmap, email_id, ["mailboxIds"])["mailboxIds"] == {INBOX: True}


@pytest.mark.parametrize("patch", [{"subject": "changed"}, {"receivedAt": "2020-01-01T00:00:00Z"},
                                   {"size": 1}, {"blobId": "Gother"}])
def test_updating_an_immutable_property_is_invalid_properties(jmap, core, patch):
    """§4.1: immutable (and server-set) properties cannot be changed by Email/set."""
    email_id = imported(jmap, core, simple())
    result = email_set(jmap, update={email_id: patch})
    assert result["updated"] is None
    assert result["notUpdated"][email_id]["type"] == "invalidProperties"
    assert result["notUpdated"][email_id]["properties"] == list(patch)


def test_destroying_an_email_removes_it(jmap, core):
    """§4.6: a destroyed Email is notFound afterwards; a second destroy is notFound."""
    email_id = imported(jmap, core, simple())
    assert email_set(jmap, destroy=[email_id])["destroyed"] == [email_id]
    got = jmap.call("Email/get", {"accountId": "alice", "ids": [email_id]})
    assert got["list"] == [] and got["notFound"] == [email_id]
    again = email_set(jmap, destroy=[email_id])
    assert again["notDestroyed"][email_id]["type"] == "notFound"


# -- §4.3 Email/changes ------------------------------------------------------------------------

def changes(jmap, since: str) -> dict:
    return jmap.call("Email/changes", {"accountId": "alice", "sinceState": since})


def test_email_changes_reports_import_then_update_then_destroy(jmap, core):
    """§4.3: after an import the Email is created, after a keyword update it is updated,
    after a destroy it is destroyed; each newState is the current state."""
    start = email_state(jmap)
    email_id = imported(jmap, core, simple())
    after_import = changes(jmap, start)
    assert (after_import["created"], after_import["updated"], after_import["destroyed"]) == (
        [email_id], [], [])
    assert after_import["newState"] == email_state(jmap) != start

    email_set(jmap, update={email_id: {"keywords/$seen": True}})
    after_update = changes(jmap, after_import["newState"])
    assert (after_update["created"], after_update["updated"], after_update["destroyed"]) == (
        [], [email_id], [])

    email_set(jmap, destroy=[email_id])
    after_destroy = changes(jmap, after_update["newState"])
    assert (after_destroy["created"], after_destroy["updated"], after_destroy["destroyed"]) == (
        [], [], [email_id])
    assert after_destroy["newState"] == email_state(jmap)
    assert after_destroy["hasMoreChanges"] is False


def test_list_id_allows_every_parsed_form(jmap, core):
    """RFC 8621 §4.1.2: List-Id is defined by RFC 2919, not RFC 5322/2369, so any form."""
    raw = (b"From: a@x.test\r\nList-Id: Dev list <dev.lists.example.org>\r\nSubject: l\r\n\r\nx")
    blob = jmapd.upload_blob(core, core.user("alice"), "alice", raw, "message/rfc822")["blobId"]
    inbox = jmap.mailbox_ids()["Inbox"]
    email_id = jmap.call("Email/import", {"accountId": "alice", "emails": {"k": {
        "blobId": blob, "mailboxIds": {inbox: True}}}})["created"]["k"]["id"]
    got = jmap.call("Email/get", {"accountId": "alice", "ids": [email_id], "properties": [
        "header:List-Id:asText", "header:List-Id:asAddresses"]})["list"][0]
    assert got["header:List-Id:asText"] == "Dev list <dev.lists.example.org>"
    assert got["header:List-Id:asAddresses"] == [{"name": "Dev list",
                                                  "email": "dev.lists.example.org"}]
