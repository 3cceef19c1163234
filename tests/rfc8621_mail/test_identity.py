"""RFC 8621 §6: Identity/get, /changes and /set."""

import pytest

import jmapd

CORE, MAIL, SUBMISSION = jmapd.URN_CORE, jmapd.URN_MAIL, jmapd.URN_SUBMISSION
USING = (CORE, MAIL, SUBMISSION)


def identity_set(jmap, **args):
    return jmap.call("Identity/set", {"accountId": jmap.account_id, **args}, USING)


def identities(jmap, ids=None):
    return jmap.call("Identity/get", {"accountId": jmap.account_id, "ids": ids}, USING)


def test_6_every_account_starts_with_its_owners_identity(jmap, bob):
    assert identities(jmap)["list"] == [{
        "id": "Iprimary", "name": "Alice Archer", "email": "alice@example.com",
        "replyTo": None, "bcc": None, "textSignature": "", "htmlSignature": "",
        "mayDelete": False}]
    assert [(i["name"], i["email"]) for i in identities(bob)["list"]] == [
        ("Bob Baker", "bob@example.com")]


def test_6_the_first_identity_moves_no_state(jmap):
    """It exists from the account's start (modseq 0), like the standard mailboxes' peers."""
    assert identities(jmap)["state"] == "0"
    changes = jmap.call("Identity/changes", {"accountId": jmap.account_id,
                                             "sinceState": "0"}, USING)
    assert (changes["created"], changes["updated"], changes["destroyed"]) == ([], [], [])


def test_6_3_create_fills_defaults_and_shows_the_server_set_ones(jmap):
    result = identity_set(jmap, create={"work": {"email": "alice+work@example.com"}})
    created = result["created"]["work"]
    assert created == {"id": created["id"], "name": "", "replyTo": None, "bcc": None,
                       "textSignature": "", "htmlSignature": "", "mayDelete": True}
    changes = jmap.call("Identity/changes", {"accountId": jmap.account_id,
                                             "sinceState": "0"}, USING)
    assert changes["created"] == [created["id"]]


def test_6_3_create_and_update_read_back(jmap):
    """The probe's flow: several properties at once, then an update of two others."""
    created = identity_set(jmap, create={"i": {
        "name": "Alice (work)", "email": "alice@example.com", "textSignature": "-- \nA",
        "bcc": [{"name": None, "email": "archive@example.com"}]}})["created"]["i"]
    updated = identity_set(jmap, update={created["id"]: {
        "htmlSignature": "<b>A</b>", "replyTo": [{"name": "R", "email": "r@example.com"}]}})
    assert updated["updated"] == {created["id"]: None}
    got = identities(jmap, [created["id"]])["list"][0]
    assert {k: got[k] for k in ("name", "textSignature", "htmlSignature", "replyTo", "bcc")} == {
        "name": "Alice (work)", "textSignature": "-- \nA", "htmlSignature": "<b>A</b>",
        "replyTo": [{"name": "R", "email": "r@example.com"}],
        "bcc": [{"name": None, "email": "archive@example.com"}]}


@pytest.mark.parametrize("address", ["bob@example.com", "alice@example.org", "*@example.com",
                                     "alicex@example.com"])
def test_6_3_an_address_the_user_may_not_send_as_is_forbiddenFrom(jmap, address):
    result = identity_set(jmap, create={"i": {"email": address}})
    assert result["notCreated"]["i"]["type"] == "forbiddenFrom"


@pytest.mark.parametrize("address", ["ALICE@EXAMPLE.COM", "alice+lists@example.com"])
def test_6_3_the_owners_address_in_any_case_and_its_sub_addresses_are_allowed(jmap, address):
    assert identity_set(jmap, create={"i": {"email": address}})["created"]["i"]["mayDelete"]


@pytest.mark.parametrize("identity, bad", [
    ({"name": "no email"}, ["email"]),
    ({"email": "not an address"}, ["email"]),
    ({"email": "alice@example.com", "mayDelete": False}, ["mayDelete"]),
    ({"email": "alice@example.com", "replyTo": [{"address": "x@example.com"}]}, ["replyTo"]),
    ({"email": "alice@example.com", "bcc": "x@example.com", "name": None}, ["bcc", "name"]),
])
def test_6_3_bad_properties_are_invalidProperties_listing_them(jmap, identity, bad):
    error = identity_set(jmap, create={"i": identity})["notCreated"]["i"]
    assert (error["type"], error["properties"]) == ("invalidProperties", bad)


def test_6_the_email_of_an_identity_is_immutable(jmap):
    error = identity_set(jmap, update={"Iprimary": {"email": "alice+x@example.com"}})
    assert error["notUpdated"]["Iprimary"]["type"] == "invalidProperties"
    assert error["notUpdated"]["Iprimary"]["properties"] == ["email"]


def test_6_the_owners_identity_cannot_be_destroyed(jmap):
    result = identity_set(jmap, destroy=["Iprimary"])
    assert result["notDestroyed"]["Iprimary"]["type"] == "forbidden"
    assert [i["id"] for i in identities(jmap)["list"]] == ["Iprimary"]


def test_6_3_a_created_identity_can_be_destroyed(jmap):
    new_id = identity_set(jmap, create={"i": {"email": "alice@example.com"}})["created"]["i"]["id"]
    assert identity_set(jmap, destroy=[new_id])["destroyed"] == [new_id]
    assert identities(jmap, [new_id])["notFound"] == [new_id]


def test_6_the_owners_identity_can_be_renamed(jmap):
    identity_set(jmap, update={"Iprimary": {"name": "Alice A."}})
    assert identities(jmap, ["Iprimary"])["list"][0]["name"] == "Alice A."


def test_1_3_2_identity_methods_need_the_submission_capability(jmap):
    name, result = jmap.call_raw("Identity/get", {"accountId": jmap.account_id}, (CORE, MAIL))
    assert (name, result["type"]) == ("error", "unknownMethod")
