"""RFC 8621 §8 VacationResponse (the settings; auto-replies come with sending)."""

import jmapd

VACATION = jmapd.URN_VACATION
USING = (jmapd.URN_CORE, VACATION)


def test_every_account_has_a_disabled_singleton(jmap):
    """§8: one VacationResponse, id "singleton", all properties present, state "0"."""
    got = jmap.call("VacationResponse/get", {"accountId": "alice"}, using=USING)
    assert got["list"] == [{"id": "singleton", "isEnabled": False, "fromDate": None,
                            "toDate": None, "subject": None, "textBody": None, "htmlBody": None}]
    assert got["notFound"] == [] and got["state"] == "0"


def test_the_singleton_updates_and_reads_back(jmap):
    """§8.2: VacationResponse/set update of the singleton."""
    want = {"isEnabled": True, "fromDate": "2035-01-01T00:00:00Z", "toDate": "2035-01-08T00:00:00Z",
            "subject": "Away", "textBody": "I am away.", "htmlBody": "<p>I am away.</p>"}
    result = jmap.call("VacationResponse/set", {"accountId": "alice",
                                                "update": {"singleton": want}}, using=USING)
    assert result["updated"] == {"singleton": None}
    got = jmap.call("VacationResponse/get", {"accountId": "alice", "ids": ["singleton", "x"]},
                    using=USING)
    assert got["list"] == [{"id": "singleton", **want}] and got["notFound"] == ["x"]


def test_create_and_destroy_are_singleton_errors(jmap):
    """RFC 8620 §5.3 singleton: no second one, and the one cannot go."""
    result = jmap.call("VacationResponse/set", {"accountId": "alice", "create": {
        "v": {"isEnabled": False}}, "destroy": ["singleton"]}, using=USING)
    assert result["notCreated"]["v"]["type"] == "singleton"
    assert result["notDestroyed"]["singleton"]["type"] == "singleton"


def test_a_bad_date_is_invalidProperties(jmap):
    """§8: fromDate is a UTCDate or null."""
    result = jmap.call("VacationResponse/set", {"accountId": "alice", "update": {
        "singleton": {"fromDate": "tomorrow"}}}, using=USING)
    assert result["notUpdated"]["singleton"]["properties"] == ["fromDate"]


def test_the_capability_is_an_empty_object_in_session_and_account(core):
    """§1.3.3: {} in both places."""
    session = core.session("alice", "http://x")
    assert session["capabilities"][VACATION] == {}
    assert session["accounts"]["alice"]["accountCapabilities"][VACATION] == {}
