"""Smoke: the fixtures work (the real suites live in the RFC directories)."""


def test_demo_core_has_alice_inbox(jmap):
    """RFC 8621 §2: the demo account has an inbox."""
    assert "Inbox" in jmap.mailbox_ids()


def test_server_answers_session(web):
    """RFC 8620 §2: the session resource answers over HTTP."""
    response = web.send("GET", "/jmap/session")
    assert response.status == 200
