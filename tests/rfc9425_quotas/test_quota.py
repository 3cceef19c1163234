"""RFC 9425: Quota/get, /changes, /query, /queryChanges over the mail quotas, and the
overQuota SetError (RFC 8620 §5.3, RFC 8621 §4.8) they enforce."""

import json

import pytest

import jmapd
from conftest import import_raw

CORE, MAIL, QUOTA = jmapd.URN_CORE, jmapd.URN_MAIL, jmapd.URN_QUOTA
USING = (CORE, MAIL, QUOTA)
RAW = (b"From: Carol <carol@elsewhere.example>\r\nTo: alice@example.com\r\n"
       b"Subject: Quota test\r\nMessage-ID: <quota-1@elsewhere.example>\r\n\r\nHello.\r\n")


def quotas(jmap, using=USING, **args):
    result = jmap.call("Quota/get", {"accountId": jmap.account_id, "ids": None, **args}, using)
    return {q["id"]: q for q in result["list"]}


def used(jmap):
    return {quota_id: q["used"] for quota_id, q in quotas(jmap).items()}


def test_capability_is_an_empty_object_in_session_and_account(core):
    """§2.1: the value is an empty object in capabilities and accountCapabilities."""
    session = core.session("alice", "http://x")
    assert session["capabilities"][QUOTA] == {}
    assert session["accounts"]["alice"]["accountCapabilities"][QUOTA] == {}
    assert session["primaryAccounts"][QUOTA] == "alice"


def test_get_all_returns_the_two_mail_quotas_with_every_property(jmap):
    """§4.1, §4.2: ids null fetches all; each Quota has the MUST properties, and the
    MAY ones (warnLimit, softLimit, description) are reported too."""
    result = jmap.call("Quota/get", {"accountId": "alice", "ids": None}, USING)
    assert result["state"] == "0" and result["notFound"] == []
    found = {q["id"]: q for q in result["list"]}
    assert set(found) == {"Qoctets", "Qcount"}
    octets = found["Qoctets"]
    assert {k: v for k, v in octets.items() if k != "description"} == {
        "id": "Qoctets", "resourceType": "octets", "used": 0, "hardLimit": 10 * 2 ** 30,
        "warnLimit": int(10 * 2 ** 30 * 0.8), "softLimit": int(10 * 2 ** 30 * 0.9),
        "scope": "account", "name": "Mail storage", "types": ["Email"]}
    assert "octets" in octets["description"]
    assert (found["Qcount"]["resourceType"], found["Qcount"]["hardLimit"]) == ("count", 1_000_000)


def test_get_by_id_and_properties_and_notFound(jmap):
    """§4.2 (RFC 8620 §5.1): named ids, a properties subset, unknown ids in notFound."""
    result = jmap.call("Quota/get", {"accountId": "alice", "ids": ["Qcount", "nope"],
                                     "properties": ["used", "hardLimit"]}, USING)
    assert result["list"] == [{"id": "Qcount", "used": 0, "hardLimit": 1_000_000}]
    assert result["notFound"] == ["nope"]


def test_types_the_client_did_not_ask_for_hide_the_quota(jmap):
    """§4.1: types lacking their capability in `using` are filtered out, and a Quota
    left with no type the client knows is not returned (by /get or /query)."""
    using = (CORE, QUOTA)
    result = jmap.call("Quota/get", {"accountId": "alice", "ids": None}, using)
    assert result["list"] == []
    named = jmap.call("Quota/get", {"accountId": "alice", "ids": ["Qcount"]}, using)
    assert (named["list"], named["notFound"]) == ([], ["Qcount"])
    query = jmap.call("Quota/query", {"accountId": "alice", "calculateTotal": True}, using)
    assert (query["ids"], query["total"]) == ([], 0)


def test_quota_methods_need_the_quota_capability(jmap):
    """RFC 8620 §3.6.2: without urn:ietf:params:jmap:quota in using, unknownMethod."""
    assert jmap.error("Quota/get", {"accountId": "alice"}, (CORE, MAIL)) == "unknownMethod"


def test_used_follows_mail_as_it_arrives_and_leaves(core, jmap):
    """§4.1 used: "Computation of this value is handled by the server": import adds the
    message's size and one message, destroy takes them away again."""
    inbox = jmap.mailbox_ids()["Inbox"]
    email_id = import_raw(core, jmap, RAW, [inbox])
    assert used(jmap) == {"Qoctets": len(RAW), "Qcount": 1}
    jmap.call("Email/set", {"accountId": "alice", "destroy": [email_id]})
    assert used(jmap) == {"Qoctets": 0, "Qcount": 0}


def test_used_follows_delivery_and_email_set_create(core, jmap, bob):
    """§4.1: every way mail arrives moves used: delivery and Email/set create."""
    delivered = jmapd.deliver_message(core, RAW, "alice")["alice"]
    size = jmap.call("Email/get", {"accountId": "alice", "ids": [delivered],
                                   "properties": ["size"]})["list"][0]["size"]
    assert size == len(RAW)
    assert used(jmap) == {"Qoctets": size, "Qcount": 1}
    created = jmap.call("Email/set", {"accountId": "alice", "create": {"d": {
        "mailboxIds": {jmap.mailbox_ids()["Drafts"]: True}, "subject": "Draft",
        "bodyValues": {"1": {"value": "x"}}, "textBody": [{"partId": "1", "type": "text/plain"}]}}})
    assert used(jmap) == {"Qoctets": size + created["created"]["d"]["size"], "Qcount": 2}
    assert used(bob) == {"Qoctets": 0, "Qcount": 0}


def test_changes_report_only_used_with_updatedProperties(core, jmap):
    """§4.3: after mail arrives the Quotas are updated, and as only used changed,
    updatedProperties is ["used"]; a back-reference then fetches just that (§5.2)."""
    state = jmap.call("Quota/get", {"accountId": "alice", "ids": []}, USING)["state"]
    import_raw(core, jmap, RAW, [jmap.mailbox_ids()["Inbox"]])
    response = jmap.request([
        ["Quota/changes", {"accountId": "alice", "sinceState": state, "maxChanges": 20}, "0"],
        ["Quota/get", {"accountId": "alice",
                       "#ids": {"resultOf": "0", "name": "Quota/changes", "path": "/updated"},
                       "#properties": {"resultOf": "0", "name": "Quota/changes",
                                       "path": "/updatedProperties"}}, "1"]], USING)
    changes, got = (r[1] for r in response["methodResponses"])
    assert (changes["oldState"], changes["created"], changes["destroyed"]) == (state, [], [])
    assert sorted(changes["updated"]) == ["Qcount", "Qoctets"]
    assert changes["updatedProperties"] == ["used"] and changes["hasMoreChanges"] is False
    assert changes["newState"] != state == "0"
    assert sorted(got["list"], key=lambda q: q["id"]) == [
        {"id": "Qcount", "used": 1}, {"id": "Qoctets", "used": len(RAW)}]
    assert got["state"] == changes["newState"]


def test_changes_after_a_limit_change_have_updatedProperties_null(core, jmap):
    """§4.3: when more than used changed, updatedProperties MUST be null."""
    jmapd.set_mail_quota(core, "alice", count=10)
    changes = jmap.call("Quota/changes", {"accountId": "alice", "sinceState": "0"}, USING)
    assert changes["updated"] == ["Qcount"] and changes["updatedProperties"] is None
    assert quotas(jmap)["Qcount"]["hardLimit"] == 10
    assert (quotas(jmap)["Qcount"]["warnLimit"], quotas(jmap)["Qcount"]["softLimit"]) == (8, 9)


def test_changes_from_the_current_state_are_empty(jmap):
    """§4.3 (RFC 8620 §5.2): nothing changed since the current state."""
    changes = jmap.call("Quota/changes", {"accountId": "alice", "sinceState": "0"}, USING)
    assert (changes["newState"], changes["updated"], changes["updatedProperties"]) == ("0", [], None)


def test_quota_state_is_pushed_when_used_changes(core, jmap):
    """§6: the Quota type's state goes out through the change feed like any type's."""
    after = core.feed.sequence
    jmapd.deliver_message(core, RAW, "alice")
    changed = [entry for _, entry in core.feed.wait(after, 0)]
    state = jmap.call("Quota/get", {"accountId": "alice", "ids": []}, USING)["state"]
    assert any(entry.get("alice", {}).get("Quota") == state for entry in changed)


@pytest.mark.parametrize("condition, expected", [
    ({"name": "storage"}, ["Qoctets"]),         # §4.4 name: "contains the given string"
    ({"name": "Mail"}, ["Qcount", "Qoctets"]),
    ({"scope": "account"}, ["Qcount", "Qoctets"]),
    ({"scope": "domain"}, []),
    ({"resourceType": "count"}, ["Qcount"]),
    ({"resourceType": "octets"}, ["Qoctets"]),
    ({"type": "Email"}, ["Qcount", "Qoctets"]),
    ({"type": "Mailbox"}, []),
    ({"resourceType": "count", "name": "storage"}, []),  # all conditions must match
    ({}, ["Qcount", "Qoctets"]),  # zero properties: true for all
])
def test_query_filters(jmap, condition, expected):
    """§4.4: the FilterCondition properties name, scope, resourceType, type."""
    result = jmap.call("Quota/query", {"accountId": "alice", "filter": condition}, USING)
    assert sorted(result["ids"]) == expected


def test_query_sorts_by_used_and_name(core, jmap):
    """§4.4: sorting on name and used MUST be supported."""
    import_raw(core, jmap, RAW, [jmap.mailbox_ids()["Inbox"]])  # count 1 < octets len(RAW)
    def ids(sort):
        return jmap.call("Quota/query", {"accountId": "alice", "sort": sort}, USING)["ids"]
    assert ids([{"property": "used"}]) == ["Qcount", "Qoctets"]
    assert ids([{"property": "used", "isAscending": False}]) == ["Qoctets", "Qcount"]
    assert ids([{"property": "name"}]) == ["Qcount", "Qoctets"]  # "Mail messages" < "Mail storage"
    assert jmap.error("Quota/query", {"accountId": "alice", "sort": [{"property": "scope"}]},
                      USING) == "unsupportedSort"
    assert jmap.error("Quota/query", {"accountId": "alice", "filter": {"size": 1}},
                      USING) == "unsupportedFilter"


def test_query_changes_follow_used(core, jmap):
    """§4.5: /queryChanges from an older queryState; a used change may move a Quota."""
    sort = [{"property": "used", "isAscending": False}]
    before = jmap.call("Quota/query", {"accountId": "alice", "sort": sort}, USING)
    same = jmap.call("Quota/queryChanges", {"accountId": "alice", "sort": sort,
                                            "sinceQueryState": before["queryState"]}, USING)
    assert (same["removed"], same["added"]) == ([], [])
    import_raw(core, jmap, RAW, [jmap.mailbox_ids()["Inbox"]])
    after = jmap.call("Quota/queryChanges", {"accountId": "alice", "sort": sort,
                                             "sinceQueryState": before["queryState"]}, USING)
    assert sorted(after["removed"]) == ["Qcount", "Qoctets"]
    assert after["added"] == [{"id": "Qoctets", "index": 0}, {"id": "Qcount", "index": 1}]
    assert after["newQueryState"] != before["queryState"]


def test_import_past_the_hard_limit_is_overQuota(core, jmap):
    """RFC 8621 §4.8: an import that would take the account over quota is rejected with
    overQuota; nothing is stored and used is unchanged. RFC 9425 §4.1 hardLimit."""
    jmapd.set_mail_quota(core, "alice", octets=len(RAW) + 10)
    inbox = jmap.mailbox_ids()["Inbox"]
    import_raw(core, jmap, RAW, [inbox])
    blob = jmapd.upload_blob(core, core.user("alice"), "alice",
                             RAW.replace(b"quota-1", b"quota-2"), "message/rfc822")["blobId"]
    result = jmap.call("Email/import", {"accountId": "alice", "emails": {
        "k": {"blobId": blob, "mailboxIds": {inbox: True}}}})
    assert result["created"] is None and result["notCreated"]["k"]["type"] == "overQuota"
    assert used(jmap) == {"Qoctets": len(RAW), "Qcount": 1}
    assert len(jmap.call("Email/query", {"accountId": "alice"})["ids"]) == 1


def test_count_limit_reached_refuses_email_set_create(core, jmap):
    """RFC 8620 §5.3 overQuota on Email/set create once the count hardLimit is reached
    ("Objects in scope may not be created ... if this limit is reached", §4.1); the
    other creates in the same call still succeed while there is room."""
    jmapd.set_mail_quota(core, "alice", count=1)
    drafts = jmap.mailbox_ids()["Drafts"]
    email = {"mailboxIds": {drafts: True}, "subject": "s", "bodyValues": {"1": {"value": "x"}},
             "textBody": [{"partId": "1", "type": "text/plain"}]}
    result = jmap.call("Email/set", {"accountId": "alice", "create": {"a": email, "b": email}})
    assert list(result["created"]) == ["a"]
    assert result["notCreated"]["b"]["type"] == "overQuota"
    assert used(jmap)["Qcount"] == 1


def add_team_account(core):
    """A second account alice may use (as in the Email/copy tests), with mail quotas."""
    core.store.db.execute("INSERT INTO account (id, name, owner) VALUES ('team', 'Team', 'alice')")
    core.call("alice", "Mailbox/set", {"accountId": "team", "create": {
        "i": {"name": "Inbox", "role": "inbox"}}})
    team = jmapd.User("alice", "", None, "", "team")
    return team, jmapd.mailbox_paths(core, team)["Inbox"]


def test_copy_moves_used_in_the_target_and_past_its_limit_is_overQuota(core, jmap):
    """RFC 8620 §5.4 (/copy creates as /set does): used grows in the target account;
    past its hardLimit overQuota, and onSuccessDestroyOriginal leaves the original."""
    email_id = import_raw(core, jmap, RAW, [jmap.mailbox_ids()["Inbox"]])
    team, team_inbox = add_team_account(core)
    jmapd.set_mail_quota(core, team, count=1)  # an account without quotas gets them
    def copy():
        return jmap.call("Email/copy", {"fromAccountId": "alice", "accountId": "team",
                                        "onSuccessDestroyOriginal": True, "create": {
                                            "c": {"id": email_id, "mailboxIds": {team_inbox: True}}}})
    assert copy()["created"]["c"]["size"] == len(RAW)
    team_quotas = jmap.call("Quota/get", {"accountId": "team", "ids": None}, USING)["list"]
    assert {q["id"]: q["used"] for q in team_quotas} == {"Qoctets": len(RAW), "Qcount": 1}
    email_id = import_raw(core, jmap, RAW.replace(b"quota-1", b"quota-3"),
                          [jmap.mailbox_ids()["Inbox"]])
    result = copy()
    assert result["created"] is None and result["notCreated"]["c"]["type"] == "overQuota"
    assert used(jmap) == {"Qoctets": len(RAW), "Qcount": 1}  # the original stays


def test_delivery_past_the_hard_limit_is_refused(core, jmap):
    """§4.1 hardLimit holds for delivery too: the message is not stored."""
    jmapd.set_mail_quota(core, "alice", count=0)
    with pytest.raises(ValueError, match="overQuota"):
        jmapd.deliver_message(core, RAW, "alice")
    assert used(jmap) == {"Qoctets": 0, "Qcount": 0}


def test_set_mail_quota_refuses_a_limit_that_is_no_UnsignedInt(core):
    """§4.1: hardLimit is an UnsignedInt."""
    with pytest.raises(ValueError):
        jmapd.set_mail_quota(core, "alice", octets=-1)


def test_configured_limits_apply_to_every_account(tmp_path):
    """The --quota-octets/--quota-count limits (serve(limits=...)) hold for seeded
    accounts, and a seed file's per-user "quota" for that user."""
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"users": [{"name": "carol", "password": "c",
                                           "quota": {"octets": 5000}}]}))
    with jmapd.serve(str(seed), limits={"mailQuotaCount": 7}) as server:
        found = server.core.call("carol", "Quota/get", {"accountId": "carol", "ids": None},
                                 USING)["list"]
    assert {q["id"]: q["hardLimit"] for q in found} == {"Qoctets": 5000, "Qcount": 7}


def test_cli_quota_options_become_limits():
    """--quota-octets and --quota-count are parsed as positive numbers."""
    options = jmapd.build_arg_parser().parse_args(["--quota-octets", "123", "--quota-count", "4"])
    assert (options.quota_octets, options.quota_count) == (123, 4)


def test_sending_to_a_local_user_over_quota_reports_delivered_no(core, jmap, bob):
    """§4.1 hardLimit at delivery: the recipient's server refuses, and the sender's
    EmailSubmission says so (RFC 8621 §7 deliveryStatus delivered "no")."""
    jmapd.set_mail_quota(core, "bob", count=0)
    using = (CORE, MAIL, jmapd.URN_SUBMISSION)
    response = jmap.request([
        ["Email/set", {"accountId": "alice", "create": {"e": {
            "mailboxIds": {jmap.mailbox_ids()["Sent"]: True}, "subject": "Full?",
            "from": [{"email": "alice@example.com"}], "to": [{"email": "bob@example.com"}],
            "bodyValues": {"1": {"value": "x"}},
            "textBody": [{"partId": "1", "type": "text/plain"}]}}}, "0"],
        ["EmailSubmission/set", {"accountId": "alice", "create": {
            "s": {"identityId": "Iprimary", "emailId": "#e"}}}, "1"]], using)["methodResponses"]
    status = response[1][1]["created"]["s"]["deliveryStatus"]["bob@example.com"]
    assert status["delivered"] == "no" and "overQuota" in status["smtpReply"]
    assert used(bob) == {"Qoctets": 0, "Qcount": 0}


def test_destroying_a_mailbox_with_its_emails_gives_their_usage_back(core, jmap):
    """§4.1 used, with RFC 8621 §2.5 onDestroyRemoveEmails: removed Emails leave."""
    box = jmap.call("Mailbox/set", {"accountId": "alice", "create": {"b": {"name": "Old"}}})
    box_id = box["created"]["b"]["id"]
    import_raw(core, jmap, RAW, [box_id])
    assert used(jmap)["Qcount"] == 1
    jmap.call("Mailbox/set", {"accountId": "alice", "destroy": [box_id],
                              "onDestroyRemoveEmails": True})
    assert used(jmap) == {"Qoctets": 0, "Qcount": 0}
