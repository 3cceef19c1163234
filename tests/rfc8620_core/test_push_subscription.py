"""RFC 8620 §7.2 PushSubscription through the sans-IO core: /get and /set (§7.2.1-2),
the PushVerification (§7.2.2) and StateChange (§7.1) POSTs as data (PushOutbox), and the
reserved host https://push.jmapd.test/ whose POSTs are captured in core.pushes."""

import pytest

import jmapd

CORE = jmapd.URN_CORE
CAPTURED = "https://push.jmapd.test/"
NOW_PLUS_7_DAYS = "2026-01-08T09:00:00Z"  # the FixedClock starts at 2026-01-01T09:00:00Z
RAW = (b"From: carol@example.com\r\nTo: alice@example.com\r\nSubject: hi\r\n"
       b"Message-ID: <push-1@example.com>\r\n\r\nhello\r\n")


def push_set(jmap, **args):
    return jmap.call("PushSubscription/set", args, using=(CORE,))


def push_get(jmap, **args):
    return jmap.call("PushSubscription/get", args, using=(CORE,))


def create(jmap, **props):
    """Create one subscription; (its id, the created answer)."""
    given = {"deviceClientId": "dev-1", "url": CAPTURED + jmap.user, **props}
    result = push_set(jmap, create={"k": given})
    assert result["notCreated"] is None, result["notCreated"]
    return result["created"]["k"]["id"], result["created"]["k"]


def not_created(jmap, **props):
    """The SetError of a create that must fail."""
    result = push_set(jmap, create={"k": props})
    assert result["created"] is None, result["created"]
    return result["notCreated"]["k"]


def verify(jmap, outbox, subscription_id):
    """Read the captured PushVerification and send its code back (§7.2.2)."""
    outbox.poll()
    sent = [p["body"] for p in jmap.core.pushes
            if p["body"].get("pushSubscriptionId") == subscription_id]
    assert len(sent) == 1, sent
    result = push_set(jmap, update={subscription_id: {"verificationCode":
                                                      sent[0]["verificationCode"]}})
    assert result["notUpdated"] is None, result["notUpdated"]
    return sent[0]["verificationCode"]


def touch_inbox(jmap):
    """A Mailbox-only change; the new Mailbox state."""
    inbox = jmap.mailbox_ids()["Inbox"]
    result = jmap.call("Mailbox/set", {"accountId": jmap.account_id,
                                       "update": {inbox: {"sortOrder": 7}}})
    return result["newState"]


def state_changes(core):
    return [p["body"] for p in core.pushes if p["body"]["@type"] == "StateChange"]


@pytest.fixture
def outbox(core):
    return jmapd.PushOutbox(core)


# --- §7.2.2 create ---------------------------------------------------------------

def test_create_answers_id_keys_and_a_seven_day_expiry_without_account_or_states(jmap):
    """§7.2.2, §7.2.3: no accountId/oldState/newState; the server sets expires (7 days)."""
    result = push_set(jmap, create={"k": {"deviceClientId": "a889-ffea-910",
                                          "url": CAPTURED + "a", "types": None}})
    assert set(result) == {"created", "updated", "destroyed", "notCreated", "notUpdated",
                           "notDestroyed"}
    created = result["created"]["k"]
    assert created == {"id": created["id"], "keys": None, "verificationCode": None,
                       "expires": NOW_PLUS_7_DAYS}
    assert created["id"].startswith("P")


def test_expires_too_far_ahead_is_shortened_and_reported_in_created(jmap):
    """§7.2: the server MAY shorten expires; §5.3: created then carries the new value."""
    _, created = create(jmap, expires="2027-06-01T00:00:00Z")
    assert created["expires"] == NOW_PLUS_7_DAYS


def test_expires_within_the_limit_is_kept_and_not_echoed(jmap):
    """§5.3: a value stored as sent is not repeated in created."""
    subscription_id, created = create(jmap, expires="2026-01-03T00:00:00Z")
    assert "expires" not in created
    assert push_get(jmap, ids=[subscription_id])["list"][0]["expires"] == "2026-01-03T00:00:00Z"


@pytest.mark.parametrize("expires", ["2026-01-01T09:00:00Z", "2025-12-31T23:59:59Z",
                                     "2000-01-01T00:00:00Z"])
def test_expires_not_in_the_future_is_invalidProperties(jmap, expires):
    """§7.2: expires is when requests stop; one already past makes no subscription."""
    error = not_created(jmap, deviceClientId="d", url=CAPTURED + "x", expires=expires)
    assert error["type"] == "invalidProperties"
    assert error["properties"] == ["expires"]
    assert "future" in error["description"]


@pytest.mark.parametrize("expires", ["2026-02-01", "2026-02-01T00:00:00+01:00", 17, ""])
def test_expires_that_is_no_UTCDate_is_invalidProperties(jmap, expires):
    """§1.4: expires is a UTCDate (Z, no offset)."""
    error = not_created(jmap, deviceClientId="d", url=CAPTURED + "x", expires=expires)
    assert (error["type"], error["properties"]) == ("invalidProperties", ["expires"])


@pytest.mark.parametrize("url", [
    "http://example.com/push", "http://127.0.0.1:9000/push", "ftp://example.com/x",
    "example.com/push", "https://", "https:///path", "https://x:99999/", "wss://x/",
    "https://exa mple.com/", "https://example.com/\r\nX-Injected: 1", ""])
def test_url_must_be_an_absolute_https_url(jmap, url):
    """§7.2: url "MUST begin with https://" (http on loopback needs --allow-http-push)."""
    error = not_created(jmap, deviceClientId="d", url=url)
    assert (error["type"], error["properties"]) == ("invalidProperties", ["url"])
    assert error["description"].startswith("url: ")


def test_http_url_refusal_names_the_dev_escapes(jmap):
    """§7.2: the refusal says why and how a developer gets pushes anyway."""
    error = not_created(jmap, deviceClientId="d", url="http://127.0.0.1:9000/push")
    assert "https://" in error["description"]
    assert "--allow-http-push" in error["description"]
    assert "push.jmapd.test" in error["description"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x", "http://127.200.3.4/x",
                                 "http://[::1]:8080/x", "http://localhost:1/x",
                                 "http://LOCALHOST/x", "https://example.com/x"])
def test_allow_http_push_accepts_http_on_loopback(jmap, url):
    """Dev-only deviation from §7.2: http:// for 127.0.0.0/8, ::1 and localhost."""
    jmap.core.allow_http_push = True
    create(jmap, url=url)


@pytest.mark.parametrize("url", ["http://192.168.1.10/x", "http://10.0.0.1/x",
                                 "http://example.com/x", "http://localhost.example.com/x",
                                 "http://0.0.0.0/x", "http://[::2]/x"])
def test_allow_http_push_still_refuses_http_elsewhere(jmap, url):
    """--allow-http-push lifts the https rule for loopback receivers only."""
    jmap.core.allow_http_push = True
    error = not_created(jmap, deviceClientId="d", url=url)
    assert (error["type"], error["properties"]) == ("invalidProperties", ["url"])
    assert "loopback" in error["description"]


def test_keys_are_refused_as_rfc8291_is_impossible_with_the_stdlib(jmap):
    """§7.2: keys "MUST" be used per RFC 8291; jmapd cannot, so it refuses them."""
    error = not_created(jmap, deviceClientId="d", url=CAPTURED + "x",
                        keys={"p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcx",
                              "auth": "BTBZMqHH6r4Tts7J_aSIgg"})
    assert (error["type"], error["properties"]) == ("invalidProperties", ["keys"])
    assert "RFC 8291" in error["description"] and "standard library" in error["description"]


@pytest.mark.parametrize("keys", [{"p256dh": "x"}, {"p256dh": 1, "auth": "y"}, "k", [],
                                  {"p256dh": "x", "auth": "y", "extra": "z"}])
def test_malformed_keys_are_invalidProperties(jmap, keys):
    """§7.2: keys is an object with exactly p256dh and auth Strings."""
    error = not_created(jmap, deviceClientId="d", url=CAPTURED + "x", keys=keys)
    assert (error["type"], error["properties"]) == ("invalidProperties", ["keys"])


def test_keys_null_is_accepted(jmap):
    """§7.2: keys is "Object|null"; null means no encryption."""
    _, created = create(jmap, keys=None)
    assert "keys" not in created


def test_verificationCode_must_be_null_on_create(jmap):
    """§7.2: verificationCode "MUST be null (or omitted) when the subscription is created"."""
    error = not_created(jmap, deviceClientId="d", url=CAPTURED + "x", verificationCode="abc")
    assert (error["type"], error["properties"]) == ("invalidProperties", ["verificationCode"])
    _, created = create(jmap, verificationCode=None)
    assert "verificationCode" not in created


def test_missing_and_mistyped_properties_are_all_listed(jmap):
    """§5.3: deviceClientId and url are required; invalidProperties lists every problem."""
    assert not_created(jmap)["properties"] == ["deviceClientId", "url"]
    error = not_created(jmap, deviceClientId=5, url=["https://x/"], types="Email",
                        id="P9", color="red")
    assert error["properties"] == ["color", "deviceClientId", "id", "types", "url"]


def test_types_must_be_a_list_of_strings_or_null(jmap):
    """§7.2: types is "String[]|null"."""
    error = not_created(jmap, deviceClientId="d", url=CAPTURED + "x", types=["Email", 3])
    assert error["properties"] == ["types"]
    _, created = create(jmap, types=["Mailbox"])
    assert "types" not in created


# --- §7.2.1 get ------------------------------------------------------------------

def test_get_ids_null_returns_all_without_url_keys_account_or_state(jmap):
    """§7.2.1: ids null fetches all; url and keys MUST NOT be returned; no accountId/state."""
    first, _ = create(jmap, deviceClientId="b37ff8001ca0", types=["Todo"])
    second, _ = create(jmap, deviceClientId="X8980fc", types=["Mailbox", "Email"])
    result = push_get(jmap, ids=None)
    assert set(result) == {"list", "notFound"}
    assert result["list"] == [
        {"id": first, "deviceClientId": "b37ff8001ca0", "verificationCode": None,
         "expires": NOW_PLUS_7_DAYS, "types": ["Todo"]},
        {"id": second, "deviceClientId": "X8980fc", "verificationCode": None,
         "expires": NOW_PLUS_7_DAYS, "types": ["Mailbox", "Email"]}]
    assert result["notFound"] == []


@pytest.mark.parametrize("properties", [["url"], ["keys"], ["id", "deviceClientId", "url"]])
def test_get_asking_for_url_or_keys_is_forbidden(jmap, properties):
    """§7.2.1: "If one of them is explicitly requested, ... rejected with a forbidden error"."""
    subscription_id, _ = create(jmap)
    assert jmap.error("PushSubscription/get", {"ids": [subscription_id],
                                               "properties": properties},
                      using=(CORE,)) == "forbidden"


def test_get_with_properties_and_unknown_ids(jmap):
    """§5.1: the id always, the asked properties, unknown ids in notFound."""
    subscription_id, _ = create(jmap)
    result = push_get(jmap, ids=[subscription_id, "P999", subscription_id],
                      properties=["deviceClientId"])
    assert result == {"list": [{"id": subscription_id, "deviceClientId": "dev-1"}],
                      "notFound": ["P999"]}
    assert jmap.error("PushSubscription/get", {"ids": None, "properties": ["colour"]},
                      using=(CORE,)) == "invalidArguments"


@pytest.mark.parametrize("method, args", [
    ("PushSubscription/get", {"accountId": "alice", "ids": None}),
    ("PushSubscription/set", {"accountId": "alice", "create": {}}),
    ("PushSubscription/set", {"ifInState": "1", "destroy": []}),
    ("PushSubscription/changes", {"sinceState": "0"}),
])
def test_no_accountId_no_ifInState_and_no_changes_method(jmap, method, args):
    """§7.2.1-2: the methods take no accountId and /set no ifInState; there is no /changes."""
    expected = "unknownMethod" if method.endswith("changes") else "invalidArguments"
    assert jmap.error(method, args, using=(CORE,)) == expected


def test_subscriptions_belong_to_the_user_that_made_them(jmap, bob):
    """§7.2: only subscriptions made with these credentials are returned or changed."""
    subscription_id, _ = create(jmap)
    assert push_get(bob, ids=None) == {"list": [], "notFound": []}
    assert push_get(bob, ids=[subscription_id])["notFound"] == [subscription_id]
    result = push_set(bob, update={subscription_id: {"types": None}})
    assert result["notUpdated"][subscription_id]["type"] == "notFound"
    result = push_set(bob, destroy=[subscription_id])
    assert result["notDestroyed"][subscription_id]["type"] == "notFound"
    assert push_get(jmap, ids=None)["list"][0]["id"] == subscription_id


def test_the_hidden_push_account_is_in_no_session(jmap, core):
    """§2: the session lists real accounts only; subscriptions need no account."""
    create(jmap)
    assert list(core.session("alice", "http://x")["accounts"]) == ["alice"]


# --- §7.2.2 update and destroy ---------------------------------------------------

@pytest.mark.parametrize("patch", [{"deviceClientId": "other"},
                                   {"url": CAPTURED + "changed"},
                                   {"keys": {"p256dh": "x", "auth": "y"}},
                                   {"id": "P77"}])
def test_immutable_properties_cannot_be_changed(jmap, patch):
    """§7.2: id, deviceClientId, url and keys are immutable (invalidProperties)."""
    subscription_id, _ = create(jmap)
    error = push_set(jmap, update={subscription_id: patch})["notUpdated"][subscription_id]
    assert (error["type"], error["properties"]) == ("invalidProperties", list(patch))


def test_repeating_an_immutable_value_is_no_change(jmap):
    """§5.3: an immutable property may be sent with its current value."""
    subscription_id, _ = create(jmap)
    result = push_set(jmap, update={subscription_id: {"deviceClientId": "dev-1",
                                                      "types": ["Email"]}})
    assert result["updated"] == {subscription_id: None}


def test_wrong_verification_code_is_invalidProperties(jmap, outbox):
    """§7.2.2: "an invalid verification code MUST be rejected ... invalidProperties"."""
    subscription_id, _ = create(jmap)
    outbox.poll()
    sent = jmap.core.pushes[0]["body"]["verificationCode"]
    for wrong in ["probe-wrong-code", sent.upper(), sent[:-1], sent + "0", "", "é"]:
        error = push_set(jmap, update={subscription_id: {"verificationCode": wrong}})
        assert error["notUpdated"][subscription_id]["properties"] == ["verificationCode"]
    assert push_get(jmap, ids=None)["list"][0]["verificationCode"] is None


def test_the_right_code_verifies_and_is_returned_by_get(jmap, outbox):
    """§7.2.2, §7.2.3: the client sets the pushed code; /get then shows it."""
    subscription_id, _ = create(jmap)
    code = verify(jmap, outbox, subscription_id)
    assert push_get(jmap, ids=[subscription_id])["list"][0]["verificationCode"] == code
    result = push_set(jmap, update={subscription_id: {"verificationCode": "something-else"}})
    assert result["notUpdated"][subscription_id]["properties"] == ["verificationCode"]


def test_extending_expires_is_shortened_and_reported_in_updated(jmap, core):
    """§7.2.3: two days on, a far expires is cut to 7 days from now, and "updated" says so."""
    subscription_id, _ = create(jmap)
    core.clock.advance(2 * 86400 + 501)
    result = push_set(jmap, update={subscription_id: {"expires": "2026-08-13T00:00:00Z"}})
    assert result["updated"] == {subscription_id: {"expires": "2026-01-10T09:08:21Z"}}
    result = push_set(jmap, update={subscription_id: {"expires": "2026-01-05T00:00:00Z"}})
    assert result["updated"] == {subscription_id: None}  # kept as asked: nothing to report
    result = push_set(jmap, update={subscription_id: {"expires": "2026-01-02T00:00:00Z"}})
    assert result["notUpdated"][subscription_id]["properties"] == ["expires"]


def test_destroy_forgets_the_subscription(jmap):
    """§7.2.2 (§5.3 destroy): gone from /get; a second destroy is notFound."""
    subscription_id, _ = create(jmap)
    assert push_set(jmap, destroy=[subscription_id])["destroyed"] == [subscription_id]
    assert push_get(jmap, ids=[subscription_id])["notFound"] == [subscription_id]
    again = push_set(jmap, destroy=[subscription_id])["notDestroyed"][subscription_id]
    assert again["type"] == "notFound"


# --- the POSTs, as data (§7.2.2 PushVerification, §7.1 StateChange) --------------

def test_create_owes_exactly_one_PushVerification(jmap, core, outbox):
    """§7.2.2: on create the server "MUST immediately push a PushVerification"."""
    subscription_id, _ = create(jmap)
    assert outbox.poll() == []  # the reserved host's POSTs are captured, not returned
    assert len(core.pushes) == 1
    push = core.pushes[0]
    assert push["url"] == CAPTURED + "alice"
    assert push["ttl"] == jmapd.PUSH_TTL_SECONDS
    assert push["time"] == "2026-01-01T09:00:00Z"
    code = push["body"]["verificationCode"]
    assert push["body"] == {"@type": "PushVerification", "pushSubscriptionId": subscription_id,
                            "verificationCode": code}
    assert len(code) == 32 and int(code, 16) >= 0  # 128 bits: not guessable (§7.2.2)
    touch_inbox(jmap)
    outbox.poll()
    assert len(core.pushes) == 1  # nothing more, and never a second verification


def test_other_urls_are_returned_to_be_sent(jmap, core, outbox):
    """Section 14 sends what poll() returns; only push.jmapd.test is captured."""
    subscription_id, _ = create(jmap, url="https://push.example.com/x?device=1")
    messages = outbox.poll()
    assert [(m.subscription_id, m.url, m.body["@type"]) for m in messages] == [
        (subscription_id, "https://push.example.com/x?device=1", "PushVerification")]
    assert core.pushes == []
    assert outbox.is_live(messages[0])


def test_no_StateChange_before_verification(jmap, core, outbox):
    """§7.2: "MUST NOT make any further requests to the URL until" verified."""
    create(jmap)
    touch_inbox(jmap)
    outbox.poll()
    assert state_changes(core) == []


def test_StateChange_after_verification(jmap, core, outbox):
    """§7.1: after verification each change pushes the new state of the changed type."""
    subscription_id, _ = create(jmap)
    verify(jmap, outbox, subscription_id)
    state = touch_inbox(jmap)
    outbox.poll()
    assert state_changes(core) == [{"@type": "StateChange", "changed": {"alice": {
        "Mailbox": state}}}]


def test_types_filter_what_is_pushed(jmap, core, outbox):
    """§7.2: types lists what to push; other types are omitted; null pushes all."""
    wanted = {}
    for types in (["Email"], ["Mailbox"], None, [], ["Todo"]):
        subscription_id, _ = create(jmap, types=types, url=CAPTURED + str(types))
        wanted[subscription_id] = types
        verify(jmap, outbox, subscription_id)
    mailbox_state = touch_inbox(jmap)
    jmapd.deliver_message(core, RAW, "alice")
    outbox.poll()
    got = [(p["url"], p["body"]["changed"]) for p in core.pushes
           if p["body"]["@type"] == "StateChange"]
    email = jmap.call("Email/get", {"accountId": "alice", "ids": []})["state"]
    thread = jmap.call("Thread/get", {"accountId": "alice", "ids": []})["state"]
    mailbox = jmap.call("Mailbox/get", {"accountId": "alice", "ids": []})["state"]
    quota = jmap.call("Quota/get", {"accountId": "alice", "ids": []},
                      (jmapd.URN_CORE, jmapd.URN_QUOTA))["state"]  # RFC 9425 §6: pushed too
    assert got == [
        (CAPTURED + "['Mailbox']", {"alice": {"Mailbox": mailbox_state}}),
        (CAPTURED + "None", {"alice": {"Mailbox": mailbox_state}}),
        (CAPTURED + "['Email']", {"alice": {"Email": email}}),
        (CAPTURED + "['Mailbox']", {"alice": {"Mailbox": mailbox}}),
        (CAPTURED + "None", {"alice": {"Email": email, "Mailbox": mailbox, "Thread": thread,
                                           "Quota": quota}}),
    ]


def test_only_changes_the_user_can_see_are_pushed(jmap, bob, core, outbox):
    """§7.1: changed lists "the accounts to which the user has access"."""
    alice_id, _ = create(jmap)
    bob_id, _ = create(bob)
    verify(jmap, outbox, alice_id)
    verify(bob, outbox, bob_id)
    bob_state = touch_inbox(bob)
    outbox.poll()
    assert [(p["url"], p["body"]) for p in core.pushes if p["body"]["@type"] == "StateChange"] \
        == [(CAPTURED + "bob", {"@type": "StateChange", "changed": {"bob": {
            "Mailbox": bob_state}}})]


def test_subscription_changes_themselves_push_nothing(jmap, core, outbox):
    """§7.1: a StateChange names account types; PushSubscription has neither (§7.2.1)."""
    subscription_id, _ = create(jmap, types=None)
    verify(jmap, outbox, subscription_id)
    push_set(jmap, update={subscription_id: {"types": ["Mailbox"]}})
    create(jmap, url=CAPTURED + "second")
    outbox.poll()
    assert state_changes(core) == []
    entry = core.feed.wait(0, 0)[-1][1]
    assert entry == {"push:alice": {"PushSubscription": entry["push:alice"]["PushSubscription"]}}
    assert jmapd.state_change(core, core.user("alice"), entry, None) is None


def test_no_pushes_after_expiry(jmap, core, outbox):
    """§7.2: the server "MUST NOT make further requests to this resource after" expires."""
    subscription_id, _ = create(jmap, url="https://push.example.com/x",
                                expires="2026-01-02T09:00:00Z")
    verification = outbox.poll()[0]
    push_set(jmap, update={subscription_id: {"verificationCode":
                                             verification.body["verificationCode"]}})
    touch_inbox(jmap)
    queued = outbox.poll()
    assert [m.body["@type"] for m in queued] == ["StateChange"]
    core.clock.advance(86400)  # now == expires
    assert not outbox.is_live(queued[0])
    touch_inbox(jmap)
    assert outbox.poll() == []


def test_destroyed_subscription_gets_no_more_pushes(jmap, core, outbox):
    """§7.2: a destroyed subscription's url is erased; nothing queued for it may go."""
    subscription_id, _ = create(jmap, url="https://push.example.com/x")
    verification = outbox.poll()[0]
    push_set(jmap, update={subscription_id: {"verificationCode":
                                             verification.body["verificationCode"]}})
    touch_inbox(jmap)
    queued = outbox.poll()
    push_set(jmap, destroy=[subscription_id])
    touch_inbox(jmap)
    assert outbox.poll() == []
    assert not outbox.is_live(queued[0])
    assert not outbox.is_live(verification)


def test_an_outbox_started_later_still_sends_owed_verifications(jmap, core):
    """§7.2.2: a subscription made before the deliverer ran (a restart) is verified then."""
    subscription_id, _ = create(jmap, url="https://push.example.com/x")
    messages = jmapd.PushOutbox(core).poll()
    assert [(m.subscription_id, m.body["@type"]) for m in messages] == [
        (subscription_id, "PushVerification")]


def test_unsent_state_changes_coalesce(jmap):
    """§7: "multiple changes [may] be coalesced into a single" StateChange; later wins."""
    older = {"@type": "StateChange", "changed": {"a": {"Email": "1", "Mailbox": "2"}}}
    newer = {"@type": "StateChange", "changed": {"a": {"Email": "3"}, "b": {"Thread": "4"}}}
    assert jmapd.merge_state_changes(older, newer) == {"@type": "StateChange", "changed": {
        "a": {"Email": "3", "Mailbox": "2"}, "b": {"Thread": "4"}}}
    assert older["changed"]["a"]["Email"] == "1"  # the inputs are left alone
