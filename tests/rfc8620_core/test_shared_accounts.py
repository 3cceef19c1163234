"""RFC 8620 §1.6.2, §2: accounts a user may use besides their own (the demo's "team")."""

import jmapd
from conftest import CORE, MAIL, Jmap

RAW = b"From: carol@example.org\r\nTo: alice@example.com\r\nSubject: Minutes\r\n\r\nHi\r\n"


def with_team(core, read_only=False):
    jmapd.add_team_account(core, "team", "Team", members=["alice"])
    if read_only:
        with core.store.transaction():
            core.store.grant_access("team", "alice", read_only=True)


def test_2_a_granted_account_is_listed_as_not_personal(core):
    with_team(core)
    session = core.session("alice", "http://x")
    assert list(session["accounts"]) == ["alice", "team"]
    team = session["accounts"]["team"]
    assert (team["name"], team["isPersonal"], team["isReadOnly"]) == ("Team", False, False)
    assert MAIL in team["accountCapabilities"]
    assert session["primaryAccounts"][MAIL] == "alice"


def test_2_other_users_do_not_see_it(core):
    with_team(core)
    assert list(core.session("bob", "http://x")["accounts"]) == ["bob"]
    assert Jmap(core, "bob").error("Mailbox/get", {"accountId": "team"}) == "accountNotFound"


def test_8621_4_7_email_copy_from_alice_to_the_team_account(core, jmap):
    with_team(core)
    inbox = jmap.mailbox_ids()["Inbox"]
    blob = jmapd.upload_blob(core, core.user("alice"), "alice", RAW, "message/rfc822")["blobId"]
    original = jmap.call("Email/import", {"accountId": "alice", "emails": {"m": {
        "blobId": blob, "mailboxIds": {inbox: True}}}})["created"]["m"]["id"]
    team_inbox = jmap.call("Mailbox/query", {"accountId": "team", "filter": {
        "role": "inbox"}})["ids"][0]
    result = jmap.call("Email/copy", {"fromAccountId": "alice", "accountId": "team", "create": {
        "c": {"id": original, "mailboxIds": {team_inbox: True}, "keywords": {"$seen": True}}}})
    copy = result["created"]["c"]["id"]
    got = jmap.call("Email/get", {"accountId": "team", "ids": [copy],
                                  "properties": ["subject", "keywords"]})["list"][0]
    assert (got["subject"], got["keywords"]) == ("Minutes", {"$seen": True})


def test_8621_2_mailbox_rights_follow_is_read_only(core, jmap):
    with_team(core, read_only=True)
    session = core.session("alice", "http://x")
    assert session["accounts"]["team"]["isReadOnly"] is True
    rights = jmap.call("Mailbox/get", {"accountId": "team"})["list"][0]["myRights"]
    assert rights == {right: right == "mayReadItems" for right in jmapd.MAILBOX_RIGHTS}
    assert jmap.error("Mailbox/set", {"accountId": "team", "create": {
        "m": {"name": "New"}}}) == "accountReadOnly"


def test_the_demo_seed_grants_alice_the_team_account():
    with jmapd.serve(seed="demo") as server:
        accounts = server.core.session("alice", server.url)["accounts"]
        assert accounts["team"]["isPersonal"] is False
        assert list(server.core.session("bob", server.url)["accounts"]) == ["bob"]


def test_a_shared_account_is_set_up_like_every_account(core, jmap):
    """RFC 8621 §8: "exactly one VacationResponse object in an account"; RFC 9425: the
    account has its quotas; the standard mailboxes; an Identity for its member."""
    with_team(core)
    assert [v["id"] for v in jmap.call("VacationResponse/get", {"accountId": "team"},
                                       [CORE, jmapd.URN_VACATION])["list"]] == ["singleton"]
    quotas = jmap.call("Quota/get", {"accountId": "team"}, [CORE, MAIL, jmapd.URN_QUOTA])
    assert sorted(q["id"] for q in quotas["list"]) == ["Qcount", "Qoctets"]
    roles = {m["role"] for m in jmap.call("Mailbox/get", {"accountId": "team"})["list"]}
    assert roles == {"inbox", "drafts", "sent", "archive", "junk", "trash"}


def test_configured_quotas_reach_shared_accounts():
    with jmapd.serve(seed="demo", limits={"mailQuotaCount": 5}) as server:
        quotas = server.core.call("alice", "Quota/get", {"accountId": "team"},
                                  [CORE, MAIL, jmapd.URN_QUOTA])["list"]
        assert {q["id"]: q["hardLimit"] for q in quotas}["Qcount"] == 5
