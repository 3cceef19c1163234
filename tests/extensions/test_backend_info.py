"""draft-baum-jmap-backend-info-00 §1.2.1: the backendinfo session capability, with
apiBackend and product as SoftwareInfo and environment as a String."""

import json
import platform
import sys

import jmapd

CORE = jmapd.URN_CORE
BACKEND_INFO = "urn:ietf:params:jmap:core:backendinfo"


def test_capability_names_jmapd_its_version_and_python(core):
    """§1.2.1: apiBackend and product are SoftwareInfo {name, version}; environment is
    a String (the draft's example shows an object; its definition says String|null)."""
    session = core.session("alice", "http://x")
    assert session["capabilities"][BACKEND_INFO] == {
        "apiBackend": {"name": "jmapd", "version": jmapd.__version__},
        "product": {"name": "jmapd", "version": jmapd.__version__},
        "environment": f"Python {platform.python_version()} ({sys.implementation.name})"}
    assert jmapd.URN_BACKEND_INFO == BACKEND_INFO


def test_capability_adds_nothing_to_accounts(core):
    """§1.2.1: "This extension does not add anything to the account's
    accountCapabilities property" (so it is in no primaryAccounts either)."""
    session = core.session("alice", "http://x")
    assert all(BACKEND_INFO not in account["accountCapabilities"]
               for account in session["accounts"].values())
    assert BACKEND_INFO not in session["primaryAccounts"]


def test_a_request_may_use_the_capability(jmap):
    """RFC 8620 §3.3: a capability the session lists is no unknownCapability."""
    assert jmap.call("Core/echo", {"x": 1}, using=(CORE, BACKEND_INFO)) == {"x": 1}


def test_the_http_session_carries_it(web):
    """§1.2.1 over HTTP: the Session resource has the capability object."""
    session = json.loads(web.send("GET", "/jmap/session").data)
    assert session["capabilities"][BACKEND_INFO]["apiBackend"]["name"] == "jmapd"
