"""Delivery: the one path arriving mail takes (server.deliver), seen over plain HTTP."""

import json

import pytest

import jmapd

RAW = (b"From: Carol <carol@example.org>\r\nTo: bob@example.com\r\nSubject: Hello Bob\r\n"
       b"Message-ID: <hello-bob@example.org>\r\n\r\nHi!\r\n")


def post(web, user, calls):
    response = web.send("POST", jmapd.API_PATH, {"using": [jmapd.URN_CORE, jmapd.URN_MAIL],
                                                 "methodCalls": calls},
                        auth=web.basic(user, user))
    return json.loads(response.data)["methodResponses"]


def test_a_delivered_message_shows_in_the_recipients_inbox_changes_and_counts(server, web):
    """RFC 8621 §2, §4.3: bob's Email/changes lists it, his Inbox count moves; alice sees nothing."""
    state = post(web, "bob", [["Email/get", {"accountId": "bob", "ids": []}, "g"]])[0][1]["state"]
    delivered = server.deliver(RAW, to="bob@example.com")
    email_id = delivered["bob@example.com"]
    changes = post(web, "bob", [["Email/changes", {"accountId": "bob", "sinceState": state}, "c"],
                                ["Mailbox/query", {"accountId": "bob", "filter": {"role": "inbox"}}, "q"],
                                ["Mailbox/get", {"accountId": "bob", "properties": ["unreadEmails"],
                                                 "#ids": {"resultOf": "q", "name": "Mailbox/query",
                                                          "path": "/ids"}}, "m"]])
    assert changes[0][1]["created"] == [email_id]
    assert changes[2][1]["list"][0]["unreadEmails"] == 1
    found = post(web, "bob", [["Email/query", {"accountId": "bob",
                                               "filter": {"subject": "Hello Bob"}}, "q"]])
    assert found[0][1]["ids"] == [email_id]
    alice = post(web, "alice", [["Email/query", {"accountId": "alice",
                                                 "filter": {"subject": "Hello Bob"}}, "q"]])
    assert alice[0][1]["ids"] == []


def test_delivery_to_an_unknown_recipient_is_refused(server):
    """Only local users receive mail; anything else is an error, not a silent drop."""
    with pytest.raises(ValueError, match="no local user"):
        server.deliver(RAW, to="nobody@example.com")
