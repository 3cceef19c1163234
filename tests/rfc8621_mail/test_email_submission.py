"""RFC 8621 §7: EmailSubmission, and the sending it does through the one delivery path."""

import pytest

import jmapd
from conftest import Jmap

CORE, MAIL, SUBMISSION = jmapd.URN_CORE, jmapd.URN_MAIL, jmapd.URN_SUBMISSION
USING = (CORE, MAIL, SUBMISSION)
ALICE = {"name": "Alice Archer", "email": "alice@example.com"}
BOB = {"name": "Bob Baker", "email": "bob@example.com"}
NOW = "2026-01-01T09:00:00Z"  # the fixtures' FixedClock


def draft(jmap, **fields):
    """An Email in alice's Drafts, from alice to bob unless fields say otherwise."""
    email = {"mailboxIds": {jmap.mailbox_ids()["Drafts"]: True}, "keywords": {"$draft": True},
             "from": [ALICE], "to": [BOB], "subject": "Lunch?",
             "textBody": [{"partId": "t", "type": "text/plain"}],
             "bodyValues": {"t": {"value": "Noon at the usual place?"}}, **fields}
    email = {k: v for k, v in email.items() if v is not None}
    result = jmap.call("Email/set", {"accountId": jmap.account_id, "create": {"d": email}})
    assert result["notCreated"] is None, result["notCreated"]
    return result["created"]["d"]["id"]


def submit(jmap, email_id, **submission):
    """EmailSubmission/set create of one submission; its created entry or SetError."""
    result = jmap.call("EmailSubmission/set", {"accountId": jmap.account_id, "create": {
        "s": {"identityId": "Iprimary", "emailId": email_id, **submission}}}, USING)
    return (result["created"] or {}).get("s") or result["notCreated"]["s"]


def envelope(mail_from="alice@example.com", *rcpt_to, parameters=None):
    return {"mailFrom": {"email": mail_from, "parameters": parameters},
            "rcptTo": [{"email": r, "parameters": None} for r in rcpt_to or ["bob@example.com"]]}


def inbox_subjects(user_jmap):
    inbox = user_jmap.mailbox_ids()["Inbox"]
    ids = user_jmap.call("Email/query", {"accountId": user_jmap.account_id,
                                         "filter": {"inMailbox": inbox}})["ids"]
    listed = user_jmap.call("Email/get", {"accountId": user_jmap.account_id, "ids": ids,
                                          "properties": ["subject"]})["list"]
    return [e["subject"] for e in listed]


def submission(jmap, submission_id):
    return jmap.call("EmailSubmission/get", {"accountId": jmap.account_id,
                                             "ids": [submission_id]}, USING)["list"][0]


# --- sending ---------------------------------------------------------------------

def test_7_5_a_submission_delivers_to_a_local_recipient_at_once(jmap, bob):
    before = bob.call("Email/get", {"accountId": "bob", "ids": []})["state"]
    created = submit(jmap, draft(jmap), envelope=envelope())
    assert created == {
        "id": created["id"], "threadId": created["threadId"], "sendAt": NOW,
        "undoStatus": "final", "dsnBlobIds": [], "mdnBlobIds": [],
        "deliveryStatus": {"bob@example.com": {
            "smtpReply": "250 2.1.5 delivered to bob's Inbox", "delivered": "yes",
            "displayed": "unknown"}}}
    assert inbox_subjects(bob) == ["Lunch?"]
    changes = bob.call("Email/changes", {"accountId": "bob", "sinceState": before})
    assert len(changes["created"]) == 1


def test_7_an_omitted_envelope_is_derived_and_shown_in_created(jmap):
    email_id = draft(jmap, cc=[{"name": None, "email": "carol@example.org"}],
                     bcc=[{"name": None, "email": "BOB@example.com"},
                          {"name": None, "email": "dave@example.net"}])
    created = submit(jmap, email_id)
    assert created["envelope"] == {
        "mailFrom": {"email": "alice@example.com", "parameters": None},
        "rcptTo": [{"email": "bob@example.com", "parameters": None},
                   {"email": "carol@example.org", "parameters": None},
                   {"email": "dave@example.net", "parameters": None}]}


def test_7_a_null_envelope_is_derived_too(jmap):
    created = submit(jmap, draft(jmap), envelope=None)
    assert created["envelope"]["rcptTo"] == [{"email": "bob@example.com", "parameters": None}]


def test_7_5_every_from_address_must_be_allowed_even_with_a_sender(jmap):
    email_id = draft(jmap, sender=[{"name": None, "email": "alice@example.com"}],
                     **{"from": [ALICE, {"name": None, "email": "alice+team@example.com"}]})
    error = submit(jmap, email_id)
    assert error["type"] == "forbiddenFrom"  # alice+team is not this Identity's address


def test_7_the_derived_mail_from_is_the_sender_field(core, jmap):
    """With a domain-wide Identity (as an administrator may provision, §6 "*@domain")."""
    core.store.insert_initial_object("alice", "Identity", "Iteam", {
        "name": "Team", "email": "*@example.com", "replyTo": None, "bcc": None,
        "textSignature": "", "htmlSignature": "", "mayDelete": False}, 0)
    email_id = draft(jmap, sender=[{"name": None, "email": "erin@example.com"}],
                     **{"from": [{"name": None, "email": "carol@example.com"},
                                 {"name": None, "email": "dave@example.com"}]})
    created = submit(jmap, email_id, identityId="Iteam")
    assert created["envelope"]["mailFrom"]["email"] == "erin@example.com"


def test_7_a_sender_the_identity_does_not_allow_falls_back_to_the_identity(jmap):
    identity = jmap.call("Identity/set", {"accountId": "alice", "create": {"w": {
        "email": "alice+work@example.com"}}}, USING)["created"]["w"]["id"]
    email_id = draft(jmap, sender=[{"name": None, "email": "alice@example.com"}],
                     **{"from": [{"name": None, "email": "alice+work@example.com"}]})
    created = submit(jmap, email_id, identityId=identity)
    assert created["envelope"]["mailFrom"] == {"email": "alice+work@example.com",
                                               "parameters": None}


def test_7_the_submission_reads_back_with_the_emails_thread(jmap):
    email_id = draft(jmap)
    created = submit(jmap, email_id, envelope=envelope())
    thread = jmap.call("Email/get", {"accountId": "alice", "ids": [email_id],
                                     "properties": ["threadId"]})["list"][0]["threadId"]
    got = submission(jmap, created["id"])
    assert (got["emailId"], got["identityId"], got["threadId"], got["envelope"]) == (
        email_id, "Iprimary", thread, envelope())


def test_7_5_bcc_is_removed_from_the_delivered_message(core, jmap, bob):
    submit(jmap, draft(jmap, bcc=[{"name": None, "email": "bob@example.com"}], to=[
        {"name": None, "email": "carol@example.org"}]))
    email = bob.call("Email/get", {"accountId": "bob", "ids": bob.call(
        "Email/query", {"accountId": "bob"})["ids"], "properties": [
        "subject", "bcc", "header:Bcc", "blobId"]})["list"][0]
    assert (email["subject"], email["bcc"], email["header:Bcc"]) == ("Lunch?", None, None)
    raw, _ = jmapd.download_blob(core, core.user("bob"), "bob", email["blobId"])
    assert b"\nBcc:" not in raw and raw.startswith(b"Return-Path: <alice@example.com>\r\n")
    assert core.outbox[0].message["Bcc"] is None


def test_7_5_the_senders_draft_keeps_its_bcc(jmap):
    email_id = draft(jmap, bcc=[{"name": None, "email": "bob@example.com"}])
    submit(jmap, email_id)
    assert jmap.call("Email/get", {"accountId": "alice", "ids": [email_id],
                                   "properties": ["bcc"]})["list"][0]["bcc"] == [
        {"name": None, "email": "bob@example.com"}]


def test_7_5_mail_for_other_servers_lands_in_the_outbox(core, jmap):
    created = submit(jmap, draft(jmap, to=[{"name": "Carol", "email": "carol@example.org"}]))
    assert created["deliveryStatus"] == {"carol@example.org": {
        "smtpReply": "250 2.0.0 kept in jmapd's outbox", "delivered": "unknown",
        "displayed": "unknown"}}
    [sent] = core.outbox
    assert (sent.mail_from, sent.rcpt_to, sent.account_id, sent.submission_id) == (
        "alice@example.com", ("carol@example.org",), "alice", created["id"])
    assert (sent.message["Subject"], sent.message["To"]) == ("Lunch?",
                                                             "Carol <carol@example.org>")
    assert sent.sent_at == NOW


def test_7_5_a_failed_create_leaves_nothing_in_the_outbox(core, jmap):
    email_id = draft(jmap, to=[{"name": None, "email": "carol@example.org"}])
    result = jmap.call("EmailSubmission/set", {"accountId": "alice", "create": {
        "ok": {"identityId": "Iprimary", "emailId": email_id},
        "bad": {"identityId": "Iprimary", "emailId": email_id,
                "envelope": envelope("alice@example.com", "not-an-address")}}}, USING)
    assert list(result["created"]) == ["ok"] and list(result["notCreated"]) == ["bad"]
    assert [m.rcpt_to for m in core.outbox] == [("carol@example.org",)]


def test_7_5_a_sub_address_reaches_its_user(jmap, bob):
    submit(jmap, draft(jmap), envelope=envelope("alice@example.com", "bob+lists@example.com"))
    assert inbox_subjects(bob) == ["Lunch?"]


# --- onSuccessUpdateEmail / onSuccessDestroyEmail -----------------------------------

def test_7_5_on_success_update_email_is_one_implicit_email_set_after(jmap):
    boxes = jmap.mailbox_ids()
    email_id = draft(jmap)
    response = jmap.request([["EmailSubmission/set", {
        "accountId": "alice",
        "create": {"k1": {"identityId": "Iprimary", "emailId": email_id}},
        "onSuccessUpdateEmail": {"#k1": {f"mailboxIds/{boxes['Drafts']}": None,
                                         f"mailboxIds/{boxes['Sent']}": True,
                                         "keywords/$draft": None}}}, "0"]], USING)
    names = [(name, call_id) for name, _, call_id in response["methodResponses"]]
    assert names == [("EmailSubmission/set", "0"), ("Email/set", "0")]
    assert response["methodResponses"][1][1]["updated"] == {email_id: None}
    got = jmap.call("Email/get", {"accountId": "alice", "ids": [email_id],
                                  "properties": ["mailboxIds", "keywords"]})["list"][0]
    assert (got["mailboxIds"], got["keywords"]) == ({boxes["Sent"]: True}, {})


def test_7_5_on_success_destroy_email_destroys_the_sent_email(jmap):
    email_id = draft(jmap)
    response = jmap.request([["EmailSubmission/set", {
        "accountId": "alice", "create": {"k1": {"identityId": "Iprimary", "emailId": email_id}},
        "onSuccessDestroyEmail": ["#k1"]}, "0"]], USING)
    assert response["methodResponses"][1][:2] == ["Email/set", {
        **response["methodResponses"][1][1], "destroyed": [email_id]}]


def test_7_5_a_failed_submission_asks_for_no_email_change(jmap):
    email_id = draft(jmap, to=None)
    response = jmap.request([["EmailSubmission/set", {
        "accountId": "alice", "create": {"k1": {"identityId": "Iprimary", "emailId": email_id}},
        "onSuccessUpdateEmail": {"#k1": {"keywords/$draft": None}},
        "onSuccessDestroyEmail": ["#k1"]}, "0"]], USING)
    assert [r[0] for r in response["methodResponses"]] == ["EmailSubmission/set"]
    assert response["methodResponses"][0][1]["notCreated"]["k1"]["type"] == "noRecipients"


def test_7_5_the_implicit_email_set_runs_under_the_submission_capability(jmap):
    """A client that uses only core and submission still gets its Email updated."""
    email_id = draft(jmap)
    response = jmap.request([["EmailSubmission/set", {
        "accountId": "alice", "create": {"k1": {"identityId": "Iprimary", "emailId": email_id}},
        "onSuccessUpdateEmail": {"#k1": {"keywords/$draft": None}}}, "0"]], (CORE, SUBMISSION))
    assert response["methodResponses"][1][1]["updated"] == {email_id: None}


def test_7_5_on_success_arguments_must_be_typed(jmap):
    name, result = jmap.call_raw("EmailSubmission/set", {
        "accountId": "alice", "onSuccessDestroyEmail": "#k1"}, USING)
    assert (name, result["type"]) == ("error", "invalidArguments")
    result = jmap.call("EmailSubmission/set", {"accountId": "alice", "onSuccessUpdateEmail":
                                               None, "onSuccessDestroyEmail": None}, USING)
    assert result["created"] is None


def test_7_5_a_submission_may_reference_an_email_created_in_the_same_request(jmap, bob):
    boxes = jmap.mailbox_ids()
    response = jmap.request([
        ["Email/set", {"accountId": "alice", "create": {"d": {
            "mailboxIds": {boxes["Drafts"]: True}, "from": [ALICE], "to": [BOB],
            "subject": "Same request", "textBody": [{"partId": "t", "type": "text/plain"}],
            "bodyValues": {"t": {"value": "hi"}}}}}, "0"],
        ["EmailSubmission/set", {"accountId": "alice", "create": {"s": {
            "identityId": "Iprimary", "emailId": "#d"}}}, "1"]], USING)
    assert response["methodResponses"][1][1]["created"]["s"]["undoStatus"] == "final"
    assert inbox_subjects(bob) == ["Same request"]


# --- §7.5 SetErrors ---------------------------------------------------------------

def test_7_5_an_unknown_identity_or_email_is_invalidProperties(jmap):
    email_id = draft(jmap)
    assert submit(jmap, email_id, identityId="Inope") == {
        "type": "invalidProperties", "properties": ["identityId"],
        "description": "identityId: no Identity 'Inope'"}
    error = submit(jmap, "Enope")
    assert (error["type"], error["properties"]) == ("invalidProperties", ["emailId"])


@pytest.mark.parametrize("fields, properties", [
    ({"from": None}, ["from"]),
    ({"from": [ALICE, {"name": None, "email": "alice+2@example.com"}]}, ["sender"]),
    ({"from": [{"name": None, "email": "not an address"}]}, ["from"]),
    ({"from": None, "sender": [ALICE, BOB]}, ["from", "sender"]),
])
def test_7_5_an_email_that_cannot_be_sent_is_invalidEmail_listing_properties(
        jmap, fields, properties):
    error = submit(jmap, draft(jmap, **fields))
    assert (error["type"], error["properties"]) == ("invalidEmail", properties)


def test_7_5_a_from_the_identity_does_not_allow_is_forbiddenFrom(jmap):
    error = submit(jmap, draft(jmap, **{"from": [BOB]}))
    assert error == {"type": "forbiddenFrom", "description": "the Identity "
                     "(alice@example.com) does not allow sending as bob@example.com"}


def test_7_5_an_envelope_sender_the_identity_does_not_allow_is_forbiddenMailFrom(jmap):
    error = submit(jmap, draft(jmap), envelope=envelope("bob@example.com"))
    assert error["type"] == "forbiddenMailFrom"


def test_7_an_empty_envelope_sender_is_allowed(jmap, bob):
    assert submit(jmap, draft(jmap), envelope=envelope(""))["undoStatus"] == "final"
    assert inbox_subjects(bob) == ["Lunch?"]


def test_7_5_no_recipient_is_noRecipients(jmap):
    assert submit(jmap, draft(jmap, to=None))["type"] == "noRecipients"
    assert submit(jmap, draft(jmap), envelope={"mailFrom": {"email": "alice@example.com"},
                                               "rcptTo": []})["type"] == "noRecipients"


def test_7_5_bad_addresses_are_invalidRecipients_listing_them(jmap):
    error = submit(jmap, draft(jmap), envelope=envelope(
        "alice@example.com", "bob@example.com", "no-at-sign", "two@@example.com"))
    assert (error["type"], error["invalidRecipients"]) == (
        "invalidRecipients", ["no-at-sign", "two@@example.com"])


def test_7_5_too_many_recipients_is_tooManyRecipients_with_the_limit(demo_template):
    core = demo_template.clone(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds())
    core.limits["maxRecipients"] = 2
    jmap = Jmap(core, "alice")
    error = submit(jmap, draft(jmap), envelope=envelope(
        "alice@example.com", "a@example.org", "b@example.org", "c@example.org"))
    assert (error["type"], error["maxRecipients"]) == ("tooManyRecipients", 2)
    core.close()


def test_7_5_a_message_over_the_sending_limit_is_tooLarge_with_maxSize(demo_template):
    core = demo_template.clone(clock=jmapd.FixedClock(), ids=jmapd.SequentialIds())
    core.limits["maxSizeSubmission"] = 300
    jmap = Jmap(core, "alice")
    error = submit(jmap, draft(jmap))
    assert (error["type"], error["maxSize"]) == ("tooLarge", 300)
    core.close()


def test_7_5_a_user_barred_from_sending_gets_forbiddenToSend_with_the_reason(core, jmap):
    jmapd.forbid_sending(core, "alice", "Sending is paused: unusual activity.")
    assert submit(jmap, draft(jmap)) == {"type": "forbiddenToSend",
                                         "description": "Sending is paused: unusual activity."}
    jmapd.forbid_sending(core, "alice", None)
    assert submit(jmap, draft(jmap))["undoStatus"] == "final"


@pytest.mark.parametrize("extra, problem", [
    ({"undoStatus": "pending"}, ["undoStatus"]),
    ({"undoStatus": "final"}, ["undoStatus"]),
    ({"threadId": "T1"}, ["threadId"]),
    ({"sendAt": NOW}, ["sendAt"]),
    ({"deliveryStatus": None}, ["deliveryStatus"]),
    ({"envelope": {"mailFrom": {"email": "alice@example.com"}}}, ["envelope"]),
    ({"envelope": envelope("alice@example.com", parameters={"NOTIFY": "NEVER"})}, ["envelope"]),
])
def test_7_server_set_or_malformed_properties_are_invalidProperties(jmap, extra, problem):
    error = submit(jmap, draft(jmap), **extra)
    assert (error["type"], error["properties"]) == ("invalidProperties", problem)


def test_7_5_rcpt_to_parameters_are_not_supported(jmap):
    env = envelope()
    env["rcptTo"][0]["parameters"] = {"NOTIFY": "SUCCESS"}
    error = submit(jmap, draft(jmap), envelope=env)
    assert (error["type"], error["properties"]) == ("invalidProperties", ["envelope"])


@pytest.mark.parametrize("parameters", [{"BODY": "8BITMIME", "SIZE": "1000"},
                                        {"smtputf8": None}])
def test_1_3_2_parameters_of_advertised_extensions_are_accepted(jmap, parameters):
    assert submit(jmap, draft(jmap), envelope=envelope(parameters=parameters))[
        "undoStatus"] == "final"


# --- FUTURERELEASE and undoStatus ---------------------------------------------------

def test_1_3_2_the_capability_advertises_delayed_send(core):
    session = core.session("alice", "http://x")
    assert session["capabilities"][SUBMISSION] == {}
    assert session["accounts"]["alice"]["accountCapabilities"][SUBMISSION] == {
        "maxDelayedSend": 604800, "submissionExtensions": {
            "SIZE": ["25000000"], "8BITMIME": [], "SMTPUTF8": [], "FUTURERELEASE": ["604800"]}}


def test_7_a_held_submission_is_pending_until_its_send_at(core, jmap, bob):
    created = submit(jmap, draft(jmap), envelope=envelope(parameters={"HOLDFOR": "3600"}))
    assert (created["undoStatus"], created["sendAt"]) == ("pending", "2026-01-01T10:00:00Z")
    assert created["deliveryStatus"]["bob@example.com"]["delivered"] == "queued"
    assert inbox_subjects(bob) == []
    core.clock.advance(3599)
    assert inbox_subjects(bob) == []
    core.clock.advance(1)
    assert inbox_subjects(bob) == ["Lunch?"]  # released before the next request runs
    got = submission(jmap, created["id"])
    assert (got["undoStatus"], got["deliveryStatus"]["bob@example.com"]["delivered"]) == (
        "final", "yes")


def test_7_hold_until_sets_send_at(jmap):
    created = submit(jmap, draft(jmap), envelope=envelope(parameters={
        "holduntil": "2026-01-02T09:00:00+01:00"}))
    assert (created["undoStatus"], created["sendAt"]) == ("pending", "2026-01-02T08:00:00Z")


@pytest.mark.parametrize("parameters", [
    {"HOLDFOR": "604801"}, {"HOLDFOR": "-5"}, {"HOLDFOR": None},
    {"HOLDFOR": "10", "HOLDUNTIL": "2026-01-01T10:00:00Z"},
    {"HOLDUNTIL": "tomorrow"}, {"HOLDUNTIL": "2026-01-09T09:00:01Z"},
    {"BODY": "BINARYMIME"}, {"SMTPUTF8": "yes"}, {"SIZE": "big"}, {"ENVID": "x"},
])
def test_7_bad_mail_from_parameters_are_invalidProperties(jmap, parameters):
    error = submit(jmap, draft(jmap), envelope=envelope(parameters=parameters))
    assert (error["type"], error["properties"]) == ("invalidProperties", ["envelope"])


def test_7_a_pending_submission_can_be_canceled_and_is_never_sent(core, jmap, bob):
    created = submit(jmap, draft(jmap), envelope=envelope(parameters={"HOLDFOR": "60"}))
    result = jmap.call("EmailSubmission/set", {"accountId": "alice", "update": {
        created["id"]: {"undoStatus": "canceled"}}}, USING)
    canceled = {"bob@example.com": {
        "smtpReply": "550 5.0.0 canceled by the sender before it was sent",
        "delivered": "no", "displayed": "unknown"}}
    assert result["updated"] == {created["id"]: {"deliveryStatus": canceled}}  # §5.3
    core.clock.advance(120)
    assert inbox_subjects(bob) == []
    got = submission(jmap, created["id"])
    assert (got["undoStatus"], got["deliveryStatus"]) == ("canceled", canceled)


def test_7_5_a_final_submission_cannot_be_unsent(jmap):
    created = submit(jmap, draft(jmap))
    result = jmap.call("EmailSubmission/set", {"accountId": "alice", "update": {
        created["id"]: {"undoStatus": "canceled"}}}, USING)
    assert result["notUpdated"][created["id"]]["type"] == "cannotUnsend"


@pytest.mark.parametrize("status", ["pending", "final"])
def test_7_undo_status_may_only_be_set_to_canceled(jmap, status):
    created = submit(jmap, draft(jmap), envelope=envelope(parameters={"HOLDFOR": "60"}))
    result = jmap.call("EmailSubmission/set", {"accountId": "alice", "update": {
        created["id"]: {"undoStatus": "canceled"}}}, USING)
    result = jmap.call("EmailSubmission/set", {"accountId": "alice", "update": {
        created["id"]: {"undoStatus": status}}}, USING)
    error = result["notUpdated"][created["id"]]
    assert (error["type"], error["properties"]) == ("invalidProperties", ["undoStatus"])


def test_7_5_destroying_the_email_does_not_cancel_a_held_send(core, jmap, bob):
    email_id = draft(jmap)
    submit(jmap, email_id, envelope=envelope(parameters={"HOLDFOR": "60"}))
    jmap.call("Email/set", {"accountId": "alice", "destroy": [email_id]})
    core.clock.advance(60)
    assert inbox_subjects(bob) == ["Lunch?"]


def test_7_5_destroying_the_submission_does_not_cancel_its_send(core, jmap, bob):
    created = submit(jmap, draft(jmap), envelope=envelope(parameters={"HOLDFOR": "60"}))
    result = jmap.call("EmailSubmission/set", {"accountId": "alice",
                                               "destroy": [created["id"]]}, USING)
    assert result["destroyed"] == [created["id"]]
    core.clock.advance(60)
    assert inbox_subjects(bob) == ["Lunch?"]


def test_7_the_immutable_properties_cannot_change(jmap):
    created = submit(jmap, draft(jmap))
    result = jmap.call("EmailSubmission/set", {"accountId": "alice", "update": {
        created["id"]: {"emailId": "E1", "envelope": None}}}, USING)
    error = result["notUpdated"][created["id"]]
    assert (error["type"], error["properties"]) == ("invalidProperties",
                                                    ["emailId", "envelope"])


# --- /query, /changes ---------------------------------------------------------------

@pytest.fixture
def three_sent(core, jmap):
    """Three submissions a minute apart: two of one draft, one held of another."""
    first, second = draft(jmap), draft(jmap, subject="Other")
    sent = [submit(jmap, first)["id"]]
    core.clock.advance(60)
    sent.append(submit(jmap, second, envelope=envelope(parameters={"HOLDFOR": "600"}))["id"])
    core.clock.advance(60)
    sent.append(submit(jmap, first)["id"])
    return sent, first, second


def query(jmap, **args):
    return jmap.call("EmailSubmission/query", {"accountId": "alice", **args}, USING)["ids"]


def test_7_3_filters(jmap, three_sent):
    (one, two, three), first, second = three_sent
    assert query(jmap, filter={"emailIds": [first]}) == [one, three]
    assert query(jmap, filter={"undoStatus": "pending"}) == [two]
    assert query(jmap, filter={"identityIds": ["Iprimary"]}) == [one, two, three]
    assert query(jmap, filter={"identityIds": []}) == []
    assert query(jmap, filter={"after": "2026-01-01T09:02:00Z"}) == [two, three]
    assert query(jmap, filter={"before": "2026-01-01T09:02:00Z"}) == [one]
    thread = submission(jmap, two)["threadId"]
    assert query(jmap, filter={"threadIds": [thread]}) == [two]


def test_7_3_sorts_by_sent_at_and_email_id(jmap, three_sent):
    (one, two, three), first, second = three_sent
    assert query(jmap, sort=[{"property": "sentAt", "isAscending": False}]) == [two, three, one]
    assert query(jmap, sort=[{"property": "sendAt"}]) == [one, three, two]
    by_email = query(jmap, sort=[{"property": "emailId"}, {"property": "sentAt"}])
    assert by_email == ([one, three, two] if first < second else [two, one, three])


def test_7_3_a_bad_filter_is_an_error(jmap):
    assert jmap.error("EmailSubmission/query", {"accountId": "alice", "filter": {
        "undoStatus": "sent"}}, USING) == "invalidArguments"
    assert jmap.error("EmailSubmission/query", {"accountId": "alice", "filter": {
        "subject": "x"}}, USING) == "unsupportedFilter"


def test_7_4_query_changes_sees_a_release(core, jmap, three_sent):
    (one, two, three), _, _ = three_sent
    pending = jmap.call("EmailSubmission/query", {"accountId": "alice", "filter": {
        "undoStatus": "pending"}}, USING)
    core.clock.advance(600)
    changes = jmap.call("EmailSubmission/queryChanges", {
        "accountId": "alice", "filter": {"undoStatus": "pending"},
        "sinceQueryState": pending["queryState"]}, USING)
    assert (changes["removed"], changes["added"]) == ([two], [])


def test_7_2_changes_reports_the_release_as_an_update(core, jmap):
    created = submit(jmap, draft(jmap), envelope=envelope(parameters={"HOLDFOR": "5"}))
    state = jmap.call("EmailSubmission/get", {"accountId": "alice", "ids": []}, USING)["state"]
    core.clock.advance(5)
    changes = jmap.call("EmailSubmission/changes", {"accountId": "alice",
                                                    "sinceState": state}, USING)
    assert (changes["created"], changes["updated"]) == ([], [created["id"]])


# --- reports (MDN, DSN) -------------------------------------------------------------

def _report(report_type, part_type, fields, original_message_id):
    return (f"From: robot@example.org\r\nTo: alice@example.com\r\nSubject: report\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type={report_type}; "
            f"boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nA report.\r\n"
            f"--B\r\nContent-Type: {part_type}\r\n\r\n{fields}\r\n"
            f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{original_message_id}>\r\n"
            f"\r\n--B--\r\n").encode()


def _sent_message_id(jmap, email_id):
    return jmap.call("Email/get", {"accountId": "alice", "ids": [email_id],
                                   "properties": ["messageId"]})["list"][0]["messageId"][0]


def test_7_an_mdn_for_a_sent_message_is_filed_with_its_submission(core, jmap):
    email_id = draft(jmap)
    created = submit(jmap, email_id)
    fields = (f"Final-Recipient: rfc822; bob@example.com\r\nOriginal-Message-ID: "
              f"<{_sent_message_id(jmap, email_id)}>\r\n"
              "Disposition: manual-action/MDN-sent-manually; displayed")
    delivered = jmapd.deliver_message(core, _report(
        "disposition-notification", "message/disposition-notification", fields, "x@y"), "alice")
    got = submission(jmap, created["id"])
    blob = jmap.call("Email/get", {"accountId": "alice", "ids": list(delivered.values()),
                                   "properties": ["blobId"]})["list"][0]["blobId"]
    assert (got["mdnBlobIds"], got["dsnBlobIds"]) == ([blob], [])
    assert got["deliveryStatus"]["bob@example.com"]["displayed"] == "yes"
    jmap.call("Email/set", {"accountId": "alice", "destroy": list(delivered.values())})
    raw, _ = jmapd.download_blob(core, core.user("alice"), "alice", blob)
    assert b"report-type=disposition-notification" in raw  # the submission still holds it


def test_7_a_dsn_for_a_sent_message_sets_delivered_and_smtp_reply(core, jmap):
    email_id = draft(jmap, to=[{"name": None, "email": "carol@example.org"}])
    created = submit(jmap, email_id)
    fields = ("Reporting-MTA: dns; mx.example.org\r\n\r\n"
              "Final-Recipient: rfc822; carol@example.org\r\nAction: failed\r\n"
              "Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user")
    jmapd.deliver_message(core, _report("delivery-status", "message/delivery-status", fields,
                                        _sent_message_id(jmap, email_id)), "alice")
    got = submission(jmap, created["id"])
    assert len(got["dsnBlobIds"]) == 1 and got["mdnBlobIds"] == []
    assert got["deliveryStatus"]["carol@example.org"] == {
        "smtpReply": "550 5.1.1 no such user", "delivered": "no", "displayed": "unknown"}


def test_7_a_report_about_an_unknown_message_changes_nothing(core, jmap):
    created = submit(jmap, draft(jmap))
    state = jmap.call("EmailSubmission/get", {"accountId": "alice", "ids": []}, USING)["state"]
    jmapd.deliver_message(core, _report("delivery-status", "message/delivery-status",
                                        "Final-Recipient: rfc822; bob@example.com\r\n"
                                        "Action: delivered", "unknown@example.org"), "alice")
    after = jmap.call("EmailSubmission/get", {"accountId": "alice", "ids": [created["id"]]},
                      USING)
    assert after["state"] == state and after["list"][0]["dsnBlobIds"] == []


def test_7_5_a_draft_without_date_or_message_id_gets_them_when_sent(core, jmap, bob):
    """RFC 5322 §3.6 requires Date; a submission server adds Date and Message-ID (RFC 6409
    §8.2-8.3), which §7.5 allows ("MAY add ... header fields")."""
    raw = b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: Bare\r\n\r\nHi\r\n"
    blob = jmapd.upload_blob(core, core.user("alice"), "alice", raw, "message/rfc822")["blobId"]
    email_id = jmap.call("Email/import", {"accountId": "alice", "emails": {"b": {
        "blobId": blob, "mailboxIds": {jmap.mailbox_ids()["Drafts"]: True}}}})["created"]["b"]["id"]
    submit(jmap, email_id)
    got = bob.call("Email/get", {"accountId": "bob", "ids": bob.call(
        "Email/query", {"accountId": "bob"})["ids"], "properties": ["sentAt", "messageId"]})
    [delivered] = got["list"]
    assert delivered["sentAt"] == "2026-01-01T09:00:00Z"
    assert delivered["messageId"][0].endswith("@jmapd.local")


def test_7_a_given_envelope_reads_back_with_null_parameters(jmap):
    created = submit(jmap, draft(jmap), envelope={
        "mailFrom": {"email": "alice@example.com"}, "rcptTo": [{"email": "bob@example.com"}]})
    assert submission(jmap, created["id"])["envelope"] == envelope()


def test_7_5_an_identity_id_that_is_no_id_is_invalidProperties_not_a_crash(jmap):
    """A lone surrogate (possible through the embedding API) is a type error, not a lookup."""
    error = submit(jmap, draft(jmap), identityId="I\ud800")
    assert (error["type"], error["properties"]) == ("invalidProperties", ["identityId"])
