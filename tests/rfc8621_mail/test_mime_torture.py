"""Malformed and odd messages: RFC 8621 §4.1.2.1 (raw header octets: UTF-8, U+FFFD, NUL),
§4.1.2.3 (best-effort address parsing), §4.1.4 (EmailBodyPart type/charset/name defaults,
bodyValues decoding and isEncodingProblem) and §4.8 (Email/import), with the MIME rules they
rest on: RFC 2045 (§5.2 Content-Type defaults, §6.7 quoted-printable, §6.8 base64), RFC 2046
(§5.1 multipart boundaries, §5.1.5 multipart/digest, §5.2.1 message/rfc822), RFC 2047 and
RFC 2231 (encoded and continued parameters).

Every message here must import and answer Email/get without error; the tests then pin the
concrete result (types, names, charsets, decoded text, sizes).
"""

import base64

import pytest

import jmapd

INBOX = "M1"
BODY_PROPERTIES = ["partId", "blobId", "size", "name", "type", "charset", "disposition"]


def crlf(text: str | bytes) -> bytes:
    """A message as octets with CRLF line ends (str is UTF-8 encoded)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def multipart(boundary: str, *parts: str, subtype: str = "mixed", close: bool = True) -> str:
    """The text of a multipart entity (header and body) with the given part texts."""
    body = "".join(f"--{boundary}\n{part}\n" for part in parts)
    return (f"Content-Type: multipart/{subtype}; boundary=\"{boundary}\"\n\n{body}"
            + (f"--{boundary}--\n" if close else ""))


def import_email(jmap, core, data: bytes) -> str:
    blob_id = jmapd.upload_blob(core, core.user("alice"), "alice", data, "message/rfc822")["blobId"]
    result = jmap.call("Email/import", {"accountId": "alice", "emails": {"k": {
        "blobId": blob_id, "mailboxIds": {INBOX: True}, "keywords": {},
        "receivedAt": "2026-01-01T10:00:00Z"}}})
    assert result["notCreated"] is None, result["notCreated"]
    return result["created"]["k"]["id"]


def fetch(jmap, email_id: str, *properties: str, **args) -> dict:
    args.setdefault("bodyProperties", BODY_PROPERTIES)
    found = jmap.call("Email/get", {"accountId": "alice", "ids": [email_id],
                                    "properties": list(properties), **args})["list"]
    assert len(found) == 1
    return found[0]


def email(jmap, core, data: bytes, *properties: str, **args) -> dict:
    """Import a message and fetch the given properties (all body values fetched)."""
    args.setdefault("fetchAllBodyValues", True)
    return fetch(jmap, import_email(jmap, core, data), *properties, **args)


def download(core, blob_id: str) -> bytes:
    return jmapd.download_blob(core, core.user("alice"), "alice", blob_id)[0]


def value(text: str, problem: bool = False) -> dict:
    return {"value": text, "isEncodingProblem": problem, "isTruncated": False}


HEAD = "From: a@x.test\nSubject: torture\nMIME-Version: 1.0\n"


# -- RFC 2046 §5.1 multipart structure ----------------------------------------------------------

def test_multiparts_nested_five_deep_reach_the_innermost_text(jmap, core):
    """§4.1.4 / RFC 2046 §5.1: five nested multiparts give a five-level bodyStructure whose
    single leaf is the text body."""
    entity = "Content-Type: text/plain; charset=utf-8\n\ndeep inside"
    for level in range(5, 0, -1):
        entity = multipart(f"level{level}", entity).rstrip("\n")
    got = email(jmap, core, crlf(HEAD + entity + "\n"), "bodyStructure", "textBody",
                "bodyValues", "preview")
    part, depth = got["bodyStructure"], 0
    while part["subParts"] is not None:
        assert part["type"] == "multipart/mixed" and part["partId"] is None
        assert len(part["subParts"]) == 1
        part, depth = part["subParts"][0], depth + 1
    assert depth == 5
    assert (part["partId"], part["type"], part["charset"], part["size"]) == (
        "1", "text/plain", "utf-8", 11)
    assert [p["partId"] for p in got["textBody"]] == ["1"]
    assert got["bodyValues"] == {"1": value("deep inside")}
    assert got["preview"] == "deep inside"


def test_multiparts_nested_past_the_depth_limit_still_import(jmap, core):
    """§4.8 best effort: 40 nested multiparts (beyond jmapd's 32) import; the text inside is
    still reachable from the bodyStructure and nothing crashes."""
    entity = "Content-Type: text/plain\n\nbottom"
    for level in range(40, 0, -1):
        entity = multipart(f"b{level}", entity).rstrip("\n")
    got = email(jmap, core, crlf(HEAD + entity + "\n"), "bodyStructure", "textBody")
    part, depth = got["bodyStructure"], 0
    while part["subParts"]:
        part, depth = part["subParts"][0], depth + 1
    assert depth == jmapd.MAX_MIME_DEPTH
    assert part["type"] == "text/plain" and part["partId"] == "1"
    assert len(got["textBody"]) == 1


def test_a_missing_closing_boundary_ends_the_last_part_at_the_end_of_the_message(jmap, core):
    """RFC 2046 §5.1.1 best effort: with no close-delimiter the last part runs to the end."""
    data = crlf(HEAD + multipart("b", "Content-Type: text/plain\n\none",
                                 "Content-Type: text/plain\n\ntwo", close=False))
    got = email(jmap, core, data, "bodyStructure", "bodyValues")
    assert [p["partId"] for p in got["bodyStructure"]["subParts"]] == ["1", "2"]
    assert got["bodyValues"] == {"1": value("one"), "2": value("two\n")}


def test_a_boundary_that_never_appears_leaves_the_body_as_one_text_part(jmap, core):
    """RFC 2046 §5.1 best effort: a multipart whose boundary never occurs is shown as a
    single text/plain leaf holding the whole body."""
    data = crlf(HEAD + 'Content-Type: multipart/mixed; boundary="nowhere"\n\n'
                       "--elsewhere\nContent-Type: text/html\n\nnot a part\n")
    got = email(jmap, core, data, "bodyStructure", "bodyValues", "textBody")
    root = got["bodyStructure"]
    assert (root["partId"], root["type"], root["subParts"], root["charset"]) == (
        "1", "text/plain", None, "us-ascii")
    assert got["bodyValues"] == {
        "1": value("--elsewhere\nContent-Type: text/html\n\nnot a part\n")}
    assert [p["partId"] for p in got["textBody"]] == ["1"]


def test_a_multipart_without_a_boundary_parameter_is_one_text_part(jmap, core):
    """RFC 2046 §5.1.1 (boundary is required) best effort: without it the body is one
    text/plain leaf."""
    data = crlf(HEAD + "Content-Type: multipart/alternative\n\n--x\n\nsome text\n--x--\n")
    got = email(jmap, core, data, "bodyStructure", "bodyValues", "htmlBody")
    root = got["bodyStructure"]
    assert (root["partId"], root["type"], root["subParts"]) == ("1", "text/plain", None)
    assert got["bodyValues"]["1"]["value"] == "--x\n\nsome text\n--x--\n"
    assert [p["partId"] for p in got["htmlBody"]] == ["1"]


def test_the_preamble_and_epilogue_are_not_parts(jmap, core):
    """RFC 2046 §5.1.1: text before the first and after the last delimiter is ignored."""
    data = crlf(HEAD + 'Content-Type: multipart/mixed; boundary="b"\n\n'
                       "This is the preamble.\n--b\nContent-Type: text/plain\n\nthe part\n"
                       "--b--\nThis is the epilogue.\n")
    got = email(jmap, core, data, "bodyStructure", "bodyValues")
    assert [p["partId"] for p in got["bodyStructure"]["subParts"]] == ["1"]
    assert got["bodyValues"] == {"1": value("the part")}


def test_an_empty_multipart_part_is_an_empty_text_leaf(jmap, core):
    """RFC 2046 §5.1.1: a body part with neither header nor content is text/plain, size 0."""
    data = crlf(HEAD + 'Content-Type: multipart/mixed; boundary="b"\n\n--b\n\n--b--\n')
    part = email(jmap, core, data, "bodyStructure")["bodyStructure"]["subParts"][0]
    assert (part["type"], part["charset"], part["size"], part["partId"]) == (
        "text/plain", "us-ascii", 0, "1")


# -- RFC 2045 §5.2 Content-Type defaults, §4.1.4 type and charset -------------------------------

def test_a_text_part_without_charset_is_us_ascii(jmap, core):
    """§4.1.4: text/* with no charset parameter has the implicit charset "us-ascii"."""
    data = crlf(HEAD + multipart("b", "Content-Type: text/plain\n\nplain",
                                 "Content-Type: text/html\n\n<b>html</b>",
                                 "Content-Type: application/pdf\n\n%PDF"))
    parts = email(jmap, core, data, "bodyStructure")["bodyStructure"]["subParts"]
    assert [(p["type"], p["charset"]) for p in parts] == [
        ("text/plain", "us-ascii"), ("text/html", "us-ascii"), ("application/pdf", None)]


def test_a_message_without_content_type_is_us_ascii_text_plain(jmap, core):
    """§4.1.4 / RFC 2045 §5.2: no Content-Type at all means text/plain; charset=us-ascii."""
    got = email(jmap, core, crlf("From: a@x.test\nSubject: s\n\nhello\n"), "bodyStructure")
    root = got["bodyStructure"]
    assert (root["type"], root["charset"], root["name"], root["disposition"]) == (
        "text/plain", "us-ascii", None, None)


def test_eight_bit_text_labelled_us_ascii_is_read_as_utf8(jmap, core):
    """§4.1.4 bodyValues: the server MAY use heuristics when the charset is wrong; jmapd
    reads 8-bit "us-ascii" text as UTF-8."""
    got = email(jmap, core, crlf(HEAD + "Content-Type: text/plain\n\ncafé"),
                "bodyValues", "textBody")
    assert got["textBody"][0]["charset"] == "us-ascii"
    assert got["bodyValues"]["1"]["value"] == "café"


def test_an_unknown_charset_is_kept_and_decoded_as_utf8_with_a_problem(jmap, core):
    """§4.1.4: charset is the parameter as given (x-unknown); the value is decoded as best
    the server can, and isEncodingProblem is true."""
    got = email(jmap, core, crlf(HEAD + "Content-Type: text/plain; charset=x-unknown\n\n"
                                        "naïve"), "bodyValues", "textBody")
    assert got["textBody"][0]["charset"] == "x-unknown"
    assert got["bodyValues"] == {"1": value("naïve", problem=True)}


def test_a_quoted_charset_parameter_is_unquoted(jmap, core):
    """§4.1.4 / RFC 2045 §5.1: charset="UTF-8" (quoted) is the value UTF-8."""
    got = email(jmap, core, crlf(HEAD + 'Content-Type: text/plain; charset="UTF-8"\n\nÅ'),
                "bodyValues", "textBody")
    assert got["textBody"][0]["charset"] == "UTF-8"
    assert got["bodyValues"] == {"1": value("Å")}


def test_utf8_content_labelled_latin1_decodes_as_latin1(jmap, core):
    """§4.1.4: the value is decoded in the declared charset when it is known: UTF-8 "é"
    read as ISO-8859-1 is "Ã©" (every octet is valid Latin-1, so no problem)."""
    got = email(jmap, core, crlf(HEAD + "Content-Type: text/plain; charset=iso-8859-1\n\n"
                                        "café"), "bodyValues", "textBody")
    assert got["textBody"][0]["charset"] == "iso-8859-1"
    assert got["bodyValues"] == {"1": value("cafÃ©")}


def test_latin1_content_labelled_utf8_becomes_u_fffd_with_a_problem(jmap, core):
    """§4.1.4: an octet invalid in the declared UTF-8 is U+FFFD and isEncodingProblem."""
    got = email(jmap, core, crlf(HEAD.encode() + b"Content-Type: text/plain; charset=utf-8\n\n"
                                                 b"caf\xe9 cr\xe8me"), "bodyValues")
    assert got["bodyValues"] == {"1": value("caf\ufffd cr\ufffdme", problem=True)}


def test_latin1_content_labelled_latin1_decodes(jmap, core):
    """§4.1.4: a correctly labelled legacy charset decodes without a problem."""
    got = email(jmap, core, crlf(HEAD.encode() + b"Content-Type: text/plain; charset=ISO-8859-1"
                                                 b"\n\ncaf\xe9"), "bodyValues")
    assert got["bodyValues"] == {"1": value("café")}


@pytest.mark.parametrize("content_type", ["text", "text/", "/plain", "garbage", "text/plain/x"])
def test_a_content_type_without_a_valid_subtype_is_text_plain(jmap, core, content_type):
    """§4.1.4 / RFC 2045 §5.2: a syntactically invalid Content-Type defaults to
    text/plain; charset=us-ascii."""
    got = email(jmap, core, crlf(HEAD + f"Content-Type: {content_type}; charset=utf-8\n\nbody"),
                "bodyStructure", "textBody")
    root = got["bodyStructure"]
    assert (root["type"], root["charset"], root["partId"]) == ("text/plain", "us-ascii", "1")
    assert [p["partId"] for p in got["textBody"]] == ["1"]


def test_the_media_type_is_lower_cased_and_stripped_of_cfws(jmap, core):
    """§4.1.4: type is the Content-Type value with CFWS removed and parameters stripped."""
    got = email(jmap, core, crlf(HEAD + "Content-Type: Text/HTML (the html) ; charset=utf-8\n\n"
                                        "<i>x</i>"), "bodyStructure")
    assert got["bodyStructure"]["type"] == "text/html"
    assert got["bodyStructure"]["charset"] == "utf-8"


# -- RFC 2046 §5.2.1 message/rfc822 and §5.1.5 multipart/digest --------------------------------

def test_an_attached_message_is_a_leaf_without_sub_parts(jmap, core):
    """§4.1.4: bodyStructure does not recurse into message/rfc822; the attached message is
    one attachment whose blob is the whole inner message."""
    inner = "From: inner@x.test\nSubject: inner\nContent-Type: multipart/mixed; boundary=i\n\n" \
            "--i\nContent-Type: text/plain\n\ninner text\n--i--"
    data = crlf(HEAD + multipart("o", "Content-Type: text/plain\n\nsee attached",
                                 f"Content-Type: message/rfc822\n\n{inner}"))
    got = email(jmap, core, data, "bodyStructure", "attachments", "hasAttachment")
    attached = got["bodyStructure"]["subParts"][1]
    assert (attached["type"], attached["partId"], attached["subParts"], attached["charset"]) == (
        "message/rfc822", "2", None, None)
    assert [p["partId"] for p in got["attachments"]] == ["2"]
    assert got["hasAttachment"] is True
    assert download(core, attached["blobId"]) == crlf(inner)
    assert attached["size"] == len(crlf(inner))


def test_the_parts_of_a_digest_default_to_message_rfc822(jmap, core):
    """§4.1.4 / RFC 2046 §5.1.5: in multipart/digest a part with no Content-Type is
    message/rfc822; an explicit type is kept."""
    data = crlf(HEAD + multipart("d", "\nFrom: one@x.test\nSubject: one\n\nfirst",
                                 "\nFrom: two@x.test\nSubject: two\n\nsecond",
                                 "Content-Type: text/plain\n\nan explicit text part",
                                 subtype="digest"))
    got = email(jmap, core, data, "bodyStructure", "attachments", "textBody")
    parts = got["bodyStructure"]["subParts"]
    assert got["bodyStructure"]["type"] == "multipart/digest"
    assert [(p["partId"], p["type"], p["charset"]) for p in parts] == [
        ("1", "message/rfc822", None), ("2", "message/rfc822", None),
        ("3", "text/plain", "us-ascii")]
    assert [p["partId"] for p in got["attachments"]] == ["1", "2"]
    assert download(core, parts[0]["blobId"]) == b"From: one@x.test\r\nSubject: one\r\n\r\nfirst"


def test_a_nested_multipart_inside_a_digest_defaults_back_to_text_plain(jmap, core):
    """RFC 2046 §5.1.5: the message/rfc822 default applies only to direct digest children."""
    inner = multipart("m", "\nno header here").rstrip("\n")
    data = crlf(HEAD + multipart("d", inner, subtype="digest"))
    got = email(jmap, core, data, "bodyStructure")
    leaf = got["bodyStructure"]["subParts"][0]["subParts"][0]
    assert (leaf["type"], leaf["charset"]) == ("text/plain", "us-ascii")


# -- §4.1.2.1 raw header octets ----------------------------------------------------------------

def test_raw_utf8_headers_are_read_as_utf8(jmap, core):
    """§4.1.2.1 (RFC 6532): 8-bit UTF-8 header octets are text as they are."""
    data = crlf("From: Jürgen Groß <jg@x.test>\nSubject: Ünïcödé ✓\n\nbody")
    got = email(jmap, core, data, "from", "subject", "header:Subject")
    assert got["from"] == [{"name": "Jürgen Groß", "email": "jg@x.test"}]
    assert got["subject"] == "Ünïcödé ✓"
    assert got["header:Subject"] == " Ünïcödé ✓"


def test_invalid_utf8_in_headers_becomes_the_replacement_character(jmap, core):
    """§4.1.2.1: an octet run violating UTF-8 is replaced with U+FFFD in every form."""
    data = crlf(b"From: Ren\xe9 <rene@x.test>\nSubject: caf\xe9 \xff\xfe ok\n\nbody")
    got = email(jmap, core, data, "from", "subject", "header:Subject", "headers")
    assert got["subject"] == "caf\ufffd \ufffd\ufffd ok"
    assert got["header:Subject"] == " caf\ufffd \ufffd\ufffd ok"
    assert got["from"] == [{"name": "Ren\ufffd", "email": "rene@x.test"}]
    assert got["headers"][0] == {"name": "From", "value": " Ren\ufffd <rene@x.test>"}


def test_nul_octets_in_headers_are_dropped(jmap, core):
    """§4.1.2.1: any NUL octet MUST be dropped from the header value."""
    data = crlf(b"From: a@x.test\nSubject: N\x00U\x00L\nX-Nul: \x00\x00\n\nbody")
    got = email(jmap, core, data, "subject", "header:Subject", "header:X-Nul")
    assert got == {"id": got["id"], "subject": "NUL", "header:Subject": " NUL",
                   "header:X-Nul": " "}


def test_a_header_line_without_a_colon_is_skipped(jmap, core):
    """RFC 5322 §2.2 best effort: a line with no colon in the header is not a field; the
    fields around it survive."""
    data = crlf("From: a@x.test\nthis line is junk\nSubject: kept\n\nbody")
    got = email(jmap, core, data, "headers", "subject")
    assert [h["name"] for h in got["headers"]] == ["From", "Subject"]
    assert got["subject"] == "kept"


def test_white_space_before_the_colon_is_not_part_of_the_name(jmap, core):
    """RFC 5322 §4.5.3 (obs-optional): "Subject :" names the Subject field."""
    got = email(jmap, core, crlf("From: a@x.test\nSubject  : spaced\n\nbody"), "subject")
    assert got["subject"] == "spaced"


def test_an_empty_header_value_is_an_empty_string(jmap, core):
    """§4.1.2.1/§4.1.2.2: "Subject:" has raw value "" and text value ""."""
    got = email(jmap, core, crlf("From: a@x.test\nSubject:\n\nbody"), "subject",
                "header:Subject")
    assert (got["subject"], got["header:Subject"]) == ("", "")


# -- empty and header-only messages ------------------------------------------------------------

def test_a_message_with_an_empty_body_has_one_empty_text_part(jmap, core):
    """§4.1.4: an empty body is still a text/plain part, of size 0, with an empty value and
    an empty preview."""
    data = crlf("From: a@x.test\nSubject: empty\n\n")
    got = email(jmap, core, data, "bodyStructure", "textBody", "bodyValues", "preview",
                "hasAttachment", "size")
    assert got["size"] == len(data)
    assert (got["bodyStructure"]["size"], got["bodyStructure"]["type"]) == (0, "text/plain")
    assert got["bodyValues"] == {"1": value("")}
    assert (got["preview"], got["hasAttachment"]) == ("", False)


def test_a_header_only_message_without_a_blank_line_imports(jmap, core):
    """§4.8 best effort: a message that ends after its header (no blank line) has its
    fields and an empty body."""
    data = crlf("From: a@x.test\nSubject: header only\n")
    got = email(jmap, core, data, "subject", "from", "bodyStructure", "bodyValues", "size")
    assert got["subject"] == "header only"
    assert got["from"] == [{"name": None, "email": "a@x.test"}]
    assert got["bodyStructure"]["size"] == 0
    assert got["bodyValues"] == {"1": value("")}
    assert got["size"] == 38


def test_a_header_only_message_without_a_final_line_end_imports(jmap, core):
    """§4.8 best effort: the last field may end at the end of the message, not at CRLF."""
    got = email(jmap, core, b"From: a@x.test\r\nSubject: no newline", "subject", "bodyValues")
    assert got["subject"] == "no newline"
    assert got["bodyValues"] == {"1": value("")}


# -- RFC 2045 §6.7 quoted-printable, §6.8 base64 -----------------------------------------------

def test_base64_ignores_characters_outside_the_alphabet(jmap, core):
    """§4.1.4 / RFC 2045 §6.8: characters outside the base64 alphabet are ignored."""
    encoded = "SGVs!!bG8g*V29y\n  bGQh\n#"  # "Hello World!" with junk, spaces and breaks
    data = crlf(HEAD + f"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n{encoded}")
    got = email(jmap, core, data, "bodyValues", "bodyStructure")
    assert got["bodyValues"] == {"1": value("Hello World!")}
    assert got["bodyStructure"]["size"] == 12
    assert download(core, got["bodyStructure"]["blobId"]) == b"Hello World!"


def test_transfer_encoding_names_are_case_insensitive(jmap, core):
    """RFC 2045 §6.1: "BASE64" is base64 ("w6lsw6h2" is the 6 octets of "élèv")."""
    data = crlf(HEAD + "Content-Type: text/plain; charset=utf-8\n"
                       "Content-Transfer-Encoding: BASE64\n\nw6lsw6h2")
    got = email(jmap, core, data, "bodyStructure", "bodyValues")
    assert got["bodyStructure"]["size"] == 6
    assert got["bodyValues"] == {"1": value("élèv")}


def test_padded_base64_with_junk_decodes_every_octet(jmap, core):
    """RFC 2045 §6.8: "w6lsw6h2ZQ==" (with junk between) is the 7 octets of "élève"."""
    data = crlf(HEAD + "Content-Type: text/plain; charset=utf-8\n"
                       "Content-Transfer-Encoding: base64\n\nw6ls!w6h2\nZQ==")
    got = email(jmap, core, data, "bodyValues", "bodyStructure")
    assert got["bodyValues"] == {"1": value("élève")}
    assert got["bodyStructure"]["size"] == 7


def test_quoted_printable_soft_line_breaks_join_lines(jmap, core):
    """RFC 2045 §6.7: "=" at the end of a line is a soft break; =XX is an octet."""
    data = crlf(HEAD + "Content-Type: text/plain; charset=utf-8\n"
                       "Content-Transfer-Encoding: quoted-printable\n\n"
                       "A long line that was=\n wrapped, caf=C3=A9 and =3D sign.=\n\n"
                       "Hard break above.")
    got = email(jmap, core, data, "bodyValues", "bodyStructure")
    assert got["bodyValues"] == {
        "1": value("A long line that was wrapped, café and = sign.\nHard break above.")}
    assert got["bodyStructure"]["size"] == len(
        "A long line that was wrapped, café and = sign.\r\nHard break above.".encode())


def test_quoted_printable_keeps_an_invalid_escape_literally(jmap, core):
    """RFC 2045 §6.7 (note 1): a "=" not followed by two hex digits is kept as is."""
    data = crlf(HEAD + "Content-Transfer-Encoding: quoted-printable\n\n50=ZZ off =4")
    got = email(jmap, core, data, "bodyValues")
    assert got["bodyValues"] == {"1": value("50=ZZ off =4")}


# -- RFC 2231 / RFC 2047 names ------------------------------------------------------------------

def attachment_name(jmap, core, header_lines: str) -> str | None:
    data = crlf(HEAD + multipart("b", "Content-Type: text/plain\n\nbody",
                                 f"{header_lines}\n\ncontent"))
    return email(jmap, core, data, "attachments")["attachments"][0]["name"]


def test_rfc2231_encoded_continued_filename_is_joined_and_decoded(jmap, core):
    """§4.1.4 name: filename*0*=UTF-8''...; filename*1*=... is joined and decoded."""
    assert attachment_name(jmap, core, "Content-Type: application/octet-stream\n"
                           "Content-Disposition: attachment;\n"
                           " filename*0*=UTF-8''%E2%82%AC%20exchange;\n"
                           " filename*1*=%20rates.txt") == "€ exchange rates.txt"


def test_rfc2231_plain_continuations_are_joined(jmap, core):
    """§4.1.4 name / RFC 2231 §3: filename*0="..."; filename*1="..." are concatenated."""
    assert attachment_name(jmap, core, "Content-Type: application/pdf\n"
                           'Content-Disposition: attachment; filename*0="a very long ";\n'
                           ' filename*1="file name.pdf"') == "a very long file name.pdf"


def test_rfc2231_continuations_are_joined_in_numeric_order(jmap, core):
    """RFC 2231 §3: segments are joined by their number, not their order in the field."""
    assert attachment_name(jmap, core, "Content-Type: application/pdf\n"
                           'Content-Disposition: attachment; filename*1="second.pdf";\n'
                           ' filename*0="first-"') == "first-second.pdf"


def test_rfc2231_single_encoded_filename_with_language_is_decoded(jmap, core):
    """§4.1.4 name / RFC 2231 §4: filename*=charset'lang'percent-octets."""
    assert attachment_name(jmap, core, "Content-Type: text/csv\n"
                           "Content-Disposition: attachment;"
                           " filename*=iso-8859-1'en'%A3%20rates.csv") == "£ rates.csv"


def test_the_filename_parameter_wins_over_the_content_type_name(jmap, core):
    """§4.1.4 name: the Content-Disposition filename, else the Content-Type name."""
    assert attachment_name(jmap, core, "Content-Type: application/pdf; name=ignored.pdf\n"
                           "Content-Disposition: attachment; filename=used.pdf") == "used.pdf"


def test_an_rfc2047_encoded_content_type_name_is_decoded(jmap, core):
    """§4.1.4 name: the Content-Type name parameter is decoded per RFC 2047."""
    assert attachment_name(jmap, core, "Content-Type: application/pdf;\n"
                           ' name="=?UTF-8?Q?r=C3=A9sum=C3=A9.pdf?="') == "résumé.pdf"


def test_rfc2231_a_character_split_across_segments_is_decoded_whole(jmap, core):
    """RFC 2231 §4.1: the octets of all encoded segments are joined before charset decoding;
    "caf%C3" + "%A9.txt" is "café.txt"."""
    assert attachment_name(jmap, core, "Content-Type: text/plain\n"
                           "Content-Disposition: attachment; filename*0*=UTF-8''caf%C3;\n"
                           " filename*1*=%A9.txt") == "café.txt"


def test_rfc2231_continuation_segments_use_the_first_segments_charset(jmap, core):
    """RFC 2231 §4.1: the charset of segment 0 applies to every encoded segment; "%E9" in
    ISO-8859-1 is "é"."""
    assert attachment_name(jmap, core, "Content-Type: text/plain\n"
                           "Content-Disposition: attachment; filename*0*=iso-8859-1''caf;\n"
                           " filename*1*=%E9.txt") == "café.txt"


# -- a large attachment ------------------------------------------------------------------------

def test_a_twenty_megabyte_attachment_imports_with_its_exact_size(jmap, core):
    """§4.1.4 size / §4.8: a 20 MiB base64 attachment imports; its part size is the decoded
    octet count and its blob is downloadable."""
    # 20 MiB less 2 octets: a multiple of 3, so the base64 needs no padding (see the xfail)
    content = (bytes(range(256)) * (20 * 1024 * 1024 // 256))[:20 * 1024 * 1024 - 2]
    encoded = base64.encodebytes(content).replace(b"\n", b"\r\n")
    data = crlf(HEAD + 'Content-Type: multipart/mixed; boundary="big"\n\n--big\n'
                       "Content-Type: text/plain\n\nThe data is attached.\n--big\n"
                       "Content-Type: application/octet-stream; name=\"big.bin\"\n"
                       "Content-Disposition: attachment\nContent-Transfer-Encoding: base64\n\n"
                ) + encoded + b"\r\n--big--\r\n"
    email_id = import_email(jmap, core, data)
    got = fetch(jmap, email_id, "bodyStructure", "size")
    big = got["bodyStructure"]["subParts"][1]
    assert got["size"] == len(data)
    assert (big["partId"], big["name"], big["type"], big["size"]) == (
        "2", "big.bin", "application/octet-stream", len(content))
    assert len(content) == 20_971_518


# -- §4.1.2.3 malformed addresses ---------------------------------------------------------------

def addresses(jmap, core, raw: str) -> list:
    return email(jmap, core, crlf(f"From: a@x.test\nTo: {raw}\nSubject: s\n\nbody"), "to")["to"]


def test_an_address_missing_its_closing_angle_bracket_still_parses(jmap, core):
    """§4.1.2.3 best effort: "John <john@x.test" is John at john@x.test."""
    assert addresses(jmap, core, "John <john@x.test") == [{"name": "John", "email": "john@x.test"}]


def test_an_address_without_an_at_sign_is_kept(jmap, core):
    """§4.1.2.3: email MAY be something that is not an addr-spec, e.g. without @."""
    assert addresses(jmap, core, "postmaster, Boss <boss>") == [
        {"name": None, "email": "postmaster"}, {"name": "Boss", "email": "boss"}]


def test_an_unbalanced_quote_does_not_lose_the_address_text(jmap, core):
    """§4.1.2.3 best effort: an unterminated quoted name yields one address holding the
    rest of the field; nothing crashes."""
    found = addresses(jmap, core, '"John <john@x.test>')
    assert len(found) == 1
    assert "john@x.test" in found[0]["email"]


def test_empty_list_elements_and_stray_separators_are_skipped(jmap, core):
    """§4.1.2.3 best effort (RFC 5322 obs-addr-list): empty elements between commas give
    no address."""
    assert addresses(jmap, core, ", a@x.test,, ,b@x.test,") == [
        {"name": None, "email": "a@x.test"}, {"name": None, "email": "b@x.test"}]


def test_an_unterminated_group_still_yields_its_members(jmap, core):
    """§4.1.2.4 best effort: a group with no closing ";" keeps its members."""
    got = email(jmap, core, crlf("From: a@x.test\nTo: Team: one@x.test, two@x.test\n\nbody"),
                "to", "header:To:asGroupedAddresses")
    assert got["to"] == [{"name": None, "email": "one@x.test"},
                         {"name": None, "email": "two@x.test"}]
    assert got["header:To:asGroupedAddresses"] == [{"name": "Team", "addresses": got["to"]}]


def test_an_unterminated_comment_does_not_crash(jmap, core):
    """§4.1.2.3 best effort: "a@x.test (no end" gives the address, the comment as name."""
    assert addresses(jmap, core, "a@x.test (no end") == [{"name": "no end", "email": "a@x.test"}]


# -- LF-only line endings ----------------------------------------------------------------------

def test_a_message_with_lf_only_line_endings_parses(jmap, core):
    """§4.8 best effort: bare-LF messages (common from Unix tools) parse like CRLF ones:
    folded headers, multipart boundaries and body values."""
    data = ("From: Lf User <lf@x.test>\nSubject: bare\n line feeds\n"
            'Content-Type: multipart/alternative; boundary="lf"\n\n'
            "--lf\nContent-Type: text/plain; charset=utf-8\n\nline 1\nline 2\n"
            "--lf\nContent-Type: text/html\n\n<p>one</p>\n--lf--\n").encode()
    assert b"\r" not in data
    got = email(jmap, core, data, "subject", "header:Subject", "from", "bodyStructure",
                "textBody", "htmlBody", "bodyValues", "size")
    assert got["subject"] == "bare line feeds"
    assert got["header:Subject"] == " bare\n line feeds"
    assert got["from"] == [{"name": "Lf User", "email": "lf@x.test"}]
    assert [(p["partId"], p["type"]) for p in got["bodyStructure"]["subParts"]] == [
        ("1", "text/plain"), ("2", "text/html")]
    assert [p["partId"] for p in got["textBody"]] == ["1"]
    assert [p["partId"] for p in got["htmlBody"]] == ["2"]
    assert got["bodyValues"] == {"1": value("line 1\nline 2"), "2": value("<p>one</p>")}
    assert got["size"] == len(data)
