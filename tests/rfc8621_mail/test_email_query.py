"""RFC 8621 §4.4 Email/query (§4.4.1 filtering, §4.4.2 sorting, §4.4.3 thread collapsing)
and §4.5 Email/queryChanges, over the standard /query and /queryChanges of RFC 8620
§5.5 and §5.6.

The corpus (fixture `mail`): eight messages in three Mailboxes made here (W, H, L), so
no test depends on the demo seed's own mail. Every query is restricted to W, H or L.

    key  received (UTC)     size  mailboxes  keywords             thread  from / to
    q1   2026-01-02 09:00    800  H          $seen                Q       Bob Brown / Alice Adams
    q2   2026-01-03 09:00    900  H          $seen $answered      Q       Alice Adams / Bob Brown
    s1   2026-01-04 09:00   2000  L          -                    S1      Zed News / (no To)
    p1   2026-01-05 10:00   1200  W          $seen                P       Carol Chen / Dave Diaz
    p2   2026-01-06 08:00   1500  W H        $seen $flagged       P       Dave Diaz / Carol Chen
    p3   2026-01-07 12:00   3000  W          -                    P       carol@ / Erin Evans, Dave
    q3   2026-01-08 09:00   1000  H          $seen                Q       bob@ / alice@
    s2   2026-01-09 09:00   1100  L W        $seen $forwarded     S2      yara young / Accounts

Thread P is "Apollo launch plan" (p2 "Re:", p3 "RE:"), Q is "Garden party"; s1 is an
HTML-only newsletter with a List-Id header, p3 has a PDF attachment, s2's subject is
"Invoice & receipt <2026>".
"""

import pytest

import jmapd
from conftest import MailCorpus, corpus_fixtures

A = "alice"
BY_RECEIVED = ["q1", "q2", "s1", "p1", "p2", "p3", "q3", "s2"]


def message(headers, body, size, content_type="text/plain; charset=utf-8"):
    """Raw RFC 5322 octets padded (with an X-Pad header) to exactly `size` octets."""
    lines = [f"{name}: {value}" for name, value in headers]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    head = "\r\n".join(lines)
    pad = size - len((head + "\r\nX-Pad: \r\n\r\n" + body).encode())
    assert pad >= 0, f"message needs {-pad} more octets than {size}"
    raw = (head + "\r\nX-Pad: " + "." * pad + "\r\n\r\n" + body).encode()
    assert len(raw) == size
    return raw


ATTACHMENT_BODY = (
    "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    "See the attached schedule.\r\n"
    "--b1\r\nContent-Type: application/pdf\r\n"
    "Content-Disposition: attachment; filename=\"schedule.pdf\"\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n"
    "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K\r\n"
    "--b1--\r\n")

HTML_BODY = ("<html><head><style>.hidden { color: red }</style><title>Shop</title></head>"
             "<body><p>Big <b>sale</b> on telescopes</p><div class=\"promo\">today only</div>"
             "</body></html>")

CORPUS = [
    # key, headers, body, size, content type, mailboxes, keywords, receivedAt
    ("q1", [("From", "Bob Brown <bob@example.com>"), ("To", "Alice Adams <alice@example.com>"),
            ("Subject", "Garden party"), ("Date", "Fri, 02 Jan 2026 08:00:00 +0000"),
            ("Message-ID", "<q1@example.com>")],
     "Bring lemonade and a folding chair.\r\n", 800, None, "H", ["$seen"],
     "2026-01-02T09:00:00Z"),
    ("q2", [("From", "Alice Adams <alice@example.com>"), ("To", "Bob Brown <bob@example.com>"),
            ("Subject", "Re: Garden party"), ("Date", "Sat, 03 Jan 2026 08:00:00 +0000"),
            ("Message-ID", "<q2@example.com>"), ("In-Reply-To", "<q1@example.com>"),
            ("References", "<q1@example.com>")],
     "I will bring the chairs.\r\n", 900, None, "H", ["$seen", "$answered"],
     "2026-01-03T09:00:00Z"),
    ("s1", [("From", "Zed News <news@lists.example.com>"), ("Subject", "Weekly newsletter"),
            ("Date", "Thu, 01 Jan 2026 10:00:00 +0000"), ("Message-ID", "<s1@example.com>"),
            ("List-Id", "Zed News <news.lists.example.com>")],
     HTML_BODY, 2000, "text/html; charset=utf-8", "L", [], "2026-01-04T09:00:00Z"),
    ("p1", [("From", "Carol Chen <carol@example.com>"), ("To", "Dave Diaz <dave@example.org>"),
            ("Cc", "Erin Evans <erin@example.net>"), ("Subject", "Apollo launch plan"),
            ("Date", "Mon, 05 Jan 2026 09:00:00 +0000"), ("Message-ID", "<p1@example.com>")],
     "The rocket needs fuel.\r\nThe quick brown fox jumps over the lazy dog.\r\n", 1200, None,
     "W", ["$seen"], "2026-01-05T10:00:00Z"),
    ("p2", [("From", "Dave Diaz <dave@example.org>"), ("To", "Carol Chen <carol@example.com>"),
            ("Subject", "Re: Apollo launch plan"), ("Date", "Tue, 06 Jan 2026 09:30:00 +0200"),
            ("Message-ID", "<p2@example.com>"), ("In-Reply-To", "<p1@example.com>"),
            ("References", "<p1@example.com>")],
     "Fuel is ordered. Caf\u00e9 au lait after the meeting?\r\n", 1500, None, "WH",
     ["$seen", "$flagged"], "2026-01-06T08:00:00Z"),
    ("p3", [("From", "carol@example.com"),
            ("To", "Erin Evans <erin@example.net>, Dave Diaz <dave@example.org>"),
            ("Bcc", "Frank Fox <frank@example.com>"), ("Subject", "RE: Apollo launch plan"),
            ("Date", "Wed, 07 Jan 2026 11:00:00 +0000"), ("Message-ID", "<p3@example.com>"),
            ("In-Reply-To", "<p2@example.com>"),
            ("References", "<p1@example.com> <p2@example.com>"), ("MIME-Version", "1.0")],
     ATTACHMENT_BODY, 3000, 'multipart/mixed; boundary="b1"', "W", [], "2026-01-07T12:00:00Z"),
    ("q3", [("From", "bob@example.com"), ("To", "alice@example.com"),
            ("Cc", "Carol Chen <carol@example.com>"), ("Subject", "Re: Garden party"),
            ("Date", "Tue, 06 Jan 2026 12:00:00 +0000"), ("Message-ID", "<q3@example.com>"),
            ("In-Reply-To", "<q2@example.com>"),
            ("References", "<q1@example.com> <q2@example.com>")],
     "Thanks for coming, everyone.\r\n", 1000, None, "H", ["$seen"], "2026-01-08T09:00:00Z"),
    ("s2", [("From", "yara young <yara@shop.example>"),
            ("To", "Accounts <accounts@example.com>"),
            ("Subject", "Invoice & receipt <2026>"), ("Date", "Sat, 20 Dec 2025 10:00:00 +0000"),
            ("Message-ID", "<s2@example.com>")],
     "Total due: 42 euros. Payment by transfer.\r\n", 1100, None, "LW",
     ["$seen", "$forwarded"], "2026-01-09T09:00:00Z"),
]


class Mail(MailCorpus):
    """The imported corpus: .ids {key: Email id}, .keys {Email id: key}, .box {W/H/L: id}."""

    def build(self):
        created = self.jmap.call("Mailbox/set", {"accountId": A, "create": {
            name: {"name": f"Query {name}"} for name in "WHL"}})["created"]
        self.box = {name: created[name]["id"] for name in "WHL"}
        for key, headers, body, size, content_type, boxes, keywords, received in CORPUS:
            raw = message(headers, body, size, content_type or "text/plain; charset=utf-8")
            self.add(key, raw, boxes, keywords, received)
        return self

    RECEIVED = "2026-01-10T09:00:00Z"

    def new_box(self, name):
        """Another Mailbox of this test's own (its id is also kept as .box[name])."""
        created = self.jmap.call("Mailbox/set", {"accountId": A, "create": {
            "n": {"name": f"Query {name}"}}})["created"]
        self.box[name] = created["n"]["id"]
        return self.box[name]

    def mine(self, filter_=None):
        """The filter, restricted to this corpus's three Mailboxes."""
        mine = {"operator": "OR", "conditions": [{"inMailbox": b} for b in self.box.values()]}
        return mine if filter_ is None else {"operator": "AND", "conditions": [mine, filter_]}

    def query_args(self, filter_=None, sort=None, **more):
        return {"accountId": A, "filter": self.mine(filter_),
                "sort": [{"property": "receivedAt"}] if sort is None else sort, **more}

    def query(self, filter_=None, sort=None, **more):
        """Email/query over the corpus, answered as corpus keys."""
        result = self.jmap.call("Email/query", self.query_args(filter_, sort, **more))
        return [self.keys[i] for i in result["ids"]]

    def result(self, filter_=None, sort=None, **more):
        return self.jmap.call("Email/query", self.query_args(filter_, sort, **more))

    def error(self, filter_=None, sort=None, **more):
        return self.jmap.error("Email/query", self.query_args(filter_, sort, **more))


corpus, mail = corpus_fixtures(Mail)


# -- §4.4.1 filter conditions, one at a time --

def test_the_corpus_sorted_by_received_at_is_the_documented_order(mail):
    """§4.4.1 inMailbox: an Email must be in the Mailbox; an OR of three gives all eight."""
    assert mail.query() == BY_RECEIVED


@pytest.mark.parametrize("box, expected", [
    ("W", ["p1", "p2", "p3", "s2"]),
    ("H", ["q1", "q2", "p2", "q3"]),
    ("L", ["s1", "s2"]),
])
def test_in_mailbox_matches_the_emails_in_that_mailbox(mail, box, expected):
    """§4.4.1 inMailbox: an Email must be in this Mailbox to match."""
    result = mail.jmap.call("Email/query", {"accountId": A, "filter": {"inMailbox": mail.box[box]},
                                            "sort": [{"property": "receivedAt"}]})
    assert [mail.keys[i] for i in result["ids"]] == expected


@pytest.mark.parametrize("others, expected", [
    (["L"], ["q1", "q2", "p1", "p2", "p3", "q3", "s2"]),   # s2 is also in W
    (["W", "H"], ["s1", "s2"]),                            # s2 is also in L
    (["W"], ["q1", "q2", "s1", "p2", "q3", "s2"]),         # p2 is also in H
    (["W", "H", "L"], []),
])
def test_in_mailbox_other_than_needs_one_mailbox_outside_the_list(mail, others, expected):
    """§4.4.1 inMailboxOtherThan: an Email must be in at least one Mailbox not in the list."""
    assert mail.query({"inMailboxOtherThan": [mail.box[b] for b in others]}) == expected


def test_before_is_exclusive_of_the_given_date(mail):
    """§4.4.1 before: receivedAt must be before the date; p1 at exactly 10:00 is out."""
    assert mail.query({"before": "2026-01-05T10:00:00Z"}) == ["q1", "q2", "s1"]
    assert mail.query({"before": "2026-01-05T10:00:01Z"}) == ["q1", "q2", "s1", "p1"]


def test_after_is_inclusive_of_the_given_date(mail):
    """§4.4.1 after: receivedAt must be the same as or after the date; p1 is in."""
    assert mail.query({"after": "2026-01-05T10:00:00Z"}) == ["p1", "p2", "p3", "q3", "s2"]
    assert mail.query({"after": "2026-01-05T10:00:01Z"}) == ["p2", "p3", "q3", "s2"]


def test_in_mailbox_other_than_an_empty_list_matches_every_email(mail):
    """§4.4.1 inMailboxOtherThan: every Email is in at least one Mailbox, and none of its
    Mailboxes is in an empty list, so [] matches all."""
    assert mail.query({"inMailboxOtherThan": []}) == BY_RECEIVED


def test_before_compares_fractional_seconds_exactly(mail):
    """§4.4.1 before with a UTCDate with fractional seconds (RFC 8620 §1.4): 10:00:00 is
    before 10:00:00.500."""
    assert mail.query({"before": "2026-01-05T10:00:00.500Z"}) == ["q1", "q2", "s1", "p1"]


def test_after_compares_fractional_seconds_exactly(mail):
    """§4.4.1 after with a UTCDate with fractional seconds (RFC 8620 §1.4): 10:00:00 is not
    the same as or after 10:00:00.500."""
    assert mail.query({"after": "2026-01-05T10:00:00.500Z"}) == ["p2", "p3", "q3", "s2"]


def test_before_and_after_together_make_a_half_open_interval(mail):
    """§4.4.1 after/before: both in one condition must hold: [after, before)."""
    assert mail.query({"after": "2026-01-04T09:00:00Z",
                       "before": "2026-01-07T12:00:00Z"}) == ["s1", "p1", "p2"]


def test_min_size_is_inclusive(mail):
    """§4.4.1 minSize: size must be equal to or greater than the number (p1 is 1200)."""
    assert mail.query({"minSize": 1200}) == ["s1", "p1", "p2", "p3"]


def test_max_size_is_exclusive(mail):
    """§4.4.1 maxSize: size must be less than the number (p1, 1200, is out)."""
    assert mail.query({"maxSize": 1200}) == ["q1", "q2", "q3", "s2"]
    assert mail.query({"minSize": 900, "maxSize": 1101}) == ["q2", "q3", "s2"]


def test_all_in_thread_have_keyword_needs_every_email_of_the_thread(mail):
    """§4.4.1 allInThreadHaveKeyword: all Emails (this one too) in its Thread have it;
    thread P has unseen p3, thread Q is all seen, single s2 is seen, single s1 is not."""
    assert mail.query({"allInThreadHaveKeyword": "$seen"}) == ["q1", "q2", "q3", "s2"]


def test_some_in_thread_have_keyword_matches_the_whole_thread(mail):
    """§4.4.1 someInThreadHaveKeyword: one Email (possibly this one) in the Thread has it."""
    assert mail.query({"someInThreadHaveKeyword": "$flagged"}) == ["p1", "p2", "p3"]
    assert mail.query({"someInThreadHaveKeyword": "$answered"}) == ["q1", "q2", "q3"]


def test_none_in_thread_have_keyword_excludes_the_whole_thread(mail):
    """§4.4.1 noneInThreadHaveKeyword: no Email in the Thread has the keyword."""
    assert mail.query({"noneInThreadHaveKeyword": "$flagged"}) == ["q1", "q2", "s1", "q3", "s2"]
    assert mail.query({"noneInThreadHaveKeyword": "$seen"}) == ["s1"]


def test_has_keyword_matches_only_emails_with_the_keyword(mail):
    """§4.4.1 hasKeyword: this Email must have the keyword."""
    assert mail.query({"hasKeyword": "$seen"}) == ["q1", "q2", "p1", "p2", "q3", "s2"]
    assert mail.query({"hasKeyword": "$flagged"}) == ["p2"]
    assert mail.query({"hasKeyword": "nosuchkeyword"}) == []


def test_keywords_in_filters_are_case_insensitive(mail):
    """§4.1.1: keywords are case-insensitive, so filters match any case."""
    assert mail.query({"hasKeyword": "$FLAGGED"}) == ["p2"]
    assert mail.query({"someInThreadHaveKeyword": "$Flagged"}) == ["p1", "p2", "p3"]


def test_not_keyword_matches_only_emails_without_the_keyword(mail):
    """§4.4.1 notKeyword: this Email must not have the keyword."""
    assert mail.query({"notKeyword": "$seen"}) == ["s1", "p3"]
    assert mail.query({"notKeyword": "nosuchkeyword"}) == BY_RECEIVED


def test_has_attachment_is_compared_with_the_email_property(mail):
    """§4.4.1 hasAttachment: the Email's hasAttachment must be identical to the value."""
    assert mail.query({"hasAttachment": True}) == ["p3"]
    assert mail.query({"hasAttachment": False}) == ["q1", "q2", "s1", "p1", "p2", "q3", "s2"]


@pytest.mark.parametrize("text, expected", [
    ("fuel", ["p1", "p2"]),            # body text
    ("apollo", ["p1", "p2", "p3"]),    # Subject
    ("zed", ["s1"]),                   # From (display name)
    ("accounts", ["s2"]),              # To
    ("erin", ["p1", "p3"]),            # Cc of p1, To of p3
    ("frank", ["p3"]),                 # Bcc
    ("telescopes", ["s1"]),            # an HTML body
    ("schedule", ["p3"]),              # the text part of a multipart/mixed
])
def test_text_looks_in_from_to_cc_bcc_subject_and_body(mail, text, expected):
    """§4.4.1 text: MUST look in From, To, Cc, Bcc and Subject, SHOULD in text/* bodies."""
    assert mail.query({"text": text}) == expected


def test_from_looks_only_in_the_from_header(mail):
    """§4.4.1 from: the text in the From header field (name or address)."""
    assert mail.query({"from": "carol"}) == ["p1", "p3"]   # not q3, where Carol is Cc
    assert mail.query({"from": "carol@example.com"}) == ["p1", "p3"]
    assert mail.query({"from": "chen"}) == ["p1"]


def test_to_looks_only_in_the_to_header(mail):
    """§4.4.1 to: the text in the To header field; p3's second To address counts."""
    assert mail.query({"to": "dave"}) == ["p1", "p3"]
    assert mail.query({"to": "alice"}) == ["q1", "q3"]      # not q2, where Alice is From


def test_cc_looks_only_in_the_cc_header(mail):
    """§4.4.1 cc: the text in the Cc header field (p3 has Erin in To, not Cc)."""
    assert mail.query({"cc": "erin"}) == ["p1"]
    assert mail.query({"cc": "carol"}) == ["q3"]


def test_bcc_looks_only_in_the_bcc_header(mail):
    """§4.4.1 bcc: the text in the Bcc header field."""
    assert mail.query({"bcc": "frank"}) == ["p3"]
    assert mail.query({"bcc": "erin"}) == []


def test_subject_looks_only_in_the_subject(mail):
    """§4.4.1 subject: the text in the Subject header field, not the body."""
    assert mail.query({"subject": "garden"}) == ["q1", "q2", "q3"]
    assert mail.query({"subject": "fuel"}) == []
    assert mail.query({"subject": "receipt"}) == ["s2"]


def test_body_does_not_match_words_only_in_the_subject(mail):
    """§4.4.1 body: the text in a body part; words only in Subject or From do not match."""
    assert mail.query({"body": "fuel"}) == ["p1", "p2"]
    assert mail.query({"body": "apollo"}) == []
    assert mail.query({"body": "garden"}) == []
    assert mail.query({"body": "carol"}) == []


def test_body_of_html_matches_content_but_not_markup(mail):
    """§4.4.1: in text/html, markup (tags, attribute names, CSS in <head>) is ignored."""
    assert mail.query({"body": "sale"}) == ["s1"]
    assert mail.query({"body": "telescopes today"}) == ["s1"]
    assert mail.query({"body": "hidden"}) == []   # a CSS class in <style>
    assert mail.query({"body": "color"}) == []    # a CSS property
    assert mail.query({"body": "promo"}) == []    # an attribute value
    assert mail.query({"body": "div"}) == []      # a tag name


def test_header_with_one_element_matches_presence_of_the_field(mail):
    """§4.4.1 header: with one element, an Email matches if it has that header field."""
    assert mail.query({"header": ["List-Id"]}) == ["s1"]
    assert mail.query({"header": ["list-id"]}) == ["s1"]     # field names are case-insensitive
    assert mail.query({"header": ["Bcc"]}) == ["p3"]
    assert mail.query({"header": ["X-Not-There"]}) == []


def test_header_with_two_elements_looks_for_the_text_in_the_field(mail):
    """§4.4.1 header: the second element is text to look for in the field's value."""
    assert mail.query({"header": ["List-Id", "news.lists.example"]}) == ["s1"]
    assert mail.query({"header": ["Subject", "GARDEN"]}) == ["q1", "q2", "q3"]
    assert mail.query({"header": ["In-Reply-To", "p2@example.com"]}) == ["p3"]
    assert mail.query({"header": ["Subject", "telescopes"]}) == []


ENCODED = message([("From", "=?UTF-8?Q?Jos=C3=A9_Garc=C3=ADa?= <jose@example.com>"),
                   ("Subject", "=?UTF-8?Q?Caf=C3=A9_au_lait?=")], "Milk.\r\n", 400)


def test_subject_and_from_match_decoded_encoded_words(mail):
    """§4.4.1: syntactically correct RFC 2047 encoded words SHOULD be decoded before
    matching: subject "café" and from "garcia" find "=?UTF-8?Q?Caf=C3=A9...?=" (José García)."""
    mail.add("enc", ENCODED, "L")
    assert mail.query({"subject": "caf\u00e9"}) == ["enc"]
    assert mail.query({"from": "Garc\u00eda"}) == ["enc"]
    assert mail.query({"from": "jose"}) == ["enc"]


def test_header_matches_decoded_encoded_words(mail):
    """§4.4.1: encoded words SHOULD be decoded before matching text, the header condition
    included: ["Subject", "café"] finds "=?UTF-8?Q?Caf=C3=A9_au_lait?="."""
    mail.add("enc", ENCODED, "L")
    assert mail.query({"header": ["Subject", "caf\u00e9"]}) == ["enc"]


def test_tokens_outside_a_phrase_must_all_be_present(mail):
    """§4.4.1: white space divides tokens that MUST all be present, in any order."""
    assert mail.query({"body": "fox rocket"}) == ["p1"]
    assert mail.query({"body": "fuel rocket"}) == ["p1"]
    assert mail.query({"body": "fuel lait"}) == ["p2"]
    assert mail.query({"body": "fuel lemonade"}) == []
    assert mail.query({"subject": "plan apollo"}) == ["p1", "p2", "p3"]


def test_double_quotes_make_a_phrase_search(mail):
    """§4.4.1: text in double quotes is a phrase: that exact sequence of words."""
    assert mail.query({"body": '"quick brown fox"'}) == ["p1"]
    assert mail.query({"body": '"brown quick"'}) == []
    assert mail.query({"body": '"quick fox"'}) == []
    assert mail.query({"text": '"launch plan" fuel'}) == ["p1", "p2"]


def test_single_quotes_make_a_phrase_search_too(mail):
    """§4.4.1: text in single (') quotes is also a phrase search."""
    assert mail.query({"body": "'brown fox'"}) == ["p1"]
    assert mail.query({"body": "'fox brown'"}) == []


def test_a_backslash_escapes_a_quote_inside_a_phrase(mail):
    """§4.4.1: within a phrase, ' " and \\ are matched by escaping them with a backslash;
    the escaped quote does not end the phrase."""
    assert mail.query({"body": '"quick brown\\" fox"'}) == ["p1"]   # the quote is not a word
    assert mail.query({"body": '"lazy dog\\\\"'}) == ["p1"]


def test_text_is_matched_case_insensitively(mail):
    """§4.4.1: text SHOULD be matched in a case-insensitive manner."""
    assert mail.query({"body": "FUEL"}) == ["p1", "p2"]
    assert mail.query({"from": "CAROL"}) == ["p1", "p3"]
    assert mail.query({"subject": "GaRdEn"}) == ["q1", "q2", "q3"]


def test_text_ignores_diacritics(mail):
    """§4.4.1 (String matching is server-defined): "cafe" and "CAFÉ" both find "Café"."""
    assert mail.query({"body": "cafe"}) == ["p2"]
    assert mail.query({"body": "CAF\u00c9"}) == ["p2"]
    assert mail.query({"text": "caf\u00e9 fuel"}) == ["p2"]


def test_an_empty_condition_matches_every_email(mail):
    """§4.4.1: a FilterCondition with zero properties MUST always evaluate to true."""
    assert mail.query({}) == BY_RECEIVED
    assert mail.query({"text": "   "}) == BY_RECEIVED   # no tokens: nothing to require


def test_several_properties_in_one_condition_must_all_apply(mail):
    """§4.4.1: multiple properties in one FilterCondition are ANDed."""
    assert mail.query({"hasKeyword": "$seen", "inMailbox": mail.box["W"]}) == ["p1", "p2", "s2"]
    assert mail.query({"from": "carol", "hasAttachment": True}) == ["p3"]


# -- §4.4.1 with FilterOperator (RFC 8620 §5.5) --

def test_and_operator_needs_every_condition(mail):
    """RFC 8620 §5.5 AND: all conditions must match."""
    assert mail.query({"operator": "AND", "conditions": [
        {"someInThreadHaveKeyword": "$flagged"}, {"notKeyword": "$flagged"}]}) == ["p1", "p3"]


def test_or_operator_needs_one_condition(mail):
    """RFC 8620 §5.5 OR: at least one condition must match."""
    assert mail.query({"operator": "OR", "conditions": [
        {"bcc": "frank"}, {"hasKeyword": "$answered"}, {"body": "telescopes"}]}) == [
        "q2", "s1", "p3"]


def test_not_operator_needs_no_condition(mail):
    """RFC 8620 §5.5 NOT: none of the conditions may match."""
    assert mail.query({"operator": "NOT", "conditions": [{"hasKeyword": "$seen"}]}) == ["s1", "p3"]
    assert mail.query({"operator": "NOT", "conditions": [
        {"inMailbox": mail.box["H"]}, {"inMailbox": mail.box["L"]}]}) == ["p1", "p3"]


def test_not_over_a_text_search_keeps_the_emails_without_the_text(mail):
    """RFC 8620 §5.5 NOT of a text condition: every Email the search does not find."""
    assert mail.query({"operator": "NOT", "conditions": [{"text": "apollo"}]}) == [
        "q1", "q2", "s1", "q3", "s2"]


def test_nested_operators_combine(mail):
    """RFC 8620 §5.5: operators nest: (from carol OR to alice) AND NOT hasAttachment."""
    assert mail.query({"operator": "AND", "conditions": [
        {"operator": "OR", "conditions": [{"from": "carol"}, {"to": "alice"}]},
        {"operator": "NOT", "conditions": [{"hasAttachment": True}]}]}) == ["q1", "p1", "q3"]


# -- §4.4.1 errors --

@pytest.mark.parametrize("condition", [
    {"inMailbox": 5},
    {"inMailbox": None},
    {"inMailboxOtherThan": "M1"},
    {"inMailboxOtherThan": [1]},
    {"before": "2026-01-05"},
    {"after": "2026-01-05T10:00:00+01:00"},
    {"minSize": -1},
    {"maxSize": "100"},
    {"minSize": 1.5},
    {"allInThreadHaveKeyword": 1},
    {"someInThreadHaveKeyword": "bad keyword"},
    {"noneInThreadHaveKeyword": ""},
    {"hasKeyword": "has(paren"},
    {"notKeyword": None},
    {"hasAttachment": "true"},
    {"hasAttachment": 1},
    {"text": 42},
    {"from": ["carol"]},
    {"to": None},
    {"cc": True},
    {"bcc": {}},
    {"subject": 1},
    {"body": ["x"]},
    {"header": "Subject"},
    {"header": []},
    {"header": ["Subject", "a", "b"]},
    {"header": ["Subject", 1]},
])
def test_a_filter_value_of_the_wrong_type_is_invalid_arguments(mail, condition):
    """§4.4.1 / RFC 8620 §5.5: a condition value of the wrong type -> invalidArguments."""
    assert mail.error(condition) == "invalidArguments"


@pytest.mark.parametrize("filter_", [
    {"unknownCondition": "x"},
    {"hasKeyword": "$seen", "inThread": "T1"},
    {"operator": "NOT", "conditions": [{"isUnread": True}]},
])
def test_an_unknown_filter_condition_is_unsupported_filter(mail, filter_):
    """RFC 8620 §5.5: a filter the server cannot process -> unsupportedFilter."""
    assert mail.error(filter_) == "unsupportedFilter"


# -- §4.4.2 sorting --

@pytest.mark.parametrize("prop, ascending", [
    ("receivedAt", ["q1", "q2", "s1", "p1", "p2", "p3", "q3", "s2"]),
    ("sentAt", ["s2", "s1", "q1", "q2", "p1", "p2", "q3", "p3"]),    # p2 is 07:30Z
    ("size", ["q1", "q2", "q3", "s2", "p1", "p2", "s1", "p3"]),
    ("from", ["q2", "q1", "q3", "p1", "p3", "p2", "s2", "s1"]),      # name, else email
    ("to", ["s1", "s2", "q1", "q3", "q2", "p2", "p1", "p3"]),        # no To sorts as ""
])
def test_sort_by_one_property_ascending_and_descending(mail, prop, ascending):
    """§4.4.2: receivedAt, sentAt, size, from and to ("name" of the first address, else its
    "email", else the empty string), ascending by default and reversed when false."""
    assert mail.query(sort=[{"property": prop}]) == ascending
    assert mail.query(sort=[{"property": prop, "isAscending": True}]) == ascending
    assert mail.query(sort=[{"property": prop, "isAscending": False}]) == ascending[::-1]


def test_received_at_sort_orders_fractional_seconds(mail):
    """§4.4.2 receivedAt: the receivedAt date as returned in the Email object, so
    10:00:00.700Z sorts after 10:00:00.200Z whatever the import order."""
    mail.new_box("F")
    late, early = "2026-02-01T10:00:00.700Z", "2026-02-01T10:00:00.200Z"
    for key, received in (("late", late), ("early", early)):
        raw = message([("From", "a@example.com"), ("Subject", key)], "x\r\n", 300)
        mail.add(key, raw, "F", received=received)
    got = mail.jmap.call("Email/get", {"accountId": A, "properties": ["receivedAt"],
                                       "ids": [mail.ids["late"], mail.ids["early"]]})["list"]
    assert [e["receivedAt"] for e in got] == [late, early]
    result = mail.jmap.call("Email/query", {"accountId": A,
                                            "filter": {"inMailbox": mail.box["F"]},
                                            "sort": [{"property": "receivedAt"}]})
    assert [mail.keys[i] for i in result["ids"]] == ["early", "late"]


def test_subject_sort_uses_the_base_subject_without_re(mail):
    """§4.4.2 subject: the base subject (RFC 5256 §2.1): "Re:"/"RE:" are stripped, so
    "Re: Apollo" sorts with "Apollo", before "Garden"; receivedAt (descending) breaks ties."""
    sort = [{"property": "subject"}, {"property": "receivedAt", "isAscending": False}]
    assert mail.query(sort=sort) == ["p3", "p2", "p1", "q3", "q2", "q1", "s2", "s1"]
    sort[0]["isAscending"] = False
    assert mail.query(sort=sort) == ["s1", "s2", "q3", "q2", "q1", "p3", "p2", "p1"]


def sorted_by_subject(mail, subjects):
    """Import one message per subject (in order, a day apart) into a new Mailbox; answer
    their keys sorted by [subject, receivedAt descending]."""
    mail.new_box("Z")
    for n, subject in enumerate(subjects):
        raw = message([("From", "a@example.com"), ("Subject", subject)], "x\r\n", 300)
        mail.add(f"z{n}", raw, "Z", received=f"2026-02-{n + 10}T10:00:00Z")
    result = mail.jmap.call("Email/query", {
        "accountId": A, "filter": {"inMailbox": mail.box["Z"]},
        "sort": [{"property": "subject"}, {"property": "receivedAt", "isAscending": False}]})
    return [mail.keys[i] for i in result["ids"]]


def test_subject_sort_strips_re_fwd_and_list_tags(mail):
    """§4.4.2 subject, base subject per RFC 5256 §2.1: "Re:", "Fw:", "[tag]" leaders and
    "Re[2]:" are removed; "Re: [list] Apple" sorts as "Apple"."""
    assert sorted_by_subject(mail, ["Cherry", "Re: [list] Re[2]: Apple", "Fw: Banana"]) == [
        "z1", "z2", "z0"]


def test_subject_sort_unwraps_a_forwarded_subject(mail):
    """§4.4.2 subject, RFC 5256 §2.1 (4)-(5): "[Fwd: Banana]" has base subject "Banana"
    (a blob is only removed if text remains), so it sorts between Apple and Cherry."""
    assert sorted_by_subject(mail, ["Cherry", "[Fwd: Banana]", "Apple"]) == ["z2", "z1", "z0"]


def test_subject_sort_drops_a_fwd_trailer(mail):
    """§4.4.2 subject, RFC 5256 §2.1 (2): "Cherry (fwd)" has base subject "Cherry": a tie
    with "Cherry" that the later receivedAt (descending) breaks."""
    assert sorted_by_subject(mail, ["Cherry", "Cherry (fwd)"]) == ["z1", "z0"]


def test_has_keyword_sort_puts_emails_with_the_keyword_last_ascending(mail):
    """§4.4.2 hasKeyword: true if the Email has the Comparator's keyword (false < true)."""
    sort = [{"property": "hasKeyword", "keyword": "$seen"}, {"property": "receivedAt"}]
    assert mail.query(sort=sort) == ["s1", "p3", "q1", "q2", "p1", "p2", "q3", "s2"]
    sort[0]["isAscending"] = False
    assert mail.query(sort=sort) == ["q1", "q2", "p1", "p2", "q3", "s2", "s1", "p3"]


def test_some_in_thread_have_keyword_sort_groups_flagged_threads(mail):
    """§4.4.2 someInThreadHaveKeyword: true if any Email in the Thread has the keyword."""
    sort = [{"property": "someInThreadHaveKeyword", "keyword": "$flagged", "isAscending": False},
            {"property": "receivedAt"}]
    assert mail.query(sort=sort) == ["p1", "p2", "p3", "q1", "q2", "s1", "q3", "s2"]
    sort[0]["isAscending"] = True
    assert mail.query(sort=sort) == ["q1", "q2", "s1", "q3", "s2", "p1", "p2", "p3"]


def test_all_in_thread_have_keyword_sort_needs_every_email_of_the_thread(mail):
    """§4.4.2 allInThreadHaveKeyword: true if all Emails in the Thread have the keyword."""
    sort = [{"property": "allInThreadHaveKeyword", "keyword": "$seen", "isAscending": False},
            {"property": "receivedAt"}]
    assert mail.query(sort=sort) == ["q1", "q2", "q3", "s2", "s1", "p1", "p2", "p3"]
    sort[0]["isAscending"] = True
    assert mail.query(sort=sort) == ["s1", "p1", "p2", "p3", "q1", "q2", "q3", "s2"]


def test_the_rfc_example_sort_orders_by_three_keys(mail):
    """§4.4.2 example: flagged Threads first, then subject, then newest first."""
    sort = [{"property": "someInThreadHaveKeyword", "keyword": "$flagged", "isAscending": False},
            {"property": "subject", "collation": "i;ascii-casemap"},
            {"property": "receivedAt", "isAscending": False}]
    assert mail.query(sort=sort) == ["p3", "p2", "p1", "q3", "q2", "q1", "s2", "s1"]


def test_a_later_sort_key_only_breaks_ties_of_the_earlier(mail):
    """RFC 8620 §5.5: the Comparators apply in order; size breaks hasKeyword ties."""
    sort = [{"property": "hasKeyword", "keyword": "$seen"},
            {"property": "size", "isAscending": False}]
    assert mail.query(sort=sort) == ["p3", "s1", "p2", "p1", "s2", "q3", "q2", "q1"]


@pytest.mark.parametrize("prop", ["hasKeyword", "allInThreadHaveKeyword",
                                  "someInThreadHaveKeyword"])
def test_a_keyword_sort_without_a_keyword_is_invalid_arguments(mail, prop):
    """§4.4.2: a hasKeyword/allInThreadHaveKeyword/someInThreadHaveKeyword Comparator
    MUST have a "keyword" property."""
    assert mail.error(sort=[{"property": prop}]) == "invalidArguments"
    assert mail.error(sort=[{"property": prop, "keyword": 7}]) == "invalidArguments"


@pytest.mark.parametrize("prop", ["id", "threadId", "preview", "cc", "isUnread", "totalEmails"])
def test_an_unknown_sort_property_is_unsupported_sort(mail, prop):
    """RFC 8620 §5.5: a sort property the server does not support -> unsupportedSort."""
    assert mail.error(sort=[{"property": prop}]) == "unsupportedSort"


def test_the_supported_sorts_are_advertised_in_the_account_capability(core):
    """§1.3.1 emailQuerySortOptions lists every sort of §4.4.2 that jmapd supports."""
    account = core.session(A, "http://localhost")["accounts"][A]
    options = account["accountCapabilities"][jmapd.URN_MAIL]["emailQuerySortOptions"]
    assert set(options) == {"receivedAt", "sentAt", "size", "from", "to", "subject",
                            "hasKeyword", "allInThreadHaveKeyword", "someInThreadHaveKeyword"}


# -- §4.4.3 collapseThreads --

def test_collapse_threads_keeps_the_first_email_of_each_thread(mail):
    """§4.4.3: only the first Email of each Thread in the sorted list remains, at its place."""
    assert mail.query(collapseThreads=True) == ["q1", "s1", "p1", "s2"]
    newest = [{"property": "receivedAt", "isAscending": False}]
    assert mail.query(sort=newest, collapseThreads=True) == ["s2", "q3", "p3", "s1"]


def test_collapse_threads_applies_after_the_filter(mail):
    """§4.4.3: collapsing happens after filtering: unseen p3 is filtered out, so p2 stands
    for thread P."""
    newest = [{"property": "receivedAt", "isAscending": False}]
    assert mail.query({"hasKeyword": "$seen"}, newest, collapseThreads=True) == ["s2", "q3", "p2"]


def test_collapse_threads_follows_the_sort_order(mail):
    """§4.4.3: the Thread appears at the position of its first Email given the sort."""
    by_size = [{"property": "size", "isAscending": False}]
    assert mail.query(sort=by_size, collapseThreads=True) == ["p3", "s1", "s2", "q3"]


def test_collapse_threads_total_counts_threads(mail):
    """§4.4 / RFC 8620 §5.5: total is the number of results, one per Thread when collapsed."""
    collapsed = mail.result(collapseThreads=True, calculateTotal=True, limit=2)
    assert [mail.keys[i] for i in collapsed["ids"]] == ["q1", "s1"]
    assert collapsed["total"] == 4
    assert mail.result(calculateTotal=True, limit=2)["total"] == 8
    assert mail.result({"hasKeyword": "$seen"}, collapseThreads=True,
                       calculateTotal=True)["total"] == 3


def test_collapse_threads_false_is_the_default(mail):
    """§4.4 collapseThreads: default false, every matching Email is listed."""
    assert mail.query(collapseThreads=False) == BY_RECEIVED


def test_collapse_threads_must_be_a_boolean(mail):
    """§4.4 collapseThreads is a Boolean: anything else -> invalidArguments."""
    assert mail.error(collapseThreads="yes") == "invalidArguments"


# -- RFC 8620 §5.5 windowing over Email/query --

def test_position_and_limit_cut_a_window(mail):
    """RFC 8620 §5.5 position/limit: the ids from position, at most limit of them."""
    result = mail.result(position=2, limit=3)
    assert [mail.keys[i] for i in result["ids"]] == ["s1", "p1", "p2"]
    assert result["position"] == 2
    assert "total" not in result


def test_a_negative_position_counts_from_the_end(mail):
    """RFC 8620 §5.5 position: a negative index is added to the total."""
    result = mail.result(position=-2, calculateTotal=True)
    assert [mail.keys[i] for i in result["ids"]] == ["q3", "s2"]
    assert (result["position"], result["total"]) == (6, 8)


def test_an_anchor_with_an_offset_sets_the_window(mail):
    """RFC 8620 §5.5 anchor/anchorOffset: the window starts at the anchor plus the offset."""
    result = mail.result(anchor=mail.ids["p1"], anchorOffset=-1, limit=2)
    assert [mail.keys[i] for i in result["ids"]] == ["s1", "p1"]
    assert result["position"] == 2


def test_an_anchor_works_on_collapsed_threads(mail):
    """RFC 8620 §5.5 with §4.4.3: the anchor is looked up in the collapsed list."""
    result = mail.result(anchor=mail.ids["s1"], collapseThreads=True, calculateTotal=True)
    assert [mail.keys[i] for i in result["ids"]] == ["s1", "p1", "s2"]
    assert (result["position"], result["total"]) == (1, 4)


def test_an_anchor_not_in_the_results_is_anchor_not_found(mail):
    """RFC 8620 §5.5: an anchor that is not in the results -> anchorNotFound; a thread
    member collapsed away is not in the results."""
    assert mail.error({"inMailbox": mail.box["L"]}, anchor=mail.ids["p1"]) == "anchorNotFound"
    assert mail.error(anchor=mail.ids["q2"], collapseThreads=True) == "anchorNotFound"


def test_calculate_total_gives_the_full_count_beyond_the_window(mail):
    """RFC 8620 §5.5 calculateTotal: total is the number of Emails the query matches."""
    result = mail.result({"inMailbox": mail.box["W"]}, limit=1, calculateTotal=True)
    assert [mail.keys[i] for i in result["ids"]] == ["p1"]
    assert result["total"] == 4


# -- §4.5 Email/queryChanges --

def apply_changes(old_ids, removed, added):
    """RFC 8620 §5.6: drop every removed id, then splice in each added one at its index."""
    ids = [i for i in old_ids if i not in set(removed)]
    for entry in sorted(added, key=lambda a: a["index"]):
        ids.insert(entry["index"], entry["id"])
    return ids


def query_changes(mail, state, filter_=None, sort=None, **more):
    return mail.jmap.call("Email/queryChanges", {
        **mail.query_args(filter_, sort, **more), "sinceQueryState": state})


def check_exact(mail, before, filter_=None, sort=None, **more):
    """Apply a queryChanges answer to the old ids: it must give exactly the new ids."""
    changes = query_changes(mail, before["queryState"], filter_, sort, **more)
    after = mail.result(filter_, sort, **more)
    assert changes["newQueryState"] == after["queryState"]
    applied = apply_changes(before["ids"], changes["removed"], changes["added"])
    assert [mail.keys[i] for i in applied] == [mail.keys[i] for i in after["ids"]]
    return changes, [mail.keys[i] for i in after["ids"]]


def reply(key, parent, subject, references, body="More news.\r\n"):
    return message([("From", "Dave Diaz <dave@example.org>"), ("Subject", subject),
                    ("Message-ID", f"<{key}@example.com>"),
                    ("In-Reply-To", f"<{parent}@example.com>"),
                    ("References", " ".join(f"<{r}@example.com>" for r in references))],
                   body, 700)


def test_query_changes_reports_an_imported_email_as_added_at_its_index(mail):
    """§4.5 / RFC 8620 §5.6: a new match is in added with its index in the new results."""
    box_w = {"inMailbox": mail.box["W"]}
    before = mail.result(box_w)
    new = mail.add("n1", reply("n1", "p3", "Re: Apollo launch plan", ["p1", "p3"]), "W",
                   received="2026-01-06T09:00:00Z")
    changes, after = check_exact(mail, before, box_w)
    assert after == ["p1", "p2", "n1", "p3", "s2"]
    assert changes["added"] == [{"id": new, "index": 2}]
    assert changes["removed"] == []
    assert changes["oldQueryState"] == before["queryState"]


def test_query_changes_ignores_an_import_that_does_not_match(mail):
    """RFC 8620 §5.6: an Email that is not in the results is not added."""
    box_w = {"inMailbox": mail.box["W"]}
    before = mail.result(box_w)
    mail.add("n1", reply("n1", "q3", "Re: Garden party", ["q1", "q3"]), "H")
    changes, after = check_exact(mail, before, box_w)
    assert after == ["p1", "p2", "p3", "s2"]
    assert changes["added"] == []


def test_query_changes_reports_a_destroyed_email_as_removed(mail):
    """RFC 8620 §5.6: an Email that left the results is in removed."""
    box_w = {"inMailbox": mail.box["W"]}
    before = mail.result(box_w)
    mail.set(destroy=[mail.ids["p2"]])
    changes, after = check_exact(mail, before, box_w)
    assert after == ["p1", "p3", "s2"]
    assert changes["removed"] == [mail.ids["p2"]]
    assert changes["added"] == []


def test_query_changes_reports_an_email_moved_out_of_the_mailbox_as_removed(mail):
    """RFC 8620 §5.6: an Email whose mailboxIds no longer match is removed."""
    box_w = {"inMailbox": mail.box["W"]}
    before = mail.result(box_w)
    mail.set(update={mail.ids["p1"]: {"mailboxIds": {mail.box["H"]: True}}})
    changes, after = check_exact(mail, before, box_w)
    assert after == ["p2", "p3", "s2"]
    assert changes["removed"] == [mail.ids["p1"]]


def test_query_changes_moves_an_email_whose_keyword_sort_value_changed(mail):
    """§4.5 with a hasKeyword sort: flagging p1 moves it ahead of p2; removed and added
    together give the new order."""
    sort = [{"property": "hasKeyword", "keyword": "$flagged", "isAscending": False},
            {"property": "receivedAt"}]
    box_w = {"inMailbox": mail.box["W"]}
    before = mail.result(box_w, sort)
    assert [mail.keys[i] for i in before["ids"]] == ["p2", "p1", "p3", "s2"]
    mail.set(update={mail.ids["p1"]: {"keywords/$flagged": True}})
    changes, after = check_exact(mail, before, box_w, sort)
    assert after == ["p1", "p2", "p3", "s2"]
    assert changes["removed"] == [mail.ids["p1"]]
    assert changes["added"] == [{"id": mail.ids["p1"], "index": 0}]


def test_query_changes_removes_an_email_that_lost_the_filtered_keyword(mail):
    """RFC 8620 §5.6: unflagging p2 takes it out of a hasKeyword filter."""
    flagged = {"hasKeyword": "$flagged"}
    before = mail.result(flagged)
    mail.set(update={mail.ids["p2"]: {"keywords/$flagged": None},
                     mail.ids["q1"]: {"keywords/$flagged": True}})
    changes, after = check_exact(mail, before, flagged)
    assert after == ["q1"]
    assert mail.ids["p2"] in changes["removed"]
    assert changes["added"] == [{"id": mail.ids["q1"], "index": 0}]


def test_query_changes_moves_thread_siblings_when_a_thread_keyword_sort_changes(mail):
    """§4.5 with a someInThreadHaveKeyword sort: flagging q1 flags all of thread Q, so q2
    moves ahead of p2; the answer must report q2 too, or the client's list is wrong."""
    sort = [{"property": "someInThreadHaveKeyword", "keyword": "$flagged", "isAscending": False},
            {"property": "receivedAt"}]
    box_h = {"inMailbox": mail.box["H"]}
    before = mail.result(box_h, sort)
    assert [mail.keys[i] for i in before["ids"]] == ["p2", "q1", "q2", "q3"]
    mail.set(update={mail.ids["q1"]: {"keywords/$flagged": True}})
    _, after = check_exact(mail, before, box_h, sort)
    assert after == ["q1", "q2", "p2", "q3"]


def test_query_changes_adds_thread_siblings_when_a_thread_keyword_filter_matches(mail):
    """§4.5 with an allInThreadHaveKeyword filter: seeing p3 makes all of thread P match."""
    all_seen = {"allInThreadHaveKeyword": "$seen"}
    before = mail.result(all_seen)
    mail.set(update={mail.ids["p3"]: {"keywords/$seen": True}})
    _, after = check_exact(mail, before, all_seen)
    assert after == ["q1", "q2", "p1", "p2", "p3", "q3", "s2"]


def test_query_changes_with_collapse_threads_replaces_the_threads_first_email(mail):
    """§4.5 collapseThreads: a newer reply becomes thread P's first Email (newest first),
    so the old one (p3) must be removed as the reply is added."""
    newest = [{"property": "receivedAt", "isAscending": False}]
    box_w = {"inMailbox": mail.box["W"]}
    before = mail.result(box_w, newest, collapseThreads=True)
    assert [mail.keys[i] for i in before["ids"]] == ["s2", "p3"]
    mail.add("n1", reply("n1", "p3", "Re: Apollo launch plan", ["p1", "p3"]), "W",
             received="2026-01-08T00:00:00Z")
    _, after = check_exact(mail, before, box_w, newest, collapseThreads=True)
    assert after == ["s2", "n1"]


def test_query_changes_with_collapse_threads_brings_in_the_next_email_after_a_destroy(mail):
    """§4.5 collapseThreads: destroying q1 makes q2 thread Q's first Email; q2 must be added."""
    box_h = {"inMailbox": mail.box["H"]}
    before = mail.result(box_h, collapseThreads=True)
    assert [mail.keys[i] for i in before["ids"]] == ["q1", "p2"]
    mail.set(destroy=[mail.ids["q1"]])
    _, after = check_exact(mail, before, box_h, collapseThreads=True)
    assert after == ["q2", "p2"]


def test_query_changes_over_several_writes_is_exact(mail):
    """RFC 8620 §5.6: import, keyword change, move and destroy since one state, all
    applied at once, give exactly the new results."""
    sort = [{"property": "hasKeyword", "keyword": "$seen"}, {"property": "size"}]
    box_w = {"inMailbox": mail.box["W"]}
    before = mail.result(box_w, sort)
    assert [mail.keys[i] for i in before["ids"]] == ["p3", "s2", "p1", "p2"]
    mail.add("n1", reply("n1", "p3", "Re: Apollo launch plan", ["p1", "p3"]), "W", ["$seen"])
    mail.set(update={mail.ids["p3"]: {"keywords/$seen": True},
                     mail.ids["q1"]: {f"mailboxIds/{mail.box['W']}": True}})
    mail.set(destroy=[mail.ids["s2"]])
    changes, after = check_exact(mail, before, box_w, sort, calculateTotal=True)
    assert after == ["n1", "q1", "p1", "p2", "p3"]
    assert changes["total"] == 5


def test_query_changes_with_no_changes_is_empty(mail):
    """RFC 8620 §5.6: nothing changed since the state -> empty removed and added."""
    before = mail.result()
    changes = query_changes(mail, before["queryState"])
    assert (changes["removed"], changes["added"]) == ([], [])
    assert changes["newQueryState"] == before["queryState"]


def test_query_changes_beyond_max_changes_is_too_many_changes(mail):
    """RFC 8620 §5.6 maxChanges: more removed + added than allowed -> tooManyChanges."""
    box_w = {"inMailbox": mail.box["W"]}
    before = mail.result(box_w)
    mail.set(destroy=[mail.ids["p1"], mail.ids["p2"]])
    args = {**mail.query_args(box_w), "sinceQueryState": before["queryState"]}
    assert mail.jmap.error("Email/queryChanges", {**args, "maxChanges": 1}) == "tooManyChanges"
    allowed = mail.jmap.call("Email/queryChanges", {**args, "maxChanges": 2})
    assert sorted(allowed["removed"]) == sorted([mail.ids["p1"], mail.ids["p2"]])


def test_query_changes_checks_its_filter_like_email_query(mail):
    """§4.5: the filter and sort are those of Email/query, with the same errors."""
    state = mail.result()["queryState"]
    base = {"accountId": A, "sinceQueryState": state}
    assert mail.jmap.error("Email/queryChanges", {**base, "filter": {"nope": 1}}) == \
        "unsupportedFilter"
    assert mail.jmap.error("Email/queryChanges", {**base, "filter": {"minSize": "1"}}) == \
        "invalidArguments"
    assert mail.jmap.error("Email/queryChanges", {**base, "sort": [{"property": "hasKeyword"}]}) \
        == "invalidArguments"
    assert mail.jmap.error("Email/queryChanges", {**base, "sort": [{"property": "id"}]}) == \
        "unsupportedSort"
