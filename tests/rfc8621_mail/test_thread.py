"""RFC 8621 §3 Threads (threading, Thread/get, Thread/changes) and the Email counts of
§2 Mailboxes (totalEmails, unreadEmails, totalThreads, unreadThreads), with §2.2
Mailbox/changes updatedProperties and §2.5 Mailbox/set onDestroyRemoveEmails.

The corpus (fixture `mail`), in two Mailboxes made here (A, B):

    key  subject                      links                 received     boxes  keywords
    x1   Budget review                Message-ID <x1>       02-01 10:00  A      $seen
    x2   Re: Budget review            In-Reply-To <x1>      02-03 10:00  A      $seen
    x3   Fwd: Re: Budget review       References <x1> <x2>  02-02 10:00  B      $draft
    x4   [Team] RE: budget   REVIEW   References <x2>       02-04 10:00  A B    $seen $flagged
    y1   Lunch on Friday?             In-Reply-To <x1>      02-05 10:00  A      -
    z1   Budget review                (none)                02-06 10:00  B      -

So thread X is x1, x3, x2, x4 (by receivedAt); y1 (a reply with a new subject) and z1
(the same subject without references) each start their own thread.
"""

import pytest

import jmapd
from conftest import MailCorpus, corpus_fixtures

A = "alice"
COUNTS = ("totalEmails", "unreadEmails", "totalThreads", "unreadThreads")


def message(key, subject, links=(), body="Some text.\r\n"):
    headers = [("From", "Carol Chen <carol@example.com>"), ("To", "alice@example.com"),
               ("Subject", subject), ("Message-ID", f"<{key}@example.com>"), *links,
               ("Content-Type", "text/plain; charset=utf-8")]
    return ("\r\n".join(f"{n}: {v}" for n, v in headers) + "\r\n\r\n" + body).encode()


CORPUS = [
    ("x1", "Budget review", [], "2026-02-01T10:00:00Z", "A", ["$seen"]),
    ("x2", "Re: Budget review", [("In-Reply-To", "<x1@example.com>")],
     "2026-02-03T10:00:00Z", "A", ["$seen"]),
    ("x3", "Fwd: Re: Budget review", [("References", "<x1@example.com> <x2@example.com>")],
     "2026-02-02T10:00:00Z", "B", ["$draft"]),
    ("x4", "[Team] RE: budget   REVIEW", [("References", "<x2@example.com>")],
     "2026-02-04T10:00:00Z", "AB", ["$seen", "$flagged"]),
    ("y1", "Lunch on Friday?", [("In-Reply-To", "<x1@example.com>")],
     "2026-02-05T10:00:00Z", "A", []),
    ("z1", "Budget review", [], "2026-02-06T10:00:00Z", "B", []),
]


class Mail(MailCorpus):
    """The corpus: .ids {key: Email id}, .keys {Email id: key}, .box {"A"/"B": id}."""

    def build(self):
        created = self.jmap.call("Mailbox/set", {"accountId": A, "create": {
            name: {"name": f"Thread {name}"} for name in "AB"}})["created"]
        self.box = {name: created[name]["id"] for name in "AB"}
        for key, subject, links, received, boxes, keywords in CORPUS:
            self.add(key, message(key, subject, links), boxes, keywords, received)
        return self

    RECEIVED = "2026-02-10T10:00:00Z"

    def thread_of(self, key):
        return self.jmap.call("Email/get", {"accountId": A, "ids": [self.ids[key]],
                                            "properties": ["threadId"]})["list"][0]["threadId"]

    def threads(self, thread_ids):
        """Thread/get, answered as {thread id: [corpus keys]}, and notFound."""
        result = self.jmap.call("Thread/get", {"accountId": A, "ids": thread_ids})
        return ({t["id"]: [self.keys[i] for i in t["emailIds"]] for t in result["list"]},
                result["notFound"])

    def counts(self, box):
        got = self.jmap.call("Mailbox/get", {"accountId": A, "ids": [self.box[box]],
                                             "properties": list(COUNTS)})["list"][0]
        return tuple(got[c] for c in COUNTS)

    def state(self, type_name):
        return self.jmap.call(f"{type_name}/get", {"accountId": A, "ids": []})["state"]

    def changes(self, method, since):
        """A /changes call ("Thread/changes", "Mailbox/changes", ...) since a state."""
        return self.jmap.call(method, {"accountId": A, "sinceState": since})


corpus, mail = corpus_fixtures(Mail)


# -- §3 threading --

def test_replies_by_in_reply_to_and_references_share_the_thread(mail):
    """§3: a message id in Message-ID, In-Reply-To or References of both messages, and the
    same base subject: x2 (In-Reply-To only), x3 (References only) join x1's Thread."""
    thread = mail.thread_of("x1")
    assert [mail.thread_of(k) for k in ("x2", "x3", "x4")] == [thread] * 3
    assert mail.threads([thread]) == ({thread: ["x1", "x3", "x2", "x4"]}, [])


def test_subject_prefixes_list_tags_case_and_white_space_are_ignored(mail):
    """§3: after stripping "Re:", "Fwd:", "[List-Tag]" and ignoring white space (and case),
    the subjects are the same: "[Team] RE: budget   REVIEW" is "Budget review"."""
    assert mail.thread_of("x4") == mail.thread_of("x1")
    assert mail.thread_of("x3") == mail.thread_of("x1")   # "Fwd: Re:"


def test_a_reply_with_a_different_subject_starts_a_new_thread(mail):
    """§3 condition 2: y1 references x1 but its subject is new, so it is a new Thread."""
    y_thread = mail.thread_of("y1")
    assert y_thread != mail.thread_of("x1")
    assert mail.threads([y_thread]) == ({y_thread: ["y1"]}, [])


def test_the_same_subject_without_references_starts_a_new_thread(mail):
    """§3 condition 1: z1 has x1's subject but no shared message id: a new Thread."""
    z_thread = mail.thread_of("z1")
    assert z_thread not in (mail.thread_of("x1"), mail.thread_of("y1"))
    assert mail.threads([z_thread]) == ({z_thread: ["z1"]}, [])


def test_a_reply_to_a_reply_with_a_new_subject_joins_that_new_thread(mail):
    """§3: "Re: Lunch on Friday?" referencing y1 joins y1's Thread, not x1's, though it
    also references x1."""
    reply = message("y2", "Re: Lunch on Friday?",
                    [("References", "<x1@example.com> <y1@example.com>")])
    mail.add("y2", reply, "A", received="2026-02-07T10:00:00Z")
    assert mail.thread_of("y2") == mail.thread_of("y1")
    assert mail.threads([mail.thread_of("y1")])[0] == {mail.thread_of("y1"): ["y1", "y2"]}


def test_a_parent_arriving_after_its_reply_joins_the_replys_thread(mail):
    """§3 condition 1 is symmetric: the parent's Message-ID is in the earlier reply's
    References, so the parent, imported second, joins the reply's Thread."""
    mail.add("r2", message("r2", "Re: Offsite", [("References", "<r1@example.com>")]), "A",
             received="2026-02-08T10:00:00Z")
    mail.add("r1", message("r1", "Offsite"), "A", received="2026-02-07T10:00:00Z")
    thread = mail.thread_of("r2")
    assert mail.thread_of("r1") == thread
    assert mail.threads([thread])[0] == {thread: ["r1", "r2"]}   # receivedAt order


def test_every_email_belongs_to_a_thread_that_lists_it(mail):
    """§3: every Email MUST belong to a Thread; its Thread's emailIds contain it."""
    got = mail.jmap.call("Email/get", {"accountId": A, "ids": list(mail.ids.values()),
                                       "properties": ["threadId"]})["list"]
    threads = {e["threadId"] for e in got}
    assert len(threads) == 3
    listed, not_found = mail.threads(sorted(threads))
    assert not_found == []
    assert sorted(k for keys in listed.values() for k in keys) == sorted(mail.ids)
    for email in got:
        assert mail.keys[email["id"]] in listed[email["threadId"]]


def test_email_ids_are_sorted_by_received_at_not_by_arrival(mail):
    """§3 emailIds: sorted by receivedAt, oldest first: x3 was imported after x2 but was
    received before it."""
    thread = mail.thread_of("x1")
    raw = message("x0", "Re: Budget review", [("In-Reply-To", "<x4@example.com>")])
    early = mail.add("x0", raw, "A", received="2026-01-31T10:00:00Z")
    assert mail.thread_of("x0") == thread
    assert mail.threads([thread])[0] == {thread: ["x0", "x1", "x3", "x2", "x4"]}
    assert early == mail.ids["x0"]


def test_email_ids_with_the_same_received_at_are_in_a_stable_order(mail):
    """§3 emailIds: an identical receivedAt sorts server-dependently but MUST be stable
    (jmapd: by id); the order does not change as the Thread grows."""
    same = "2026-02-01T10:00:00Z"   # x1's receivedAt
    mail.add("t1", message("t1", "Re: Budget review", [("In-Reply-To", "<x1@example.com>")]),
             "A", received=same)
    thread = mail.thread_of("x1")
    first = mail.threads([thread])[0][thread]
    assert first[:2] in (["x1", "t1"], ["t1", "x1"])
    assert first[2:] == ["x3", "x2", "x4"]
    mail.add("t2", message("t2", "Re: Budget review", [("In-Reply-To", "<x1@example.com>")]),
             "A", received="2026-02-09T10:00:00Z")
    assert mail.threads([thread])[0][thread] == first + ["t2"]
    assert first[:2] == sorted(["x1", "t1"], key=lambda k: mail.ids[k])


def test_email_ids_are_sorted_by_received_at_to_the_fraction_of_a_second(mail):
    """§3 emailIds: sorted by receivedAt, oldest first: an Email received at .200 comes
    before one received at .700 of the same second, though imported after it."""
    mail.add("f1", message("f1", "Re: Budget review", [("In-Reply-To", "<x4@example.com>")]),
             "A", received="2026-02-09T10:00:00.700Z")
    mail.add("f2", message("f2", "Re: Budget review", [("In-Reply-To", "<x4@example.com>")]),
             "A", received="2026-02-09T10:00:00.200Z")
    thread = mail.thread_of("x1")
    assert mail.threads([thread])[0] == {thread: ["x1", "x3", "x2", "x4", "f2", "f1"]}


# -- §3.1 Thread/get --

def test_thread_get_reports_unknown_ids_in_not_found(mail):
    """§3.1 / RFC 8620 §5.1: ids that are not Threads are in notFound."""
    thread = mail.thread_of("y1")
    assert mail.threads([thread, "Tnope", mail.ids["y1"]]) == (
        {thread: ["y1"]}, ["Tnope", mail.ids["y1"]])


def test_thread_get_has_only_id_and_email_ids(mail):
    """§3: a Thread has the properties id and emailIds."""
    thread = mail.thread_of("z1")
    got = mail.jmap.call("Thread/get", {"accountId": A, "ids": [thread]})["list"]
    assert got == [{"id": thread, "emailIds": [mail.ids["z1"]]}]
    assert mail.jmap.error("Thread/get", {"accountId": A, "ids": [thread],
                                          "properties": ["subject"]}) == "invalidArguments"


def test_thread_is_read_only(mail):
    """§3: Thread supports get and changes only: Thread/set is an unknownMethod."""
    assert mail.jmap.error("Thread/set", {"accountId": A, "destroy": [mail.thread_of("z1")]}) \
        == "unknownMethod"


# -- §3.2 Thread/changes --

def test_thread_changes_reports_a_thread_a_new_email_joined_as_updated(mail):
    """§3.2: a reply joining Thread X updates X; a new conversation creates a Thread."""
    since = mail.state("Thread")
    mail.add("x5", message("x5", "Re: Budget review", [("In-Reply-To", "<x4@example.com>")]), "A")
    mail.add("n1", message("n1", "Something else"), "A")
    changes = mail.changes("Thread/changes", since)
    assert changes["updated"] == [mail.thread_of("x1")]
    assert changes["created"] == [mail.thread_of("n1")]
    assert changes["destroyed"] == []
    thread = mail.thread_of("x1")
    assert mail.threads([thread])[0] == {thread: ["x1", "x3", "x2", "x4", "x5"]}


def test_thread_changes_reports_a_thread_that_lost_an_email_as_updated(mail):
    """§3.2: destroying x2 updates Thread X, whose emailIds no longer hold it."""
    thread = mail.thread_of("x1")
    since = mail.state("Thread")
    mail.set(destroy=[mail.ids["x2"]])
    changes = mail.changes("Thread/changes", since)
    assert (changes["created"], changes["updated"], changes["destroyed"]) == ([], [thread], [])
    assert mail.threads([thread])[0] == {thread: ["x1", "x3", "x4"]}


def test_thread_is_destroyed_with_its_last_email(mail):
    """§3: a Thread is its Emails: destroying z1, its only Email, destroys Thread Z."""
    thread = mail.thread_of("z1")
    since = mail.state("Thread")
    mail.set(destroy=[mail.ids["z1"]])
    changes = mail.changes("Thread/changes", since)
    assert (changes["created"], changes["updated"], changes["destroyed"]) == ([], [], [thread])
    assert mail.threads([thread]) == ({}, [thread])


def test_a_new_email_does_not_join_a_destroyed_thread(mail):
    """§3: once Thread Z is gone, a message with z1's subject starts a Thread of its own."""
    old = mail.thread_of("z1")
    mail.set(destroy=[mail.ids["z1"]])
    mail.add("z2", message("z2", "Re: Budget review", [("In-Reply-To", "<z1@example.com>")]), "B")
    new = mail.thread_of("z2")
    assert new != old
    assert mail.threads([new, old]) == ({new: ["z2"]}, [old])


def test_thread_changes_is_empty_after_a_keyword_change(mail):
    """§3.2: keywords and mailboxes are not Thread properties: no Thread change."""
    since = mail.state("Thread")
    mail.set(update={mail.ids["x1"]: {"keywords/$flagged": True,
                                      f"mailboxIds/{mail.box['B']}": True}})
    changes = mail.changes("Thread/changes", since)
    assert (changes["created"], changes["updated"], changes["destroyed"]) == ([], [], [])
    assert changes["newState"] == since


# -- §2 Mailbox counts --

def test_mailbox_counts_after_import(mail):
    """§2: totalEmails, unreadEmails (neither $seen nor $draft), totalThreads and
    unreadThreads. A: x1 x2 x4 (thread X, read) and y1 (unread); B: x3 ($draft) x4 (X) and
    z1 (unread)."""
    assert mail.counts("A") == (4, 1, 2, 1)
    assert mail.counts("B") == (3, 1, 2, 1)


def test_an_email_with_draft_counts_as_read(mail):
    """§2 unreadEmails: an Email with $draft (and no $seen) is not unread."""
    mail.set(update={mail.ids["z1"]: {"keywords/$draft": True}})
    assert mail.counts("B") == (3, 0, 2, 0)
    mail.set(update={mail.ids["z1"]: {"keywords": {}}})
    assert mail.counts("B") == (3, 1, 2, 1)


def test_an_email_with_seen_counts_as_read(mail):
    """§2 unreadEmails: an Email with $seen is not unread; other keywords do not matter."""
    mail.set(update={mail.ids["y1"]: {"keywords/$seen": True}})
    assert mail.counts("A") == (4, 0, 2, 0)
    mail.set(update={mail.ids["y1"]: {"keywords": {"$flagged": True, "$answered": True}}})
    assert mail.counts("A") == (4, 1, 2, 1)


def test_unseeing_an_email_in_two_mailboxes_changes_both_counts(mail):
    """§2: x4 is in A and B: removing its $seen makes it, and Thread X, unread in both."""
    mail.set(update={mail.ids["x4"]: {"keywords/$seen": None}})
    assert mail.counts("A") == (4, 2, 2, 2)
    assert mail.counts("B") == (3, 2, 2, 2)


def test_two_unread_emails_of_one_thread_count_as_one_unread_thread(mail):
    """§2 unreadThreads counts Threads, not Emails: x1 and x2 unread are one Thread."""
    mail.set(update={mail.ids["x1"]: {"keywords/$seen": None},
                     mail.ids["x2"]: {"keywords/$seen": None}})
    assert mail.counts("A") == (4, 3, 2, 2)


def test_unread_threads_counts_threads_with_an_unread_email_in_this_mailbox(mail):
    """§2 unreadThreads is not mandated; jmapd uses the RFC's "simplest solution": Threads
    with an Email both in this Mailbox and unread. x3 (only in B) becoming unread makes
    Thread X unread in B but not in A."""
    mail.set(update={mail.ids["x3"]: {"keywords/$draft": None}})
    assert mail.counts("B") == (3, 2, 2, 2)
    assert mail.counts("A") == (4, 1, 2, 1)


def test_moving_an_email_moves_its_counts(mail):
    """§2: moving y1 (unread, its own Thread) from A to B moves one Email and one Thread."""
    mail.set(update={mail.ids["y1"]: {"mailboxIds": {mail.box["B"]: True}}})
    assert mail.counts("A") == (3, 0, 1, 0)
    assert mail.counts("B") == (4, 2, 3, 2)


def test_adding_an_email_to_a_second_mailbox_counts_it_in_both(mail):
    """§2: an Email in several Mailboxes counts in each; z1 joins A too."""
    mail.set(update={mail.ids["z1"]: {f"mailboxIds/{mail.box['A']}": True}})
    assert mail.counts("A") == (5, 2, 3, 2)
    assert mail.counts("B") == (3, 1, 2, 1)


def test_a_thread_counts_once_however_many_of_its_emails_are_in_the_mailbox(mail):
    """§2 totalThreads: Threads with at least one Email here: x3 joining A adds an Email,
    not a Thread."""
    mail.set(update={mail.ids["x3"]: {f"mailboxIds/{mail.box['A']}": True}})
    assert mail.counts("A") == (5, 1, 2, 1)


def test_destroying_emails_lowers_the_counts(mail):
    """§2: destroyed Emails leave the counts; Thread X stays in B until x3 and x4 are gone."""
    mail.set(destroy=[mail.ids["x4"]])
    assert mail.counts("A") == (3, 1, 2, 1)
    assert mail.counts("B") == (2, 1, 2, 1)
    mail.set(destroy=[mail.ids["x3"], mail.ids["z1"]])
    assert mail.counts("B") == (0, 0, 0, 0)
    assert mail.counts("A") == (3, 1, 2, 1)


def test_an_import_raises_the_counts(mail):
    """§2: a new unread reply in thread X in A: one more (unread) Email, X now unread."""
    mail.add("x5", message("x5", "Re: Budget review", [("In-Reply-To", "<x4@example.com>")]), "A")
    assert mail.counts("A") == (5, 2, 2, 2)


# -- §2.2 Mailbox/changes updatedProperties --

def test_mailbox_changes_after_a_seen_change_lists_only_the_counts(mail):
    """§2.2: if only the counts changed, updatedProperties lists the four counts."""
    since = mail.state("Mailbox")
    mail.set(update={mail.ids["y1"]: {"keywords/$seen": True}})
    changes = mail.changes("Mailbox/changes", since)
    assert (changes["created"], changes["updated"], changes["destroyed"]) == (
        [], [mail.box["A"]], [])
    assert changes["updatedProperties"] == list(COUNTS)


def test_mailbox_changes_after_an_import_lists_only_the_counts(mail):
    """§2.2: an Email arriving changes only the counts of its Mailboxes."""
    since = mail.state("Mailbox")
    mail.add("n1", message("n1", "Hello"), "B")
    changes = mail.changes("Mailbox/changes", since)
    assert changes["updated"] == [mail.box["B"]]
    assert changes["updatedProperties"] == list(COUNTS)


def test_mailbox_changes_after_a_move_lists_both_mailboxes(mail):
    """§2.2: a move changes the counts of the Mailbox left and the one joined."""
    since = mail.state("Mailbox")
    mail.set(update={mail.ids["z1"]: {"mailboxIds": {mail.box["A"]: True}}})
    changes = mail.changes("Mailbox/changes", since)
    assert sorted(changes["updated"]) == sorted([mail.box["A"], mail.box["B"]])
    assert changes["updatedProperties"] == list(COUNTS)


def test_mailbox_changes_after_a_rename_has_null_updated_properties(mail):
    """§2.2: when more than the counts changed, updatedProperties is null."""
    since = mail.state("Mailbox")
    mail.set(update={mail.ids["y1"]: {"keywords/$seen": True}})
    mail.jmap.call("Mailbox/set", {"accountId": A, "update": {mail.box["A"]: {"name": "Renamed"}}})
    changes = mail.changes("Mailbox/changes", since)
    assert changes["updated"] == [mail.box["A"]]
    assert changes["updatedProperties"] is None


def test_mailbox_changes_after_a_flag_change_has_no_update(mail):
    """§2.2: $flagged changes no count, so no Mailbox changed."""
    since = mail.state("Mailbox")
    mail.set(update={mail.ids["y1"]: {"keywords/$flagged": True}})
    changes = mail.changes("Mailbox/changes", since)
    assert (changes["created"], changes["updated"], changes["destroyed"]) == ([], [], [])
    assert changes["newState"] == since


# -- §2.5 Mailbox/set destroy --

def test_destroying_a_mailbox_with_emails_is_mailbox_has_email(mail):
    """§2.5: onDestroyRemoveEmails false (the default): mailboxHasEmail, nothing changes."""
    before = mail.counts("B")
    for extra in ({}, {"onDestroyRemoveEmails": False}):
        result = mail.jmap.call("Mailbox/set", {"accountId": A, "destroy": [mail.box["B"]],
                                                **extra})
        assert result["destroyed"] is None
        assert result["notDestroyed"][mail.box["B"]]["type"] == "mailboxHasEmail"
    assert mail.counts("B") == before
    got = mail.jmap.call("Email/get", {"accountId": A, "ids": [mail.ids["x3"]],
                                       "properties": ["mailboxIds"]})
    assert got["list"][0]["mailboxIds"] == {mail.box["B"]: True}


def test_destroying_a_mailbox_with_remove_emails_keeps_emails_also_elsewhere(mail):
    """§2.5 onDestroyRemoveEmails true: Emails only in B (x3, z1) are destroyed; x4, also
    in A, just leaves B."""
    result = mail.jmap.call("Mailbox/set", {"accountId": A, "destroy": [mail.box["B"]],
                                            "onDestroyRemoveEmails": True})
    assert result["destroyed"] == [mail.box["B"]]
    got = mail.jmap.call("Email/get", {"accountId": A, "properties": ["mailboxIds"],
                                       "ids": [mail.ids[k] for k in ("x3", "z1", "x4", "x1")]})
    assert got["notFound"] == [mail.ids["x3"], mail.ids["z1"]]
    assert {mail.keys[e["id"]]: e["mailboxIds"] for e in got["list"]} == {
        "x4": {mail.box["A"]: True}, "x1": {mail.box["A"]: True}}
    assert mail.counts("A") == (4, 1, 2, 1)


def test_destroying_a_mailbox_with_remove_emails_updates_threads(mail):
    """§2.5 with §3: the destroyed Emails leave their Threads; Z, now empty, is destroyed."""
    x_thread, z_thread = mail.thread_of("x1"), mail.thread_of("z1")
    emails_since, threads_since = mail.state("Email"), mail.state("Thread")
    mail.jmap.call("Mailbox/set", {"accountId": A, "destroy": [mail.box["B"]],
                                   "onDestroyRemoveEmails": True})
    assert mail.threads([x_thread, z_thread]) == ({x_thread: ["x1", "x2", "x4"]}, [z_thread])
    threads = mail.changes("Thread/changes", threads_since)
    assert (threads["updated"], threads["destroyed"]) == ([x_thread], [z_thread])
    emails = mail.changes("Email/changes", emails_since)
    assert emails["updated"] == [mail.ids["x4"]]
    assert sorted(emails["destroyed"]) == sorted([mail.ids["x3"], mail.ids["z1"]])


def test_an_empty_mailbox_is_destroyed_without_remove_emails(mail):
    """§2.5: mailboxHasEmail is only for a Mailbox that still has Emails."""
    mail.set(destroy=[mail.ids["x3"], mail.ids["z1"]])
    mail.set(update={mail.ids["x4"]: {f"mailboxIds/{mail.box['B']}": None}})
    assert mail.counts("B") == (0, 0, 0, 0)
    result = mail.jmap.call("Mailbox/set", {"accountId": A, "destroy": [mail.box["B"]]})
    assert result["destroyed"] == [mail.box["B"]]
