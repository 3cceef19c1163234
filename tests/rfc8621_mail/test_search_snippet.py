"""RFC 8621 §5 Search Snippets and §5.1 SearchSnippet/get: the subject and a preview of
the body with the filter's matches in <mark></mark>, & < > HTML-escaped, null where
nothing matches, previews of at most 255 octets; notFound, requestTooLarge and the
filter errors of §4.4.1 Email/query.

The corpus (fixture `mail`), all in one Mailbox made here ("Snip"):

    key     subject                   body
    fish    Fish & chips <tonight>    plain text with & and <...>, "shellfish", "pizza"
    report  Report on the report      nothing about reports; "revenue grew" after 80 words
    cafe    Café meeting              "the café at noon"
    html    Newsletter                HTML only: Cheap <b>flights</b> to Paris &amp; Rome
    amp     Ampersands                100 "&" before the word "needle"
    wrap    Wrapped                   "revenue" and "grew" on two lines
"""

import pytest

import jmapd
from conftest import MailCorpus, corpus_fixtures, import_raw

A = "alice"


def message(subject, body, content_type="text/plain; charset=utf-8"):
    headers = [("From", "Carol Chen <carol@example.com>"), ("To", "alice@example.com"),
               ("Subject", subject), ("Content-Type", content_type)]
    return ("\r\n".join(f"{n}: {v}" for n, v in headers) + "\r\n\r\n" + body).encode()


LONG_BODY = (" ".join(["filler"] * 80) + " revenue grew by a third " +
             " ".join(["\u00fcber"] * 120) + "\r\n")

CORPUS = [
    ("fish", "Fish & chips <tonight>",
     "We could get fish & chips at <the pier> tonight, or shellfish.\r\nOr pizza.\r\n", None),
    ("report", "Report on the report", LONG_BODY, None),
    ("cafe", "Caf\u00e9 meeting", "Let's meet at the caf\u00e9 at noon.\r\n", None),
    ("html", "Newsletter", "<html><head><title>News</title></head><body><p>Cheap "
     "<b>flights</b> to Paris &amp; Rome</p></body></html>", "text/html; charset=utf-8"),
    ("amp", "Ampersands", "&" * 100 + " needle in a haystack\r\n", None),
    ("wrap", "Wrapped", "This year the revenue\r\ngrew again.\r\n", None),
]


class Mail(MailCorpus):
    """The corpus: .ids {key: Email id}, .keys {Email id: key}, .box (the Mailbox id)."""

    def build(self):
        self.box = self.jmap.call("Mailbox/set", {"accountId": A, "create": {
            "s": {"name": "Snip"}}})["created"]["s"]["id"]
        for number, (key, subject, body, content_type) in enumerate(CORPUS):
            raw = message(subject, body, content_type or "text/plain; charset=utf-8")
            self.ids[key] = import_raw(self.core, self.jmap, raw, [self.box],
                                       received=f"2026-03-0{number + 1}T10:00:00Z")
        return self

    def snippets(self, filter_, *keys):
        """SearchSnippet/get, answered as {key: (subject, preview)}."""
        result = self.jmap.call("SearchSnippet/get", {
            "accountId": A, "filter": filter_, "emailIds": [self.ids[k] for k in keys]})
        assert result["notFound"] is None
        found = {}
        for snippet in result["list"]:
            assert set(snippet) == {"emailId", "subject", "preview"}
            found[self.ids_to_keys(snippet["emailId"])] = (snippet["subject"], snippet["preview"])
        assert sorted(found) == sorted(keys)
        return found

    def snippet(self, filter_, key):
        return self.snippets(filter_, key)[key]

    def ids_to_keys(self, email_id):
        return {v: k for k, v in self.ids.items()}[email_id]

    def query(self, filter_):
        result = self.jmap.call("Email/query", {"accountId": A, "filter": {
            "operator": "AND", "conditions": [{"inMailbox": self.box}, filter_]},
            "sort": [{"property": "receivedAt"}]})
        return [self.ids_to_keys(i) for i in result["ids"]]


corpus, mail = corpus_fixtures(Mail)


# -- §5 subject and preview --

def test_a_text_match_is_marked_in_subject_and_preview(mail):
    """§5 subject/preview: matching words are wrapped in <mark></mark>; & < > become HTML
    entities in both."""
    assert mail.snippet({"text": "chips"}, "fish") == (
        "Fish &amp; <mark>chips</mark> &lt;tonight&gt;",
        "We could get fish &amp; <mark>chips</mark> at &lt;the pier&gt; tonight, or "
        "shellfish. Or pizza.")


def test_matches_are_marked_case_insensitively_and_keep_their_case(mail):
    """§5 with §4.4.1 (case-insensitive matching): every match is marked, as written."""
    assert mail.snippet({"text": "REPORT"}, "report")[0] == (
        "<mark>Report</mark> on the <mark>report</mark>")


def test_every_word_of_the_filter_is_marked(mail):
    """§5: the matching words from the filter (all tokens) are wrapped."""
    assert mail.snippet({"text": "pizza tonight"}, "fish") == (
        "Fish &amp; chips &lt;<mark>tonight</mark>&gt;",
        "We could get fish &amp; chips at &lt;the pier&gt; <mark>tonight</mark>, or "
        "shellfish. Or <mark>pizza</mark>.")


def test_a_phrase_is_marked_as_one(mail):
    """§5: a matching phrase of the filter is wrapped as a whole."""
    subject, preview = mail.snippet({"body": '"revenue grew"'}, "report")
    assert subject is None
    assert "<mark>revenue grew</mark> by a third" in preview
    assert preview.count("<mark>") == 1


def test_the_subject_is_null_when_only_the_body_matches(mail):
    """§5 subject: null if the subject does not match text from the filter (the section of
    the body the preview shows is server-defined: here it ends with the body)."""
    subject, preview = mail.snippet({"text": "pizza"}, "fish")
    assert subject is None
    assert preview.endswith(" &lt;the pier&gt; tonight, or shellfish. Or <mark>pizza</mark>.")
    assert preview.count("<mark>") == 1


def test_the_preview_is_null_when_only_the_subject_matches(mail):
    """§5 preview: null if the body does not contain a match for the filter's text."""
    assert mail.snippet({"text": "report"}, "report") == (
        "<mark>Report</mark> on the <mark>report</mark>", None)


def test_a_subject_condition_marks_only_the_subject(mail):
    """§5 with §4.4.1 subject: text looked for in the Subject is not marked in the body."""
    assert mail.snippet({"subject": "fish"}, "fish") == (
        "<mark>Fish</mark> &amp; chips &lt;tonight&gt;", None)


def test_a_body_condition_marks_only_the_preview(mail):
    """§5 with §4.4.1 body: text looked for in the body is not marked in the Subject."""
    subject, preview = mail.snippet({"body": "chips"}, "fish")
    assert subject is None
    assert preview == ("We could get fish &amp; <mark>chips</mark> at &lt;the pier&gt; "
                       "tonight, or shellfish. Or pizza.")


def test_both_are_null_when_nothing_matches(mail):
    """§5: no match in the subject or body -> both null (the Email is still listed)."""
    assert mail.snippets({"text": "chips"}, "fish", "cafe", "html") == {
        "fish": ("Fish &amp; <mark>chips</mark> &lt;tonight&gt;",
                 "We could get fish &amp; <mark>chips</mark> at &lt;the pier&gt; tonight, "
                 "or shellfish. Or pizza."),
        "cafe": (None, None), "html": (None, None)}


def test_conditions_without_subject_or_body_text_mark_nothing(mail):
    """§5: a null filter, or one without text (from, hasKeyword), gives null snippets."""
    for filter_ in (None, {"from": "carol"}, {"inMailbox": mail.box},
                    {"notKeyword": "$seen"}):
        assert mail.snippet(filter_, "fish") == (None, None)


def test_an_html_body_is_previewed_as_plain_text(mail):
    """§5 preview: an HTML body is converted to plain text (tags dropped, &amp; decoded
    and re-escaped); the <head> is not body text."""
    assert mail.snippet({"text": "flights rome"}, "html") == (
        None, "Cheap <mark>flights</mark> to Paris &amp; <mark>Rome</mark>")
    assert mail.snippet({"text": "newsletter"}, "html") == ("<mark>Newsletter</mark>", None)
    assert mail.snippet({"text": "news"}, "html") == (None, None)  # whole words, as the index


def test_the_preview_is_at_most_255_octets(mail):
    """§5 preview: MUST NOT be bigger than 255 octets (here 2-octet "ü"s follow the match)."""
    subject, preview = mail.snippet({"body": "revenue"}, "report")
    assert subject is None
    assert "<mark>revenue</mark> grew by a third \u00fcber" in preview
    assert len(preview.encode("utf-8")) <= 255
    assert len(preview.encode("utf-8")) > 200   # a useful section, not a stub


def test_the_preview_keeps_the_match_when_the_text_before_it_is_long(mail):
    """§5 preview: the body matches, so preview is not null: 100 "&" (500 octets escaped)
    before "needle" must be trimmed from the front, keeping the match, within 255 octets."""
    assert mail.query({"body": "needle"}) == ["amp"]
    subject, preview = mail.snippet({"body": "needle"}, "amp")
    assert subject is None
    assert preview is not None and "<mark>needle</mark>" in preview
    assert len(preview.encode("utf-8")) <= 255


def test_a_phrase_broken_over_two_lines_is_previewed(mail):
    """§5 preview: "revenue\\r\\ngrew" matches the phrase "revenue grew" (Email/query finds
    it), so the preview shows and marks it."""
    assert mail.query({"body": '"revenue grew"'}) == ["report", "wrap"]
    subject, preview = mail.snippet({"body": '"revenue grew"'}, "wrap")
    assert preview is not None and "<mark>revenue grew</mark>" in preview


def test_a_match_found_ignoring_diacritics_is_marked(mail):
    """§5: if text from the filter matches the subject (as Email/query decides: "cafe"
    finds "Café"), the subject is given with the match marked; likewise the preview."""
    assert mail.query({"text": "cafe"}) == ["cafe"]
    assert mail.snippet({"text": "cafe"}, "cafe") == (
        "<mark>Caf\u00e9</mark> meeting", "Let's meet at the <mark>caf\u00e9</mark> at noon.")


def test_only_whole_matching_words_are_marked(mail):
    """§5: the matching words from the filter are marked: Email/query's "fish" matches the
    word "fish", not "shellfish" (a body with only "shellfish" does not match)."""
    assert mail.query({"body": "shellfish"}) == ["fish"]
    assert mail.query({"body": "shell"}) == []
    subject, preview = mail.snippet({"body": "fish"}, "fish")
    assert preview == ("We could get <mark>fish</mark> &amp; chips at &lt;the pier&gt; "
                       "tonight, or shellfish. Or pizza.")


# -- §5.1 the filter --

def test_a_filter_under_not_marks_nothing(mail):
    """§5.1: words under NOT are what the Emails must not contain: never marked."""
    assert mail.snippet({"operator": "NOT", "conditions": [{"text": "pizza"}]}, "fish") == (
        None, None)
    marked = mail.snippet({"operator": "AND", "conditions": [
        {"text": "chips"}, {"operator": "NOT", "conditions": [{"text": "pizza"}]}]}, "fish")
    assert marked == ("Fish &amp; <mark>chips</mark> &lt;tonight&gt;",
                      "We could get fish &amp; <mark>chips</mark> at &lt;the pier&gt; "
                      "tonight, or shellfish. Or pizza.")


def test_words_of_every_or_branch_are_marked(mail):
    """§5.1: the filter is Email/query's; the text of each OR branch can match."""
    assert mail.snippet({"operator": "OR", "conditions": [
        {"subject": "tonight"}, {"body": "pizza"}]}, "fish")[0] == (
        "Fish &amp; chips &lt;<mark>tonight</mark>&gt;")
    preview = mail.snippet({"operator": "OR", "conditions": [
        {"subject": "tonight"}, {"body": "pizza"}]}, "fish")[1]
    assert preview.endswith(" tonight, or shellfish. Or <mark>pizza</mark>.")   # not "tonight"


@pytest.mark.parametrize("filter_, error", [
    ({"unknownCondition": "x"}, "unsupportedFilter"),
    ({"operator": "NOT", "conditions": [{"isUnread": True}]}, "unsupportedFilter"),
    ({"text": 5}, "invalidArguments"),
    ({"minSize": "1"}, "invalidArguments"),
    ({"header": ["Subject", "a", "b"]}, "invalidArguments"),
    ({"operator": "XOR", "conditions": []}, "invalidArguments"),
    ("text", "invalidArguments"),
])
def test_an_invalid_filter_is_the_same_error_as_in_email_query(mail, filter_, error):
    """§5.1 filter: "the same filter as passed to Email/query", so the same errors."""
    ids = [mail.ids["fish"]]
    assert mail.jmap.error("Email/query", {"accountId": A, "filter": filter_}) == error
    assert mail.jmap.error("SearchSnippet/get", {"accountId": A, "filter": filter_,
                                                 "emailIds": ids}) == error


# -- §5.1 the response --

def test_not_found_is_null_when_every_email_is_found(mail):
    """§5.1 notFound: null if all ids were found; list has one snippet per Email."""
    result = mail.jmap.call("SearchSnippet/get", {
        "accountId": A, "filter": {"text": "pizza"},
        "emailIds": [mail.ids["fish"], mail.ids["cafe"]]})
    assert result["accountId"] == A
    assert result["notFound"] is None
    assert sorted(s["emailId"] for s in result["list"]) == sorted(
        [mail.ids["fish"], mail.ids["cafe"]])


def test_not_found_lists_the_ids_that_are_not_emails(mail):
    """§5.1 notFound: the requested ids that could not be found; the rest are listed."""
    thread = mail.jmap.call("Email/get", {"accountId": A, "ids": [mail.ids["fish"]],
                                          "properties": ["threadId"]})["list"][0]["threadId"]
    result = mail.jmap.call("SearchSnippet/get", {
        "accountId": A, "filter": {"text": "pizza"},
        "emailIds": ["Enope", mail.ids["fish"], thread]})
    assert result["notFound"] == ["Enope", thread]
    assert [s["emailId"] for s in result["list"]] == [mail.ids["fish"]]


def test_a_destroyed_email_is_not_found(mail):
    """§5.1 notFound: a destroyed Email can no longer be found."""
    mail.jmap.call("Email/set", {"accountId": A, "destroy": [mail.ids["cafe"]]})
    result = mail.jmap.call("SearchSnippet/get", {
        "accountId": A, "filter": None, "emailIds": [mail.ids["cafe"], mail.ids["fish"]]})
    assert result["notFound"] == [mail.ids["cafe"]]
    assert result["list"] == [{"emailId": mail.ids["fish"], "subject": None, "preview": None}]


def test_an_email_of_another_account_is_not_found(mail):
    """§5.1: emailIds are looked up in the given account only."""
    bob = type(mail.jmap)(mail.core, "bob")
    result = bob.call("SearchSnippet/get", {"accountId": bob.account_id, "filter": None,
                                            "emailIds": [mail.ids["fish"]]})
    assert (result["list"], result["notFound"]) == ([], [mail.ids["fish"]])


def test_more_email_ids_than_max_objects_in_get_is_request_too_large(mail):
    """§5.1 requestTooLarge: more emailIds than the server will process in one call
    (maxObjectsInGet)."""
    limit = mail.core.limits["maxObjectsInGet"]
    ids = [mail.ids["fish"]] + [f"E{n}x" for n in range(limit)]
    assert mail.jmap.error("SearchSnippet/get", {"accountId": A, "filter": None,
                                                 "emailIds": ids}) == "requestTooLarge"
    allowed = mail.jmap.call("SearchSnippet/get", {"accountId": A, "filter": None,
                                                   "emailIds": ids[:limit]})
    assert len(allowed["notFound"]) == limit - 1


def test_email_ids_are_required(mail):
    """§5.1: emailIds is a required Id[] argument."""
    assert mail.jmap.error("SearchSnippet/get", {"accountId": A, "filter": None}) == \
        "invalidArguments"
    assert mail.jmap.error("SearchSnippet/get", {"accountId": A, "filter": None,
                                                 "emailIds": "E1"}) == "invalidArguments"
