#!/usr/bin/env python3
"""jmapd: a single-file, zero-dependency JMAP server for development and testing.

It speaks RFC 8620 (JMAP core, with EventSource and PushSubscription), RFC 8621 (Mail,
sending included), RFC 8887 (WebSocket), RFC 9404 (blobs), RFC 9425 (quotas), RFC 9007
(MDN), and the backend-info and REST-mapping drafts exactly; keeps everything in sqlite;
and starts in milliseconds, so client developers can test against a real server.

Run it:    python jmapd.py --seed demo          (alice/alice and bob/bob)
Embed it:  with jmapd.serve(seed="demo") as server: ...server.session_url...
Core only: core = jmapd.JmapCore(); core.handle_request("alice", {...})
Test it:   pytest_plugins = ["jmapd"] (or pip install jmapd): fixtures jmap_server,
           jmap_client, marker jmapd (section 18; PYTEST_DONT_REWRITE: plain asserts).

Map (the banners below carry the same numbers; `grep -n '^# [0-9]' jmapd.py`):
    0. Head
    1. Constants, capabilities, registries
    2. Errors
    3. Primitive types
    4. Storage
    5. Core: session and requests
    6. Standard methods engine
    7. Binary data
    8. MIME
    9. Mail data types
   10. Delivery
   11. Push (logic)
   12. Extensions
   13. WebSocket (codec)
   14. Network I/O
   15. Dev controls
   16. Seeds
   17. Command line
   18. Test support

Rules this file keeps:
    1. Sans-IO core: only section 14 opens sockets or starts threads (and the test
       Client of section 18, a client). The core reads time and ids from an injected
       clock and id source.
    2. One writer of SQL: section 4 (the Store) and a data type's own storage hooks.
    3. Errors are raised, never returned: RequestError, MethodError, SetError carry the
       spec's type string; one boundary per level turns them into wire objects.
    4. One engine: a loop written for a second data type moves into section 6.
    5. Top-down: a section uses only names defined above it; registries (section 1's,
       and a section's own hook lists such as ON_MAILBOX_DESTROY or SEND_SUBMISSION)
       are the only way to reach forward.
    Extensions get numbered sub-sections of one "Extensions" section, 12, in the order
    the issues add them, and reach the mail types only through such named seams.

How to add a data type:
    1. Subclass DataType in its section; declare `name`, `capability`, `id_prefix`,
       `properties` (Prop per RFC property), `filters`, `sorts`.
    2. Decorate it with @datatype: its standard methods register themselves.
    3. Override only the hooks its RFC adds (DataType lists them all): e.g. validate,
       before_create, derive, after_write, after_set, before_destroy, compute, render.
    4. Extra methods: @method("Foo/bar", capability=URN_...) def foo_bar(call, args).
    5. Tests: tests/<rfc>/test_<type>.py, each test naming the section it checks.
"""

__version__ = "0.1.0"

__all__ = [
    "JmapCore", "JmapServer", "serve", "main",
    "DataType", "Prop", "datatype", "method",
    "RequestError", "MethodError", "SetError",
    "FixedClock", "SystemClock", "SequentialIds", "RandomIds", "User",
    "PushOutbox", "PushPolicy",
    "Client", "CallError", "EventSource", "JmapTestServer", "ServerTemplates",
]

import argparse
import base64
import codecs
import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime
import email.message
import email.policy
import email.utils
import enum
import fnmatch
import functools
import hashlib
import html
import http.client
import http.server
import io
import ipaddress
import json
import logging
import os
import quopri
import queue
import random
import re
import secrets
import select
import signal
import smtplib
import socket
import sqlite3
import ssl
import sys
import threading
import time
import traceback
import unicodedata
import urllib.parse
import zlib
from typing import Any, Callable, Iterable, Iterator

log = logging.getLogger("jmapd")


# =============================================================================
# 1. Constants, capabilities, registries
# =============================================================================
# Capability URNs and the core limits (RFC 8620 §2), the HTTP paths, and the
# registries that later sections fill with decorators. The registries are the
# only module-level mutable state; each JmapCore reads them when it is built.

URN_CORE = "urn:ietf:params:jmap:core"  # RFC 8620 §2
URN_MAIL = "urn:ietf:params:jmap:mail"  # RFC 8621 §1.3.1
URN_ERROR = "urn:ietf:params:jmap:error:"  # RFC 8620 §3.6.1

# RFC 8620 §2, the core capability: our defaults; each is configurable (--limit).
DEFAULT_LIMITS = {
    "maxSizeUpload": 50_000_000,
    "maxConcurrentUpload": 4,
    "maxSizeRequest": 10_000_000,
    "maxConcurrentRequests": 8,
    "maxCallsInRequest": 32,
    "maxObjectsInGet": 500,
    "maxObjectsInSet": 500,
}
# Server-side limits that are ours, not RFC 8620's; settable with --limit too.
SERVER_LIMITS = {
    "maxQueryLimit": 5000,   # RFC 8620 §5.5: the cap we apply to /query's limit
    "maxChanges": 5000,      # RFC 8620 §5.2: /changes size when the client gives none
    "maxMailboxesPerEmail": 256,      # RFC 8621 §1.3.1, tooManyMailboxes (§4.6)
    "maxKeywordsPerEmail": 256,       # RFC 8621 §4.6 tooManyKeywords (the limit is ours)
    "maxDelayedSend": 7 * 86400,      # RFC 8621 §1.3.2: the longest FUTURERELEASE hold
    "maxRecipients": 100,             # RFC 8621 §7.5 tooManyRecipients' maxRecipients
    "maxSizeSubmission": 25_000_000,  # RFC 8621 §7.5 tooLarge's maxSize for sending
    "mailQuotaOctets": 10 * 2 ** 30,  # RFC 9425 (12.2): a new account's hard limits
    "mailQuotaCount": 1_000_000,
}
# RFC 4790 collations we implement (RFC 8620 §5.5 "collation").
COLLATIONS = ("i;ascii-casemap", "i;ascii-numeric", "i;unicode-casemap")
DEFAULT_COLLATION = "i;unicode-casemap"

MAIL_ACCOUNT_LIMITS = {  # RFC 8621 §1.3.1
    "maxMailboxDepth": 10,
    "maxSizeMailboxName": 255,
    "maxSizeAttachmentsPerEmail": 50_000_000,
    "emailQuerySortOptions": ["receivedAt", "sentAt", "size", "from", "to", "subject"],
    "mayCreateTopLevelMailbox": True,
}

UPLOAD_TTL_SECONDS = 24 * 3600      # RFC 8620 §6.1: an unreferenced upload expires after this
TOMBSTONE_TTL_SECONDS = 30 * 86400  # RFC 8620 §5.2: /changes reaches back this far, no further

WELL_KNOWN_PATH = "/.well-known/jmap"  # RFC 8620 §2.2
SESSION_PATH = "/jmap/session"
API_PATH = "/jmap/api"
UPLOAD_PREFIX = "/jmap/upload/"
DOWNLOAD_PREFIX = "/jmap/download/"
EVENTSOURCE_PATH = "/jmap/eventsource"

# RFC 8620 §1.2: the Id character set.
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,255}")

CAPABILITIES: dict[str, "Capability"] = {}   # URN -> session/account values
METHODS: dict[str, "MethodSpec"] = {}        # wire name -> handler
DATATYPES: dict[str, "DataType"] = {}        # type name -> declaration
SEEDS: dict[str, Callable] = {}              # seed name -> builder(core, source)
FILE_SEED = "<file>"                         # the SEEDS key that loads a JSON seed file
ACCOUNT_SETUP: list[Callable] = []           # fn(core, user): fills a new personal account
DUE_WORK: list[Callable] = []                # fn(core): work whose time may have come
                                             # (held sends): before each request, and timed
SESSION_URLS: dict[str, Callable[[str], str]] = {}  # Session property -> fn(base_url), for
                                                    # an extension's URL (12.5 apiUrlRest)
CORE_SETUP: list[Callable] = []              # fn(core): per-core helpers a later section
                                             # attaches (section 15's dev controls)


@dataclasses.dataclass(frozen=True, slots=True)
class Capability:
    """A capability URN with its session value and per-account value."""
    urn: str
    session_value: Callable[["JmapCore"], dict]
    account_value: Callable[["JmapCore", "Account"], dict] | None = None
    session_urls: Callable[[str], dict] | None = None  # base_url -> URL members to add


@dataclasses.dataclass(frozen=True, slots=True)
class MethodSpec:
    """A JMAP method: its wire name, handler and the capability that enables it."""
    name: str
    handler: Callable
    capability: str


def capability(urn: str, session_value: Callable, account_value: Callable | None = None,
               session_urls: Callable | None = None) -> None:
    """Register a capability URN (RFC 8620 §2 `capabilities`); session_urls(base_url)
    gives members that are URLs on the request's origin, like apiUrl."""
    CAPABILITIES[urn] = Capability(urn, session_value, account_value, session_urls)


def method(name: str, capability: str) -> Callable:
    """Decorator: register `fn(call, args) -> dict` as the JMAP method `name`."""
    def register(handler: Callable) -> Callable:
        METHODS[name] = MethodSpec(name, handler, capability)
        return handler
    return register


def seed(name: str) -> Callable:
    """Decorator: register a seed builder `fn(core, source)` under `name`."""
    def register(builder: Callable) -> Callable:
        SEEDS[name] = builder
        return builder
    return register


# =============================================================================
# 2. Errors
# =============================================================================
# RFC 8620 §3.6. One class per level, each carrying the spec's type string, which
# must be in that level's table. The request loop (5) turns MethodError into an
# "error" response, the /set engine (6) turns SetError into notCreated/...; the
# transports turn RequestError into problem details (RFC 7807).

REQUEST_ERRORS = {  # RFC 8620 §3.6.1
    "unknownCapability": "RFC 8620 §3.6.1",
    "notJSON": "RFC 8620 §3.6.1",
    "notRequest": "RFC 8620 §3.6.1",
    "limit": "RFC 8620 §3.6.1",
}
METHOD_ERRORS = {
    "serverUnavailable": "RFC 8620 §3.6.2",
    "serverFail": "RFC 8620 §3.6.2",
    "serverPartialFail": "RFC 8620 §3.6.2",
    "unknownMethod": "RFC 8620 §3.6.2",
    "invalidArguments": "RFC 8620 §3.6.2",
    "invalidResultReference": "RFC 8620 §3.6.2",
    "forbidden": "RFC 8620 §3.6.2",
    "accountNotFound": "RFC 8620 §3.6.2",
    "accountNotSupportedByMethod": "RFC 8620 §3.6.2",
    "accountReadOnly": "RFC 8620 §3.6.2",
    "requestTooLarge": "RFC 8620 §5.1, §5.3",
    "cannotCalculateChanges": "RFC 8620 §5.2, §5.6",
    "stateMismatch": "RFC 8620 §5.3",
    "fromAccountNotFound": "RFC 8620 §5.4",
    "fromAccountNotSupportedByMethod": "RFC 8620 §5.4",
    "anchorNotFound": "RFC 8620 §5.5",
    "unsupportedSort": "RFC 8620 §5.5",
    "unsupportedFilter": "RFC 8620 §5.5",
    "tooManyChanges": "RFC 8620 §5.6",
    "unknownDataType": "RFC 9404 §4.3",
}
SET_ERRORS = {
    "forbidden": "RFC 8620 §5.3",
    "overQuota": "RFC 8620 §5.3",
    "tooLarge": "RFC 8620 §5.3",
    "rateLimit": "RFC 8620 §5.3",
    "notFound": "RFC 8620 §5.3",
    "invalidPatch": "RFC 8620 §5.3",
    "willDestroy": "RFC 8620 §5.3",
    "invalidProperties": "RFC 8620 §5.3",
    "singleton": "RFC 8620 §5.3",
    "alreadyExists": "RFC 8620 §5.4",
    "mailboxHasChild": "RFC 8621 §2.5",
    "mailboxHasEmail": "RFC 8621 §2.5",
    "invalidEmail": "RFC 8621 §4.8",
    "blobNotFound": "RFC 8621 §4.6",
    "tooManyKeywords": "RFC 8621 §4.6",
    "tooManyMailboxes": "RFC 8621 §4.6",
    "forbiddenFrom": "RFC 8621 §6.3, §7.5",
    "invalidRecipients": "RFC 8621 §7.5",
    "noRecipients": "RFC 8621 §7.5",
    "tooManyRecipients": "RFC 8621 §7.5",
    "forbiddenMailFrom": "RFC 8621 §7.5",
    "forbiddenToSend": "RFC 8621 §7.5",
    "cannotUnsend": "RFC 8621 §7.5",
    "mdnAlreadySent": "RFC 9007 §2.1",
}

HTTP_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
               405: "Method Not Allowed", 411: "Length Required", 413: "Content Too Large",
               415: "Unsupported Media Type", 426: "Upgrade Required",
               429: "Too Many Requests",
               500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
               503: "Service Unavailable", 504: "Gateway Timeout"}


class RequestError(Exception):
    """A request-level error (RFC 8620 §3.6.1), sent as RFC 7807 problem details.

    `type` is one of REQUEST_ERRORS, or None for a plain HTTP error ("about:blank").
    Extra keyword arguments become members of the problem object (e.g. limit=...).
    """

    def __init__(self, type: str | None, detail: str = "", *, status: int = 400,
                 **members: Any) -> None:
        if type is not None and type not in REQUEST_ERRORS:
            raise ValueError(f"unknown request error type {type!r}")
        super().__init__(detail or type or HTTP_TITLES.get(status, ""))
        self.type, self.detail, self.status, self.members = type, detail, status, members

    @classmethod
    def http(cls, status: int, detail: str = "") -> "RequestError":
        """A transport error with no JMAP type, e.g. 404 for an unknown path."""
        return cls(None, detail, status=status)

    def problem(self) -> dict:
        """The RFC 7807 problem details object."""
        body = {"type": URN_ERROR + self.type if self.type else "about:blank",
                "status": self.status, "title": HTTP_TITLES.get(self.status, "Error")}
        if self.detail:
            body["detail"] = self.detail
        body.update(self.members)
        return body


class _TypedError(Exception):
    """A JMAP error object {type, description?, ...}; `types` is its level's table."""
    types: dict[str, str] = {}

    def __init__(self, type: str, description: str | None = None, **members: Any) -> None:
        if type not in self.types:
            raise ValueError(f"unknown {self.__class__.__name__} type {type!r}")
        super().__init__(description or type)
        self.type, self.description, self.members = type, description, members

    def to_json(self) -> dict:
        body = {"type": self.type}
        if self.description:
            body["description"] = self.description
        body.update(self.members)
        return body


class MethodError(_TypedError):
    """A method-level error (RFC 8620 §3.6.2): the call answers ["error", {...}, id]."""
    types = METHOD_ERRORS


class SetError(_TypedError):
    """A per-object error inside /set or /copy (RFC 8620 §5.3 SetError)."""
    types = SET_ERRORS

    @classmethod
    def invalid_properties(cls, properties: Iterable[str], description: str) -> "SetError":
        """invalidProperties listing *all* offending properties (RFC 8620 §5.3)."""
        return cls("invalidProperties", description, properties=sorted(set(properties)))


def invalid_arguments(description: str) -> MethodError:
    """Shorthand for the commonest method error."""
    return MethodError("invalidArguments", description)


# =============================================================================
# 3. Primitive types
# =============================================================================
# RFC 8620 §1.2-1.4 scalar types as validators, composite types built from them,
# JSON Pointer with JMAP's "*" (§3.7), PatchObject (§5.3), and the injectable
# clock and id sources. A JmapType answers one question, `accepts(value)`;
# booleans are never numbers (JSON has no such coercion, neither do we).

MAX_SAFE_INT = 2**53 - 1  # RFC 8620 §1.3
MISSING = object()        # "argument or property not given" (distinct from null)


@dataclasses.dataclass(frozen=True, slots=True)
class JmapType:
    """A named JSON value type, e.g. UnsignedInt or Id[]."""
    name: str
    test: Callable[[Any], bool]

    def accepts(self, value: Any) -> bool:
        return self.test(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_DATE_TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.(?![0]+(?:Z|[+-]))[0-9]+)?"
_UTC_DATE = re.compile(_DATE_TIME + "Z")
_DATE = re.compile(_DATE_TIME + "(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])")


def _is_date(value: Any, pattern: re.Pattern) -> bool:
    """RFC 8620 §1.4: RFC 3339 date-time, upper-case T/Z, no zero time-secfrac."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        return False
    stamp = value[:19]
    if stamp.endswith(":60"):  # RFC 3339 §5.7 allows a leap second
        stamp = stamp[:-2] + "59"
    try:
        datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return False
    return True


String = JmapType("String", lambda v: isinstance(v, str))
Boolean = JmapType("Boolean", lambda v: isinstance(v, bool))
Int = JmapType("Int", lambda v: _is_int(v) and -MAX_SAFE_INT <= v <= MAX_SAFE_INT)
UnsignedInt = JmapType("UnsignedInt", lambda v: _is_int(v) and 0 <= v <= MAX_SAFE_INT)
Id = JmapType("Id", lambda v: isinstance(v, str) and ID_PATTERN.fullmatch(v) is not None)
UTCDate = JmapType("UTCDate", lambda v: _is_date(v, _UTC_DATE))
Date = JmapType("Date", lambda v: _is_date(v, _DATE))
JsonObject = JmapType("Object", lambda v: isinstance(v, dict))
# An Id, or "#" + a creation id of this request (RFC 8620 §5.3 creation references)
IdOrCreationRef = JmapType("Id", lambda v: Id.accepts(v) or (
    isinstance(v, str) and v.startswith("#") and Id.accepts(v[1:])))
AnyJson = JmapType("*", lambda v: True)


def list_of(item: JmapType) -> JmapType:
    """The type `item[]`."""
    return JmapType(f"{item.name}[]", lambda v: isinstance(v, list) and all(map(item.accepts, v)))


def map_of(value: JmapType, key: JmapType = String) -> JmapType:
    """The type `key[value]`, a JSON object with typed keys and values."""
    return JmapType(f"{key.name}[{value.name}]", lambda v: isinstance(v, dict) and all(
        key.accepts(k) and value.accepts(x) for k, x in v.items()))


def one_of(*choices: str) -> JmapType:
    """A String restricted to an enumeration."""
    return JmapType("String (" + "|".join(choices) + ")", lambda v: v in choices)


def record_of(fields: dict[str, JmapType]) -> JmapType:
    """An object with exactly these typed fields."""
    def test(value: Any) -> bool:
        return (isinstance(value, dict) and value.keys() == fields.keys()
                and all(t.accepts(value[k]) for k, t in fields.items()))
    return JmapType("{" + ",".join(fields) + "}", test)


def describe_type(type_: JmapType, nullable: bool = False) -> str:
    return type_.name + ("|null" if nullable else "")


# --- 3.1 JSON Pointer (RFC 6901, RFC 8620 §3.7) -----------------------------

def split_pointer(pointer: str) -> list[str]:
    """Split a JSON Pointer into unescaped reference tokens.

    >>> split_pointer("/a~1b/t~0k/0")
    ['a/b', 't~k', '0']
    """
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError("a JSON Pointer starts with '/'")
    if re.search(r"~(?![01])", pointer):  # RFC 6901 §3: '~' escapes only '~0' and '~1'
        raise ValueError("'~' not followed by 0 or 1")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def evaluate_pointer(document: Any, tokens: list[str]) -> Any:
    """Evaluate tokens against document, with JMAP's '*' over arrays (RFC 8620 §3.7).

    >>> evaluate_pointer({"list": [{"x": [1, 2]}, {"x": [3]}]}, ["list", "*", "x"])
    [1, 2, 3]
    """
    value = document
    for index, token in enumerate(tokens):
        if isinstance(value, list):
            if token == "*":
                rest = tokens[index + 1:]
                results = []
                for item in value:
                    found = evaluate_pointer(item, rest)
                    results.extend(found if isinstance(found, list) else [found])
                return results
            if not re.fullmatch(r"0|[1-9][0-9]*", token) or int(token) >= len(value):
                raise KeyError(token)
            value = value[int(token)]
        elif isinstance(value, dict):
            if token not in value:
                raise KeyError(token)
            value = value[token]
        else:
            raise KeyError(token)
    return value


# --- 3.2 PatchObject (RFC 8620 §5.3) ------------------------------------------

def json_identical(a: Any, b: Any) -> bool:
    """Equal as JSON values: true is not 1, 1 is not 1.0 (Python's == says they are)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(json_identical(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(json_identical, a, b))
    return a == b


def apply_patch(record: dict, patch: dict, defaults: dict) -> dict:
    """Return a patched deep copy of record, or raise SetError("invalidPatch").

    A null value resets a top-level property to its default (`defaults`) or removes
    a nested key. Paths may not point inside arrays, their parents must exist, and no
    path may be a prefix of another.

    >>> apply_patch({"a": {"b": 1}, "c": 2}, {"a/b": 5, "c": None}, {})
    {'a': {'b': 5}}
    """
    paths = []
    for key in patch:
        if not isinstance(key, str) or key == "" or key.startswith("/"):
            raise SetError("invalidPatch", f"{key!r} is not a patch path")
        try:
            paths.append(split_pointer("/" + key))
        except ValueError as error:  # e.g. "~2": not a JSON Pointer (RFC 6901 §3)
            raise SetError("invalidPatch", f"{key!r} is not a patch path: {error}") from None
    _reject_prefix_paths(paths)
    result = json.loads(json.dumps(record))
    for tokens, value in zip(paths, patch.values()):
        _set_path(result, tokens, value, defaults)
    return result


def _reject_prefix_paths(paths: list[list[str]]) -> None:
    ordered = sorted(paths)
    for shorter, longer in zip(ordered, ordered[1:]):
        if longer[:len(shorter)] == shorter:  # RFC 8620 §5.3: no path prefixes another
            raise SetError("invalidPatch", "patch path /" + "/".join(shorter)
                           + " is a prefix of /" + "/".join(longer))


def _set_path(target: dict, tokens: list[str], value: Any, defaults: dict) -> None:
    parent = target
    for depth, token in enumerate(tokens[:-1]):
        parent = parent.get(token, MISSING) if isinstance(parent, dict) else MISSING
        if parent is MISSING or not isinstance(parent, dict):
            # RFC 8620 §5.3: parents must exist, and no pointing inside an array
            raise SetError("invalidPatch", "patch path " + "/".join(tokens)
                           + ": " + "/".join(tokens[:depth + 1]) + " is not an object")
    last = tokens[-1]
    if value is not None:
        parent[last] = value
    elif len(tokens) == 1 and last in defaults:
        parent[last] = json.loads(json.dumps(defaults[last]))
    else:
        parent.pop(last, None)


# --- 3.3 Clocks and id sources ----------------------------------------------

def format_utc(moment: datetime.datetime) -> str:
    """A UTCDate string, RFC 8620 §1.4 (no fractional seconds)."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_date(seconds: float) -> str:
    """POSIX seconds as a UTCDate string."""
    return format_utc(datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc))


def _duration(seconds: float, minutes: float, hours: float, days: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days)


class SystemClock:
    """The real time, in UTC; advance() moves it ahead by a fixed offset."""

    def __init__(self) -> None:
        self.offset = datetime.timedelta()

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.timezone.utc) + self.offset

    def advance(self, seconds: float = 0, *, minutes: float = 0, hours: float = 0,
                days: float = 0) -> None:
        self.offset += _duration(seconds, minutes, hours, days)


class FixedClock:
    """A clock that stands still until advanced: reproducible tests and seeds."""

    def __init__(self, start: str | datetime.datetime = "2026-01-01T09:00:00Z") -> None:
        if isinstance(start, str):
            start = datetime.datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=datetime.timezone.utc)
        self.moment = start

    def now(self) -> datetime.datetime:
        return self.moment

    def advance(self, seconds: float = 0, *, minutes: float = 0, hours: float = 0,
                days: float = 0) -> None:
        """Move on: advance(90), advance(hours=2), advance(days=1, minutes=30)."""
        self.moment += _duration(seconds, minutes, hours, days)


class RandomIds:
    """Unpredictable ids, as real servers give: clients must not guess them."""

    counter = None  # nothing to persist

    def new_id(self, prefix: str) -> str:
        return prefix + secrets.token_hex(6)


class SequentialIds:
    """Ids M1, M2, ...: reproducible output. The counter persists in the store."""

    def __init__(self, start: int = 1) -> None:
        self.counter = start

    def new_id(self, prefix: str) -> str:
        number, self.counter = self.counter, self.counter + 1
        return f"{prefix}{number}"


# =============================================================================
# 4. Storage
# =============================================================================
# One sqlite database per server (":memory:" or a file in WAL mode), one connection
# guarded by one lock: every method call is one BEGIN IMMEDIATE ... COMMIT. Each
# account has one modification sequence; every object write takes the next modseq
# and stamps the row, and a destroy leaves a tombstone, so /changes and
# /queryChanges are exact SQL over those columns (RFC 8620 §5.2, §5.6). Blobs are
# stored once by sha-256 and reachable from an account only through a blob_ref.

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE user (
    name TEXT PRIMARY KEY, password TEXT NOT NULL, token TEXT UNIQUE,
    email TEXT NOT NULL, account_id TEXT NOT NULL, full_name TEXT NOT NULL DEFAULT '');
CREATE TABLE account (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, owner TEXT NOT NULL,
    is_read_only INTEGER NOT NULL DEFAULT 0,
    modseq INTEGER NOT NULL DEFAULT 0,
    tombstone_floor INTEGER NOT NULL DEFAULT 0);
CREATE TABLE type_state (
    account_id TEXT NOT NULL, type TEXT NOT NULL, modseq INTEGER NOT NULL,
    PRIMARY KEY (account_id, type)) WITHOUT ROWID;
CREATE TABLE object (
    account_id TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
    data TEXT NOT NULL,
    created_modseq INTEGER NOT NULL,
    updated_modseq INTEGER NOT NULL,
    content_modseq INTEGER NOT NULL,
    destroyed INTEGER NOT NULL DEFAULT 0,
    changed_at REAL NOT NULL,
    PRIMARY KEY (account_id, type, id)) WITHOUT ROWID;
CREATE INDEX object_by_modseq ON object (account_id, type, updated_modseq);
CREATE TABLE blob (
    id TEXT PRIMARY KEY, data BLOB NOT NULL, size INTEGER NOT NULL,
    compressed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE blob_ref (
    account_id TEXT NOT NULL, blob_id TEXT NOT NULL, holder TEXT NOT NULL,
    type TEXT NOT NULL, expires REAL,
    PRIMARY KEY (account_id, blob_id, holder)) WITHOUT ROWID;
CREATE INDEX blob_ref_by_blob ON blob_ref (blob_id);
CREATE INDEX blob_ref_by_holder ON blob_ref (account_id, holder);
CREATE TABLE blob_part (  -- one part's content may come from several messages
    id TEXT NOT NULL, message_blob_id TEXT NOT NULL, part_id TEXT NOT NULL,
    type TEXT NOT NULL,
    PRIMARY KEY (id, message_blob_id)) WITHOUT ROWID;
CREATE TABLE email (  -- a rowid table: its rows are large (WITHOUT ROWID would overflow)
    seq INTEGER PRIMARY KEY, account_id TEXT NOT NULL, id TEXT NOT NULL,
    blob_id TEXT NOT NULL, thread_id TEXT NOT NULL, size INTEGER NOT NULL,
    received_at REAL NOT NULL, sent_at REAL,
    subject_key TEXT NOT NULL, from_key TEXT NOT NULL, to_key TEXT NOT NULL,
    has_attachment INTEGER NOT NULL,
    headers TEXT NOT NULL,    -- JSON [[name, raw value], ...]: the header filter reads it
    parsed BLOB NOT NULL,     -- zlib-compressed JSON: structure (root headers left out), lists
    UNIQUE (account_id, id));
CREATE INDEX email_by_received ON email (account_id, received_at, id);
CREATE INDEX email_by_thread ON email (account_id, thread_id, received_at);
CREATE TABLE email_mailbox (
    account_id TEXT NOT NULL, mailbox_id TEXT NOT NULL, email_id TEXT NOT NULL,
    thread_id TEXT NOT NULL, unread INTEGER NOT NULL,
    PRIMARY KEY (account_id, mailbox_id, email_id)) WITHOUT ROWID;
CREATE INDEX email_mailbox_by_email ON email_mailbox (account_id, email_id);
CREATE INDEX email_mailbox_by_thread ON email_mailbox (account_id, mailbox_id, thread_id, unread);
CREATE TABLE email_keyword (
    account_id TEXT NOT NULL, keyword TEXT NOT NULL, email_id TEXT NOT NULL,
    PRIMARY KEY (account_id, keyword, email_id)) WITHOUT ROWID;
CREATE INDEX email_keyword_by_email ON email_keyword (account_id, email_id);
CREATE TABLE thread_key (
    account_id TEXT NOT NULL, message_id TEXT NOT NULL, subject_key TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    PRIMARY KEY (account_id, message_id, subject_key, thread_id)) WITHOUT ROWID;
CREATE INDEX thread_key_by_thread ON thread_key (account_id, thread_id);
CREATE VIRTUAL TABLE email_text USING fts5(
    subject, sender, recipient, cc, bcc, body, tokenize = 'unicode61 remove_diacritics 2');
""" + """
CREATE TABLE outgoing (  -- the submission queue: what EmailSubmission hands the mail system
    account_id TEXT NOT NULL, submission_id TEXT NOT NULL, blob_id TEXT NOT NULL,
    message_id TEXT, mail_from TEXT NOT NULL, rcpt_to TEXT NOT NULL,  -- JSON [address]
    send_at REAL NOT NULL, state TEXT NOT NULL,  -- 'pending', 'sent' or 'canceled'
    PRIMARY KEY (account_id, submission_id)) WITHOUT ROWID;
CREATE INDEX outgoing_due ON outgoing (state, send_at);
CREATE INDEX outgoing_by_message_id ON outgoing (account_id, message_id);
CREATE TABLE account_access (  -- accounts a user may use besides their own (RFC 8620 §1.6.2)
    account_id TEXT NOT NULL, user_name TEXT NOT NULL, read_only INTEGER NOT NULL,
    PRIMARY KEY (account_id, user_name)) WITHOUT ROWID;
CREATE TABLE vacation_reply (  -- RFC 5230 §4.2: whom a vacation response already answered
    account_id TEXT NOT NULL, sender TEXT NOT NULL, replied_at REAL NOT NULL,
    PRIMARY KEY (account_id, sender)) WITHOUT ROWID;
"""
SCHEMA_VERSION = 2
MIGRATIONS: list[str] = [  # MIGRATIONS[n - 1] upgrades user_version n to n + 1
    # 1 -> 2: sending, vacation replies, shared accounts, the name an Identity starts with
    SCHEMA[SCHEMA.index("CREATE TABLE outgoing"):]
    + "ALTER TABLE user ADD COLUMN full_name TEXT NOT NULL DEFAULT '';",
]


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    """A login: Basic password and Bearer token, and the account it owns."""
    name: str
    password: str
    token: str | None
    email: str
    account_id: str
    full_name: str = ""  # the "From" name the user's first Identity gets

    @property
    def accountId(self) -> str:  # noqa: N802 - the wire name, for tests that think in JMAP
        return self.account_id


@dataclasses.dataclass(frozen=True, slots=True)
class Account:
    """A JMAP account (RFC 8620 §1.6.2)."""
    id: str
    name: str
    owner: str
    is_read_only: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """One row of /changes: an object touched after some modseq. `first` is its first
    change after that modseq that we still know of (its creation, else its last write)."""
    id: str
    created_modseq: int
    updated_modseq: int
    content_modseq: int
    destroyed: bool
    first: int


# --- 4.1 Collations (RFC 4790, RFC 5051) --------------------------------------

def _unicode_casemap_key(text: str) -> str:
    """i;unicode-casemap (RFC 5051): case-folded, compatibility-decomposed."""
    return unicodedata.normalize("NFKD", text.casefold())


def _ascii_numeric_key(text: str) -> str:
    """i;ascii-numeric (RFC 4790 §9.1): leading digits by value; no digits sorts last."""
    digits = re.match(r"[0-9]+", text)
    if not digits:
        return "1"
    number = digits.group().lstrip("0") or "0"
    return f"0{len(number):06d}{number}"


_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")

# JMAP collation -> sort key; keys compare as plain code points (sqlite's BINARY), so
# ORDER BY calls Python once per row, not once per comparison.
COLLATION_KEYS: dict[str, Callable[[str], str]] = {
    "i;ascii-casemap": lambda text: text.translate(_ASCII_UPPER),  # RFC 4790 §9.2: to upper
    "i;ascii-numeric": _ascii_numeric_key,
    "i;unicode-casemap": _unicode_casemap_key,
}


def _sort_key(collation: str, value: Any) -> Any:
    return COLLATION_KEYS[collation](value) if isinstance(value, str) else value


def _contains_casefold(haystack: Any, needle: Any) -> int:
    if not isinstance(haystack, str) or not isinstance(needle, str):
        return 0
    return int(_unicode_casemap_key(needle) in _unicode_casemap_key(haystack))


# --- 4.2 Filters and sorts as SQL ---------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class Filter:
    """How one FilterCondition property becomes SQL over an object's stored JSON.

    kind: "equals" (exact match, null allowed when nullable), "contains"
    (case-insensitive substring), "present" (true: the property is not null), or
    "sql": build(value) returns (SQL fragment, parameters) for a type's own tables.
    """
    kind: str
    path: str = ""
    type: JmapType = String
    nullable: bool = False
    build: Callable[[Any], tuple[str, list]] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Sort:
    """A sortable property: a stored JSON path (or `column`, an SQL expression of the
    type's own query), whether collations apply, and an extra Comparator member the
    sort needs (e.g. Email's "keyword", bound as the SQL parameter of `column`)."""
    path: str = ""
    is_text: bool = False
    column: str | None = None
    argument: str | None = None
    prekeyed: str | None = None  # the collation whose sort key `column` already holds


def json_path_sql(path: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]+", path):
        raise ValueError(f"bad stored property path {path!r}")
    return f"json_extract(data, '$.{path}')"


def compile_condition(filters: dict[str, Filter], condition: dict) -> tuple[str, list]:
    """A FilterCondition (RFC 8620 §5.5) as an SQL conjunction and its parameters."""
    clauses, params = [], []
    for name, value in condition.items():
        spec = filters.get(name)
        if spec is None:
            raise MethodError("unsupportedFilter", f"filter: unknown condition {name!r}")
        if not (spec.type.accepts(value) or (value is None and spec.nullable)):
            raise invalid_arguments(f"filter: {name} must be {describe_type(spec.type, spec.nullable)}")
        if spec.kind == "sql":
            sql, sql_params = spec.build(value)
            clauses.append(f"({sql})")
            params.extend(sql_params)
            continue
        column = json_path_sql(spec.path)
        if spec.kind == "present":
            clauses.append(f"{column} IS {'NOT ' if value else ''}NULL")
        elif spec.kind == "contains":
            clauses.append(f"jmap_contains({column}, ?)")
            params.append(value)
        elif value is None:
            clauses.append(f"{column} IS NULL")
        else:  # IS, not =: a null column must compare false, never unknown, under NOT
            clauses.append(f"{column} IS ?")
            params.append(int(value) if isinstance(value, bool) else value)
    return " AND ".join(clauses) or "1", params


FILTER_OPERATORS = {"AND": " AND ", "OR": " OR ", "NOT": None}  # RFC 8620 §5.5
MAX_FILTER_DEPTH = 32
MAX_FILTER_CONDITIONS = 1000


def _balanced(parts: list[str], joiner: str) -> str:
    """Join as a balanced tree: sqlite refuses expressions nested 1000 deep."""
    if len(parts) <= 8:
        return joiner.join(parts)
    middle = len(parts) // 2
    return f"({_balanced(parts[:middle], joiner)}){joiner}({_balanced(parts[middle:], joiner)})"


def count_conditions(tree: Any) -> int:
    if isinstance(tree, dict) and isinstance(tree.get("conditions"), list):
        return 1 + sum(count_conditions(sub) for sub in tree["conditions"])
    return 1


def compile_filter(filters: dict[str, Filter], tree: Any, depth: int = 0) -> tuple[str, list]:
    """A FilterOperator/FilterCondition tree as one SQL boolean expression."""
    if depth == 0 and count_conditions(tree) > MAX_FILTER_CONDITIONS:
        raise MethodError("unsupportedFilter", f"filter: more than {MAX_FILTER_CONDITIONS} "
                          "operators and conditions")
    if depth > MAX_FILTER_DEPTH:
        raise invalid_arguments(f"filter: nested deeper than {MAX_FILTER_DEPTH}")
    if not isinstance(tree, dict):
        raise invalid_arguments("filter: must be a FilterOperator or FilterCondition object")
    if "operator" not in tree:
        return compile_condition(filters, tree)
    operator, conditions = tree.get("operator"), tree.get("conditions")
    if operator not in FILTER_OPERATORS or set(tree) != {"operator", "conditions"}:
        raise invalid_arguments("filter: a FilterOperator has exactly 'operator' "
                                "(AND, OR or NOT) and 'conditions'")
    if not isinstance(conditions, list):
        raise invalid_arguments("filter: 'conditions' must be an array")
    if not conditions:  # AND of nothing is true, OR of nothing false, NOT of nothing true
        return ("0" if operator == "OR" else "1"), []
    parts, params = [], []
    for sub in conditions:
        sql, sub_params = compile_filter(filters, sub, depth + 1)
        parts.append(f"({sql})")
        params.extend(sub_params)
    if operator == "NOT":  # RFC 8620 §5.5: NOT means none of the conditions match
        return "NOT (" + _balanced(parts, " OR ") + ")", params
    return _balanced(parts, FILTER_OPERATORS[operator]), params


def compile_sort(sorts: dict[str, Sort], comparators: list,
                 tie_breaker: str = "id") -> tuple[str, list]:
    """A Comparator list (RFC 8620 §5.5) as ORDER BY and its parameters; ids break ties."""
    terms, params = [], []
    for comparator in comparators:
        if not isinstance(comparator, dict) or not String.accepts(comparator.get("property")):
            raise invalid_arguments("sort: each Comparator is an object with a 'property' String")
        spec = sorts.get(comparator["property"])
        allowed = {"property", "isAscending", "collation"} | (
            {spec.argument} if spec and spec.argument else set())
        unknown = set(comparator) - allowed
        if unknown:
            raise invalid_arguments(f"sort: unknown Comparator member {sorted(unknown)[0]!r}")
        ascending = comparator.get("isAscending", True)
        collation = comparator.get("collation", DEFAULT_COLLATION)
        if not isinstance(ascending, bool) or not isinstance(collation, str):
            raise invalid_arguments("sort: isAscending is a Boolean, collation a String")
        if spec is None:
            raise MethodError("unsupportedSort", f"sort: cannot sort on {comparator['property']!r}")
        if collation not in COLLATION_KEYS:
            raise MethodError("unsupportedSort", f"sort: unknown collation {collation!r}")
        if spec.argument:
            if not String.accepts(comparator.get(spec.argument)):
                raise invalid_arguments(f"sort: {comparator['property']} needs a "
                                        f"'{spec.argument}' String")
            params.append(comparator[spec.argument])
        column = spec.column or json_path_sql(spec.path)
        if spec.is_text and collation != spec.prekeyed:  # a known name: safe to inline
            column = f"jmap_sort_key('{collation}', {column})"
        terms.append(f"{column} {'ASC' if ascending else 'DESC'}")
    return ", ".join(terms + [f"{tie_breaker} ASC"]), params


# --- 4.3 The Store ----------------------------------------------------------

class Store:
    """All SQL lives here. Thread-safe: one connection, one lock, one transaction at a time."""

    def __init__(self, path: str = ":memory:", copy_of: "Store | None" = None) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.lock = threading.RLock()
        self._depth = 0
        self._touched: dict[str, dict[str, int]] = {}
        self.on_commit: Callable[[dict], None] = lambda touched: None
        self.on_rollback: Callable[[], None] = lambda: None  # modseqs may be issued again
        self._after_commit: list[Callable[[], None]] = []
        self._configure()
        if copy_of is not None:  # the backup brings the schema: running it first is waste
            copy_of.backup_to(self)
        self._migrate()

    def _configure(self) -> None:
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.create_function("jmap_sort_key", 2, _sort_key, deterministic=True)
        self.db.create_function("jmap_contains", 2, _contains_casefold, deterministic=True)

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            self.db.executescript(SCHEMA)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        for step in MIGRATIONS[version - 1:]:
            self.db.executescript(step)
        self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT around the block; nested blocks join the outer one."""
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self.db.execute("BEGIN IMMEDIATE")
            self._depth, self._touched, self._after_commit = 1, {}, []
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                self.on_rollback()
                raise
            else:
                self.db.execute("COMMIT")
                if self._touched:
                    self.on_commit(self._touched)
                self._run_after_commit()
            finally:
                self._depth = 0

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run action once the open transaction commits; never if it rolls back (so what
        leaves the server, e.g. mail for the outbox, leaves only with what caused it)."""
        self._after_commit.append(action)

    def _run_after_commit(self) -> None:
        actions, self._after_commit = self._after_commit, []
        for action in actions:
            try:
                action()
            except Exception:  # one failed hand-off must not lose the others
                log.error("after-commit action failed:\n%s", traceback.format_exc())

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested unit inside the open transaction: rolled back alone if it fails."""
        with self.lock:
            touched = {k: dict(v) for k, v in self._touched.items()}
            deferred = len(self._after_commit)
            self.db.execute("SAVEPOINT item")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK TO item")
                self.db.execute("RELEASE item")
                self._touched = touched
                del self._after_commit[deferred:]
                self.on_rollback()
                raise
            self.db.execute("RELEASE item")

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def backup_to(self, target: "Store") -> None:
        """Copy this whole database into target (sqlite's online backup)."""
        with self.lock, target.lock:
            self.db.backup(target.db)

    # -- meta, users, accounts --

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                        "DO UPDATE SET value = excluded.value", (key, value))

    def add_user(self, user: User, account_name: str) -> None:
        self.db.execute("INSERT INTO account (id, name, owner) VALUES (?, ?, ?)",
                        (user.account_id, account_name, user.name))
        self.db.execute("INSERT INTO user (name, password, token, email, account_id, full_name) "
                        "VALUES (?, ?, ?, ?, ?, ?)", dataclasses.astuple(user))

    def users(self) -> list[User]:
        with self.lock:  # never read inside another thread's open transaction
            rows = self.db.execute("SELECT name, password, token, email, account_id, full_name FROM user "
                                   "ORDER BY rowid").fetchall()
        return [User(*row) for row in rows]

    def user(self, name: str) -> User | None:
        with self.lock:
            row = self.db.execute("SELECT name, password, token, email, account_id, full_name FROM user "
                                  "WHERE name = ?", (name,)).fetchone()
        return User(*row) if row else None

    def user_by_email(self, address: str) -> User | None:
        """The user whose address this is, case-insensitively."""
        with self.lock:
            row = self.db.execute("SELECT name, password, token, email, account_id, full_name "
                                  "FROM user WHERE lower(email) = lower(?)", (address,)).fetchone()
        return User(*row) if row else None

    def user_by_token(self, token: str) -> User | None:
        with self.lock:
            row = self.db.execute("SELECT name, password, token, email, account_id, full_name FROM user "
                                  "WHERE token = ?", (token,)).fetchone()
        return User(*row) if row else None

    def account(self, account_id: str) -> Account | None:
        with self.lock:
            row = self.db.execute("SELECT id, name, owner, is_read_only FROM account "
                                  "WHERE id = ?", (account_id,)).fetchone()
        return Account(row[0], row[1], row[2], bool(row[3])) if row else None

    def add_unowned_account(self, account_id: str, name: str) -> None:
        """An account no login owns (owner ''): a team's, reached through grant_access,
        or a hidden one, where a per-user type's objects live (listed for nobody)."""
        self.db.execute("INSERT OR IGNORE INTO account (id, name, owner) VALUES (?, ?, '')",
                        (account_id, name))

    def set_read_only(self, account_id: str, read_only: bool) -> None:
        self.db.execute("UPDATE account SET is_read_only = ? WHERE id = ?",
                        (int(read_only), account_id))

    def accounts_of(self, user_name: str) -> list[Account]:
        """The accounts a user may use: their own, then those granted to them."""
        with self.lock:
            rows = self.db.execute(
                "SELECT a.id, a.name, a.owner, a.is_read_only OR coalesce(g.read_only, 0) "
                "FROM account a LEFT JOIN account_access g ON g.account_id = a.id "
                "AND g.user_name = ?1 WHERE a.owner = ?1 OR g.user_name IS NOT NULL "
                "ORDER BY a.owner != ?1, a.rowid", (user_name,)).fetchall()
        return [Account(r[0], r[1], r[2], bool(r[3])) for r in rows]

    def grant_access(self, account_id: str, user_name: str, read_only: bool = False) -> None:
        self.db.execute("INSERT INTO account_access (account_id, user_name, read_only) "
                        "VALUES (?, ?, ?) ON CONFLICT (account_id, user_name) DO UPDATE SET "
                        "read_only = excluded.read_only", (account_id, user_name, int(read_only)))

    # -- modseq and state --

    def next_modseq(self, account_id: str) -> int:
        if sqlite3.sqlite_version_info >= (3, 35):  # RETURNING saves a statement per write
            return self.db.execute("UPDATE account SET modseq = modseq + 1 WHERE id = ? "
                                   "RETURNING modseq", (account_id,)).fetchone()[0]
        self.db.execute("UPDATE account SET modseq = modseq + 1 WHERE id = ?", (account_id,))
        return self.db.execute("SELECT modseq FROM account WHERE id = ?",
                               (account_id,)).fetchone()[0]

    def type_state(self, account_id: str, type_name: str) -> int:
        row = self.db.execute("SELECT modseq FROM type_state WHERE account_id = ? AND type = ?",
                              (account_id, type_name)).fetchone()
        return row[0] if row else 0

    def type_states(self, account_id: str) -> dict[str, int]:
        """Every type's modseq in the account (what a full StateChange reports)."""
        return dict(self.db.execute("SELECT type, modseq FROM type_state WHERE account_id = ?",
                                    (account_id,)).fetchall())

    def tombstone_floor(self, account_id: str) -> int:
        row = self.db.execute("SELECT tombstone_floor FROM account WHERE id = ?",
                              (account_id,)).fetchone()
        return row[0] if row else 0

    def _touch(self, account_id: str, type_name: str, modseq: int) -> None:
        self.db.execute("INSERT INTO type_state (account_id, type, modseq) VALUES (?, ?, ?) "
                        "ON CONFLICT (account_id, type) DO UPDATE SET modseq = excluded.modseq",
                        (account_id, type_name, modseq))
        self._touched.setdefault(account_id, {})[type_name] = modseq

    # -- objects --

    def insert_object(self, account_id: str, type_name: str, object_id: str, data: dict,
                      now: float) -> int:
        modseq = self.next_modseq(account_id)
        self.db.execute(
            "INSERT INTO object (account_id, type, id, data, created_modseq, updated_modseq, "
            "content_modseq, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (account_id, type_name, object_id, json.dumps(data), modseq, modseq, modseq, now))
        self._touch(account_id, type_name, modseq)
        return modseq

    def update_object(self, account_id: str, type_name: str, object_id: str, data: dict,
                      now: float, content_changed: bool = True) -> int:
        """Store new data; content_changed=False marks a counts-only change (RFC 8621 §2.2)."""
        modseq = self.next_modseq(account_id)
        self.db.execute(
            "UPDATE object SET data = ?, updated_modseq = ?, changed_at = ?, content_modseq = "
            "CASE WHEN ? THEN ? ELSE content_modseq END "
            "WHERE account_id = ? AND type = ? AND id = ? AND NOT destroyed",
            (json.dumps(data), modseq, now, content_changed, modseq,
             account_id, type_name, object_id))
        self._touch(account_id, type_name, modseq)
        return modseq

    def insert_initial_object(self, account_id: str, type_name: str, object_id: str,
                              data: dict, now: float) -> None:
        """An object an account starts with (modseq 0: it changes no state string)."""
        self.db.execute(
            "INSERT INTO object (account_id, type, id, data, created_modseq, updated_modseq, "
            "content_modseq, changed_at) VALUES (?, ?, ?, ?, 0, 0, 0, ?)",
            (account_id, type_name, object_id, json.dumps(data), now))

    def touch_object(self, account_id: str, type_name: str, object_id: str, now: float) -> int:
        """A new modseq for an object whose computed properties (counts) changed."""
        modseq = self.next_modseq(account_id)
        self.db.execute("UPDATE object SET updated_modseq = ?, changed_at = ? "
                        "WHERE account_id = ? AND type = ? AND id = ? AND NOT destroyed",
                        (modseq, now, account_id, type_name, object_id))
        self._touch(account_id, type_name, modseq)
        return modseq

    def destroy_object(self, account_id: str, type_name: str, object_id: str, now: float,
                       remembered: dict | None = None) -> int:
        """Leave a tombstone for /changes: the row stays, its data reduced to `remembered`."""
        modseq = self.next_modseq(account_id)
        self.db.execute(
            "UPDATE object SET data = ?, destroyed = 1, updated_modseq = ?, "
            "content_modseq = ?, changed_at = ? WHERE account_id = ? AND type = ? AND id = ?",
            (json.dumps(remembered or {}), modseq, modseq, now, account_id, type_name, object_id))
        self._touch(account_id, type_name, modseq)
        return modseq

    def get_objects(self, account_id: str, type_name: str,
                    ids: list[str] | None) -> dict[str, dict]:
        """Live objects by id (all of them when ids is None), in stored order."""
        sql = "SELECT id, data FROM object WHERE account_id = ? AND type = ? AND NOT destroyed"
        if ids is None:
            rows = self.db.execute(sql + " ORDER BY created_modseq", (account_id, type_name))
            return {row[0]: json.loads(row[1]) for row in rows}
        found = {}
        for start in range(0, len(ids), 500):  # stay under sqlite's parameter limit
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(f"{sql} AND id IN ({marks})", (account_id, type_name, *chunk)):
                found[row[0]] = json.loads(row[1])
        return found

    def modseqs(self, account_id: str, type_name: str, ids: list[str]) -> dict[str, int]:
        """The updated_modseq of each live object."""
        found = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            found.update(self.db.execute(
                f"SELECT id, updated_modseq FROM object WHERE account_id = ? AND type = ? AND "
                f"NOT destroyed AND id IN ({','.join('?' * len(chunk))})",
                (account_id, type_name, *chunk)).fetchall())
        return found

    def count_objects(self, account_id: str, type_name: str, where: str = "1",
                      params: Iterable = ()) -> int:
        return self.db.execute(
            f"SELECT count(*) FROM object WHERE account_id = ? AND type = ? AND NOT destroyed "
            f"AND ({where})", (account_id, type_name, *params)).fetchone()[0]

    def query_ids(self, account_id: str, type_name: str, where: str, params: list,
                  order_by: str, window: tuple[int, int] | None = None) -> list[str]:
        """Ids of live objects matching where, in order; window = (offset, limit)."""
        page = " LIMIT ? OFFSET ?" if window else ""
        rows = self.db.execute(
            f"SELECT id FROM object WHERE account_id = ? AND type = ? AND NOT destroyed "
            f"AND ({where}) ORDER BY {order_by}{page}",
            (account_id, type_name, *params, *((window[1], window[0]) if window else ())))
        return [row[0] for row in rows]

    def ensure_index(self, prop: str) -> None:
        """An index on one stored JSON property, for the filters and checks that use it."""
        self.db.execute(f"CREATE INDEX IF NOT EXISTS object_by_{prop} ON object "
                        f"(account_id, type, {json_path_sql(prop)})")

    def fix_planner_statistics(self, indexed: dict[str, int]) -> None:
        """Index the given stored properties, and give sqlite fixed statistics: an
        (account, type) prefix matches many rows, a property value `indexed[prop]`.
        Without them the planner prefers the primary key's prefix and scans."""
        for prop in indexed:
            self.ensure_index(prop)
        self.db.execute("ANALYZE sqlite_master")  # creates sqlite_stat1 if missing
        self.db.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'object'")
        stats = {"object": 1, "object_by_modseq": 1,
                 **{f"object_by_{prop}": rows for prop, rows in indexed.items()}}
        for index, rows in stats.items():
            self.db.execute("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('object', ?, ?)",
                            (index, f"1000000 10000 1000 {rows}"))
        self.db.execute("ANALYZE sqlite_master")  # reload what we wrote

    def subtree_height(self, account_id: str, type_name: str, parent_prop: str,
                       object_id: str) -> int:
        """Levels of descendants below object_id along parent_prop (0 for a leaf)."""
        parent = json_path_sql(parent_prop)
        row = self.db.execute(
            f"WITH RECURSIVE below(id, level) AS ("
            f" SELECT id, 1 FROM object WHERE account_id = ?1 AND type = ?2 AND NOT destroyed"
            f" AND {parent} = ?3 UNION ALL"
            f" SELECT object.id, below.level + 1 FROM object JOIN below ON"
            f" object.account_id = ?1 AND object.type = ?2 AND NOT object.destroyed"
            f" AND {parent.replace('data', 'object.data')} = below.id WHERE below.level < 1000)"
            f" SELECT max(level) FROM below", (account_id, type_name, object_id)).fetchone()
        return row[0] or 0

    def changes_since(self, account_id: str, type_name: str, since: int,
                      limit: int | None = None) -> list[Change]:
        """Objects touched after `since`, in the order of their first change after it;
        those created and destroyed since are left out (RFC 8620 §5.2 SHOULD). Paging
        by `first` never hides a creation behind a later write of the same object."""
        rows = self.db.execute(
            "SELECT id, created_modseq, updated_modseq, content_modseq, destroyed, "
            "CASE WHEN created_modseq > ?3 THEN created_modseq ELSE updated_modseq END AS first "
            "FROM object WHERE account_id = ?1 AND type = ?2 AND updated_modseq > ?3 "
            "AND NOT (destroyed AND created_modseq > ?3) ORDER BY first LIMIT ?4",
            (account_id, type_name, since, -1 if limit is None else limit))
        return [Change(r[0], r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows]

    def purge_tombstones(self, cutoff: float) -> None:
        """Forget tombstones older than cutoff; states before them can no longer be
        calculated from (cannotCalculateChanges)."""
        rows = self.db.execute("SELECT account_id, max(updated_modseq) FROM object "
                               "WHERE destroyed AND changed_at < ? GROUP BY account_id", (cutoff,))
        for account_id, floor in rows.fetchall():
            self.db.execute("UPDATE account SET tombstone_floor = max(tombstone_floor, ?) "
                            "WHERE id = ?", (floor, account_id))
        self.db.execute("DELETE FROM object WHERE destroyed AND changed_at < ?", (cutoff,))

    # -- blobs --

    def put_blob(self, data: bytes) -> str:
        """Store content once by sha-256; the blobId is derived from it."""
        blob_id = "G" + hashlib.sha256(data).hexdigest()
        packed = zlib.compress(data, 6)  # mail is text: stored at about a third of its size
        small = len(packed) < len(data) * 0.9
        self.db.execute("INSERT OR IGNORE INTO blob (id, data, size, compressed) "
                        "VALUES (?, ?, ?, ?)", (blob_id, packed if small else data, len(data),
                                                int(small)))
        return blob_id

    def add_blob_ref(self, account_id: str, blob_id: str, holder: str, type_: str,
                     expires: float | None) -> None:
        self.db.execute(
            "INSERT INTO blob_ref (account_id, blob_id, holder, type, expires) VALUES (?,?,?,?,?) "
            "ON CONFLICT (account_id, blob_id, holder) DO UPDATE SET type = excluded.type, "
            "expires = excluded.expires", (account_id, blob_id, holder, type_, expires))

    def blob_type(self, account_id: str, blob_id: str, now: float) -> str | None:
        """The type under which the account holds the blob, or None if it holds none. A
        part of a message the account holds is held too (no ref per part: memory)."""
        row = self.db.execute(
            "SELECT type FROM blob_ref WHERE account_id = ?1 AND blob_id = ?2 "
            "AND (expires IS NULL OR expires > ?3) ORDER BY expires IS NOT NULL LIMIT 1",
            (account_id, blob_id, now)).fetchone() or self.db.execute(
            "SELECT p.type FROM blob_part p JOIN blob_ref r ON r.blob_id = p.message_blob_id "
            "WHERE p.id = ?2 AND r.account_id = ?1 AND (r.expires IS NULL OR r.expires > ?3) "
            "LIMIT 1", (account_id, blob_id, now)).fetchone()
        return row[0] if row else None

    def blob_holders(self, account_id: str, blob_id: str, prefix: str) -> list[str]:
        """The ids of objects holding a ref "prefix + id" to the blob, or to a stored
        message it is a part of (RFC 9404 §4.3 Blob/lookup)."""
        rows = self.db.execute(
            "SELECT DISTINCT substr(holder, ?3) FROM blob_ref WHERE account_id = ?1 "
            "AND substr(holder, 1, ?4) = ?5 AND (blob_id = ?2 OR blob_id IN "
            "(SELECT message_blob_id FROM blob_part WHERE id = ?2))",
            (account_id, blob_id, len(prefix) + 1, len(prefix), prefix))
        return sorted(row[0] for row in rows)

    def blob_data(self, blob_id: str) -> bytes | None:
        row = self.db.execute("SELECT data, compressed FROM blob WHERE id = ?",
                              (blob_id,)).fetchone()
        if row is None:
            return None
        return zlib.decompress(row[0]) if row[1] else bytes(row[0])

    def purge_blobs(self, now: float) -> None:
        """Drop expired upload refs, then content that nothing refers to (RFC 8620 §6.1)."""
        self.db.execute("DELETE FROM blob_ref WHERE expires IS NOT NULL AND expires <= ?", (now,))
        self.db.execute("DELETE FROM blob WHERE id NOT IN (SELECT blob_id FROM blob_ref)")

    # -- sending (RFC 8621 §7) and vacation replies (RFC 5230) --

    def queue_outgoing(self, account_id: str, submission_id: str, blob_id: str,
                       message_id: str | None, mail_from: str, rcpt_to: list[str],
                       send_at: float) -> None:
        self.db.execute(
            "INSERT INTO outgoing (account_id, submission_id, blob_id, message_id, mail_from, "
            "rcpt_to, send_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')",
            (account_id, submission_id, blob_id, message_id, mail_from, json.dumps(rcpt_to),
             send_at))
        self.add_blob_ref(account_id, blob_id, "outgoing:" + submission_id, "message/rfc822",
                          None)

    def outgoing(self, account_id: str, submission_id: str) -> dict | None:
        row = self.db.execute("SELECT * FROM outgoing WHERE account_id = ? AND submission_id = ?",
                              (account_id, submission_id)).fetchone()
        return {**dict(row), "rcpt_to": json.loads(row["rcpt_to"])} if row else None

    def due_outgoing(self, now: float) -> list[tuple[str, str]]:
        """(account, submission) of each pending send whose time has come, oldest first."""
        return [tuple(row) for row in self.db.execute(
            "SELECT account_id, submission_id FROM outgoing WHERE state = 'pending' "
            "AND send_at <= ? ORDER BY send_at", (now,))]

    def next_send_at(self) -> float | None:
        with self.lock:  # read by the timer thread too: never inside another's transaction
            row = self.db.execute("SELECT min(send_at) FROM outgoing WHERE state = 'pending'"
                                  ).fetchone()
        return row[0]

    def finish_outgoing(self, account_id: str, submission_id: str, state: str) -> None:
        """Sent or canceled: the queue lets go of the message (its blob may be purged)."""
        self.db.execute("UPDATE outgoing SET state = ? WHERE account_id = ? AND submission_id = ?",
                        (state, account_id, submission_id))
        self.db.execute("DELETE FROM blob_ref WHERE account_id = ? AND holder = ?",
                        (account_id, "outgoing:" + submission_id))

    def outgoing_by_message_id(self, account_id: str, message_id: str) -> list[str]:
        return [row[0] for row in self.db.execute(
            "SELECT submission_id FROM outgoing WHERE account_id = ? AND message_id = ?",
            (account_id, message_id))]

    def vacation_replied_at(self, account_id: str, sender: str) -> float | None:
        row = self.db.execute("SELECT replied_at FROM vacation_reply WHERE account_id = ? "
                              "AND sender = ?", (account_id, sender)).fetchone()
        return row[0] if row else None

    def record_vacation_reply(self, account_id: str, sender: str, now: float) -> None:
        self.db.execute("INSERT INTO vacation_reply (account_id, sender, replied_at) "
                        "VALUES (?, ?, ?) ON CONFLICT (account_id, sender) DO UPDATE SET "
                        "replied_at = excluded.replied_at", (account_id, sender, now))

    def forget_vacation_replies(self, account_id: str) -> None:
        self.db.execute("DELETE FROM vacation_reply WHERE account_id = ?", (account_id,))


# =============================================================================
# 5. Core: session and requests
# =============================================================================
# RFC 8620 §2-4. JmapCore is the sans-IO server: store, clock, ids, limits, change
# feed. `handle_request(user, request)` checks the Request object, resolves result
# references, dispatches each Invocation to its registered method inside one
# transaction, and turns MethodError (and any crash: serverFail) into "error"
# responses. A RequestError escapes to the transport, which frames it.

class ChangeFeed:
    """Committed state changes, {accountId: {type: state}}, numbered for push (RFC 8620 §7)."""

    def __init__(self, keep: int = 1000) -> None:
        self.condition = threading.Condition()
        self.closed = False
        self.sequence = 0
        self.entries: list[tuple[int, dict]] = []
        self.keep = keep

    def publish(self, changed: dict[str, dict[str, str]]) -> None:
        with self.condition:
            self.sequence += 1
            self.entries = self.entries[-self.keep + 1:] + [(self.sequence, changed)]
            self.condition.notify_all()

    def wait(self, after: int, timeout: float) -> list[tuple[int, dict]]:
        """Entries numbered after `after`, waiting up to timeout for the first
        (an empty list on timeout or once the feed is closed)."""
        with self.condition:
            self.condition.wait_for(lambda: self.sequence > after or self.closed, timeout)
            return [entry for entry in self.entries if entry[0] > after]

    def close(self) -> None:
        """Wake every waiter for good (the server is stopping)."""
        with self.condition:
            self.closed = True
            self.condition.notify_all()


class Args:
    """A method's arguments, read one typed line each; unknown ones are refused."""

    def __init__(self, raw: dict) -> None:
        self.raw = raw
        self.read: set[str] = set()

    def get(self, name: str, type_: JmapType, default: Any = MISSING,
            nullable: bool = False) -> Any:
        """The argument `name`: absent gives default (null if nullable), else required."""
        self.read.add(name)
        value = self.raw.get(name, MISSING)
        if value is MISSING or (value is None and nullable):
            if default is not MISSING:
                return default
            if nullable:
                return None
            raise invalid_arguments(f"{name}: required argument missing")
        read_as = getattr(value, "read_as", None)  # a REST URL value (12.5): text until read
        if read_as is not None:
            value = read_as(type_)
        if not type_.accepts(value):
            raise invalid_arguments(f"{name}: must be {describe_type(type_, nullable)}, "
                                    f"got {json.dumps(value)[:60]}")
        return value

    def finish(self) -> None:
        """RFC 8620 §3.6.2 invalidArguments for any argument nobody read."""
        unknown = sorted(set(self.raw) - self.read)
        if unknown:
            raise invalid_arguments(f"unknown argument {unknown[0]!r}")


class MethodCall:
    """The context of one method call: core, user, request-wide creation ids."""

    def __init__(self, core: "JmapCore", user: User, name: str, using: set[str],
                 created_ids: dict[str, str]) -> None:
        self.core, self.user, self.name = core, user, name
        self.using, self.created_ids = using, created_ids
        self.then: tuple[str, dict] | None = None  # an implicit follow-up call (§5.4)
        self.implicit = False  # this call is such a follow-up

    @property
    def store(self) -> Store:
        return self.core.store

    def account(self, args: Args, name: str = "accountId", *, writable: bool = False,
                capability: str | None = None) -> Account:
        """Resolve an account argument, raising the RFC 8620 §3.6.2 account errors."""
        account_id = args.get(name, Id)
        account = self.core.visible_account(self.user, account_id)
        prefix = "from" if name == "fromAccountId" else ""
        if account is None:
            raise MethodError(prefix + "AccountNotFound" if prefix else "accountNotFound",
                              f"{name}: no account {account_id!r} for this user")
        urn = capability or self.core.methods[self.name].capability
        # the core capability applies to every account (RFC 8620 §2 lists it per session)
        if urn != URN_CORE and urn not in self.core.account_capabilities(account):
            raise MethodError(prefix + "AccountNotSupportedByMethod" if prefix
                              else "accountNotSupportedByMethod",
                              f"{name}: account {account_id!r} lacks {urn}")
        if writable and account.is_read_only:
            raise MethodError("accountReadOnly", f"account {account_id!r} is read-only")
        return account

    def require(self, right: str, account: Account, record: dict | None = None) -> None:
        """The one rights seam: the owner, and whoever the account is granted to, may do
        anything its isReadOnly allows (sharing, RFC 9670, refines this per object)."""
        if account.owner != self.user.name and not any(
                a.id == account.id for a in self.store.accounts_of(self.user.name)):
            raise MethodError("forbidden", f"{right} is not permitted on this account")

    def resolve_creation_id(self, value: str) -> str | None:
        """'#k' -> the id created for creation id k in this request (RFC 8620 §5.3)."""
        return self.created_ids.get(value[1:]) if value.startswith("#") else value

    def blob_ids(self, args: Args, name: str = "blobIds") -> list[str]:
        """A blobId list argument, where '#k' names a blob Blob/upload created earlier in
        the request (RFC 9404 §4.1); an unknown '#k' stays as given, and is not found."""
        return [self.resolve_creation_id(i) or i for i in args.get(name, list_of(IdOrCreationRef))]


def resolve_result_references(args: dict, responses: list) -> dict:
    """Replace each '#name' ResultReference argument by its value (RFC 8620 §3.7)."""
    resolved = {}
    for key, reference in args.items():
        if not key.startswith("#"):
            continue
        if key[1:] in args:
            raise invalid_arguments(f"both {key[1:]!r} and {key!r} given")
        resolved[key[1:]] = evaluate_reference(reference, responses)
    if not resolved:
        return args
    return {k: v for k, v in args.items() if not k.startswith("#")} | resolved


def evaluate_reference(reference: Any, responses: list) -> Any:
    """RFC 8620 §3.7: the first response with that call id, whose name must match."""
    if not (isinstance(reference, dict) and set(reference) == {"resultOf", "name", "path"}
            and all(isinstance(v, str) for v in reference.values())):
        raise MethodError("invalidResultReference",
                          "a ResultReference has exactly resultOf, name and path Strings")
    match = next((r for r in responses if r[2] == reference["resultOf"]), None)
    if match is None:
        raise MethodError("invalidResultReference",
                          f"no earlier response to method call {reference['resultOf']!r}")
    if match[0] != reference["name"]:
        raise MethodError("invalidResultReference",
                          f"call {reference['resultOf']!r} answered {match[0]!r}, not "
                          f"{reference['name']!r}")
    try:
        return evaluate_pointer(match[1], split_pointer(reference["path"]))
    except (KeyError, ValueError):
        raise MethodError("invalidResultReference",
                          f"path {reference['path']!r} does not resolve") from None


def check_request(request: Any, limits: dict, known: Iterable[str]) -> None:
    """RFC 8620 §3.3, §3.6.1: the shape of a Request, its capabilities and its size."""
    if not isinstance(request, dict):
        raise RequestError("notRequest", "the request is not a JSON object")
    using, calls = request.get("using"), request.get("methodCalls")
    if not list_of(String).accepts(using):
        raise RequestError("notRequest", "'using' must be an array of Strings")
    if not isinstance(calls, list):
        raise RequestError("notRequest", "'methodCalls' must be an array of Invocations")
    for index, invocation in enumerate(calls):
        if not (isinstance(invocation, list) and len(invocation) == 3
                and isinstance(invocation[0], str) and isinstance(invocation[1], dict)
                and isinstance(invocation[2], str)):
            raise RequestError("notRequest", f"methodCalls[{index}] is not an Invocation "
                               "[name, arguments, methodCallId]")
    created = request.get("createdIds")
    if created is not None and not map_of(Id, Id).accepts(created):
        raise RequestError("notRequest", "'createdIds' must map creation ids to Ids")
    unknown = sorted(set(using) - set(known))
    if unknown:
        raise RequestError("unknownCapability", f"unknown capability {unknown[0]!r}")
    if len(calls) > limits["maxCallsInRequest"]:
        raise RequestError("limit", f"more than {limits['maxCallsInRequest']} method calls",
                           limit="maxCallsInRequest")


def account_id_for(name: str, taken: Callable[[str], bool]) -> str:
    """The user's own account id: the name itself where that is a free Id."""
    if ID_PATTERN.fullmatch(name) and not taken(name):
        return name
    return "a" + hashlib.sha256(name.encode()).hexdigest()[:12]


class Controls:
    """The seam dev controls (section 15) plug into, consulted once per level: the core
    asks before each method call, a transport before each HTTP request and after it.
    This default injects nothing and records nothing."""

    def before_method(self, call: MethodCall, arguments: dict) -> dict:
        """The arguments to run the call with; may raise MethodError, or wait."""
        return arguments

    def before_http(self, method: str, path: str) -> Any:
        """A transport fault for this request (section 15's TransportFault), or None."""
        return None

    def record(self, entry: dict) -> None:
        """One request and its response, as a transport saw them."""

    def attach(self, server: Any) -> None:
        """A network server now runs this core (section 14's JmapServer)."""


class Quirks:
    """The seam quirk profiles (section 15) plug into: the names of the deviations of a
    real server that this core imitates, asked at a few named points (the Session, before
    and after each method call, two HTTP variables). This default is strict RFC 8620."""

    names: frozenset[str] = frozenset()
    download_type_variable = "type"          # RFC 8620 §6.2: downloadUrl's media type
    event_source_status: int | None = None   # a status the eventSourceUrl answers instead

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def session(self, content: dict) -> dict:
        """The Session object as this server family shows it."""
        return content

    def before_method(self, call: MethodCall, arguments: dict) -> dict:
        """The arguments to run the call with; may raise MethodError instead."""
        return arguments

    def after_method(self, call: MethodCall, arguments: dict, name: str,
                     result: dict) -> tuple[str, dict]:
        """The response (name "error" for an error) as this server family answers it."""
        return name, result


# Client lint: request details the RFC does not allow that jmapd tolerates. With
# --pedantic each is refused, the error's description citing the rule; otherwise it
# is kept as a warning of the request (the request log's "warnings", --trace).
LINT_FINDINGS = {
    "json-charset": "RFC 8620 §3.1, RFC 8259 §8.1: a Request is application/json in UTF-8",
    "download-type": "RFC 8620 §6.2: the client fills in downloadUrl's type variable",
    "event-source-variables": "RFC 8620 §7.3: the client fills in types, closeafter and ping",
    "implicit-capability": "RFC 8620 §2: the client MUST opt in to a capability in 'using'"
                           " (RFC 8621 §7.5: onSuccess* make an Email/set call)",
    "creation-id-in-get": "RFC 8620 §5.1: ids are Ids; '#' creation ids are for /set (§5.3)",
}


class JmapCore:
    """The sans-IO JMAP server: `handle_request(user, request) -> response`.

    `db` is ":memory:" or a file path; `clock` and `ids` make output reproducible
    (FixedClock, SequentialIds); `limits` overrides DEFAULT_LIMITS/SERVER_LIMITS;
    `copy_of` starts it as a copy of another core's data (a fast fresh server).
    """

    def __init__(self, db: str = ":memory:", *, clock: Any = None, ids: Any = None,
                 limits: dict[str, int] | None = None,
                 datatypes: Iterable["DataType"] = (),
                 copy_of: "JmapCore | None" = None) -> None:
        unknown = set(limits or {}) - set(DEFAULT_LIMITS) - set(SERVER_LIMITS)
        if unknown:
            raise ValueError(f"unknown limit {sorted(unknown)[0]!r}")
        self.limits = {**DEFAULT_LIMITS, **SERVER_LIMITS, **(limits or {})}
        self.clock = clock or SystemClock()
        self.ids = ids or RandomIds()
        self.capabilities = dict(CAPABILITIES)
        self.methods = dict(METHODS)
        self.datatypes = dict(DATATYPES)
        for extra in datatypes:
            self.add_datatype(extra)
        self.feed = ChangeFeed()
        self._request_batch = threading.local()  # states one request changed, not yet pushed
        self.outbox: list = []   # OutboxMessage: mail for recipients elsewhere (section 10)
        self.relay: Callable | None = None          # forwards each outbox message (--relay)
        self.outbox_listeners: list[Callable] = []  # told of each one too (--trace)
        self.pushes: list[dict] = []   # POSTs to the reserved push host, kept not sent (11.2)
        self.allow_http_push = False   # --allow-http-push: http:// urls for loopback (11.2)
        self._session_states: dict[tuple, str] = {}
        self.session_generation = 0  # bumped by a dev control: a new session state
        self.controls = Controls()
        self.quirks = Quirks()     # a real server family's deviations (section 15)
        self.pedantic = False      # refuse what LINT_FINDINGS lists, not just warn
        self._findings = threading.local()  # this thread's request's lint warnings
        self.caches: dict[str, dict] = {}  # derived values keyed by what they derive from
        self.store = Store(db, copy_of.store if copy_of is not None else None)
        self.store.on_commit = self._publish
        self.store.on_rollback = self.caches.clear
        indexed = {p: n for d in self.datatypes.values() for p, n in d.indexed.items()}
        for datatype_ in self.datatypes.values():
            for name, function in datatype_.sql_functions.items():
                self.store.db.create_function(name, 1, function, deterministic=True)
        self.store.fix_planner_statistics(indexed)
        self.request_slots = threading.BoundedSemaphore(self.limits["maxConcurrentRequests"])
        self.upload_slots = threading.BoundedSemaphore(self.limits["maxConcurrentUpload"])
        self._load_meta(new_epoch=copy_of is not None)
        self._maintained_at = -float("inf")
        self.maintain()
        for attach in CORE_SETUP:
            attach(self)

    def add_datatype(self, datatype_: "DataType") -> None:
        """Serve one more data type on this core only (tests use this)."""
        self.datatypes[datatype_.name] = datatype_
        for name, spec in datatype_.method_specs().items():
            self.methods[name] = spec
        if datatype_.capability not in self.capabilities:
            self.capabilities[datatype_.capability] = Capability(
                datatype_.capability, lambda core: {}, lambda core, account: {})

    def close(self) -> None:
        self.store.close()

    def clone(self, *, clock: Any = None, ids: Any = None) -> "JmapCore":
        """A new in-memory core holding a copy of this one's data (a fast fresh server)."""
        return JmapCore(clock=clock, ids=ids, limits=self.limits, copy_of=self,
                        datatypes=[d for d in self.datatypes.values() if d.name not in DATATYPES])

    # -- time and ids --

    def now(self) -> float:
        return self.clock.now().timestamp()

    def new_id(self, prefix: str) -> str:
        object_id = self.ids.new_id(prefix)
        if getattr(self.ids, "counter", None) is not None:
            self.store.set_meta("id_counter", str(self.ids.counter))
        return object_id

    def _load_meta(self, new_epoch: bool = False) -> None:
        """Resume the id counter, and the epoch that prefixes every state string: a new
        database (or copy) gets a new one, so a client's state from another database is
        never mistaken for one of ours (deterministic ids: no prefix, states are plain)."""
        with self.store.transaction():
            if new_epoch:
                self.store.db.execute("DELETE FROM meta WHERE key = 'state_epoch'")
            saved = self.store.get_meta("id_counter")
            if saved is not None and getattr(self.ids, "counter", None) is not None:
                self.ids.counter = max(self.ids.counter, int(saved))
            epoch = self.store.get_meta("state_epoch")
            if epoch is None:
                deterministic = getattr(self.ids, "counter", None) is not None
                epoch = "" if deterministic else "".join(
                    secrets.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(4))
                self.store.set_meta("state_epoch", epoch)
        self.state_epoch = epoch

    @contextlib.contextmanager
    def as_administrator(self) -> Iterator[None]:
        """Seeds build data through the public API but are no client: the server's own
        limits (e.g. a test's maxSizeUpload=100) do not apply to them."""
        saved = self.limits
        self.limits = {**DEFAULT_LIMITS, **SERVER_LIMITS}
        try:
            yield
        finally:
            self.limits = saved

    def state_string(self, modseq: int) -> str:
        return f"{self.state_epoch}{modseq}"

    def maintain(self) -> None:
        """Hourly: forget old tombstones (RFC 8620 §5.2) and expired uploads (§6.1)."""
        now = self.now()
        if now - self._maintained_at < 3600:
            return
        self._maintained_at = now
        with self.store.transaction():
            self.store.purge_tombstones(now - TOMBSTONE_TTL_SECONDS)
            self.store.purge_blobs(now)

    def run_due_work(self) -> None:
        """What became due (held sends); a failure there is the server's, logged, and
        never the answer to the request that happened to come along."""
        for work in DUE_WORK:
            try:
                work(self)
            except Exception:
                log.error("due work failed:\n%s", traceback.format_exc())

    def _publish(self, touched: dict[str, dict[str, int]]) -> None:
        changed = {account: {type_: self.state_string(modseq) for type_, modseq in types.items()}
                   for account, types in touched.items()}
        batch = getattr(self._request_batch, "changed", None)
        if batch is None:
            self.feed.publish(changed)
            return
        for account, states in changed.items():  # a later call's state supersedes
            batch.setdefault(account, {}).update(states)

    @contextlib.contextmanager
    def _one_push_per_request(self) -> Iterator[None]:
        """The states one request changes go out as one StateChange (RFC 8620 §7.1),
        published once all its method calls have committed."""
        self._request_batch.changed = {}
        try:
            yield
        finally:
            changed, self._request_batch.changed = self._request_batch.changed, None
            if changed:
                self.feed.publish(changed)

    # -- client lint (LINT_FINDINGS) --

    def lint(self, finding: str, detail: str, refuse: Callable[[str], Exception]) -> None:
        """A request detail the RFC does not allow: raise refuse(description) when
        pedantic, else note it as a warning of the request being answered."""
        description = f"{detail} ({LINT_FINDINGS[finding]})"
        if self.pedantic:
            raise refuse(description)
        log.debug("client lint %s: %s", finding, description)
        warnings = getattr(self._findings, "warnings", None)
        if warnings is not None:
            warnings.append({"finding": finding, "description": description})

    @contextlib.contextmanager
    def collect_findings(self) -> Iterator[list[dict]]:
        """The lint warnings of what runs inside, in this thread (a transport's request);
        the dev faults that fired meanwhile are in fired_faults()."""
        saved = getattr(self._findings, "warnings", None), getattr(self._findings, "faults", None)
        self._findings.warnings, self._findings.faults = [], []
        try:
            yield self._findings.warnings
        finally:
            self._findings.warnings, self._findings.faults = saved

    def note_fault(self, description: str) -> None:
        """A dev fault (section 15) acted on the request this thread is answering."""
        faults = getattr(self._findings, "faults", None)
        if faults is not None:
            faults.append(description)

    def fired_faults(self) -> list[str]:
        return list(getattr(self._findings, "faults", None) or [])

    # -- users and accounts --

    def add_user(self, name: str, password: str, token: str | None = None,
                 email: str | None = None, *, full_name: str = "", setup: bool = True) -> User:
        """Create a login and the personal account it owns; with setup, the account
        gets what every new account has (the standard mailboxes, see ACCOUNT_SETUP)."""
        if not isinstance(name, str) or not name or ":" in name or any(
                ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in name):
            raise ValueError(f"bad user name {name!r}: non-empty, no ':', spaces or "
                             "control characters")
        if not isinstance(full_name, str) or not isinstance(password, str):
            raise ValueError("full_name and password are strings")
        email = email or (name if "@" in name else f"{name}@example.com")
        local, _, domain = email.rpartition("@") if isinstance(email, str) else ("", "", "")
        if not local or not domain or any(ch.isspace() for ch in email):
            raise ValueError(f"bad address {email!r}: local@domain")
        with self.store.transaction():
            if self.store.user(name):
                raise ValueError(f"user {name!r} exists")
            if self.store.user_by_email(email):
                raise ValueError(f"the address {email} is another user's")
            account_id = account_id_for(name, lambda i: self.store.account(i) is not None)
            user = User(name, password, token if token is not None else f"token-{name}",
                        email, account_id, full_name)
            self.store.add_user(user, email)
            for fill_account in ACCOUNT_SETUP if setup else ():
                fill_account(self, user)
        return user

    def users(self) -> list[User]:
        return self.store.users()

    def user(self, user: "User | str") -> User:
        if isinstance(user, User):
            return user
        found = self.store.user(user)
        if found is None:
            raise KeyError(f"no user {user!r}")
        return found

    def check_password(self, name: str, password: str) -> User | None:
        """HTTP Basic: the user, if the password matches (compared in constant time)."""
        user = self.store.user(name)
        if user and secrets.compare_digest(user.password.encode(), password.encode()):
            return user
        return None

    def check_token(self, token: str) -> User | None:
        """HTTP Bearer: the user whose token this is."""
        return self.store.user_by_token(token)

    def visible_account(self, user: User, account_id: str) -> Account | None:
        return next((a for a in self.store.accounts_of(user.name) if a.id == account_id), None)

    def account_capabilities(self, account: Account) -> dict[str, dict]:
        """The account's capabilities; an account_value of None leaves that URN out."""
        values = {urn: cap.account_value(self, account)
                  for urn, cap in self.capabilities.items() if cap.account_value}
        return {urn: value for urn, value in values.items() if value is not None}

    # -- the session resource (RFC 8620 §2) --

    def session(self, user: "User | str", base_url: str) -> dict:
        """The Session object; base_url is the absolute origin, e.g. http://127.0.0.1:8080."""
        user = self.user(user)
        content = self._session_content(user)
        content.update({
            "apiUrl": base_url + API_PATH,
            "downloadUrl": base_url + DOWNLOAD_PREFIX + "{accountId}/{blobId}/{name}?type={type}",
            "uploadUrl": base_url + UPLOAD_PREFIX + "{accountId}/",
            "eventSourceUrl": base_url + EVENTSOURCE_PATH
            + "?types={types}&closeafter={closeafter}&ping={ping}",
            "state": self.session_state(user),
        })
        for urn, cap in self.capabilities.items():
            if cap.session_urls:
                content["capabilities"][urn].update(cap.session_urls(base_url))
        content.update({name: url(base_url) for name, url in SESSION_URLS.items()})
        return self.quirks.session(content)

    def _session_content(self, user: User) -> dict:
        with self.store.transaction():
            accounts = self.store.accounts_of(user.name)
        described = {a.id: {"name": a.name, "isPersonal": a.owner == user.name,
                            "isReadOnly": a.is_read_only,
                            "accountCapabilities": self.account_capabilities(a)}
                     for a in accounts}
        return {
            "capabilities": {urn: cap.session_value(self) for urn, cap in self.capabilities.items()},
            "accounts": described,
            "primaryAccounts": {urn: user.account_id for urn in
                                described.get(user.account_id, {}).get("accountCapabilities", {})},
            "username": user.name,
        }

    def session_state(self, user: "User | str") -> str:
        """Changes exactly when the session's content does (RFC 8620 §2 `state`): a hash
        of it, remembered per set of visible accounts (all else in it is fixed)."""
        user = self.user(user)
        key = (user.name, tuple(self.store.accounts_of(user.name)))
        if key not in self._session_states:
            content = json.dumps(self._session_content(user), sort_keys=True)
            if self.session_generation:
                content += f"#{self.session_generation}"
            if self.quirks.names:  # another server family's Session (section 15)
                content += "#" + ",".join(sorted(self.quirks.names))
            self._session_states[key] = hashlib.sha256(content.encode()).hexdigest()[:16]
        return self._session_states[key]

    # -- API requests (RFC 8620 §3) --

    def handle_request(self, user: "User | str", request: Any) -> dict:
        """Process one Request object; return the Response object (RFC 8620 §3.3-3.4)."""
        user = self.user(user)
        check_request(request, self.limits, self.capabilities)
        self.maintain()
        self.run_due_work()
        if not self.request_slots.acquire(blocking=False):
            raise RequestError("limit", "too many concurrent requests", status=429,
                               limit="maxConcurrentRequests")
        try:
            created_ids = dict(request.get("createdIds") or {})
            using = set(request["using"])
            responses: list = []
            with self._one_push_per_request():
                for name, arguments, call_id in request["methodCalls"]:
                    responses.extend(self._invoke(user, using, name, arguments, call_id,
                                                  responses, created_ids))
        finally:
            self.request_slots.release()
        response = {"methodResponses": responses, "sessionState": self.session_state(user)}
        if request.get("createdIds") is not None:
            response["createdIds"] = created_ids
        return response

    def _invoke(self, user: User, using: set[str], name: str, arguments: dict, call_id: str,
                responses: list, created_ids: dict) -> list:
        """One Invocation, plus any implicit follow-up call it asks for (§5.4)."""
        outputs, implicit = [], False
        while True:
            call = MethodCall(self, user, name, using, created_ids)
            call.implicit = implicit
            outputs.append([*self._run_method(call, arguments, responses + outputs), call_id])
            if call.then is None or outputs[-1][0] == "error":
                return outputs
            name, arguments = call.then
            implicit = True

    def _run_method(self, call: MethodCall, arguments: dict, responses: list) -> tuple:
        try:
            arguments = resolve_result_references(arguments, responses)
            spec = self.methods.get(call.name)
            # an implicit call (§5.4, RFC 8621 §7.5) runs under its caller's capability
            if spec is None or (spec.capability not in call.using and not call.implicit):
                missing = f" (add {spec.capability} to 'using')" if spec else ""
                raise MethodError("unknownMethod", f"unknown method {call.name!r}{missing}")
            if spec.capability not in call.using:
                self.lint("implicit-capability", f"the implicit {call.name} needs "
                          f"{spec.capability} in 'using'",
                          lambda description: MethodError("unknownMethod", description))
            arguments = self.controls.before_method(call, arguments)
            arguments = self.quirks.before_method(call, arguments)
            with self.store.transaction():
                answer = call.name, spec.handler(call, Args(arguments))
        except MethodError as error:
            answer = "error", error.to_json()
        except Exception:  # RFC 8620 §3.6.2: anything else is serverFail, never a 500
            log.error("method %s failed:\n%s", call.name, traceback.format_exc())
            return "error", {"type": "serverFail",
                             "description": "the server failed to process this call"}
        return self.quirks.after_method(call, arguments, *answer)

    def call(self, user: "User | str", name: str, arguments: dict,
             using: Iterable[str] | None = None) -> dict:
        """Run one method and return its response arguments; raise MethodError on error.
        The server's own calls (seeds, delivery) take no request slot: a delivery made
        inside a client's request must not be refused as one request too many."""
        user = self.user(user)
        spec = self.methods.get(name)
        using = set(using or {URN_CORE, spec.capability if spec else URN_CORE})
        result_name, result, _ = self._invoke(user, using, name, arguments, "0", [], {})[0]
        if result_name == "error":
            error = dict(result)
            raise MethodError(error.pop("type"), error.pop("description", None), **error)
        return result


@method("Core/echo", capability=URN_CORE)
def core_echo(call: MethodCall, args: Args) -> dict:
    """RFC 8620 §4: return the arguments unchanged."""
    return args.raw


capability(URN_CORE, lambda core: {
    **{name: core.limits[name] for name in DEFAULT_LIMITS},
    "collationAlgorithms": list(COLLATIONS),
})


# =============================================================================
# 6. Standard methods engine
# =============================================================================
# RFC 8620 §5: /get /changes /set /copy /query /queryChanges, each written once.
# A data type is a declaration (Prop per property, Filter per condition, Sort per
# sortable property) and overrides a hook only where its RFC adds a rule. State
# strings are the type's highest modseq in the account, so every state the server
# ever issued can be calculated from, back to the tombstone retention window.

@dataclasses.dataclass(frozen=True, slots=True)
class Prop:
    """One property of a data type, as its RFC declares it."""
    type: JmapType
    nullable: bool = False
    default: Any = MISSING
    server_set: bool = False
    immutable: bool = False
    computed: bool = False          # not stored: DataType.compute fills it in
    reference: str | None = None    # the data type this Id points at ('#creation' allowed)

    def accepts(self, value: Any) -> bool:
        return (value is None and self.nullable) or self.type.accepts(value)


@dataclasses.dataclass(slots=True)
class CompiledQuery:
    """A /query's filter and sort as SQL, with the type's extra arguments."""
    where: str
    params: list
    order_by: str
    order_params: list
    extra: dict
    filter: Any
    sort: list


class SetContext:
    """What one /set or /copy call shares across its creates, updates and destroys."""

    def __init__(self, call: MethodCall, account: Account, datatype_: "DataType",
                 extra: dict) -> None:
        self.call, self.account, self.datatype, self.extra = call, account, datatype_, extra
        self.destroying: set[str] = set()
        self.now = call.core.now()
        self.touched: dict[str, set[str]] = {}  # type -> ids whose computed values changed
        # what a type's hooks hand each other within the call (named here, set there)
        self.parsed, self.parsed_blob = None, None   # Email: the message being created
        self.queued: dict[str, tuple] = {}           # EmailSubmission: sends to queue
        self.succeeded: dict[str, str] = {}          # EmailSubmission: id -> its emailId

    def flush_touched(self) -> None:
        """One new modseq per object whose counts changed, however many writes did it."""
        for type_name, ids in self.touched.items():
            for object_id in sorted(ids):
                self.store.touch_object(self.account.id, type_name, object_id, self.now)
        self.touched = {}

    @property
    def store(self) -> Store:
        return self.call.store


class DataType:
    """A JMAP data type declaration; the engine below implements its methods."""

    name = ""
    capability = URN_CORE
    id_prefix = "X"
    methods: tuple[str, ...] = ("get", "changes", "set", "query", "queryChanges")
    properties: dict[str, Prop] = {}
    filters: dict[str, Filter] = {}
    sorts: dict[str, Sort] = {}
    count_properties: tuple[str, ...] = ()    # /changes updatedProperties (RFC 8621 §2.2)
    indexed: dict[str, int] = {}              # stored property -> rows per value (SQL index)
    sql_functions: dict[str, Callable] = {}   # name -> one-argument function, for filters
    get_arguments: dict[str, tuple[JmapType, Any]] = {}
    set_arguments: dict[str, tuple[JmapType, Any]] = {}
    query_arguments: dict[str, tuple[JmapType, Any]] = {}
    default_properties: tuple[str, ...] | None = None  # /get without properties; None: all
    copy_properties: frozenset[str] | None = None  # what /copy may set besides id; None: any
    # RFC 8620 §7.2.1-2: a type whose objects belong to the user, not to an account
    # (PushSubscription): its /get and /set take and return no accountId and no state.
    per_user = False
    immutable_query_properties: frozenset[str] = frozenset()  # /queryChanges upToId
    references_blobs = False  # RFC 9404 §6.3 "Can reference blobs": Blob/lookup finds it

    def method_specs(self) -> dict[str, MethodSpec]:
        specs = {}
        for suffix in self.methods:
            wire_name = f"{self.name}/{suffix}"
            handler = functools.partial(STANDARD_METHODS[suffix], self)
            specs[wire_name] = MethodSpec(wire_name, handler, self.capability)
        return specs

    @property
    def defaults(self) -> dict[str, Any]:
        return {k: p.default for k, p in self.properties.items() if p.default is not MISSING}

    @property
    def patch_defaults(self) -> dict[str, Any]:
        """What a null patch value sets a top-level property to (RFC 8620 §5.3)."""
        nullable = {k: None for k, p in self.properties.items() if p.nullable}
        return {**nullable, **self.defaults}

    def stored(self, record: dict) -> dict:
        """The part of a record that is kept in the store (not id, not computed)."""
        return {k: v for k, v in record.items()
                if k != "id" and k in self.properties and not self.properties[k].computed}

    # -- hooks, each a no-op until a data type's RFC needs it --

    def blob_lookup(self, call: MethodCall, account: Account, blob_id: str) -> list[str]:
        """RFC 9404 §4.3: this type's objects that reference the blob; by default those
        holding a blob_ref named "Type/id" to it (or to a message containing it)."""
        return call.store.blob_holders(account.id, blob_id, self.name + "/")

    def user_account(self, call: MethodCall) -> Account:
        """A per_user type's storage: the user's own account that no session lists."""
        raise NotImplementedError(f"{self.name} is not per_user")

    def accepts_property(self, name: str) -> bool:
        """Whether /get may ask for this property (Email adds header:* forms)."""
        return name in self.properties

    def visible(self, call: MethodCall, account: Account,
                records: dict[str, dict]) -> dict[str, dict]:
        """The records this call may see; /get reports the others notFound (12.2: a
        Quota none of whose types the client asked for, RFC 9425 §4.1)."""
        return records

    def render(self, call: MethodCall, account: Account, records: dict[str, dict],
               wanted: list[str], extra: dict) -> dict[str, dict]:
        """The wire form of each record with the wanted properties (/get)."""
        self.compute(call, account, records)
        return {object_id: present(self, object_id, record, wanted)
                for object_id, record in records.items()}

    def resolve_references(self, context: "SetContext", given: dict) -> dict:
        """Replace '#creation' references that Prop.reference cannot express."""
        return given

    def before_create(self, context: "SetContext", given: dict,
                      base: dict | None) -> tuple[dict, dict | None]:
        """Raise SetError to refuse a create before its properties are checked; return
        the properties to check and the trusted base ones (a type may derive them,
        e.g. Email composes its message from some of the given properties)."""
        return given, base

    def created_view(self, call: MethodCall, account: Account, object_id: str, record: dict,
                     given: dict) -> dict:
        """What /set's created answers: every property the client did not send, or
        that the server stored otherwise than sent, e.g. narrowed to a limit (§5.3)."""
        shown = {object_id: dict(record)}
        self.compute(call, account, shown)
        full = present(self, object_id, shown[object_id], self.properties)
        return {k: v for k, v in full.items() if not json_identical(given.get(k, MISSING), v)}

    def after_write(self, context: "SetContext", object_id: str, record: dict | None,
                    existing: dict | None) -> None:
        """Keep a type's own tables in step: after a create (existing None), an
        update, or a destroy (record None)."""

    def after_set(self, context: "SetContext", response: dict) -> None:
        """After a whole /set: e.g. ask for an implicit follow-up call (context.call.then)."""

    def tombstone(self, record: dict) -> dict:
        """What a destroyed object's tombstone remembers (queryChanges may need it)."""
        return {}

    def normalize_patch(self, patch: dict) -> dict:
        """A PatchObject with its paths in the stored spelling (Email: keywords lower-case)."""
        return patch

    def derive(self, context: SetContext, object_id: str, record: dict,
               existing: dict | None = None) -> dict:
        """A checked create's (or update's) record with the server-set properties it
        implies (e.g. an EmailSubmission's threadId and envelope, or its deliveryStatus
        once canceled); raise SetError to refuse it."""
        return record

    def validate(self, context: SetContext, object_id: str, record: dict,
                 existing: dict | None) -> None:
        """Raise SetError if record may not be stored (existing is None on create). It
        may narrow a value to a server limit in place; /set reports that back (§5.3)."""

    def before_destroy(self, context: SetContext, object_id: str, record: dict) -> None:
        """Raise SetError to refuse a destroy, or clean up what depends on the object."""

    def destroy_order(self, context: SetContext, ids: list[str]) -> list[str]:
        """The order in which one /set call destroys its ids."""
        return ids

    def compute(self, call: MethodCall, account: Account, records: dict[str, dict]) -> None:
        """Fill in computed properties of the given records, in place."""

    tie_breaker = "id"  # the SQL column that makes every sort total

    def query(self, call: MethodCall, account: Account, query: "CompiledQuery",
              window: tuple[int, int] | None) -> list[str]:
        """The ids matching a compiled query, in order; window = (offset, limit)."""
        return call.store.query_ids(account.id, self.name, query.where,
                                    query.params + query.order_params, query.order_by, window)

    def count(self, call: MethodCall, account: Account, query: "CompiledQuery") -> int:
        return call.store.count_objects(account.id, self.name, query.where, query.params)

    def can_window(self, query: "CompiledQuery") -> bool:
        """Whether query() can page in SQL (else it returns all ids and the engine slices)."""
        return True

    def query_changed(self, call: MethodCall, account: Account, changed: set[str],
                      query: "CompiledQuery", since: int) -> set[str]:
        """The ids whose place in these results may have changed, given the changed ids."""
        return changed


def datatype(cls: type) -> type:
    """Class decorator: register a DataType and its standard methods."""
    instance = cls()
    DATATYPES[instance.name] = instance
    METHODS.update(instance.method_specs())
    return cls


def type_state(call: MethodCall, account: Account, datatype_: DataType) -> str:
    return call.core.state_string(call.store.type_state(account.id, datatype_.name))


def parse_state(call: MethodCall, account: Account, datatype_: DataType, state: str) -> int:
    """The modseq a state string stands for, or cannotCalculateChanges (RFC 8620 §5.2)."""
    current = call.store.type_state(account.id, datatype_.name)
    epoch, digits = call.core.state_epoch, state[len(call.core.state_epoch):]
    if (not state.startswith(epoch) or not re.fullmatch(r"0|[1-9][0-9]{0,17}", digits)
            or int(digits) > current):
        raise MethodError("cannotCalculateChanges", f"{state!r} is not a state this server issued")
    if int(digits) < call.store.tombstone_floor(account.id):
        raise MethodError("cannotCalculateChanges", f"state {state!r} is older than the "
                          f"{TOMBSTONE_TTL_SECONDS // 86400}-day change history")
    return int(digits)


def read_extra(args: Args, declared: dict[str, tuple[JmapType, Any]]) -> dict:
    return {name: args.get(name, type_, default) for name, (type_, default) in declared.items()}


def method_account(datatype_: DataType, call: MethodCall, args: Args, *,
                   writable: bool = False) -> Account:
    """The accountId argument's account; a per_user type takes none (RFC 8620 §7.2.1)."""
    if datatype_.per_user:
        return datatype_.user_account(call)
    return call.account(args, writable=writable)


def scoped_response(datatype_: DataType, response: dict) -> dict:
    """A per_user type returns no accountId and no state arguments (RFC 8620 §7.2.1-2)."""
    if not datatype_.per_user:
        return response
    return {k: v for k, v in response.items()
            if k not in ("accountId", "state", "oldState", "newState")}


# --- 6.1 /get (RFC 8620 §5.1) --------------------------------------------------

def standard_get(datatype_: DataType, call: MethodCall, args: Args) -> dict:
    account = method_account(datatype_, call, args)
    ids = args.get("ids", list_of(IdOrCreationRef), nullable=True)
    wanted = args.get("properties", list_of(String), nullable=True)
    extra = read_extra(args, datatype_.get_arguments)
    args.finish()
    call.require("read", account)
    if any(i.startswith("#") for i in ids or ()):
        call.core.lint("creation-id-in-get", "ids: a '#creation' reference",
                       invalid_arguments)
    wanted = _wanted_properties(datatype_, wanted)
    limit = call.core.limits["maxObjectsInGet"]
    if ids is None:
        if call.store.count_objects(account.id, datatype_.name) > limit:
            raise MethodError("requestTooLarge", f"more than {limit} objects; page with /query")
        records = datatype_.visible(call, account,
                                    call.store.get_objects(account.id, datatype_.name, None))
        ids = list(records)
    else:
        ids = list(dict.fromkeys(ids))  # a repeated id is returned once
        if len(ids) > limit:
            raise MethodError("requestTooLarge", f"ids: more than maxObjectsInGet ({limit})")
        resolved = {i: call.resolve_creation_id(i) for i in ids}
        records = datatype_.visible(call, account, call.store.get_objects(
            account.id, datatype_.name, [r for r in resolved.values() if r]))
    shown = datatype_.render(call, account, records, wanted, extra)
    found = [shown[object_id] for object_id in (call.resolve_creation_id(i) for i in ids)
             if object_id in records]
    not_found = [i for i in ids if call.resolve_creation_id(i) not in records]
    return scoped_response(datatype_, {"accountId": account.id,
                                       "state": type_state(call, account, datatype_),
                                       "list": found, "notFound": not_found})


def _wanted_properties(datatype_: DataType, wanted: list[str] | None) -> list[str]:
    if wanted is None:
        return list(datatype_.default_properties or datatype_.properties)
    unknown = [name for name in wanted if not datatype_.accepts_property(name)]
    if unknown:
        raise invalid_arguments(f"properties: {datatype_.name} has no property {unknown[0]!r}")
    declared = [name for name in datatype_.properties if name in wanted and name != "id"]
    dynamic = [name for name in dict.fromkeys(wanted) if name not in datatype_.properties]
    return ["id"] + declared + dynamic


def present(datatype_: DataType, object_id: str, record: dict, wanted: Iterable[str]) -> dict:
    """The wire form of a record with only the wanted properties (id always)."""
    shown = {"id": object_id}
    for name in wanted:
        if name != "id":
            prop = datatype_.properties[name]
            shown[name] = record.get(name, None if prop.default is MISSING else prop.default)
    return shown


# --- 6.2 /changes (RFC 8620 §5.2) ----------------------------------------------

def standard_changes(datatype_: DataType, call: MethodCall, args: Args) -> dict:
    account = call.account(args)
    since_state = args.get("sinceState", String)
    max_changes = args.get("maxChanges", UnsignedInt, nullable=True)
    args.finish()
    call.require("read", account)
    if max_changes == 0:  # RFC 8620 §5.2: "MUST be a positive integer greater than 0"
        raise invalid_arguments("maxChanges: must be greater than 0")
    since = parse_state(call, account, datatype_, since_state)
    limit = min(max_changes or call.core.limits["maxChanges"], call.core.limits["maxChanges"])
    rows = call.store.changes_since(account.id, datatype_.name, since, limit + 1)
    more, rows = len(rows) > limit, rows[:limit]
    response = {
        "accountId": account.id, "oldState": since_state,
        "newState": call.core.state_string(rows[-1].first) if more
        else type_state(call, account, datatype_),
        "hasMoreChanges": more,
        "created": [r.id for r in rows if r.created_modseq > since and not r.destroyed],
        "updated": [r.id for r in rows if r.created_modseq <= since and not r.destroyed],
        "destroyed": [r.id for r in rows if r.destroyed],
    }
    if datatype_.count_properties:
        counts_only = rows and all(r.created_modseq <= since and not r.destroyed
                                   and r.content_modseq <= since for r in rows)
        response["updatedProperties"] = list(datatype_.count_properties) if counts_only else None
    return response


# --- 6.3 /set (RFC 8620 §5.3) --------------------------------------------------

def standard_set(datatype_: DataType, call: MethodCall, args: Args) -> dict:
    account = method_account(datatype_, call, args, writable=True)
    # RFC 8620 §7.2.2: a per-user type takes no ifInState (so it is an unknown argument)
    if_in_state = None if datatype_.per_user else args.get("ifInState", String, nullable=True)
    create = args.get("create", map_of(AnyJson, key=Id), nullable=True) or {}
    update = args.get("update", map_of(AnyJson, key=IdOrCreationRef), nullable=True) or {}
    destroy = args.get("destroy", list_of(IdOrCreationRef), nullable=True) or []
    context = SetContext(call, account, datatype_, read_extra(args, datatype_.set_arguments))
    args.finish()
    _check_set_size(call, len(create) + len(update) + len(destroy))
    old_state = type_state(call, account, datatype_)
    if if_in_state is not None and if_in_state != old_state:
        raise MethodError("stateMismatch", f"ifInState {if_in_state!r}, state is {old_state!r}")
    call.require("write", account)
    created, not_created = _run_creates(context, create)
    # After the creates, '#creation' ids name real ids; answers are keyed by those.
    destroy = list(dict.fromkeys(call.resolve_creation_id(i) or i for i in destroy))
    context.destroying = set(destroy)
    updates = [(call.resolve_creation_id(i) or i, patch) for i, patch in update.items()]
    updated, not_updated = _run_each(context, updates, _update_one)
    order = datatype_.destroy_order(context, destroy)
    destroyed, not_destroyed = _run_each(context, ((i, None) for i in order), _destroy_one)
    response = {"accountId": account.id, "oldState": old_state,
                "newState": type_state(call, account, datatype_),
                "created": created or None, "updated": updated or None,
                "destroyed": list(destroyed) or None, "notCreated": not_created or None,
                "notUpdated": not_updated or None, "notDestroyed": not_destroyed or None}
    datatype_.after_set(context, response)
    return scoped_response(datatype_, response)


def _check_set_size(call: MethodCall, count: int) -> None:
    limit = call.core.limits["maxObjectsInSet"]
    if count > limit:
        raise MethodError("requestTooLarge", f"{count} objects; maxObjectsInSet is {limit}")


def _run_each(context: SetContext, items: Iterable[tuple[str, Any]],
              operation: Callable) -> tuple[dict, dict]:
    """Apply operation to each item; a SetError rejects that item only (RFC 8620 §5.3)."""
    done, failed = {}, {}
    for key, value in items:
        try:
            with context.store.savepoint():  # a failed item leaves no partial write
                done[key] = operation(context, key, value)
        except SetError as error:
            failed[key] = error.to_json()
    context.flush_touched()
    return done, failed


def creation_order(create: dict, references: Callable[[Any], set[str]]) -> list[tuple]:
    """The creates in an order where '#creation' references point backwards (RFC 8620
    §5.3); `references(object)` names the creation ids an object refers to."""
    pending, ordered = dict(create), []
    while pending:
        ready = [k for k, obj in pending.items() if not (references(obj) & (pending.keys() - {k}))]
        batch = ready or list(pending)  # a reference cycle: let the creates fail in order
        ordered.extend((k, pending.pop(k)) for k in batch)
    return ordered


def _run_creates(context: SetContext, create: dict) -> tuple[dict, dict]:
    ordered = creation_order(create, lambda obj: _creation_references(context.datatype, obj))
    return _run_each(context, ordered, _create_one)


def _creation_references(datatype_: DataType, obj: Any) -> set[str]:
    if not isinstance(obj, dict):
        return set()
    return {value[1:] for name, value in obj.items()
            if name in datatype_.properties and datatype_.properties[name].reference
            and isinstance(value, str) and value.startswith("#")}


def _create_one(context: SetContext, creation_id: str, given: Any,
                base: dict | None = None) -> dict:
    """Create one object from client properties `given` (and, for /copy, trusted `base`)."""
    datatype_ = context.datatype
    if not isinstance(given, dict):
        raise SetError("invalidProperties", f"a {datatype_.name} must be a JSON object")
    given, base = datatype_.before_create(context, given, base)
    given = check_properties(context, datatype_.resolve_references(context, given), existing=None)
    record = {**datatype_.defaults, **(base or {}), **given}
    missing = [k for k, p in datatype_.properties.items()
               if k not in record and not p.server_set and not p.computed and k != "id"]
    if missing:
        raise SetError.invalid_properties(missing, f"missing required property {missing[0]!r}")
    object_id = context.call.core.new_id(datatype_.id_prefix)
    record = datatype_.derive(context, object_id, record, None)
    datatype_.validate(context, object_id, record, None)
    context.store.insert_object(context.account.id, datatype_.name, object_id,
                                datatype_.stored(record), context.now)
    datatype_.after_write(context, object_id, record, None)
    context.call.created_ids[creation_id] = object_id
    return datatype_.created_view(context.call, context.account, object_id, record, given)


def check_properties(context: SetContext, given: dict, existing: dict | None) -> dict:
    """Type-check client-given properties; resolve '#creation' references. On update,
    server-set and immutable properties may only repeat their current value."""
    datatype_, problems, resolved = context.datatype, {}, {}
    for name, value in given.items():
        prop = datatype_.properties.get(name)
        if prop is None:
            problems[name] = f"{datatype_.name} has no property {name!r}"
            continue
        if existing is None and (prop.server_set or name == "id"):
            problems[name] = f"{name} is set by the server"  # RFC 8620 §5.3 "MUST omit"
            continue
        if existing is not None and (prop.server_set or prop.immutable or name == "id"):
            if not json_identical(value, existing.get(name, MISSING)):
                problems[name] = f"{name} cannot be changed"
            continue
        if prop.reference and isinstance(value, str) and not IdOrCreationRef.accepts(value):
            problems[name] = f"{name}: must be {describe_type(prop.type, prop.nullable)}"
            continue  # not an Id: never looked up
        value = _resolve_reference(context, prop, value)
        if value is MISSING:
            problems[name] = f"{name}: no {prop.reference} {given[name]!r}"
        elif not prop.accepts(value):
            problems[name] = f"{name}: must be {describe_type(prop.type, prop.nullable)}"
        else:
            resolved[name] = value
    if problems:
        raise SetError.invalid_properties(problems, "; ".join(problems.values()))
    return resolved


def _resolve_reference(context: SetContext, prop: Prop, value: Any) -> Any:
    """A foreign key must name a live object of its type; MISSING if it does not."""
    if prop.reference is None or not isinstance(value, str):
        return value
    target = context.call.resolve_creation_id(value)
    if target is None or not context.store.get_objects(context.account.id, prop.reference,
                                                        [target]):
        return MISSING
    return target


def _update_one(context: SetContext, object_id: str, patch: Any) -> dict | None:
    """Apply one PatchObject; answer what changed that the patch did not ask for."""
    datatype_, store = context.datatype, context.store
    if object_id in context.destroying:
        raise SetError("willDestroy", "this object is destroyed by the same call")
    existing = _existing(context, object_id)
    if not isinstance(patch, dict):
        raise SetError("invalidPatch", "a PatchObject is a JSON object")
    patch = datatype_.normalize_patch(patch)
    before = _current_view(context, object_id, existing, patch)
    patched = apply_patch(before, patch, datatype_.patch_defaults)
    changed = {k: patched.get(k) for k in patched.keys() | before.keys()
               if not json_identical(patched.get(k, MISSING), before.get(k, MISSING))}
    removed = [k for k in changed if k not in patched and k in datatype_.properties]
    if removed:
        raise SetError.invalid_properties(removed, f"{removed[0]} cannot be removed")
    changed = check_properties(context, datatype_.resolve_references(context, changed),
                               existing=before)
    record = datatype_.derive(context, object_id, {**existing, **changed}, existing)
    datatype_.validate(context, object_id, record, existing)
    if datatype_.stored(record) != datatype_.stored(existing):
        store.update_object(context.account.id, datatype_.name, object_id,
                            datatype_.stored(record), context.now)
        datatype_.after_write(context, object_id, record, existing)
    after = {object_id: dict(record)}
    datatype_.compute(context.call, context.account, after)
    # RFC 8620 §5.3 "updated": what changed in a way the patch did not ask for,
    # including a patched value the server narrowed (validate may do that)
    asked = {**patched, **changed}
    unasked = {k: v for k, v in after[object_id].items() if k in datatype_.properties
               and not json_identical(v, asked.get(k, MISSING))}
    return unasked or None


def _current_view(context: SetContext, object_id: str, existing: dict, patch: dict) -> dict:
    """The object as /get shows it, as far as the patch needs: a server-set or computed
    property may be sent back unchanged (RFC 8620 §5.3, "an entire Foo object")."""
    datatype_, call = context.datatype, context.call
    shown = {object_id: dict(existing)}
    datatype_.compute(call, context.account, shown)
    before = {"id": object_id, **shown[object_id]}
    rendered = [name for name in dict.fromkeys(str(key).split("/", 1)[0] for key in patch)
                if name not in before and name in datatype_.properties]
    if rendered:
        defaults = {name: default for name, (_, default) in datatype_.get_arguments.items()}
        view = datatype_.render(call, context.account, {object_id: dict(existing)},
                                ["id", *rendered], defaults)[object_id]
        before.update({name: view[name] for name in rendered if name in view})
    return before


def _destroy_one(context: SetContext, object_id: str, _: Any) -> str:
    record = _existing(context, object_id)
    context.datatype.before_destroy(context, object_id, record)
    context.store.destroy_object(context.account.id, context.datatype.name, object_id,
                                 context.now, context.datatype.tombstone(record))
    context.datatype.after_write(context, object_id, None, record)
    return object_id


def _existing(context: SetContext, object_id: str) -> dict:
    found = context.store.get_objects(context.account.id, context.datatype.name, [object_id])
    if object_id not in found:
        raise SetError("notFound", f"no {context.datatype.name} {object_id!r}")
    return found[object_id]


# --- 6.4 /copy (RFC 8620 §5.4) -------------------------------------------------

def standard_copy(datatype_: DataType, call: MethodCall, args: Args) -> dict:
    from_account = call.account(args, "fromAccountId")
    if_from_in_state = args.get("ifFromInState", String, nullable=True)
    account = call.account(args, writable=True)
    if_in_state = args.get("ifInState", String, nullable=True)
    create = args.get("create", map_of(AnyJson, key=Id))
    destroy_original = args.get("onSuccessDestroyOriginal", Boolean, False)
    destroy_if_in_state = args.get("destroyFromIfInState", String, nullable=True)
    args.finish()
    if from_account.id == account.id:  # RFC 8620 §5.4: "MUST be different"
        raise invalid_arguments("accountId: must differ from fromAccountId")
    _check_set_size(call, len(create))
    for state, acc in ((if_from_in_state, from_account), (if_in_state, account)):
        if state is not None and state != type_state(call, acc, datatype_):
            raise MethodError("stateMismatch", f"state of account {acc.id!r} is not {state!r}")
    call.require("read", from_account)
    call.require("write", account)
    old_state = type_state(call, account, datatype_)
    context = SetContext(call, account, datatype_, {})
    context.from_account = from_account
    created, not_created = _run_each(context, create.items(), _copy_one)
    if destroy_original and created:
        call.then = (f"{datatype_.name}/set", {
            "accountId": from_account.id, "ifInState": destroy_if_in_state,
            "destroy": [entry.pop("_source") for entry in created.values()]})
    for entry in created.values():
        entry.pop("_source", None)
    return {"fromAccountId": from_account.id, "accountId": account.id,
            "oldState": old_state, "newState": type_state(call, account, datatype_),
            "created": created or None, "notCreated": not_created or None}


def _copy_one(context: SetContext, creation_id: str, given: Any) -> dict:
    datatype_ = context.datatype
    if not isinstance(given, dict) or not IdOrCreationRef.accepts(given.get("id")):
        raise SetError.invalid_properties(["id"], "each copy names the original's 'id'")
    source_id = context.call.resolve_creation_id(given["id"]) or given["id"]
    source = context.store.get_objects(context.from_account.id, datatype_.name, [source_id])
    if source_id not in source:
        raise SetError("notFound", f"no {datatype_.name} {source_id!r} in the from account")
    overrides = {k: v for k, v in given.items() if k != "id"}
    refused = sorted(set(overrides) - datatype_.copy_properties) \
        if datatype_.copy_properties is not None else []
    if refused:  # e.g. RFC 8621 §4.7: a copied Email may differ in three properties only
        raise SetError.invalid_properties(refused, f"{refused[0]} cannot be set in a copy")
    base = {k: v for k, v in source[source_id].items() if k not in given}
    shown = _create_one(context, creation_id, overrides, base)
    server_set = {k: v for k, v in shown.items()
                  if k == "id" or datatype_.properties[k].server_set}
    return {**server_set, "_source": source_id}


# --- 6.5 /query (RFC 8620 §5.5) ------------------------------------------------

def read_query(datatype_: DataType, args: Args) -> tuple:
    filter_ = args.get("filter", JsonObject, nullable=True)
    sort = args.get("sort", list_of(AnyJson), nullable=True) or []
    return filter_, sort, read_extra(args, datatype_.query_arguments)


def compile_query(datatype_: DataType, filter_: Any, sort: list, extra: dict) -> CompiledQuery:
    where, params = ("1", []) if filter_ is None else compile_filter(datatype_.filters, filter_)
    order_by, order_params = compile_sort(datatype_.sorts, sort, datatype_.tie_breaker)
    return CompiledQuery(where, params, order_by, order_params, extra, filter_, sort)


def standard_query(datatype_: DataType, call: MethodCall, args: Args) -> dict:
    account = call.account(args)
    filter_, sort, extra = read_query(datatype_, args)
    position = args.get("position", Int, 0)
    anchor = args.get("anchor", Id, nullable=True)
    anchor_offset = args.get("anchorOffset", Int, 0)
    limit = args.get("limit", UnsignedInt, nullable=True)
    calculate_total = args.get("calculateTotal", Boolean, False)
    args.finish()
    call.require("read", account)
    query = compile_query(datatype_, filter_, sort, extra)
    cap = call.core.limits["maxQueryLimit"]
    count = cap if limit is None else min(limit, cap)
    if anchor is None and position >= 0 and datatype_.can_window(query):
        start, page = position, datatype_.query(call, account, query, (position, count + 1))
        total = datatype_.count(call, account, query) if calculate_total else None
        capped = len(page) > count and limit is None
    else:
        ids = datatype_.query(call, account, query, None)
        start, total = _window_start(ids, position, anchor, anchor_offset), len(ids)
        page, capped = ids[start:start + count + 1], limit is None and len(ids) - start > cap
    response = {"accountId": account.id, "queryState": type_state(call, account, datatype_),
                "canCalculateChanges": True, "position": start, "ids": page[:count]}
    if calculate_total:
        response["total"] = total
    if capped or (limit is not None and limit > cap):
        response["limit"] = cap  # RFC 8620 §5.5: returned only when the server set a limit
    return response


def _window_start(ids: list[str], position: int, anchor: str | None, anchor_offset: int) -> int:
    if anchor is not None:  # RFC 8620 §5.5: position is then ignored
        if anchor not in ids:
            raise MethodError("anchorNotFound", f"anchor {anchor!r} is not in the results")
        return max(0, ids.index(anchor) + anchor_offset)
    return position if position >= 0 else max(0, len(ids) + position)


# --- 6.6 /queryChanges (RFC 8620 §5.6) -----------------------------------------

def standard_query_changes(datatype_: DataType, call: MethodCall, args: Args) -> dict:
    account = call.account(args)
    filter_, sort, extra = read_query(datatype_, args)
    since_state = args.get("sinceQueryState", String)
    max_changes = args.get("maxChanges", UnsignedInt, nullable=True)
    up_to_id = args.get("upToId", Id, nullable=True)
    calculate_total = args.get("calculateTotal", Boolean, False)
    args.finish()
    call.require("read", account)
    query = compile_query(datatype_, filter_, sort, extra)
    ids = datatype_.query(call, account, query, None)
    since = parse_state(call, account, datatype_, since_state)
    changes = call.store.changes_since(account.id, datatype_.name, since)
    changed = datatype_.query_changed(call, account, {change.id for change in changes}, query,
                                      since)
    # Everything touched since may have left or moved (RFC 8620 §5.6 allows the extra
    # removed ids); whatever of it is in the results now is added at its index.
    listed = [change.id for change in changes if change.created_modseq <= since]
    removed = listed + sorted(changed - {change.id for change in changes})
    added = [{"id": i, "index": n} for n, i in enumerate(ids) if i in changed]
    if up_to_id in ids and _query_is_immutable(datatype_, query):
        last = ids.index(up_to_id)
        added = [entry for entry in added if entry["index"] <= last]
    if max_changes is not None and len(removed) + len(added) > max_changes:
        raise MethodError("tooManyChanges", f"{len(removed) + len(added)} changes, "
                          f"maxChanges is {max_changes}")
    response = {"accountId": account.id, "oldQueryState": since_state,
                "newQueryState": type_state(call, account, datatype_),
                "removed": removed, "added": added}
    if calculate_total:
        response["total"] = len(ids)
    return response


def query_property_names(query: CompiledQuery) -> set[str]:
    """Every filter condition and sort property a query uses."""
    def names(tree: Any) -> set[str]:
        if isinstance(tree, dict) and "operator" in tree:
            return set().union(*(names(sub) for sub in tree.get("conditions") or []))
        return set(tree) if isinstance(tree, dict) else set()
    return names(query.filter) | {c["property"] for c in query.sort}


def _query_is_immutable(datatype_: DataType, query: CompiledQuery) -> bool:
    """Whether filter and sort read only immutable properties (RFC 8620 §5.6 upToId),
    and no type-specific argument (e.g. sortAsTree) reorders by anything else."""
    used = query_property_names(query)
    defaults = {name: default for name, (_, default) in datatype_.query_arguments.items()}
    return used <= datatype_.immutable_query_properties and query.extra == defaults


STANDARD_METHODS = {
    "get": standard_get, "changes": standard_changes, "set": standard_set,
    "copy": standard_copy, "query": standard_query, "queryChanges": standard_query_changes,
}


# =============================================================================
# 7. Binary data
# =============================================================================
# RFC 8620 §6: upload, download and Blob/copy as transport-neutral functions. A
# blob's content is stored once (its id is its sha-256); an account reaches it only
# through a blob_ref. An upload's ref expires after UPLOAD_TTL_SECONDS unless an
# object takes its own ref; expired content nothing refers to is purged.

_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(?:[ \t]*;[\x20-\x7e]*)?")
BLOB_PURGE_INTERVAL = 60.0


def clean_media_type(value: str | None) -> str | None:
    """A media type safe to echo in a header, None if malformed; empty -> octet-stream."""
    value = " ".join((value or "").split(" ")).strip(" \t")
    if not value:
        return "application/octet-stream"  # RFC 8620 §6.1 leaves room: we store octet-stream
    return value if _MEDIA_TYPE.fullmatch(value) and value.isascii() else None


def upload_blob(core: JmapCore, user: User, account_id: str, data: bytes,
                content_type: str | None) -> dict:
    """RFC 8620 §6.1: store an upload; answer {accountId, blobId, type, size}."""
    media_type = clean_media_type(content_type)
    if media_type is None:
        raise RequestError.http(400, "Content-Type is not a media type")
    limit = core.limits["maxSizeUpload"]
    if len(data) > limit:
        raise RequestError("limit", f"upload larger than maxSizeUpload ({limit} octets)",
                           status=413, limit="maxSizeUpload")
    with core.store.transaction():
        account = core.visible_account(user, account_id)
        if account is None:
            raise RequestError.http(404, f"no account {account_id!r} for this user")
        if account.is_read_only:
            raise RequestError.http(403, f"account {account_id!r} is read-only")
        now = core.now()
        blob_id = core.store.put_blob(data)
        core.store.add_blob_ref(account.id, blob_id, "upload", media_type, now + UPLOAD_TTL_SECONDS)
        _purge_blobs_now_and_then(core, now)
    return {"accountId": account.id, "blobId": blob_id, "type": media_type, "size": len(data)}


def _purge_blobs_now_and_then(core: JmapCore, now: float) -> None:
    if now - getattr(core, "_blobs_purged_at", 0.0) >= BLOB_PURGE_INTERVAL:
        core.store.purge_blobs(now)
        core._blobs_purged_at = now


BLOB_SOURCES: list[Callable[[Store, str], bytes | None]] = []  # derived blobs (MIME parts)


def blob_content(store: Store, blob_id: str) -> bytes | None:
    """A blob's octets: stored ones, else derived ones (e.g. a part of a stored message)."""
    data = store.blob_data(blob_id)
    for derive in BLOB_SOURCES if data is None else ():
        data = derive(store, blob_id)
        if data is not None:
            break
    return data


def held_blob(store: Store, account_id: str, blob_id: str, now: float) -> bytes | None:
    """The blob's octets if the account holds it (an account reaches a blob only
    through its refs, RFC 8620 §6), else None."""
    if store.blob_type(account_id, blob_id, now) is None:
        return None
    return blob_content(store, blob_id)


def download_blob(core: JmapCore, user: User, account_id: str, blob_id: str) -> tuple[bytes, str]:
    """RFC 8620 §6.2: the blob's octets and stored type; 404 if the account lacks it."""
    with core.store.transaction():
        account = core.visible_account(user, account_id)
        stored_type = account and core.store.blob_type(account.id, blob_id, core.now())
        data = blob_content(core.store, blob_id) if stored_type else None
    if data is None:
        raise RequestError.http(404, "no such blob in this account")
    return data, stored_type


def content_disposition(name: str) -> str:
    """RFC 6266: an ASCII fallback filename, plus filename* when the name needs it."""
    fallback = re.sub(r'[^\x20-\x7e]|["\\]', "_", name) or "download"
    header = f'attachment; filename="{fallback}"'
    if fallback != name:
        header += "; filename*=UTF-8''" + urllib.parse.quote(name, safe="")
    return header


@method("Blob/copy", capability=URN_CORE)
def blob_copy(call: MethodCall, args: Args) -> dict:
    """RFC 8620 §6.3: make blobs of one account available in another."""
    from_account = call.account(args, "fromAccountId")
    account = call.account(args, writable=True)
    blob_ids = call.blob_ids(args)
    args.finish()
    call.require("read", from_account)
    call.require("write", account)
    now, copied, not_copied = call.core.now(), {}, {}
    for blob_id in dict.fromkeys(blob_ids):
        stored_type = call.store.blob_type(from_account.id, blob_id, now)
        if stored_type is None:
            not_copied[blob_id] = SetError("notFound", f"no blob {blob_id!r}").to_json()
            continue
        call.store.add_blob_ref(account.id, blob_id, "upload", stored_type,
                                now + UPLOAD_TTL_SECONDS)
        copied[blob_id] = blob_id
    return {"fromAccountId": from_account.id, "accountId": account.id,
            "copied": copied or None, "notCopied": not_copied or None}


# =============================================================================
# 8. MIME
# =============================================================================
# RFC 8621 §4.1 from raw RFC 5322 / MIME octets, parsed once when a message
# arrives: header fields with their exact raw values, the body part tree with
# byte offsets (so a part's content is a slice of the raw message, never a
# re-parse), textBody/htmlBody/attachments (§4.1.4), preview and search text.
# Parsing is best effort: a malformed message still yields an Email.

# Patterns of the MIME grammar, compiled once at import.
_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")  # an RFC 5322 comment (one level)
_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
_ANGLED = re.compile(r"<([^>]*)>")
_FOLDING = re.compile(r"\r?\n(?=[ \t])")
_Q_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_QUOTED_PAIR = re.compile(r"\\(.)")
_CONTINUATION = re.compile(r"([^*]+)\*([0-9]+)(\*?)")
_TYPE_SUBTYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_ANGLE_ENDS = re.compile(r"^\s*<|>\s*$")
_FWD_TRAILER = re.compile(r"(?:\s*\(fwd\))+$", re.I)
_FWD_WRAPPED = re.compile(r"\[fwd:\s*(.*)\]", re.I)
_DATE_PARTS = re.compile(r"([0-9-]{10}T[0-9:]{8})(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})")
MAX_MIME_DEPTH = 32
PREVIEW_LENGTH = 256  # RFC 8621 §4.1.4: "MUST NOT be more than 256 characters"
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([QqBb])\?([^?\s]*)\?=")
_LINE_END = re.compile(rb"\r?\n")


def field_values(headers: list[tuple[str, str]], name: str) -> list[str]:
    """The raw value of every instance of a header field, in order (name lower-case)."""
    return [value for field, value in headers if field.lower() == name]


def last_field(headers: list[tuple[str, str]], name: str) -> str | None:
    """The last instance of a header field, raw (RFC 8621 §4.1.3), or None."""
    values = field_values(headers, name)
    return values[-1] if values else None


@dataclasses.dataclass(slots=True)
class MimePart:
    """One MIME entity: headers, type, and where its (encoded) body lies in the raw octets."""
    headers: list[tuple[str, str]]
    type: str
    params: dict[str, str]
    start: int
    end: int
    part_id: str | None = None
    sub_parts: list["MimePart"] = dataclasses.field(default_factory=list)

    def header(self, name: str) -> str | None:
        """The last instance of a header field, raw (RFC 8621 §4.1.3)."""
        return last_field(self.headers, name)


def decode_raw_header(octets: bytes) -> str:
    """RFC 8621 §4.1.2.1: UTF-8, invalid runs as U+FFFD, NUL dropped."""
    return octets.replace(b"\0", b"").decode("utf-8", errors="replace")


def split_header_block(raw: bytes, start: int, end: int) -> tuple[list[tuple[str, str]], int]:
    """Header fields [(name, raw value)] of the entity at raw[start:end], and where
    its body starts. Lines without a colon are skipped; a blank line ends the block."""
    fields: list[tuple[str, bytearray]] = []
    position = start
    while position < end:
        match = _LINE_END.search(raw, position, end)
        line_end, next_line = (match.start(), match.end()) if match else (end, end)
        line = raw[position:line_end]
        if not line:
            return _decode_fields(fields), next_line
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1].extend(raw[position - (2 if raw[position - 2:position] == b"\r\n"
                                                 else 1):line_end])
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append((name.strip().decode("ascii", errors="replace"), bytearray(value)))
        position = next_line
    return _decode_fields(fields), end


def _decode_fields(fields: list) -> list[tuple[str, str]]:
    return [(name, decode_raw_header(bytes(value))) for name, value in fields if name]


def unfold(value: str) -> str:
    """RFC 5322 §2.2.3: remove CRLF before white space."""
    return _FOLDING.sub("", value)


# Mail labels read as the superset real senders mean (as browsers do), and Python codecs
# that are no character set of mail (they raise, or turn backslashes into escapes).
CHARSET_SUPERSETS = {"us-ascii": "utf-8", "ascii": "utf-8", "ansi_x3.4-1968": "utf-8",
                     "iso-8859-1": "cp1252", "latin1": "cp1252", "gb2312": "gb18030",
                     "gbk": "gb18030", "shift_jis": "cp932", "iso-8859-8-i": "iso-8859-8",
                     "ks_c_5601-1987": "cp949", "euc-kr": "cp949"}
NOT_MAIL_CHARSETS = {"undefined", "idna", "punycode", "unicode_escape", "raw_unicode_escape",
                     "unicode_internal", "mbcs", "oem", "charmap"}
_SURROGATE = re.compile("[\ud800-\udfff]")


def mail_codec(charset: str | None) -> str | None:
    """The Python codec for a MIME charset label, or None if it is not one."""
    name = (charset or "us-ascii").strip().strip('"').lower()
    name = CHARSET_SUPERSETS.get(name, name)
    try:
        codec = codecs.lookup(name)
    except LookupError:
        return None
    if (codec.name.replace("-", "_") in NOT_MAIL_CHARSETS
            or not getattr(codec, "_is_text_encoding", True)):
        return None
    return codec.name


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, bool]:
    """Octets in a charset -> (text, isEncodingProblem); unknown charsets try UTF-8."""
    name = mail_codec(charset)
    try:
        text, problem = data.decode(name or "utf-8", errors="strict"), name is None
    except ValueError:  # UnicodeError and its kin: keep what decodes, mark the rest
        text, problem = data.decode(name or "utf-8", errors="replace"), True
    return _SURROGATE.sub("\ufffd", text), problem


def decode_encoded_words(text: str) -> str:
    """RFC 2047: decode well-placed encoded words; adjacent ones join without space."""
    pieces, last_end, previous_was_word = [], 0, False
    for match in _ENCODED_WORD.finditer(text):
        before = text[last_end:match.start()]
        after = text[match.end():match.end() + 1]
        if ((match.start() and not text[match.start() - 1].isspace())
                or (after and not after.isspace())):
            continue  # RFC 2047 §5, RFC 8621 §4.1.2.2: misplaced syntax is not decoded
        decoded = _decode_word(*match.groups())
        if decoded is None:
            continue
        if not (previous_was_word and not before.strip()):
            pieces.append(before)
        pieces.append(decoded)
        last_end, previous_was_word = match.end(), True
    pieces.append(text[last_end:])
    return "".join(pieces)


def _decode_word(charset: str, encoding: str, payload: str) -> str | None:
    try:
        if mail_codec(charset) is None:  # RFC 8621 §4.1.2.2: only a known character set
            return None
        if encoding in "Bb":
            data = base64.b64decode(payload + "=" * (-len(payload) % 4))
        else:
            data = _Q_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]),
                          payload.replace("_", " ").encode("ascii", errors="replace"))
    except (ValueError, LookupError):
        return None
    text, _ = decode_bytes(data, charset)
    return "".join(ch for ch in text if ch == "\t" or unicodedata.category(ch) != "Cc")


# --- 8.1 Header field parsed forms (RFC 8621 §4.1.2) ---------------------------

def header_as_text(raw: str) -> str:
    """RFC 8621 §4.1.2.2: unfolded, leading spaces removed, RFC 2047 decoded, NFC."""
    return unicodedata.normalize("NFC", decode_encoded_words(unfold(raw).lstrip(" ").rstrip("\r\n")))


_ADDRESS_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|\((?:[^()\\]|\\.)*\)?|<[^>]*>?|[,:;@]|[^\s",:;@<(]+')


def _address_tokens(value: str) -> list[str]:
    return _ADDRESS_TOKEN.findall(unfold(value))


def _phrase(words: list[str]) -> str | None:
    """A display-name from atoms and quoted strings (RFC 8621 §4.1.2.3 "name")."""
    parts = []
    for word in words:
        if word.startswith('"'):
            parts.append(_QUOTED_PAIR.sub(r"\1", word[1:-1] if word.endswith('"') else word[1:]))
        else:
            parts.append(word)
    text = decode_encoded_words(" ".join(parts))
    text = " ".join(text.split())
    return unicodedata.normalize("NFC", text) if text else None


def header_as_grouped_addresses(raw: str) -> list[dict]:
    """RFC 8621 §4.1.2.4: address-list with groups; best effort on invalid input."""
    groups: list[dict] = [{"name": None, "addresses": []}]
    words: list[str] = []
    state = {"angle": None, "comment": None, "in_group": False}

    def flush() -> None:
        mailbox = _mailbox(words, state["angle"], state["comment"])
        if mailbox:
            groups[-1]["addresses"].append(mailbox)
        words.clear()
        state["angle"] = state["comment"] = None
    for token in _address_tokens(raw):
        if token == ":" and not state["in_group"] and state["angle"] is None:
            groups.append({"name": _phrase(words), "addresses": []})
            words.clear()
            state["in_group"] = True
        elif token == ";" and state["in_group"]:
            flush()
            groups.append({"name": None, "addresses": []})
            state["in_group"] = False
        elif token == ",":
            flush()
        elif token.startswith("<"):
            state["angle"] = token[1:-1] if token.endswith(">") else token[1:]
        elif token.startswith("("):
            state["comment"] = token[1:-1] if token.endswith(")") else token[1:]
        else:
            words.append(token)
    flush()
    return _merge_ungrouped(groups)


def _merge_ungrouped(groups: list[dict]) -> list[dict]:
    """Consecutive ungrouped mailboxes share one group object; empty ungrouped go."""
    merged: list[dict] = []
    for group in groups:
        if group["name"] is None and not group["addresses"]:
            continue
        if group["name"] is None and merged and merged[-1]["name"] is None:
            merged[-1]["addresses"].extend(group["addresses"])
        else:
            merged.append(group)
    return merged


def _mailbox(words: list[str], angle: str | None, comment: str | None) -> dict | None:
    if angle is not None:
        return {"name": _phrase(words) or _phrase([comment] if comment else []),
                "email": angle.strip()}
    if not words:
        return None
    return {"name": _phrase([comment]) if comment else None, "email": "".join(words)}


def header_as_addresses(raw: str) -> list[dict]:
    """RFC 8621 §4.1.2.3: every mailbox of the address-list, groups flattened."""
    return [address for group in header_as_grouped_addresses(raw)
            for address in group["addresses"]]


def header_as_message_ids(raw: str) -> list[str] | None:
    """RFC 8621 §4.1.2.5: msg-ids without CFWS and angle brackets; null if unparseable."""
    value = _COMMENT.sub(" ", unfold(raw))
    ids = _MESSAGE_ID.findall(value)
    leftover = _MESSAGE_ID.sub("", value).replace(",", " ").strip()
    return ids if ids and not leftover else None


def header_as_date(raw: str) -> str | None:
    """RFC 8621 §4.1.2.6: an RFC 5322 date-time as a Date, or null."""
    try:
        moment = email.utils.parsedate_to_datetime(unfold(raw).strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    year_digits = re.search(r"\b([0-9]{4})\b", raw)
    if moment is None or not 1900 <= moment.year <= 9999 or (
            year_digits and int(year_digits.group(1)) != moment.year):
        return None  # RFC 5322 §3.3 wants a 4-digit year; 0999 or 0001 are not dates
    if moment.tzinfo is None:  # "-0000": no known offset; treat as UTC
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    offset = moment.utcoffset() or datetime.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    if minutes == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    sign = "+" if minutes > 0 else "-"
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def header_as_urls(raw: str) -> list[str] | None:
    """RFC 8621 §4.1.2.7 (RFC 2369): the <URL> items, or null."""
    value = _COMMENT.sub(" ", unfold(raw))
    urls = ["".join(url.split()) for url in _ANGLED.findall(value)]
    return urls or None


HEADER_FORMS = {  # RFC 8621 §4.1.2: form name -> parser of a raw value
    "asRaw": lambda raw: raw,
    "asText": header_as_text,
    "asAddresses": header_as_addresses,
    "asGroupedAddresses": header_as_grouped_addresses,
    "asMessageIds": header_as_message_ids,
    "asDate": header_as_date,
    "asURLs": header_as_urls,
}
_ADDRESS_HEADERS = {"from", "sender", "reply-to", "to", "cc", "bcc", "resent-from",
                    "resent-sender", "resent-reply-to", "resent-to", "resent-cc", "resent-bcc"}
# RFC 8621 §4.1.2: which known (RFC 5322 / RFC 2369) fields allow which form.
HEADER_FORM_FIELDS = {
    "asText": {"subject", "comments", "keywords", "list-id"},
    "asAddresses": _ADDRESS_HEADERS,
    "asGroupedAddresses": _ADDRESS_HEADERS,
    "asMessageIds": {"message-id", "in-reply-to", "references", "resent-message-id"},
    "asDate": {"date", "resent-date"},
    "asURLs": {"list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner",
               "list-archive"},
}
KNOWN_HEADERS = (set().union(*HEADER_FORM_FIELDS.values()) | {
    "return-path", "received", "resent-date", "keywords"}) - {"list-id"}  # List-Id: RFC 2919


def header_form_allowed(name: str, form: str) -> bool:
    """RFC 8621 §4.1.2: forms outside their field list are refused for known fields."""
    name = name.lower()
    return form == "asRaw" or name in HEADER_FORM_FIELDS[form] or name not in KNOWN_HEADERS


# --- 8.2 Content-Type and friends (RFC 2045, RFC 2231) --------------------------

def parse_parameters(raw: str) -> tuple[str, dict[str, str]]:
    """'text/plain; charset="utf-8"' -> ('text/plain', {'charset': 'utf-8'}), with RFC 2231
    continuations and charset'lang'percent-encoding decoded."""
    value = _COMMENT.sub("", unfold(raw))
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    pieces: dict[str, dict[int, tuple[str, bool]]] = {}
    for piece in _split_parameters(rest):
        key, equals, text = piece.partition("=")
        key, text = key.strip().lower(), text.strip()
        if not equals or not key or any(ch.isspace() for ch in key):
            continue
        quoted = text.startswith('"')
        text = _QUOTED_PAIR.sub(r"\1", text[1:-1]) if quoted and len(text) > 1 else text
        continued = _CONTINUATION.fullmatch(key)
        if continued:
            pieces.setdefault(continued.group(1), {})[int(continued.group(2))] = (
                text, bool(continued.group(3)))
        elif key.endswith("*"):
            params[key[:-1]] = _decode_2231(text, True)  # RFC 2231 §4: charset'lang'value
        else:
            params.setdefault(key, text)
    for key, numbered in pieces.items():
        params[key] = _join_2231(sorted(numbered.items()))
    return "".join(head.split()).lower(), params


def _split_parameters(text: str) -> list[str]:
    """Split on ';' outside quoted strings, in one pass (a regex here went quadratic)."""
    pieces, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            pieces.append("".join(current))
            current = []
            continue
        current.append(char)
    return pieces + ["".join(current)]


def _join_2231(segments: list[tuple[int, tuple[str, bool]]]) -> str:
    """RFC 2231 §3-4: segments joined as octets, then decoded in the first's charset."""
    charset, octets = "utf-8", b""
    for index, (text, encoded) in segments:
        if encoded and index == 0 and text.count("'") >= 2:
            charset, _, text = text.split("'", 2)[0], "", text.split("'", 2)[2]
        octets += (urllib.parse.unquote_to_bytes(text) if encoded
                   else text.encode("utf-8", errors="replace"))
    return decode_bytes(octets, charset or "utf-8")[0]


def _decode_2231(text: str, encoded: bool) -> str:
    return _join_2231([(0, (text, encoded))])


def part_content_type(part_headers: list, default: str) -> tuple[str, dict]:
    raw = next((v for n, v in reversed(part_headers) if n.lower() == "content-type"), None)
    if raw is None:
        return default, {}
    media_type, params = parse_parameters(raw)
    if not _TYPE_SUBTYPE.fullmatch(media_type):
        return "text/plain", {}  # RFC 2045 §5.2: an invalid type defaults to text/plain
    return media_type, params


# --- 8.3 The body part tree --------------------------------------------------

def parse_mime(raw: bytes) -> MimePart:
    """The whole message as a MimePart tree, part ids numbered depth first."""
    counter = [0]
    return _parse_entity(raw, 0, len(raw), "text/plain", counter, 0)


def _parse_entity(raw: bytes, start: int, end: int, default_type: str, counter: list,
                  depth: int) -> MimePart:
    headers, body_start = split_header_block(raw, start, end)
    media_type, params = part_content_type(headers, default_type)
    part = MimePart(headers, media_type, params, body_start, end)
    boundary = params.get("boundary")
    if media_type.startswith("multipart/") and boundary and depth < MAX_MIME_DEPTH:
        spans = _multipart_spans(raw, body_start, end, boundary.encode("utf-8", "replace"))
        if spans:
            child_default = "message/rfc822" if media_type == "multipart/digest" else "text/plain"
            part.sub_parts = [_parse_entity(raw, s, e, child_default, counter, depth + 1)
                              for s, e in spans]
            return part
    if media_type.startswith("multipart/"):
        part.type, part.params = "text/plain", {}  # broken multipart: show it as text
    counter[0] += 1
    part.part_id = str(counter[0])
    return part


def _multipart_spans(raw: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """The (start, end) of each body part between boundary delimiter lines (RFC 2046 §5.1.1)."""
    delimiter = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?=\r?\n|$)",
                           re.M)
    spans, part_start = [], None
    for match in delimiter.finditer(raw, start, end):
        if part_start is not None:
            spans.append((part_start, match.start()))
        if match.group(1):
            return spans
        line_end = _LINE_END.search(raw, match.end(), end)
        part_start = line_end.end() if line_end else end
    if part_start is not None and part_start < end:
        spans.append((part_start, end))  # no closing delimiter: the rest is the last part
    return spans


def transfer_decode(raw: bytes, part: MimePart) -> tuple[bytes, bool]:
    """A part's content after Content-Transfer-Encoding; (octets, unknown encoding?).
    Malformed base64 or quoted-printable is decoded as far as it goes: RFC 8621 §4.1.4
    counts only charset trouble and unknown encodings as isEncodingProblem."""
    encoding = (part.header("content-transfer-encoding") or "").strip().lower()
    body = raw[part.start:part.end]
    if encoding == "base64":  # junk ignored, padding restored, a dangling sextet dropped
        cleaned = _NOT_BASE64.sub(b"", body.split(b"=", 1)[0])
        cleaned = cleaned[:len(cleaned) - 1] if len(cleaned) % 4 == 1 else cleaned
        return base64.b64decode(cleaned + b"=" * (-len(cleaned) % 4)), False
    if encoding == "quoted-printable":
        return quopri.decodestring(body), False
    return body, encoding not in ("", "7bit", "8bit", "binary")


# --- 8.4 EmailBodyPart, textBody/htmlBody/attachments (RFC 8621 §4.1.4) --------

def _is_inline_media(media_type: str) -> bool:
    return media_type.startswith(("image/", "audio/", "video/"))


def body_lists(root: dict) -> tuple[list, list, list]:
    """The RFC 8621 §4.1.4 suggested algorithm, over stored part dicts."""
    text_body: list = []
    html_body: list = []
    attachments: list = []
    _walk_structure([root], "mixed", False, html_body, text_body, attachments)
    return text_body, html_body, attachments


def _walk_structure(parts: list, multipart_type: str, in_alternative: bool,
                    html_body: list | None, text_body: list | None, attachments: list) -> None:
    text_length = len(text_body) if text_body is not None else -1
    html_length = len(html_body) if html_body is not None else -1
    for index, part in enumerate(parts):
        media_type = part["type"]
        is_inline = (part["disposition"] != "attachment"
                     and (media_type in ("text/plain", "text/html") or _is_inline_media(media_type))
                     and (index == 0 or (multipart_type != "related"
                                         and (_is_inline_media(media_type) or not part["name"]))))
        if media_type.startswith("multipart/"):
            sub_type = media_type.split("/", 1)[1]
            _walk_structure(part["subParts"], sub_type, in_alternative or sub_type == "alternative",
                            html_body, text_body, attachments)
        elif is_inline:
            if multipart_type == "alternative":
                target = {"text/plain": text_body, "text/html": html_body}.get(media_type, attachments)
                if target is not None:
                    target.append(part)
                continue
            if in_alternative:
                if media_type == "text/plain":
                    html_body = None
                if media_type == "text/html":
                    text_body = None
            for body in (text_body, html_body):
                if body is not None:
                    body.append(part)
            if (text_body is None or html_body is None) and _is_inline_media(media_type):
                attachments.append(part)
        else:
            attachments.append(part)
    if multipart_type == "alternative" and text_body is not None and html_body is not None:
        if text_length == len(text_body) and html_length != len(html_body):
            text_body.extend(html_body[html_length:])  # found an HTML part only
        if html_length == len(html_body) and text_length != len(text_body):
            html_body.extend(text_body[text_length:])  # found a plain-text part only


def describe_part(raw: bytes, part: MimePart, blob_ids: dict[str, tuple[str, int]]) -> dict:
    """A stored EmailBodyPart (RFC 8621 §4.1.4) plus where its octets lie."""
    headers = part.headers
    has_type = any(n.lower() == "content-type" for n, _ in headers)
    disposition_raw = part.header("content-disposition")
    disposition, disposition_params = (parse_parameters(disposition_raw) if disposition_raw
                                       else (None, {}))
    name = disposition_params.get("filename") or part.params.get("name")
    if name and "=?" in name:
        name = decode_encoded_words(name)
    charset = part.params.get("charset")
    if charset is None and part.type.startswith("text/"):
        charset = "us-ascii"
    elif not part.type.startswith("text/") and has_type:
        charset = part.params.get("charset")
    cid = part.header("content-id")
    language = part.header("content-language")
    location = part.header("content-location")
    described = {
        "partId": part.part_id, "headers": [[n, v] for n, v in headers],  # stored as pairs
        "name": name, "type": part.type, "charset": charset if part.part_id else None,
        "disposition": disposition or None,
        "cid": _ANGLE_ENDS.sub("", unfold(cid)).strip() if cid else None,
        "language": [t.strip() for t in unfold(language).split(",") if t.strip()] if language
        else None,
        "location": unfold(location).strip() if location else None,
        "subParts": [describe_part(raw, sub, blob_ids) for sub in part.sub_parts]
        if part.type.startswith("multipart/") else None,
        "start": part.start, "end": part.end,
    }
    if part.part_id:
        described["blobId"], described["size"] = blob_ids[part.part_id]
    else:
        described["blobId"] = None
        described["size"] = sum(p["size"] for p in described["subParts"])
    return described


def _leaves(part: MimePart) -> Iterator[MimePart]:
    if part.part_id:
        yield part
    for sub in part.sub_parts:
        yield from _leaves(sub)


def part_text(raw: bytes, part: dict) -> tuple[str, bool]:
    """A text part's value: transfer- and charset-decoded, CRLF as LF (§4.1.4 bodyValues)."""
    headers = [(name, value) for name, value in part["headers"]]
    octets, unknown_encoding = transfer_decode(raw, MimePart(headers, part["type"], {},
                                                             part["start"], part["end"]))
    text, problem = decode_bytes(octets, part["charset"])
    return text.replace("\r\n", "\n"), problem or unknown_encoding


HIDDEN_HTML = {"script", "style", "head", "title"}
BREAKING_HTML = {"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6"}
_TAG_NAME = re.compile(r"/?([A-Za-z][A-Za-z0-9]*)")
_ALT = re.compile(r"""\balt\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)


def html_to_text(html_source: str) -> str:
    """Visible text of HTML, for previews, search and snippets: no script, style or head,
    blocks break lines, img alt text kept (RFC 8621 §4.4.1). One linear pass: every
    find() moves forward (html.parser went quadratic on unclosed tags)."""
    out, position, hidden, size = [], 0, 0, len(html_source)
    while position < size:
        start = html_source.find("<", position)
        if start < 0:
            start = size
        if not hidden:
            out.append(html_source[position:start])
        if start == size:
            break
        if html_source.startswith("<!--", start):
            end = html_source.find("-->", start + 4)
            position = size if end < 0 else end + 3
            continue
        end = html_source.find(">", start + 1)
        if end < 0:
            break  # an unclosed tag hides the rest
        tag = html_source[start + 1:end]
        name = _TAG_NAME.match(tag)
        name = name.group(1).lower() if name else ""
        if name in HIDDEN_HTML:
            hidden = max(0, hidden + (-1 if tag.startswith("/") else 1))
        elif name in BREAKING_HTML and not hidden:
            out.append("\n")
        elif name == "img" and not hidden and (alt := _ALT.search(tag)):
            out.append(" " + next(g for g in alt.groups() if g is not None) + " ")
        position = end + 1
    return html.unescape("".join(out))


def make_preview(text: str) -> str:
    """RFC 8621 §4.1.4 preview: quoted lines skipped, white space collapsed, ≤ 256."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith(">")]
    collapsed = " ".join(" ".join(lines).split())
    return collapsed[:PREVIEW_LENGTH]


@dataclasses.dataclass(slots=True)
class ParsedEmail:
    """What arrival parsing keeps of a message: enough for Email/get and the indexes."""
    headers: list[tuple[str, str]]
    structure: dict
    text_body: list[str]
    html_body: list[str]
    attachments: list[str]
    preview: str
    has_attachment: bool
    body_text: str                      # decoded text of the text body, for search
    part_blobs: dict[str, bytes]        # blobId -> decoded content of each leaf part
    subject: str | None = None          # header:Subject:asText, once someone needs it

    def header(self, name: str) -> str | None:
        return last_field(self.headers, name)


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse a message once, on arrival (RFC 8621 §4.1)."""
    root = parse_mime(raw)
    blob_ids, part_blobs = {}, {}
    for leaf in _leaves(root):
        octets, _ = transfer_decode(raw, leaf)
        blob_id = "G" + hashlib.sha256(octets).hexdigest()
        blob_ids[leaf.part_id] = (blob_id, len(octets))
        part_blobs[blob_id] = octets
    structure = describe_part(raw, root, blob_ids)
    text_body, html_body, attachments = body_lists(structure)
    body_text = _body_text(raw, text_body)
    has_attachment = any(p["disposition"] != "inline" for p in attachments)
    return ParsedEmail(root.headers, structure, [p["partId"] for p in text_body],
                       [p["partId"] for p in html_body], [p["partId"] for p in attachments],
                       make_preview(body_text), has_attachment, body_text, part_blobs)


def _body_text(raw: bytes, parts: list[dict]) -> str:
    texts = []
    for part in parts:
        if part["type"] in ("text/plain", "text/html"):
            text, _ = part_text(raw, part)
            texts.append(html_to_text(text) if part["type"] == "text/html" else text)
    return "\n".join(texts)

# =============================================================================
# 9. Mail data types
# =============================================================================
# RFC 8621 in its own order. 9.1 Mailbox: a tree (parentId, no loops, unique
# sibling names), unique roles, per-mailbox counts and rights, and Mailbox/query's
# sortAsTree/filterAsTree. Counts are zero until Email exists (9.3 fills them in
# through Mailbox.counts).

capability(URN_MAIL, lambda core: {},  # RFC 8621 §1.3.1: an empty object in the session
           lambda core, account: {"maxMailboxesPerEmail": core.limits["maxMailboxesPerEmail"],
                                  **MAIL_ACCOUNT_LIMITS})

# --- 9.1 Mailbox (RFC 8621 §2) -------------------------------------------------

ON_MAILBOX_DESTROY: list[Callable] = []  # fn(context, mailbox_id): Email (9.3) empties it


def emails_referencing(call: MethodCall, account: Account, blob_id: str) -> list[dict]:
    """The Email records whose message is, or contains, the blob (RFC 9404 §4.3)."""
    email_ids = call.core.datatypes["Email"].blob_lookup(call, account, blob_id)
    return list(call.store.get_objects(account.id, "Email", email_ids).values())

# RFC 8621 §2: the IANA "IMAP Mailbox Name Attributes" usable as roles, lowercased.
MAILBOX_ROLES = ("all", "archive", "drafts", "flagged", "important", "inbox", "junk",
                 "memos", "scheduled", "sent", "snoozed", "subscribed", "trash")
MAILBOX_RIGHTS = ("mayReadItems", "mayAddItems", "mayRemoveItems", "maySetSeen",
                  "maySetKeywords", "mayCreateChild", "mayRename", "mayDelete", "maySubmit")
MAILBOX_COUNTS = ("totalEmails", "unreadEmails", "totalThreads", "unreadThreads")
SortOrder = JmapType("UnsignedInt < 2^31", lambda v: _is_int(v) and 0 <= v < 2**31)


@datatype
class Mailbox(DataType):
    """RFC 8621 §2: a named, nestable set of Emails."""

    name = "Mailbox"
    capability = URN_MAIL
    id_prefix = "M"
    properties = {
        "id": Prop(Id, server_set=True, immutable=True),
        "name": Prop(String),
        "parentId": Prop(Id, nullable=True, default=None, reference="Mailbox"),
        "role": Prop(one_of(*MAILBOX_ROLES), nullable=True, default=None),
        "sortOrder": Prop(SortOrder, default=0),
        **{count: Prop(UnsignedInt, server_set=True, computed=True) for count in MAILBOX_COUNTS},
        "myRights": Prop(record_of(dict.fromkeys(MAILBOX_RIGHTS, Boolean)),
                         server_set=True, computed=True),
        "isSubscribed": Prop(Boolean, default=True),  # RFC 8621 §2: true for one's own
    }
    filters = {
        "parentId": Filter("equals", "parentId", Id, nullable=True),
        "name": Filter("contains", "name"),
        "role": Filter("equals", "role", String, nullable=True),
        "hasAnyRole": Filter("present", "role", Boolean),
        "isSubscribed": Filter("equals", "isSubscribed", Boolean),
    }
    sorts = {"sortOrder": Sort("sortOrder"), "name": Sort("name", is_text=True)}
    count_properties = MAILBOX_COUNTS
    indexed = {"name": 2, "parentId": 20, "role": 2}
    set_arguments = {"onDestroyRemoveEmails": (Boolean, False)}
    query_arguments = {"sortAsTree": (Boolean, False), "filterAsTree": (Boolean, False)}
    references_blobs = True

    def blob_lookup(self, call: MethodCall, account: Account, blob_id: str) -> list[str]:
        """RFC 9404 §4.3: a Mailbox references what any Email in it references."""
        return sorted({mailbox_id for email in emails_referencing(call, account, blob_id)
                       for mailbox_id in email["mailboxIds"]})

    # -- the tree --

    def parents(self, store: Store, account: Account) -> dict[str, str | None]:
        return {i: m.get("parentId") for i, m in store.get_objects(account.id, self.name,
                                                                    None).items()}

    def validate(self, context: SetContext, object_id: str, record: dict,
                 existing: dict | None) -> None:
        problems = {}
        name_problem = self._name_problem(context, object_id, record)
        if name_problem:
            problems["name"] = name_problem
        tree_problem = self._tree_problem(context, object_id, record, existing)
        if tree_problem:
            problems["parentId"] = tree_problem
        if record.get("role") and (existing is None or existing.get("role") != record["role"]):
            if self._others_where(context, object_id, role=record["role"]):
                problems["role"] = f"another Mailbox has role {record['role']!r}"  # RFC 8621 §2
        if problems:
            raise SetError.invalid_properties(problems, "; ".join(problems.values()))

    def _name_problem(self, context: SetContext, object_id: str, record: dict) -> str | None:
        name, limit = record["name"], MAIL_ACCOUNT_LIMITS["maxSizeMailboxName"]
        if not name.strip():
            return "name: must not be empty"
        if any(unicodedata.category(ch) == "Cc" for ch in name):
            return "name: must not contain control characters"
        if len(name.encode()) > limit:
            return f"name: longer than maxSizeMailboxName ({limit} octets)"
        if self._others_where(context, object_id, parentId=record.get("parentId"), name=name):
            return f"name: a sibling Mailbox is already called {name!r}"  # RFC 8621 §2
        return None

    def _others_where(self, context: SetContext, object_id: str, **equal: Any) -> set[str]:
        """Other mailboxes whose properties equal the given values (null matches null)."""
        where = " AND ".join(f"{json_path_sql(prop)} IS ?" for prop in equal)
        ids = context.store.query_ids(context.account.id, self.name, where, list(equal.values()),
                                      "id")
        return set(ids) - {object_id}

    def _tree_problem(self, context: SetContext, object_id: str, record: dict,
                      existing: dict | None) -> str | None:
        depth, ancestor, seen = 1, record.get("parentId"), set()
        while ancestor is not None:
            if ancestor == object_id or ancestor in seen:  # RFC 8621 §2: MUST NOT be a loop
                return "parentId: would make the Mailbox its own ancestor"
            seen.add(ancestor)
            parent = context.store.get_objects(context.account.id, self.name, [ancestor])
            depth, ancestor = depth + 1, parent.get(ancestor, {}).get("parentId")
        moved = existing is not None and existing.get("parentId") != record.get("parentId")
        height = context.store.subtree_height(context.account.id, self.name, "parentId",
                                              object_id) if moved else 0
        limit = MAIL_ACCOUNT_LIMITS["maxMailboxDepth"]
        if limit and depth + height > limit:
            return f"parentId: deeper than maxMailboxDepth ({limit})"
        return None

    def destroy_order(self, context: SetContext, ids: list[str]) -> list[str]:
        """Children before parents, so one call can destroy a whole subtree."""
        if len(ids) < 2:
            return ids

        def depth(object_id: str) -> int:
            steps, seen = 0, set()
            while object_id is not None and object_id not in seen and steps < 1000:
                seen.add(object_id)
                found = context.store.get_objects(context.account.id, self.name, [object_id])
                object_id, steps = found.get(object_id, {}).get("parentId"), steps + 1
            return steps
        return sorted(ids, key=depth, reverse=True)

    def before_destroy(self, context: SetContext, object_id: str, record: dict) -> None:
        children = self._others_where(context, object_id, parentId=object_id)
        if children:
            raise SetError("mailboxHasChild", f"{len(children)} child Mailbox(es) remain")
        emails = self.email_count(context, object_id)
        if emails and not context.extra["onDestroyRemoveEmails"]:
            raise SetError("mailboxHasEmail", f"{emails} Email(s) remain; "
                           "pass onDestroyRemoveEmails to remove them")
        for remove_emails in ON_MAILBOX_DESTROY if emails else ():
            remove_emails(context, object_id)

    def email_count(self, context: SetContext, object_id: str) -> int:
        return context.store.db.execute(
            "SELECT count(*) FROM email_mailbox WHERE account_id = ? AND mailbox_id = ?",
            (context.account.id, object_id)).fetchone()[0]

    # -- computed properties --

    def compute(self, call: MethodCall, account: Account, records: dict[str, dict],
                with_counts: bool = True) -> None:
        counts = self.counts(call, account, list(records)) if with_counts else {}
        # whoever may use the account may do what its isReadOnly allows (RFC 9670 refines)
        rights = {right: right == "mayReadItems" or not account.is_read_only
                  for right in MAILBOX_RIGHTS}
        for object_id, record in records.items():
            record.update(counts.get(object_id, {}))
            record["myRights"] = dict(rights)

    def render(self, call: MethodCall, account: Account, records: dict[str, dict],
               wanted: list[str], extra: dict) -> dict[str, dict]:
        """Counts cost a query over the Email index: only when asked for."""
        self.compute(call, account, records, with_counts=bool(set(wanted) & set(MAILBOX_COUNTS)))
        return {object_id: present(self, object_id, record, wanted)
                for object_id, record in records.items()}

    def counts(self, call: MethodCall, account: Account, ids: list[str]) -> dict[str, dict]:
        """RFC 8621 §2 counts per mailbox, from the Email index (section 9.3): an Email is
        unread without $seen and $draft; a Thread is unread in a Mailbox when one of its
        unread Emails is there. Remembered per mailbox modseq: every write that can
        change a count gives the mailbox a new one."""
        cache = call.core.caches.setdefault("mailbox_counts", {})
        modseqs = call.store.modseqs(account.id, self.name, ids)
        stale = [i for i in ids if cache.get((account.id, i), (None,))[0] != modseqs.get(i)]
        for start in range(0, len(stale), 500):
            chunk = stale[start:start + 500]
            found = dict.fromkeys(chunk, (0, 0, 0, 0))
            found.update((row[0], row[1:]) for row in call.store.db.execute(
                f"SELECT mailbox_id, count(*), sum(unread), count(DISTINCT thread_id), "
                f"count(DISTINCT CASE WHEN unread THEN thread_id END) FROM email_mailbox "
                f"WHERE account_id = ? AND mailbox_id IN ({','.join('?' * len(chunk))}) "
                f"GROUP BY mailbox_id", (account.id, *chunk)))
            for mailbox_id, values in found.items():
                cache[(account.id, mailbox_id)] = (modseqs.get(mailbox_id),
                                                   dict(zip(MAILBOX_COUNTS, values)))
        return {i: dict(cache[(account.id, i)][1]) for i in ids}

    # -- Mailbox/query's tree arguments (RFC 8621 §2.3) --

    def can_window(self, query: CompiledQuery) -> bool:
        return not (query.extra["sortAsTree"] or query.extra["filterAsTree"])

    def query(self, call: MethodCall, account: Account, query: CompiledQuery,
              window: tuple[int, int] | None) -> list[str]:
        if self.can_window(query):
            return super().query(call, account, query, window)
        ordered = call.store.query_ids(account.id, self.name, "1", query.order_params,
                                       query.order_by)
        matching = set(call.store.query_ids(account.id, self.name, query.where, query.params,
                                            "id"))
        parents = self.parents(call.store, account)
        if query.extra["filterAsTree"]:
            matching = {i for i in matching if self._ancestors(parents, i) <= matching}
        if query.extra["sortAsTree"]:
            ordered = tree_order(ordered, parents)
        return [i for i in ordered if i in matching]

    def query_changed(self, call: MethodCall, account: Account, changed: set[str],
                      query: CompiledQuery, since: int) -> set[str]:
        """In a tree query a change moves (or filters) the whole subtree below it."""
        if self.can_window(query):
            return changed
        parents = self.parents(call.store, account)
        return changed | {i for i in parents if self._ancestors(parents, i) & changed}

    def _ancestors(self, parents: dict, object_id: str) -> set[str]:
        found, parent = set(), parents.get(object_id)
        while parent is not None and parent not in found:
            found.add(parent)
            parent = parents.get(parent)
        return found


def tree_order(ordered: list[str], parents: dict[str, str | None]) -> list[str]:
    """Depth-first over the forest, siblings kept in their sorted order."""
    children: dict[str | None, list[str]] = {}
    for object_id in ordered:
        parent = parents.get(object_id)
        children.setdefault(parent if parent in parents else None, []).append(object_id)
    result: list[str] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        object_id = stack.pop()
        result.append(object_id)
        stack.extend(reversed(children.get(object_id, [])))
    return result


# --- 9.2 Thread (RFC 8621 §3) --------------------------------------------------

@datatype
class Thread(DataType):
    """RFC 8621 §3: the Emails of one conversation, oldest first. Server-maintained:
    Email's writes keep it in step (see thread_sync)."""

    name = "Thread"
    capability = URN_MAIL
    id_prefix = "T"
    methods = ("get", "changes")
    properties = {
        "id": Prop(Id, server_set=True, immutable=True),
        "emailIds": Prop(list_of(Id), server_set=True),
    }
    references_blobs = True

    def blob_lookup(self, call: MethodCall, account: Account, blob_id: str) -> list[str]:
        """RFC 9404 §4.3: a Thread references what any of its Emails references."""
        return sorted({email["threadId"] for email in emails_referencing(call, account, blob_id)})


_SUBJECT_REFWD = re.compile(r"^(?:\[[^\[\]]*\]\s*)*(?:re|fwd?|aw|wg|sv|vs|antw)\s*"
                            r"(?:\[[^\[\]]*\])?\s*:\s*", re.I)
_SUBJECT_BLOB = re.compile(r"^\[[^\[\]]*\]\s*")


def base_subject(subject: str | None) -> str:
    """RFC 5256 §2.1 base subject (RFC 8621 §3 threading, §4.4.2 "subject" sort):
    trailing "(fwd)", leading "Re:"/"Fwd:" and "[list]" tags, and "[Fwd: ...]" removed."""
    text = " ".join((subject or "")[:1000].split())  # longer is abuse; keeps this linear
    while True:
        before = text
        text = _FWD_TRAILER.sub("", text).strip()
        while True:
            stripped = _SUBJECT_REFWD.sub("", text, count=1)
            blob = _SUBJECT_BLOB.sub("", stripped, count=1)
            stripped = blob if blob else stripped  # a tag alone is the subject itself
            if stripped == text:
                break
            text = stripped
        wrapped = _FWD_WRAPPED.fullmatch(text)
        text = wrapped.group(1).strip() if wrapped else text
        if text == before:
            return text


def subject_key(subject: str | None) -> str:
    """RFC 8621 §3: the base subject, ignoring white space and case, for threading."""
    return "".join(base_subject(subject).split()).casefold()


def thread_for(store: Store, core: JmapCore, account_id: str, message_ids: list[str],
               subject: str) -> str:
    """RFC 8621 §3 suggestion: a shared message id AND the same base subject."""
    key = subject_key(subject)
    found = None
    for start in range(0, len(message_ids), 500):
        chunk = message_ids[start:start + 500]
        row = store.db.execute(
            f"SELECT thread_id FROM thread_key WHERE account_id = ? AND subject_key = ? "
            f"AND message_id IN ({','.join('?' * len(chunk))}) LIMIT 1",
            (account_id, key, *chunk)).fetchone()
        if row:
            found = row[0]
            break
    thread_id = found or core.new_id("T")
    store.db.executemany("INSERT OR IGNORE INTO thread_key (account_id, message_id, subject_key, "
                         "thread_id) VALUES (?, ?, ?, ?)",
                         [(account_id, m, key, thread_id) for m in message_ids])
    return thread_id


def thread_sync(context: SetContext, thread_id: str) -> None:
    """Rewrite a Thread's emailIds (receivedAt order, ids breaking ties); drop it when empty."""
    store, account_id = context.store, context.account.id
    rows = store.db.execute(  # sorted here: ORDER BY would tempt sqlite off this index
        "SELECT received_at, id FROM email WHERE account_id = ? AND thread_id = ?",
        (account_id, thread_id)).fetchall()
    email_ids = [email_id for _, email_id in sorted(tuple(row) for row in rows)]
    existing = store.get_objects(account_id, "Thread", [thread_id]).get(thread_id)
    if existing is None and email_ids:
        store.insert_object(account_id, "Thread", thread_id, {"emailIds": email_ids}, context.now)
    elif existing is not None and not email_ids:
        store.destroy_object(account_id, "Thread", thread_id, context.now)
        store.db.execute("DELETE FROM thread_key WHERE account_id = ? AND thread_id = ?",
                         (account_id, thread_id))
    elif existing is not None and existing["emailIds"] != email_ids:
        store.update_object(account_id, "Thread", thread_id, {"emailIds": email_ids},
                            context.now)


# --- 9.3 Email (RFC 8621 §4) ---------------------------------------------------
# 9.3.1 properties and storage. An Email's mutable properties (mailboxIds,
# keywords) live in the engine's object row; its parsed message lives in the
# email table, with memberships, keywords and FTS5 text indexed beside it.

_KEYWORD_FORBIDDEN = set('(){]%*"\\')
Keyword = JmapType("keyword", lambda v: isinstance(v, str) and 1 <= len(v) <= 255 and all(
    "\x21" <= ch <= "\x7e" and ch not in _KEYWORD_FORBIDDEN for ch in v))
TrueValue = JmapType("true", lambda v: v is True)
EMAIL_BODY_PROPERTIES = ("partId", "blobId", "size", "headers", "name", "type", "charset",
                         "disposition", "cid", "language", "location", "subParts")
DEFAULT_BODY_PROPERTIES = ("partId", "blobId", "size", "name", "type", "charset",
                           "disposition", "cid", "language", "location")  # RFC 8621 §4.2
DEFAULT_EMAIL_PROPERTIES = (  # RFC 8621 §4.2: the default, not "all"
    "id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt", "messageId",
    "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo", "subject",
    "sentAt", "hasAttachment", "preview", "bodyValues", "textBody", "htmlBody", "attachments")
CONVENIENCE_HEADERS = {  # RFC 8621 §4.1.3: property -> (header field, parsed form)
    "messageId": ("message-id", "asMessageIds"), "inReplyTo": ("in-reply-to", "asMessageIds"),
    "references": ("references", "asMessageIds"), "sender": ("sender", "asAddresses"),
    "from": ("from", "asAddresses"), "to": ("to", "asAddresses"), "cc": ("cc", "asAddresses"),
    "bcc": ("bcc", "asAddresses"), "replyTo": ("reply-to", "asAddresses"),
    "subject": ("subject", "asText"), "sentAt": ("date", "asDate"),
}
_HEADER_PROPERTY = re.compile(r"header:([\x21-\x39\x3b-\x7e]+)(?::(as[A-Za-z]+))?(:all)?")


def parse_header_property(name: str) -> tuple[str, str, bool] | None:
    """'header:List-Post:asURLs:all' -> ('List-Post', 'asURLs', True), or None if invalid."""
    match = _HEADER_PROPERTY.fullmatch(name)
    if not match or (match.group(2) or "asRaw") not in HEADER_FORMS:
        return None
    form = match.group(2) or "asRaw"
    if not header_form_allowed(match.group(1), form):
        return None
    return match.group(1), form, bool(match.group(3))


def header_value(headers: list, name: str, form: str, all_: bool) -> Any:
    """A header property's value from [(name, raw)] (RFC 8621 §4.1.3)."""
    parse, name = HEADER_FORMS[form], name.lower()
    raws = field_values(headers, name)
    if all_:
        return [parse(raw) for raw in raws]
    return parse(raws[-1]) if raws else None  # the last instance (RFC 8621 §4.1.3)


def _received_at_of(parsed: ParsedEmail) -> str | None:
    """RFC 8621 §4.8 default receivedAt: the most recent Received header's date."""
    received = next((v for n, v in parsed.headers if n.lower() == "received"), None)
    if received and ";" in received:
        date = header_as_date(received.rsplit(";", 1)[1])
        try:
            return utc_date(_utc_seconds(date)) if date else None
        except (ValueError, OverflowError, OSError):
            return None
    return None


def _utc_seconds(value: str) -> float:
    """A Date/UTCDate as POSIX seconds, fractions kept (Python 3.10's fromisoformat
    reads neither "Z" nor every fraction length, so the parts are taken apart here)."""
    match = _DATE_PARTS.fullmatch(value)
    if match is None:
        raise ValueError(f"not a date-time: {value!r}")
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    moment = datetime.datetime.fromisoformat(match.group(1) + zone)
    return moment.timestamp() + float(match.group(2) or 0)


def _address_text(addresses: list[dict]) -> str:
    return " ".join(filter(None, (f"{a['name'] or ''} {a['email']}".strip() for a in addresses)))


def _address_sort_key(addresses: list[dict]) -> str:
    first = addresses[0] if addresses else {"name": None, "email": ""}
    return _unicode_casemap_key(first["name"] or first["email"] or "")


def store_email_row(context: SetContext, object_id: str, record: dict, parsed: ParsedEmail) -> None:
    """Insert the parsed message, its text index and its blob references."""
    store, account_id = context.store, context.account.id
    subject, sent_at = parsed.subject, header_value(parsed.headers, "date", "asDate", False)
    addresses = {n: header_value(parsed.headers, n, "asAddresses", False) or []
                 for n in ("from", "to", "cc", "bcc")}
    seq = store.db.execute(  # the text row's rowid links it to the email row
        "INSERT INTO email_text (subject, sender, recipient, cc, bcc, body) VALUES (?, ?, ?, ?, ?, ?)",
        (subject or "", _address_text(addresses["from"]), _address_text(addresses["to"]),
         _address_text(addresses["cc"]), _address_text(addresses["bcc"]),
         parsed.body_text[:100_000])).lastrowid
    stored = {"structure": {**parsed.structure, "headers": None},  # kept in their own column
              "textBody": parsed.text_body, "htmlBody": parsed.html_body,
              "attachments": parsed.attachments, "preview": parsed.preview,
              "hasAttachment": parsed.has_attachment}
    store.db.execute(
        "INSERT INTO email (account_id, id, seq, blob_id, thread_id, size, received_at, sent_at, "
        "subject_key, from_key, to_key, has_attachment, headers, parsed) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (account_id, object_id, seq, record["blobId"], record["threadId"], record["size"],
         _utc_seconds(record["receivedAt"]), _utc_seconds(sent_at) if sent_at else None,
         _unicode_casemap_key(base_subject(subject)), _address_sort_key(addresses["from"]),
         _address_sort_key(addresses["to"]), int(parsed.has_attachment),
         json.dumps(parsed.headers, separators=(",", ":")),
         zlib.compress(json.dumps(stored, separators=(",", ":")).encode(), 6)))
    holder = f"Email/{object_id}"
    store.add_blob_ref(account_id, record["blobId"], holder, "message/rfc822", None)
    store.db.executemany(
        "INSERT OR IGNORE INTO blob_part (id, message_blob_id, part_id, type) VALUES (?,?,?,?)",
        [(part_blob, record["blobId"], part_id, media_type)
         for part_blob, (part_id, media_type) in _part_blobs(parsed.structure).items()])


def part_blob_content(store: Store, blob_id: str) -> bytes | None:
    """A body part's decoded octets, cut from its message (RFC 8621 §4.1.4 blobId)."""
    for message_blob_id, part_id in store.db.execute(
            "SELECT message_blob_id, part_id FROM blob_part WHERE id = ?", (blob_id,)).fetchall():
        raw = store.blob_data(message_blob_id)
        part = next((p for p in _leaves(parse_mime(raw)) if p.part_id == part_id), None) if raw else None
        if part:
            return transfer_decode(raw, part)[0]
    return None


BLOB_SOURCES.append(part_blob_content)


def _part_blobs(part: dict) -> dict[str, tuple[str, str]]:
    found = {}
    if part["blobId"]:
        found[part["blobId"]] = (part["partId"], part["type"])
    for sub in part["subParts"] or []:
        found.update(_part_blobs(sub))
    return found


def delete_email_row(context: SetContext, object_id: str) -> str | None:
    """Remove an Email's indexed rows and blob references; return its thread id."""
    store, account_id = context.store, context.account.id
    row = store.db.execute("SELECT seq, thread_id FROM email WHERE account_id = ? AND id = ?",
                           (account_id, object_id)).fetchone()
    if row is None:
        return None
    store.db.execute("DELETE FROM email_text WHERE rowid = ?", (row[0],))
    for table in ("email_mailbox", "email_keyword"):
        store.db.execute(f"DELETE FROM {table} WHERE account_id = ? AND email_id = ?",
                         (account_id, object_id))
    store.db.execute("DELETE FROM email WHERE account_id = ? AND id = ?", (account_id, object_id))
    store.db.execute("DELETE FROM blob_ref WHERE account_id = ? AND holder = ?",
                     (account_id, f"Email/{object_id}"))
    return row[1]


def sync_memberships(context: SetContext, object_id: str, record: dict | None,
                     existing: dict | None) -> set[str]:
    """Mirror mailboxIds and keywords into their index tables; return the Mailboxes
    whose counts may have changed (RFC 8621 §2 counts)."""
    store, account_id = context.store, context.account.id
    old_boxes = set((existing or {}).get("mailboxIds", {}))
    new_boxes = set((record or {}).get("mailboxIds", {}))
    old_words = set((existing or {}).get("keywords", {}))
    new_words = set((record or {}).get("keywords", {}))
    unread = int(not new_words & READ_KEYWORDS)  # RFC 8621 §2: neither $seen nor $draft
    thread_id = (record or existing)["threadId"]
    store.db.executemany("DELETE FROM email_keyword WHERE account_id = ? AND keyword = ? AND "
                         "email_id = ?", [(account_id, k, object_id) for k in old_words - new_words])
    store.db.executemany("INSERT OR IGNORE INTO email_keyword (account_id, keyword, email_id) "
                         "VALUES (?, ?, ?)", [(account_id, k, object_id) for k in new_words - old_words])
    store.db.executemany("DELETE FROM email_mailbox WHERE account_id = ? AND mailbox_id = ? AND "
                         "email_id = ?", [(account_id, m, object_id) for m in old_boxes - new_boxes])
    store.db.executemany("INSERT OR IGNORE INTO email_mailbox (account_id, mailbox_id, email_id, "
                         "thread_id, unread) VALUES (?, ?, ?, ?, ?)",
                         [(account_id, m, object_id, thread_id, unread)
                          for m in new_boxes - old_boxes])
    unread_changed = bool((old_words ^ new_words) & READ_KEYWORDS)
    if unread_changed and record is not None and existing is not None:
        store.db.execute("UPDATE email_mailbox SET unread = ? WHERE account_id = ? AND "
                         "email_id = ?", (unread, account_id, object_id))
    return (old_boxes ^ new_boxes) | ((old_boxes | new_boxes) if unread_changed else set())


# 9.3.2 query: filters and sorts as SQL over the email table (alias e).

def _membership(table: str, column: str, negate: bool = False) -> Callable:
    def build(value: Any) -> tuple[str, list]:
        sql = (f"EXISTS (SELECT 1 FROM {table} x WHERE x.account_id = e.account_id "
               f"AND x.email_id = e.id AND x.{column} = ?)")
        return (f"NOT {sql}" if negate else sql), [value.lower() if column == "keyword" else value]
    return build


def _in_mailbox_other_than(ids: list[str]) -> tuple[str, list]:
    marks = ",".join("?" * len(ids))  # sqlite reads NOT IN () as true
    return (f"EXISTS (SELECT 1 FROM email_mailbox x WHERE x.account_id = e.account_id "
            f"AND x.email_id = e.id AND x.mailbox_id NOT IN ({marks}))", list(ids))


_SOME_IN_THREAD = ("EXISTS (SELECT 1 FROM email t WHERE t.account_id = e.account_id AND "
                   "t.thread_id = e.thread_id AND EXISTS (SELECT 1 FROM email_keyword k "
                   "WHERE k.account_id = t.account_id AND k.keyword = lower(?) "
                   "AND k.email_id = t.id))")  # from the thread's few emails, not the keyword's many
_ALL_IN_THREAD = ("NOT EXISTS (SELECT 1 FROM email t WHERE t.account_id = e.account_id AND "
                  "t.thread_id = e.thread_id AND NOT EXISTS (SELECT 1 FROM email_keyword k "
                  "WHERE k.account_id = t.account_id AND k.email_id = t.id AND k.keyword = lower(?)))")
_HAS_KEYWORD = ("EXISTS (SELECT 1 FROM email_keyword k WHERE k.account_id = e.account_id "
                "AND k.email_id = e.id AND k.keyword = lower(?))")


def _compare(column: str, operator: str, convert: Callable = lambda v: v) -> Callable:
    def build(value: Any) -> tuple[str, list]:
        return f"{column} {operator} ?", [convert(value)]
    return build


def fts_query(text: str) -> str | None:
    """RFC 8621 §4.4.1 search text as an FTS5 query: quoted phrases (\\-escapes inside)
    and white-space separated tokens, all required. None when there is nothing to find."""
    terms = []
    for match in re.finditer(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'|(\S+)', text):
        phrase = match.group(1) if match.group(1) is not None else match.group(2)
        term = _QUOTED_PAIR.sub(r"\1", phrase) if phrase is not None else match.group(3)
        term = "".join(ch for ch in term if ch >= " ")  # FTS5 strings cannot hold NUL
        if term.strip():
            terms.append('"' + term.replace('"', '""') + '"')
    return " ".join(terms) or None


def _text_search(columns: str) -> Callable:
    def build(value: str) -> tuple[str, list]:
        query = fts_query(value)
        if query is None:
            return "1", []
        scoped = f"{{{columns}}} : ({query})" if columns else query
        return "e.seq IN (SELECT rowid FROM email_text WHERE email_text MATCH ?)", [scoped]
    return build


def _header_match(value: list[str]) -> tuple[str, list]:
    if not 1 <= len(value) <= 2:
        raise invalid_arguments("filter: header must have one or two elements")
    sql = ("EXISTS (SELECT 1 FROM json_each(e.headers) h WHERE "
           "jmap_sort_key('i;ascii-casemap', json_extract(h.value, '$[0]')) = "
           "jmap_sort_key('i;ascii-casemap', ?)")
    if len(value) == 1:
        return sql + ")", [value[0]]
    return (sql + " AND jmap_contains(jmap_header_text(json_extract(h.value, '$[1]')), ?))",
            [value[0], value[1]])  # RFC 8621 §4.4.1: encoded words decoded before matching


EMAIL_FILTERS = {  # RFC 8621 §4.4.1
    "inMailbox": Filter("sql", type=Id, build=_membership("email_mailbox", "mailbox_id")),
    "inMailboxOtherThan": Filter("sql", type=list_of(Id), build=_in_mailbox_other_than),
    "before": Filter("sql", type=UTCDate, build=_compare("e.received_at", "<", _utc_seconds)),
    "after": Filter("sql", type=UTCDate, build=_compare("e.received_at", ">=", _utc_seconds)),
    "minSize": Filter("sql", type=UnsignedInt, build=_compare("e.size", ">=")),
    "maxSize": Filter("sql", type=UnsignedInt, build=_compare("e.size", "<")),
    "allInThreadHaveKeyword": Filter("sql", type=Keyword, build=lambda v: (_ALL_IN_THREAD, [v])),
    "someInThreadHaveKeyword": Filter("sql", type=Keyword, build=lambda v: (_SOME_IN_THREAD, [v])),
    "noneInThreadHaveKeyword": Filter("sql", type=Keyword,
                                      build=lambda v: (f"NOT {_SOME_IN_THREAD}", [v])),
    "hasKeyword": Filter("sql", type=Keyword, build=_membership("email_keyword", "keyword")),
    "notKeyword": Filter("sql", type=Keyword,
                         build=_membership("email_keyword", "keyword", negate=True)),
    "hasAttachment": Filter("sql", type=Boolean,
                            build=lambda v: ("e.has_attachment = ?", [int(v)])),
    "text": Filter("sql", build=_text_search("")),
    "from": Filter("sql", build=_text_search("sender")),
    "to": Filter("sql", build=_text_search("recipient")),
    "cc": Filter("sql", build=_text_search("cc")),
    "bcc": Filter("sql", build=_text_search("bcc")),
    "subject": Filter("sql", build=_text_search("subject")),
    "body": Filter("sql", build=_text_search("body")),
    "header": Filter("sql", type=list_of(String), build=_header_match),
}
EMAIL_SORTS = {  # RFC 8621 §4.4.2
    "receivedAt": Sort(column="e.received_at"),
    "sentAt": Sort(column="e.sent_at"),
    "size": Sort(column="e.size"),
    "from": Sort(column="e.from_key", is_text=True, prekeyed="i;unicode-casemap"),
    "to": Sort(column="e.to_key", is_text=True, prekeyed="i;unicode-casemap"),
    "subject": Sort(column="e.subject_key", is_text=True, prekeyed="i;unicode-casemap"),
    "hasKeyword": Sort(column=_HAS_KEYWORD, argument="keyword"),
    "allInThreadHaveKeyword": Sort(column=_ALL_IN_THREAD, argument="keyword"),
    "someInThreadHaveKeyword": Sort(column=_SOME_IN_THREAD, argument="keyword"),
}
MAIL_ACCOUNT_LIMITS["emailQuerySortOptions"] = list(EMAIL_SORTS)
READ_KEYWORDS = {"$seen", "$draft"}
COMPOSED_PROPERTIES = {"messageId", "inReplyTo", "references", "sender", "from", "to", "cc",
                       "bcc", "replyTo", "subject", "sentAt", "bodyStructure", "bodyValues",
                       "textBody", "htmlBody", "attachments"}
THREAD_WIDE = {"allInThreadHaveKeyword", "someInThreadHaveKeyword", "noneInThreadHaveKeyword"}


# 9.3.3 the data type. EMAIL_SIZE_HOOKS is the seam for what follows the mail an
# account holds (12.2 Quotas): each fn(context, octets, count) runs as an Email is
# about to arrive (positive) or leave (negative), and may refuse an arrival by
# raising SetError (the item's savepoint then undoes the create).

EMAIL_SIZE_HOOKS: list[Callable[["SetContext", int, int], None]] = []

def _true_map(key: JmapType) -> JmapType:
    return map_of(TrueValue, key=key)


def _parsed_property(name: str) -> Prop:
    return Prop(AnyJson, nullable=True, immutable=True, computed=True)


@datatype
class Email(DataType):
    """RFC 8621 §4: a message with its mailboxes and keywords."""

    name = "Email"
    capability = URN_MAIL
    id_prefix = "E"
    methods = ("get", "changes", "query", "queryChanges", "set", "copy")
    properties = {
        "id": Prop(Id, server_set=True, immutable=True),
        "blobId": Prop(Id, server_set=True, immutable=True),
        "threadId": Prop(Id, server_set=True, immutable=True),
        "mailboxIds": Prop(_true_map(Id)),
        "keywords": Prop(_true_map(Keyword), default={}),
        "size": Prop(UnsignedInt, server_set=True, immutable=True),
        "receivedAt": Prop(UTCDate, immutable=True),
        **{name: _parsed_property(name) for name in (
            "messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc",
            "replyTo", "subject", "sentAt", "headers", "bodyStructure", "bodyValues",
            "textBody", "htmlBody", "attachments")},
        "hasAttachment": Prop(Boolean, server_set=True, immutable=True, computed=True),
        "preview": Prop(String, server_set=True, immutable=True, computed=True),
    }
    default_properties = DEFAULT_EMAIL_PROPERTIES
    copy_properties = frozenset({"mailboxIds", "keywords", "receivedAt"})  # RFC 8621 §4.7
    filters = EMAIL_FILTERS
    sorts = EMAIL_SORTS
    tie_breaker = "e.id"
    immutable_query_properties = frozenset({"receivedAt", "sentAt", "size", "from", "to",
                                            "subject", "before", "after", "minSize", "maxSize",
                                            "hasAttachment", "text", "cc", "bcc", "body",
                                            "header"})
    get_arguments = {
        "bodyProperties": (list_of(String), None),
        "fetchTextBodyValues": (Boolean, False),
        "fetchHTMLBodyValues": (Boolean, False),
        "fetchAllBodyValues": (Boolean, False),
        "maxBodyValueBytes": (UnsignedInt, 0),
    }
    query_arguments = {"collapseThreads": (Boolean, False)}
    sql_functions = {"jmap_header_text": header_as_text}
    references_blobs = True  # its message and each body part (holder "Email/<id>")

    def accepts_property(self, name: str) -> bool:
        return name in self.properties or parse_header_property(name) is not None

    # -- writes --

    def before_create(self, context: SetContext, given: dict, base: dict | None) -> dict:
        """The message behind a create: composed (Email/set, §4.6), copied (Email/copy,
        §4.7: re-threaded in the target account) or imported (already parsed)."""
        if base is None:
            raw = Composer(context, given).message()
            base = {"blobId": context.store.put_blob(raw), "size": len(raw),
                    "receivedAt": format_utc(context.call.core.clock.now())}
            given = {k: v for k, v in given.items()
                     if not k.startswith("header:") and k not in COMPOSED_PROPERTIES}
        if context.parsed_blob != base["blobId"]:
            raw = blob_content(context.store, base["blobId"]) or b""
            context.parsed, context.parsed_blob = parse_email(raw), base["blobId"]
            base["threadId"] = thread_for_message(context, context.parsed)
        return given, base

    def normalize_patch(self, patch: dict) -> dict:
        """RFC 8621 §4.1.1: keywords are case-insensitive, so keywords/$SEEN is $seen;
        two paths naming one keyword patch the same path twice (RFC 8620 §5.3)."""
        normal = {key.lower() if isinstance(key, str) and key.startswith("keywords/") else key:
                  value for key, value in patch.items()}
        if len(normal) < len(patch):
            raise SetError("invalidPatch", "two patch paths name the same keyword "
                           "(keywords are case-insensitive)")
        return normal

    def resolve_references(self, context: SetContext, given: dict) -> dict:
        """mailboxIds keys may be '#creation' ids; keywords are stored lower-case."""
        resolved = dict(given)
        if isinstance(given.get("mailboxIds"), dict):
            resolved["mailboxIds"] = {context.call.resolve_creation_id(k) or k: v
                                      for k, v in given["mailboxIds"].items()}
        if isinstance(given.get("keywords"), dict):  # RFC 8621 §4.1.1: "MUST ... lowercase"
            resolved["keywords"] = {k.lower() if isinstance(k, str) else k: v
                                    for k, v in given["keywords"].items()}
        return resolved

    def created_view(self, call: MethodCall, account: Account, object_id: str, record: dict,
                     given: dict) -> dict:
        """RFC 8621 §4.6: created holds id, blobId, threadId and size."""
        return {"id": object_id, **{k: record[k] for k in ("blobId", "threadId", "size")}}

    def validate(self, context: SetContext, object_id: str, record: dict,
                 existing: dict | None) -> None:
        boxes = list(record.get("mailboxIds") or {})
        if not boxes:  # RFC 8621 §4.1.1: an Email belongs to at least one Mailbox
            raise SetError.invalid_properties(["mailboxIds"], "mailboxIds: at least one Mailbox")
        limits = context.call.core.limits
        if len(boxes) > limits["maxMailboxesPerEmail"]:  # RFC 8621 §4.6
            raise SetError("tooManyMailboxes", f"{len(boxes)} Mailboxes; at most "
                           f"{limits['maxMailboxesPerEmail']} (maxMailboxesPerEmail)")
        if len(record.get("keywords") or {}) > limits["maxKeywordsPerEmail"]:
            raise SetError("tooManyKeywords", f"{len(record['keywords'])} keywords; at most "
                           f"{limits['maxKeywordsPerEmail']}")
        found = context.store.get_objects(context.account.id, "Mailbox", boxes)
        missing = [box for box in boxes if box not in found]
        if missing:
            raise SetError.invalid_properties(["mailboxIds"], f"mailboxIds: no Mailbox {missing[0]!r}")

    def tombstone(self, record: dict) -> dict:
        """A destroyed Email's Thread: thread-wide queryChanges re-read its siblings."""
        return {"threadId": record["threadId"]}

    def after_write(self, context: SetContext, object_id: str, record: dict | None,
                    existing: dict | None) -> None:
        if record is None or existing is None:  # arrives or leaves: EMAIL_SIZE_HOOKS
            sign = 1 if existing is None else -1
            for hook in EMAIL_SIZE_HOOKS:
                hook(context, sign * (record or existing)["size"], sign)
        if existing is None:
            store_email_row(context, object_id, record, context.parsed)
        touched = sync_memberships(context, object_id, record, existing)
        if record is None:
            delete_email_row(context, object_id)
        if record is None or existing is None:
            thread_sync(context, (record or existing)["threadId"])
        context.touched.setdefault("Mailbox", set()).update(touched)

    # -- reads --

    def query(self, call: MethodCall, account: Account, query: CompiledQuery,
              window: tuple[int, int] | None) -> list[str]:
        """SQL over the email table; collapseThreads (RFC 8621 §4.4.3) streams the sorted
        rows and keeps the first Email of each Thread, stopping once the page is full."""
        collapse = query.extra["collapseThreads"]
        sql = (f"SELECT e.id, e.thread_id FROM email e WHERE e.account_id = ? AND "
               f"({query.where}) ORDER BY {query.order_by}")
        params = [account.id, *query.params, *query.order_params]
        if window and not collapse:
            sql, params = sql + " LIMIT ? OFFSET ?", [*params, window[1], window[0]]
        offset, limit = window or (0, None)
        seen, page = set(), []
        for email_id, thread_id in call.store.db.execute(sql, params):
            if collapse:
                if thread_id in seen:
                    continue
                seen.add(thread_id)
                if len(seen) <= offset:
                    continue
            page.append(email_id)
            if collapse and limit is not None and len(page) >= limit:
                break
        return page

    def count(self, call: MethodCall, account: Account, query: CompiledQuery) -> int:
        """Fast when the filter is one inMailbox (RFC 8621 §4.4: the Mailbox's own counts)."""
        what = "DISTINCT thread_id" if query.extra["collapseThreads"] else "*"
        if isinstance(query.filter, dict) and set(query.filter) == {"inMailbox"}:
            return call.store.db.execute(
                f"SELECT count({what}) FROM email_mailbox WHERE account_id = ? AND "
                f"mailbox_id = ?", (account.id, query.filter["inMailbox"])).fetchone()[0]
        return call.store.db.execute(
            f"SELECT count({what}) FROM email e WHERE e.account_id = ? AND ({query.where})",
            [account.id, *query.params]).fetchone()[0]

    def query_changed(self, call: MethodCall, account: Account, changed: set[str],
                      query: CompiledQuery, since: int) -> set[str]:
        """When a query looks at whole Threads (collapseThreads, *InThread*), a change to
        one Email can move its siblings: every Email of a touched Thread counts."""
        if not (query.extra["collapseThreads"] or query_property_names(query) & THREAD_WIDE):
            return changed
        threads, ids = set(), sorted(changed)
        for start in range(0, len(ids), 500):  # live rows and tombstones both hold threadId
            chunk = ids[start:start + 500]
            threads.update(row[0] for row in call.store.db.execute(
                f"SELECT json_extract(data, '$.threadId') FROM object WHERE account_id = ? "
                f"AND type = 'Email' AND id IN ({','.join('?' * len(chunk))})",
                (account.id, *chunk)) if row[0])
        siblings = set()
        for thread_id in threads:
            siblings.update(row[0] for row in call.store.db.execute(
                "SELECT id FROM email WHERE account_id = ? AND thread_id = ?",
                (account.id, thread_id)))
        return changed | siblings

    def render(self, call: MethodCall, account: Account, records: dict[str, dict],
               wanted: list[str], extra: dict) -> dict[str, dict]:
        body_properties = _body_properties(extra["bodyProperties"])
        parsed = load_parsed(call.store, account.id, list(records))
        shown = {}
        for object_id, record in records.items():
            view = EmailView(call.store, record, parsed[object_id], body_properties, extra)
            shown[object_id] = {"id": object_id, **{name: view.value(name) for name in wanted
                                                   if name != "id"}}
        return shown


def load_parsed(store: Store, account_id: str, ids: list[str]) -> dict[str, dict]:
    found = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        rows = store.db.execute(f"SELECT id, headers, parsed FROM email WHERE account_id = ? "
                                f"AND id IN ({','.join('?' * len(chunk))})", (account_id, *chunk))
        for email_id, headers, packed in rows:
            parsed = json.loads(zlib.decompress(packed))
            parsed["structure"]["headers"] = json.loads(headers)
            found[email_id] = parsed
    return found


def _body_properties(requested: list[str] | None) -> list[str]:
    if requested is None:
        return list(DEFAULT_BODY_PROPERTIES)
    bad = [p for p in requested if p not in EMAIL_BODY_PROPERTIES
           and parse_header_property(p) is None]
    if bad:
        raise invalid_arguments(f"bodyProperties: no EmailBodyPart property {bad[0]!r}")
    return list(dict.fromkeys(requested))


class EmailView:
    """One Email's properties, derived on demand from its stored parse (RFC 8621 §4.1)."""

    def __init__(self, store: Store, record: dict, parsed: dict, body_properties: list[str],
                 extra: dict, raw: bytes | None = None) -> None:
        self.store, self.record, self.parsed, self.raw = store, record, parsed, raw
        self.body_properties, self.extra = body_properties, extra
        self.parts = {p["partId"]: p for p in _all_parts(parsed["structure"]) if p["partId"]}
        self.headers = parsed["structure"]["headers"]

    def value(self, name: str) -> Any:
        if name in ("blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt"):
            return self.record.get(name, {} if name == "keywords" else None)
        if name in CONVENIENCE_HEADERS:
            return header_value(self.headers, *CONVENIENCE_HEADERS[name], False)
        if name.startswith("header:"):
            return header_value(self.headers, *parse_header_property(name))
        if name == "headers":
            return [{"name": n, "value": v} for n, v in self.headers]
        if name == "bodyStructure":  # the tree needs its subParts whatever was asked
            return self.part(self.parsed["structure"], with_sub_parts=True)
        if name in ("textBody", "htmlBody", "attachments"):
            return [self.part(self.parts[i]) for i in self.parsed[name]]
        if name in ("hasAttachment", "preview"):
            return self.parsed[name]
        return self.body_values()

    def part(self, part: dict, with_sub_parts: bool = False) -> dict:
        """An EmailBodyPart with the requested bodyProperties (RFC 8621 §4.2)."""
        shown = {}
        wanted = self.body_properties + (["subParts"] if with_sub_parts
                                         and "subParts" not in self.body_properties else [])
        for name in wanted:
            if name == "subParts":
                shown[name] = ([self.part(sub, with_sub_parts) for sub in part["subParts"]]
                               if part["subParts"] is not None else None)
            elif name.startswith("header:"):
                shown[name] = header_value(part["headers"], *parse_header_property(name))
            elif name == "headers":
                shown[name] = [{"name": n, "value": v} for n, v in part["headers"]]
            else:
                shown[name] = part[name]
        return shown

    def body_values(self) -> dict:
        """RFC 8621 §4.2 bodyValues for the text parts the fetch* arguments select."""
        chosen = []
        if self.extra["fetchAllBodyValues"]:
            chosen = list(self.parts)
        else:
            for flag, listed in (("fetchTextBodyValues", "textBody"),
                                 ("fetchHTMLBodyValues", "htmlBody")):
                if self.extra[flag]:
                    chosen += self.parsed[listed]
        chosen = [i for i in dict.fromkeys(chosen) if self.parts[i]["type"].startswith("text/")]
        if not chosen:
            return {}
        raw = self.raw or blob_content(self.store, self.record["blobId"]) or b""
        return {i: body_value(raw, self.parts[i], self.extra["maxBodyValueBytes"]) for i in chosen}


def _all_parts(part: dict) -> Iterator[dict]:
    yield part
    for sub in part["subParts"] or []:
        yield from _all_parts(sub)


def body_value(raw: bytes, part: dict, max_bytes: int) -> dict:
    """An EmailBodyValue, truncated to max_bytes on a code point boundary (§4.2)."""
    text, problem = part_text(raw, part)
    truncated = False
    if max_bytes and len(text.encode("utf-8")) > max_bytes:
        text = text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
        if part["type"] == "text/html" and text.rfind("<") > text.rfind(">"):
            text = text[:text.rfind("<")]  # RFC 8621 §4.2: not inside an HTML tag
        truncated = True
    return {"value": text, "isEncodingProblem": problem, "isTruncated": truncated}


# 9.3.4 Email/import (RFC 8621 §4.8).

EMAIL_IMPORT_FIELDS = {"blobId": IdOrCreationRef, "mailboxIds": _true_map(IdOrCreationRef),
                       "keywords": _true_map(Keyword), "receivedAt": UTCDate}


@method("Email/import", capability=URN_MAIL)
def email_import(call: MethodCall, args: Args) -> dict:
    """Add uploaded messages as Emails (RFC 8621 §4.8)."""
    account = call.account(args, writable=True)
    if_in_state = args.get("ifInState", String, nullable=True)
    emails = args.get("emails", map_of(AnyJson, key=Id))
    args.finish()
    email_type = call.core.datatypes["Email"]
    _check_set_size(call, len(emails))
    old_state = type_state(call, account, email_type)
    if if_in_state is not None and if_in_state != old_state:
        raise MethodError("stateMismatch", f"ifInState {if_in_state!r}, state is {old_state!r}")
    call.require("write", account)
    context = SetContext(call, account, email_type, {})
    created, not_created = _run_each(context, emails.items(), _import_one)
    return {"accountId": account.id, "oldState": old_state,
            "newState": type_state(call, account, email_type),
            "created": created or None, "notCreated": not_created or None}


def _import_one(context: SetContext, creation_id: str, entry: Any) -> dict:
    if not isinstance(entry, dict):
        raise SetError("invalidProperties", "an EmailImport is a JSON object")
    problems = [k for k, v in entry.items()
                if k not in EMAIL_IMPORT_FIELDS or not EMAIL_IMPORT_FIELDS[k].accepts(v)]
    problems += [k for k in ("blobId", "mailboxIds") if k not in entry]
    if problems:
        raise SetError.invalid_properties(problems, f"{problems[0]}: missing or invalid")
    blob_id = context.call.resolve_creation_id(entry["blobId"]) or entry["blobId"]  # RFC 9404
    raw = held_blob(context.store, context.account.id, blob_id, context.now)
    if raw is None:  # RFC 8621 §4.8: an unknown blobId is invalidProperties
        raise SetError.invalid_properties(["blobId"], f"blobId: no blob {entry['blobId']!r}")
    return import_message(context, creation_id, raw, blob_id, entry["mailboxIds"],
                          entry.get("keywords", {}), entry.get("receivedAt"))


def thread_for_message(context: SetContext, parsed: ParsedEmail) -> str:
    """The Thread a parsed message joins in the context's account (RFC 8621 §3)."""
    message_ids = [m for n in ("message-id", "in-reply-to", "references")
                   for m in header_value(parsed.headers, n, "asMessageIds", False) or []]
    parsed.subject = header_value(parsed.headers, "subject", "asText", False)
    return thread_for(context.store, context.call.core, context.account.id, message_ids,
                      parsed.subject)


def import_message(context: SetContext, creation_id: str, raw: bytes, blob_id: str,
                   mailbox_ids: dict, keywords: dict, received_at: str | None) -> dict:
    """The one way a message becomes an Email: parse once, thread, store."""
    parsed = parse_email(raw)
    if not parsed.headers:
        raise SetError("invalidEmail", "the blob has no header fields: not an RFC 5322 message")
    thread_id = thread_for_message(context, parsed)
    context.parsed, context.parsed_blob = parsed, blob_id
    base = {"blobId": blob_id, "threadId": thread_id, "size": len(raw),
            "receivedAt": received_at or _received_at_of(parsed) or format_utc(
                context.call.core.clock.now())}
    given = {"mailboxIds": mailbox_ids, "keywords": keywords}
    shown = _create_one(context, creation_id, given, base)
    return {"id": shown["id"], "blobId": blob_id, "threadId": thread_id, "size": len(raw)}


# 9.3.5 Email/set create: building the message (RFC 8621 §4.6).

COMPOSE_POLICY = email.policy.SMTP  # CRLF line ends, folded headers, 7-bit safe
ADDRESS_PROPERTIES = {"from": "From", "to": "To", "cc": "Cc", "bcc": "Bcc",
                      "replyTo": "Reply-To", "sender": "Sender"}
MESSAGE_ID_PROPERTIES = {"messageId": "Message-ID", "inReplyTo": "In-Reply-To",
                         "references": "References"}
BODY_PART_FIELDS = {"partId", "blobId", "size", "name", "type", "charset", "disposition", "cid",
                    "language", "location", "subParts"}


# jmapd writes its own RFC 2047 encoded-words and folding: the standard library's
# folder drops the space between two encoded-words it splits, and it decodes an
# encoded-word look-alike inside a quoted display name (RFC 2047 §5 forbids that).
_PHRASE_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')
_ENCODED_WORD_OCTETS = 45  # base64 of 45 octets: a 72-character word (RFC 2047 §2: <= 75)


def _needs_encoding(text: str) -> bool:
    return "=?" in text or any(not " " <= ch <= "~" for ch in text)


def encoded_words(text: str) -> str:
    """text as UTF-8 "B" encoded-words, whole characters in each (RFC 2047 §5)."""
    words, chunk = [], b""
    for ch in text:
        octets = ch.encode("utf-8", "surrogatepass")
        if len(chunk) + len(octets) > _ENCODED_WORD_OCTETS:
            words.append(chunk)
            chunk = b""
        chunk += octets
    words.append(chunk)
    return " ".join(f"=?utf-8?b?{base64.b64encode(w).decode()}?=" for w in words if w)


def encode_unstructured(text: str) -> str:
    """An unstructured field's value (Subject), 7-bit (RFC 5322 §3.2.5, RFC 2047)."""
    return encoded_words(text) if _needs_encoding(text) else text


def encode_phrase(name: str) -> str:
    """A display name: an atom sequence, a quoted-string, or encoded-words."""
    if _needs_encoding(name):
        return encoded_words(name)
    if _PHRASE_SPECIALS.search(name) or name != name.strip() or "  " in name:
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return name


def format_addresses(addresses: list[dict]) -> str:
    """EmailAddress[] as an address-list, names encoded as RFC 2047 phrases need."""
    return ", ".join(f"{encode_phrase(a['name'])} <{a.get('email') or ''}>" if a.get("name")
                     else a.get("email") or "" for a in addresses)


def fold_at_spaces(name: str, value: str, width: int = 78) -> str:
    """A header value folded before the word that would pass `width` (RFC 5322 §2.2.3);
    the spaces are where it may fold, so unfolding gives back the same value."""
    lines, line, used = [], "", len(name) + 2
    for word in value.split(" "):
        if used + len(line) + bool(line) + len(word) > width and (line or not lines):
            lines.append(line)  # a first word too long for "Name: " starts on the next line
            line, used = word, 1
        else:
            line = f"{line} {word}" if line else word
    return "\r\n ".join(lines + [line])


def set_header(message: email.message.EmailMessage, name: str, value: str) -> None:
    """Add a field whose value is ready (encoded where RFC 2047 allows), folded by us, not
    the policy. What stays non-ASCII (an internationalised address, a client's asRaw
    text) makes an RFC 6532 message: see as_message_bytes."""
    folded = re.fullmatch(r"(?:[^\r\n]|\r\n[ \t])*", value) is not None
    if ("\r" in value or "\n" in value) and not folded:
        raise ValueError(f"{name}: a line break in a header value must be a fold (CRLF, then "
                         "a space or tab)")
    limit = message.policy.header_max_count(name)
    if limit and sum(k.lower() == name.lower() for k in message.keys()) >= limit:
        raise ValueError(f"there may be at most {limit} {name} field in a message")
    message.set_raw(name, value if "\n" in value else fold_at_spaces(name, value))


def as_message_bytes(message: email.message.EmailMessage) -> bytes:
    """The octets: 7-bit headers where possible, else UTF-8 ones (RFC 6532 §3), as an
    address like bøb@exämple.com cannot be written any other way (RFC 2047 §5)."""
    try:
        return message.as_bytes(policy=COMPOSE_POLICY)
    except UnicodeEncodeError:
        return message.as_bytes(policy=COMPOSE_POLICY.clone(utf8=True))


def format_header_form(form: str, value: Any) -> str:
    """A header:Name:asForm value (RFC 8621 §4.1.2) back as header text."""
    if form in ("asAddresses",):
        return format_addresses(value)
    if form == "asGroupedAddresses":
        return ", ".join(f"{g['name']}: {format_addresses(g['addresses'])};" if g.get("name")
                         else format_addresses(g["addresses"]) for g in value)
    if form == "asMessageIds":
        return " ".join(f"<{m}>" for m in value)
    if form == "asURLs":
        return ", ".join(f"<{u}>" for u in value)
    if form == "asDate":
        return email.utils.format_datetime(datetime.datetime.fromtimestamp(
            _utc_seconds(value), datetime.timezone(datetime.timedelta(
                minutes=_offset_minutes(value)))))
    if form == "asText":
        return encode_unstructured(value)
    return value  # asRaw: as given (the header policy encodes non-ASCII text, RFC 2047)


def _offset_minutes(value: str) -> int:
    if value.endswith("Z"):
        return 0
    sign = 1 if value[-6] == "+" else -1
    return sign * (int(value[-5:-3]) * 60 + int(value[-2:]))


AddressList = JmapType("EmailAddress[]", lambda v: isinstance(v, list) and all(
    isinstance(a, dict) and set(a) <= {"name", "email"} and isinstance(a.get("email"), str)
    and (a.get("name") is None or isinstance(a.get("name"), str)) for a in v))
GroupedAddressList = JmapType("EmailAddressGroup[]", lambda v: isinstance(v, list) and all(
    isinstance(g, dict) and AddressList.accepts(g.get("addresses")) for g in v))
FORM_TYPES = {"asRaw": String, "asText": String, "asAddresses": AddressList,
              "asGroupedAddresses": GroupedAddressList, "asMessageIds": list_of(String),
              "asDate": Date, "asURLs": list_of(String)}
COMPOSED_TYPES = {**dict.fromkeys(ADDRESS_PROPERTIES, AddressList),
                  **dict.fromkeys(MESSAGE_ID_PROPERTIES, list_of(String)),
                  "subject": String, "sentAt": Date, "bodyValues": JsonObject,
                  "textBody": list_of(JsonObject), "htmlBody": list_of(JsonObject),
                  "attachments": list_of(JsonObject), "bodyStructure": JsonObject}


PART_TYPES = {"name": String, "charset": String, "disposition": String, "cid": String,
              "location": String, "language": list_of(String), "subParts": list_of(AnyJson),
              "partId": String, "blobId": String}


def _header_value_type(name: str) -> JmapType:
    parsed = parse_header_property(name)
    if parsed is None:
        return JmapType("nothing", lambda v: False)
    return list_of(FORM_TYPES[parsed[1]]) if parsed[2] else FORM_TYPES[parsed[1]]


MAX_COMPOSED_DEPTH = 32  # multipart levels an Email/set create may nest


def header_fields(name: str, value: Any) -> list[tuple[str, str]]:
    """The fields a header:Name[:asForm][:all] property stands for (RFC 8621 §4.1.3):
    one, or with :all one per value. A Raw value keeps its folding; the one space
    after the colon that Email/get shows as part of it is ours to write."""
    parsed = parse_header_property(name)
    if parsed is None or value is None:
        return []
    if not _header_value_type(name).accepts(value):
        raise SetError.invalid_properties([name], f"{name}: not a {parsed[1]} value")
    field, form, all_ = parsed
    texts = [format_header_form(form, v) for v in (value if all_ else [value])]
    if form == "asRaw":
        texts = [t[1:] if t[:1] in (" ", "\t") else t for t in texts]
    return [(field, text) for text in texts]


def _is_inline_image(spec: Any) -> bool:
    """An attachment the HTML shows by Content-ID (disposition inline, a cid)."""
    return isinstance(spec, dict) and bool(spec.get("cid")) and \
        str(spec.get("disposition", "")).lower() == "inline"


class Composer:
    """Turns an Email/set create's properties into RFC 5322 octets (RFC 8621 §4.6),
    raising SetError for what the RFC forbids and blobNotFound for missing blobs."""

    def __init__(self, context: "SetContext", given: dict) -> None:
        self.context, self.given = context, given
        self.values = given.get("bodyValues") or {}
        self.missing_blobs: list[str] = []
        self.boundaries = 0  # multiparts written so far: each boundary derives from it

    def message(self) -> bytes:
        self._check_shape()
        try:
            root = self._body()
            if self.missing_blobs:
                raise SetError("blobNotFound", "unknown blobId in a body part",
                               notFound=sorted(set(self.missing_blobs)))
            content = [(n, v) for n, v in root.items() if n.lower() != "mime-version"]
            for name in set(root.keys()):
                del root[name]
            for name, value in self._top_headers():
                set_header(root, name, value)
            for name, value in content:
                root[name] = value
            return as_message_bytes(root)
        except (ValueError, TypeError, LookupError, AttributeError) as error:
            # e.g. a header given twice, or CR/LF inside a value: never a serverFail
            raise SetError.invalid_properties(["headers"], f"cannot write the message: {error}")

    def _check_shape(self) -> None:
        given, problems = self.given, []
        if "headers" in given:
            problems.append("headers")
        if "bodyStructure" in given and {"textBody", "htmlBody", "attachments"} & set(given):
            problems.append("bodyStructure")
        for name, media_type in (("textBody", "text/plain"), ("htmlBody", "text/html")):
            parts = given.get(name)
            if parts is not None and (not isinstance(parts, list) or len(parts) != 1
                                      or not isinstance(parts[0], dict)
                                      or parts[0].get("type", media_type) != media_type):
                problems.append(name)
        problems += [k for k in given if k.lower().startswith("header:content-")]
        problems += [k for k, v in given.items() if v is not None and not (
            COMPOSED_TYPES[k].accepts(v) if k in COMPOSED_TYPES
            else k.startswith("header:") and _header_value_type(k).accepts(v))
            and (k in COMPOSED_TYPES or k.startswith("header:"))]
        if not isinstance(self.values, dict) or any(
                not isinstance(v, dict) or not isinstance(v.get("value"), str)
                or v.get("isEncodingProblem") or v.get("isTruncated")
                for v in self.values.values()):
            problems.append("bodyValues")
        if problems:
            raise SetError.invalid_properties(problems, f"{problems[0]}: not allowed in a create "
                                              "(RFC 8621 §4.6)")

    def _top_headers(self) -> list[tuple[str, str]]:
        given, clock = self.given, self.context.call.core.clock
        headers = [("MIME-Version", "1.0")]
        for prop, field in ADDRESS_PROPERTIES.items():
            if given.get(prop) is not None:
                headers.append((field, format_addresses(given[prop])))
        if given.get("subject") is not None:
            headers.append(("Subject", encode_unstructured(given["subject"])))
        headers.append(("Date", format_header_form("asDate", given.get("sentAt")
                                                   or format_utc(clock.now()))))
        message_id = given.get("messageId") or [
            f"{self.context.call.core.new_id('m')}.{int(clock.now().timestamp())}@jmapd.local"]
        headers.append(("Message-ID", format_header_form("asMessageIds", message_id)))
        for prop, field in MESSAGE_ID_PROPERTIES.items():
            if prop != "messageId" and given.get(prop):
                headers.append((field, format_header_form("asMessageIds", given[prop])))
        for name, value in given.items():
            parsed = parse_header_property(name) if name.startswith("header:") else None
            if parsed:
                headers += header_fields(name, value)
        return headers

    def _body(self) -> email.message.EmailMessage:
        given = self.given
        if given.get("bodyStructure") is not None:
            return self._part(given["bodyStructure"])
        text = [self._part(p) for p in given.get("textBody") or []]
        html = [self._part(p, "text/html") for p in given.get("htmlBody") or []]
        given_attachments = given.get("attachments") or []
        inline = [self._part(p) for p in given_attachments if _is_inline_image(p)]
        if inline:  # cid: images travel with the HTML that shows them (RFC 2387)
            html = [self._multipart("related", (html or text[-1:]) + inline)]
            text = text if given.get("htmlBody") else []
        body = (self._multipart("alternative", text + html) if text and html
                else (text + html or [self._text_part("", "plain")])[0])
        attachments = [self._part(p) for p in given_attachments if not _is_inline_image(p)]
        return self._multipart("mixed", [body] + attachments) if attachments else body

    def _multipart(self, subtype: str, parts: list) -> email.message.EmailMessage:
        container = email.message.EmailMessage(policy=COMPOSE_POLICY)
        container["Content-Type"] = f"multipart/{subtype}"
        for part in parts:
            container.attach(part)
        # the same create writes the same octets (the library's boundaries are random)
        self.boundaries += 1
        seed = f"{self.fingerprint}.{self.boundaries}"
        container.set_boundary("=_jmapd_" + hashlib.sha256(seed.encode()).hexdigest()[:32])
        return container

    @functools.cached_property
    def fingerprint(self) -> str:
        """The create's digest, computed once (its bodyValues may be megabytes)."""
        given = json.dumps(self.given, sort_keys=True, default=str)
        return hashlib.sha256(given.encode("utf-8", "surrogatepass")).hexdigest()

    def _text_part(self, text: str, subtype: str) -> email.message.EmailMessage:
        """UTF-8, quoted-printable, and exactly the text (set_content would add a newline)."""
        part = email.message.EmailMessage(policy=COMPOSE_POLICY)
        part["Content-Type"] = f"text/{subtype}; charset=utf-8"
        part["Content-Transfer-Encoding"] = "quoted-printable"
        lines = text.replace("\r\n", "\n").encode("utf-8")
        part.set_payload(quopri.encodestring(lines).decode("ascii"))
        return part

    def _part(self, spec: Any, default_type: str = "text/plain",
              depth: int = 0) -> email.message.EmailMessage:
        if not isinstance(spec, dict) or not String.accepts(spec.get("type", default_type)):
            raise SetError.invalid_properties(["bodyStructure"], "a body part is an object")
        media_type = spec.get("type", default_type).lower()
        wrong = [k for k, kind in PART_TYPES.items() if spec.get(k) is not None
                 and not kind.accepts(spec[k])]
        wrong += [k for k in spec if k not in BODY_PART_FIELDS and not (
            k.startswith("header:") and not k.lower().startswith(
                "header:content-transfer-encoding"))]  # §4.6: no headers, no CTE
        if wrong:
            raise SetError.invalid_properties(["bodyStructure"], f"body part {wrong[0]}: "
                                              "wrong type, or not allowed (RFC 8621 §4.6)")
        if media_type.startswith("multipart/"):
            if depth >= MAX_COMPOSED_DEPTH:
                raise SetError.invalid_properties(["bodyStructure"], "body parts nest deeper "
                                                  f"than {MAX_COMPOSED_DEPTH} levels")
            return self._multipart(media_type.split("/", 1)[1], [
                self._part(sub, depth=depth + 1) for sub in spec.get("subParts") or []])
        if ("partId" in spec) == ("blobId" in spec) or (
                "partId" in spec and ({"charset", "size"} & set(spec)
                                      or spec["partId"] not in self.values
                                      or not media_type.startswith("text/"))):
            raise SetError.invalid_properties(["bodyStructure"], "a body part has either a "
                                              "partId in bodyValues (text only) or a blobId")
        if "partId" in spec:
            part = self._text_part(self.values[spec["partId"]]["value"], media_type.split("/")[1])
        else:
            part = self._blob_part(spec, media_type)
        self._describe(part, spec)
        return part

    def _blob_part(self, spec: dict, media_type: str) -> email.message.EmailMessage:
        part = email.message.EmailMessage(policy=COMPOSE_POLICY)
        context = self.context
        blob_id = context.call.resolve_creation_id(str(spec["blobId"])) or str(spec["blobId"])
        data = held_blob(context.store, context.account.id, blob_id, context.now)
        if data is None:
            self.missing_blobs.append(str(spec["blobId"]))
            data = b""
        maintype, _, subtype = media_type.partition("/")
        if maintype == "message":  # RFC 2046 §5.2.1: no base64 or quoted-printable here
            part["Content-Type"] = media_type
            part["Content-Transfer-Encoding"] = "7bit" if data.isascii() else "8bit"
            part.set_payload(data.decode("utf-8", "surrogateescape"))
        else:
            part.set_content(data, maintype=maintype, subtype=subtype or "octet-stream")
            del part["MIME-Version"]  # RFC 2045 §4: the message's field, not a part's
        if spec.get("charset"):
            part.set_param("charset", spec["charset"])
        return part

    def _describe(self, part: email.message.EmailMessage, spec: dict) -> None:
        """Disposition, filename (RFC 2231), Content-ID and friends of one part."""
        if spec.get("disposition") or spec.get("name"):
            del part["Content-Disposition"]
            part.add_header("Content-Disposition", spec.get("disposition") or "attachment",
                            **({"filename": spec["name"]} if spec.get("name") else {}))
        if spec.get("cid"):
            part["Content-ID"] = f"<{spec['cid']}>"
        if spec.get("language"):
            part["Content-Language"] = ", ".join(spec["language"])
        if spec.get("location"):
            part["Content-Location"] = spec["location"]
        for name, value in spec.items():
            parsed = parse_header_property(name) if name.startswith("header:") else None
            if parsed:
                for field, text in header_fields(name, value):
                    set_header(part, field, text)

# 9.3.6 Email/parse (RFC 8621 §4.9).

EMAIL_PARSE_PROPERTIES = ("messageId", "inReplyTo", "references", "sender", "from", "to", "cc",
                          "bcc", "replyTo", "subject", "sentAt", "hasAttachment", "preview",
                          "bodyValues", "textBody", "htmlBody", "attachments")  # the default
PARSE_NULLS = ("id", "mailboxIds", "keywords", "receivedAt", "threadId")  # §4.9: null


@method("Email/parse", capability=URN_MAIL)
def email_parse(call: MethodCall, args: Args) -> dict:
    """Messages in blobs (also attached message/rfc822 parts) as Emails, not stored."""
    account = call.account(args)
    blob_ids = call.blob_ids(args)
    wanted = args.get("properties", list_of(String), nullable=True)
    email_type = call.core.datatypes["Email"]
    extra = read_extra(args, email_type.get_arguments)
    args.finish()
    call.require("read", account)
    if len(blob_ids) > call.core.limits["maxObjectsInGet"]:
        raise MethodError("requestTooLarge", "blobIds: more than maxObjectsInGet")
    wanted = list(dict.fromkeys(wanted if wanted is not None else EMAIL_PARSE_PROPERTIES))
    unknown = [p for p in wanted if not email_type.accepts_property(p)]
    if unknown:
        raise invalid_arguments(f"properties: Email has no property {unknown[0]!r}")
    body_properties = _body_properties(extra["bodyProperties"])
    parsed, not_parsable, not_found = {}, [], []
    for blob_id in dict.fromkeys(blob_ids):
        raw = held_blob(call.store, account.id, blob_id, call.core.now())
        message = parse_email(raw) if raw is not None else None
        if message is None:
            not_found.append(blob_id)
        elif not message.headers:
            not_parsable.append(blob_id)
        else:
            stored = {"structure": message.structure, "textBody": message.text_body,
                      "htmlBody": message.html_body, "attachments": message.attachments,
                      "preview": message.preview, "hasAttachment": message.has_attachment}
            record = {"blobId": blob_id, "size": len(raw), **dict.fromkeys(PARSE_NULLS)}
            view = EmailView(call.store, record, stored, body_properties, extra, raw)
            parsed[blob_id] = {p: None if p == "id" else view.value(p) for p in wanted}
    return {"accountId": account.id, "parsed": parsed or None,
            "notParsable": not_parsable or None, "notFound": not_found or None}


# --- 9.4 SearchSnippet (RFC 8621 §5) -------------------------------------------

SNIPPET_BYTES = 255  # RFC 8621 §5: a preview MUST NOT be bigger than 255 octets


def search_terms(filter_: Any, field: str) -> list[str]:
    """The words and phrases a filter looks for in one field (under NOT: none)."""
    if not isinstance(filter_, dict):
        return []
    if "operator" in filter_:
        if filter_.get("operator") == "NOT":
            return []
        return [t for sub in filter_.get("conditions") or [] for t in search_terms(sub, field)]
    terms = []
    for name in ("text", field):
        if isinstance(filter_.get(name), str):
            query = fts_query(filter_[name]) or ""
            terms += [t.replace('""', '"') for t in re.findall(r'"((?:[^"]|"")*)"', query)]
    return terms


def _folded(text: str) -> tuple[str, list[int]]:
    """Text case- and diacritic-folded as the FTS index folds it, and for each folded
    character the index of the original one it came from."""
    folded, origin = [], []
    for index, char in enumerate(text):
        for piece in unicodedata.normalize("NFKD", char).casefold():
            if not unicodedata.combining(piece):
                folded.append(piece)
                origin.append(index)
    return "".join(folded), origin


def match_spans(text: str, terms: list[str]) -> list[tuple[int, int]]:
    """Where whole-word terms occur in text, ignoring case and diacritics."""
    if not terms:
        return []
    folded, origin = _folded(text)
    words = sorted({_folded(" ".join(t.split()))[0] for t in terms if t.strip()}, key=len,
                   reverse=True)
    pattern = "|".join(r"(?<!\w)" + re.escape(w) + r"(?!\w)" for w in words)
    return [(origin[m.start()], origin[m.end() - 1] + 1)
            for m in re.finditer(pattern, folded) if m.end() > m.start()]


def highlight(text: str, terms: list[str]) -> str | None:
    """HTML-escaped text with <mark> around each match, or None if nothing matches."""
    spans = match_spans(text, terms)
    if not spans:
        return None
    pieces, last = [], 0
    for begin, end in spans:
        pieces += [html.escape(text[last:begin], quote=False), "<mark>",
                   html.escape(text[begin:end], quote=False), "</mark>"]
        last = end
    return "".join(pieces + [html.escape(text[last:], quote=False)])


def snippet_preview(body: str, terms: list[str]) -> str | None:
    """The body around the first match, marked, at most 255 octets (RFC 8621 §5.1)."""
    text = " ".join(body.split())
    spans = match_spans(text, terms)
    if not spans:
        return None
    first_start, first_end = spans[0]
    for lead in (60, 20, 0):
        start = max(0, first_start - lead)
        end = len(text)
        while end >= first_end:
            marked = highlight(text[start:end], terms)
            if marked and len(marked.encode("utf-8")) <= SNIPPET_BYTES:
                return marked
            end = max(first_end, int(start + (end - start) * 0.8)) if end > first_end else -1
    return None


@method("SearchSnippet/get", capability=URN_MAIL)
def search_snippet_get(call: MethodCall, args: Args) -> dict:
    """RFC 8621 §5.1: marked subject and preview for the emails a filter matched."""
    account = call.account(args)
    filter_ = args.get("filter", JsonObject, nullable=True)
    email_ids = args.get("emailIds", list_of(Id))
    args.finish()
    call.require("read", account)
    if len(email_ids) > call.core.limits["maxObjectsInGet"]:
        raise MethodError("requestTooLarge", "emailIds: more than maxObjectsInGet")
    if filter_ is not None:
        compile_filter(EMAIL_FILTERS, filter_)  # the same errors as Email/query
    email_ids = list(dict.fromkeys(email_ids))
    parsed = load_parsed(call.store, account.id, email_ids)
    texts = {row[0]: row[1] for start in range(0, len(email_ids), 500) for row in call.store.db.execute(
        f"SELECT e.id, t.body FROM email e JOIN email_text t ON t.rowid = e.seq WHERE "
        f"e.account_id = ? AND e.id IN ({','.join('?' * len(email_ids[start:start + 500]))})",
        (account.id, *email_ids[start:start + 500]))}
    found = []
    for email_id in (i for i in email_ids if i in parsed):
        subject = header_value(parsed[email_id]["structure"]["headers"], "subject", "asText",
                               False) or ""
        found.append({"emailId": email_id,
                      "subject": highlight(subject, search_terms(filter_, "subject")),
                      "preview": snippet_preview(texts.get(email_id, ""),
                                                 search_terms(filter_, "body"))})
    missing = [i for i in email_ids if i not in parsed]
    return {"accountId": account.id, "list": found, "notFound": missing or None}


def remove_emails_from_mailbox(context: SetContext, mailbox_id: str) -> None:
    """RFC 8621 §2.5 onDestroyRemoveEmails: out of the Mailbox, destroyed if in no other."""
    store, account_id = context.store, context.account.id
    email_type = context.call.core.datatypes["Email"]
    emails = SetContext(context.call, context.account, email_type, {})
    ids = [row[0] for row in store.db.execute(
        "SELECT email_id FROM email_mailbox WHERE account_id = ? AND mailbox_id = ?",
        (account_id, mailbox_id))]
    for email_id, record in store.get_objects(account_id, "Email", ids).items():
        boxes = {k: True for k in record["mailboxIds"] if k != mailbox_id}
        if boxes:
            changed = {**record, "mailboxIds": boxes}
            store.update_object(account_id, "Email", email_id, email_type.stored(changed),
                                emails.now)
            email_type.after_write(emails, email_id, changed, record)
        else:
            store.destroy_object(account_id, "Email", email_id, emails.now,
                                 email_type.tombstone(record))
            email_type.after_write(emails, email_id, None, record)
    emails.flush_touched()


ON_MAILBOX_DESTROY.append(remove_emails_from_mailbox)

# --- 9.5 Identity (RFC 8621 §6) -------------------------------------------------
# The addresses an account may send from. Each account starts with one for its
# owner's address (mayDelete false: it is the account's own, written at modseq 0 so
# it moves no state); the user may create more for their address or a sub-address
# of it (local+detail@domain). Anything else is forbiddenFrom: jmapd is strict about who
# may send as whom, as a production server is.

URN_SUBMISSION = "urn:ietf:params:jmap:submission"  # RFC 8621 §1.3.2
PRIMARY_IDENTITY_ID = "Iprimary"
_DOT_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]+)*"
_QUOTED_LOCAL = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\x80-\U0010ffff]|\\[\x20-\x7e])*"'
_DOMAIN = (r"(?:[A-Za-z0-9\x80-\U0010ffff](?:[A-Za-z0-9\x80-\U0010ffff-]*[A-Za-z0-9\x80-\U0010ffff])?"
           r"(?:\.[A-Za-z0-9\x80-\U0010ffff](?:[A-Za-z0-9\x80-\U0010ffff-]*[A-Za-z0-9\x80-\U0010ffff])?)*"
           r"|\[[\x21-\x5a\x5e-\x7e]+\])")
# RFC 5321 §4.1.2 Mailbox (with RFC 6531's UTF-8): what a MAIL FROM / RCPT TO may name
SMTP_MAILBOX = re.compile(f"(?:{_DOT_ATOM}|{_QUOTED_LOCAL})@{_DOMAIN}")


def is_mailbox_address(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 254 and SMTP_MAILBOX.fullmatch(value) is not None


def _local_and_domain(address: str) -> tuple[str, str]:
    local, _, domain = address.lower().rpartition("@")
    return local, domain


def address_allowed(allowed: str, address: str) -> bool:
    """Whether an Identity's email allows sending as address: the same address
    (case-insensitive), or any address of the domain for "*@domain" (RFC 8621 §6)."""
    (local, domain), (their_local, their_domain) = map(_local_and_domain, (allowed, address))
    return their_domain == domain and (local == "*" or their_local == local)


def may_send_as(owner_email: str, address: str) -> bool:
    """An account's owner may send as their address and its sub-addresses (RFC 5233)."""
    (local, domain), (their_local, their_domain) = map(_local_and_domain, (owner_email, address))
    return their_domain == domain and their_local.split("+", 1)[0] == local


@datatype
class Identity(DataType):
    """RFC 8621 §6: a From address with its name, Reply-To, Bcc and signatures."""

    name = "Identity"
    capability = URN_SUBMISSION
    id_prefix = "I"
    methods = ("get", "changes", "set")
    properties = {
        "id": Prop(Id, server_set=True, immutable=True),
        "name": Prop(String, default=""),
        "email": Prop(String, immutable=True),
        "replyTo": Prop(AddressList, nullable=True, default=None),
        "bcc": Prop(AddressList, nullable=True, default=None),
        "textSignature": Prop(String, default=""),
        "htmlSignature": Prop(String, default=""),
        "mayDelete": Prop(Boolean, server_set=True, default=True),
    }

    def validate(self, context: SetContext, object_id: str, record: dict,
                 existing: dict | None) -> None:
        if existing is not None:
            return
        address = record["email"]
        if not is_mailbox_address(address):
            raise SetError.invalid_properties(["email"], f"email: {address!r} is not an address")
        user = context.call.user  # in a shared account too: who sends is who asks
        if not may_send_as(user.email, address):  # RFC 8621 §6.3
            raise SetError("forbiddenFrom", f"{user.name} may send as {user.email} and its "
                           f"sub-addresses ({user.email.replace('@', '+any@')}), not {address}")

    def before_destroy(self, context: SetContext, object_id: str, record: dict) -> None:
        if not record.get("mayDelete", True):  # RFC 8621 §6: "forbidden"
            raise SetError("forbidden", "this Identity is the account's own address "
                           "(mayDelete is false)")


def create_primary_identity(core: JmapCore, user: User) -> None:
    """Every account starts with an Identity for its owner's address (RFC 8621 §6)."""
    record = {**core.datatypes["Identity"].defaults, "name": user.full_name,
              "email": user.email, "mayDelete": False}
    core.store.insert_initial_object(user.account_id, "Identity", PRIMARY_IDENTITY_ID, record,
                                     core.now())


ACCOUNT_SETUP.append(create_primary_identity)

# --- 9.6 EmailSubmission (RFC 8621 §7) ------------------------------------------
# Creating one sends an Email. The message is checked against its Identity, its Bcc
# removed (§7.5 MUST), and the result queued in the store's outgoing table with its
# envelope, so destroying the Email or the submission later changes nothing (§7.5).
# Section 10 delivers it: at once, or when a FUTURERELEASE hold (RFC 4865) ends;
# until then the client may set undoStatus "canceled".

Address = JmapType("Address", lambda v: isinstance(v, dict) and set(v) <= {"email", "parameters"}
                   and isinstance(v.get("email"), str)
                   and (v.get("parameters") is None or map_of(AnyJson).accepts(v["parameters"])
                        and all(x is None or isinstance(x, str) for x in v["parameters"].values())))
Envelope = record_of({"mailFrom": Address, "rcptTo": list_of(Address)})
UNDO_STATUSES = ("pending", "final", "canceled")
# SMTP extensions whose MAIL FROM parameters jmapd takes (RFC 8621 §1.3.2); none for RCPT TO
MAIL_PARAMETERS = {"HOLDFOR": "FUTURERELEASE", "HOLDUNTIL": "FUTURERELEASE",  # RFC 4865
                   "SIZE": "SIZE", "BODY": "8BITMIME", "SMTPUTF8": "SMTPUTF8"}  # 1870, 6152, 6531
SEND_SUBMISSION: list[Callable] = []  # fn(core, accountId, submissionId): 10 delivers it


def submission_extensions(core: JmapCore) -> dict[str, list[str]]:
    """The EHLO keywords and arguments a client may use (RFC 8621 §1.3.2)."""
    extensions = {"SIZE": [str(core.limits["maxSizeSubmission"])], "8BITMIME": [],
                  "SMTPUTF8": []}
    if core.limits["maxDelayedSend"]:
        extensions["FUTURERELEASE"] = [str(core.limits["maxDelayedSend"])]
    return extensions


capability(URN_SUBMISSION, lambda core: {}, lambda core, account: {
    "maxDelayedSend": core.limits["maxDelayedSend"],
    "submissionExtensions": submission_extensions(core)})


def _ids_in(path: str) -> Filter:
    return Filter("sql", type=list_of(Id), build=lambda ids: (
        f"{json_path_sql(path)} IN ({','.join('?' * len(ids))})" if ids else "0", list(ids)))


def _send_at_compared(operator: str) -> Filter:
    return Filter("sql", type=UTCDate, build=lambda value: (
        f"jmap_utc_seconds({json_path_sql('sendAt')}) {operator} ?", [_utc_seconds(value)]))


def header_fields_removed(raw: bytes, names: set[str]) -> bytes:
    """The message without the named header fields (each with its folded lines)."""
    kept, dropping, position = [], False, 0
    while position < len(raw):
        end = raw.find(b"\n", position)
        end = len(raw) if end < 0 else end + 1
        line = raw[position:end]
        if line in (b"\r\n", b"\n"):  # the header section ends here
            break
        if line[:1] not in (b" ", b"\t"):
            dropping = line.split(b":", 1)[0].strip().lower().decode("latin-1") in names
        if not dropping:
            kept.append(line)
        position = end
    return b"".join(kept) + raw[position:]


def delivery_status(smtp_reply: str, delivered: str) -> dict:
    """A DeliveryStatus (§7): a synthetic SMTP reply; display unknown until an MDN says."""
    return {"smtpReply": smtp_reply, "delivered": delivered, "displayed": "unknown"}


def _nullable(type_: JmapType) -> JmapType:
    return JmapType(type_.name + "|null", lambda v: v is None or type_.accepts(v))


def sending_forbidden(core: JmapCore, user: User) -> str | None:
    """Why the user may not send right now (forbiddenToSend), or None."""
    return core.store.get_meta("sending-forbidden:" + user.name) or None


def forbid_sending(core: JmapCore, user: "User | str", reason: str | None) -> None:
    """Stop (reason given) or allow (None) a user's sending, as an administrator might."""
    with core.store.transaction():
        core.store.set_meta("sending-forbidden:" + core.user(user).name, reason or "")


def check_sendable(headers: list[tuple[str, str]], identity_email: str) -> None:
    """RFC 5322 §3.6 From/Sender rules (invalidEmail, listing every bad property),
    then whether the Identity allows the From addresses (forbiddenFrom, §7.5)."""
    fields = {name: field_values(headers, name) for name in ("from", "sender")}
    senders = [header_as_addresses(v) for v in fields["sender"]]
    authors = header_as_addresses(fields["from"][-1]) if fields["from"] else []
    problems = {}
    if len(fields["from"]) != 1 or not authors or not all(is_mailbox_address(a["email"])
                                                         for a in authors):
        problems["from"] = "exactly one From field with valid addresses"
    if len(senders) > 1 or (senders and len(senders[0]) != 1):
        problems["sender"] = "at most one Sender field, of one address"
    elif len(authors) > 1 and not senders:
        problems["sender"] = "a Sender field, as the From field has several addresses"
    if problems:
        raise SetError("invalidEmail", "the Email needs " + "; ".join(problems.values()),
                       properties=sorted(problems))
    refused = [a["email"] for a in authors if not address_allowed(identity_email, a["email"])]
    if refused:
        raise SetError("forbiddenFrom", f"the Identity ({identity_email}) does not allow "
                       f"sending as {refused[0]}")


def derived_envelope(headers: list[tuple[str, str]], identity_email: str) -> dict:
    """§7 "If the envelope property is null or omitted": Sender or From, and the
    deduplicated To, Cc and Bcc addresses, no parameters."""
    def addresses(name: str) -> list[str]:
        return [a["email"] for raw in field_values(headers, name)
                for a in header_as_addresses(raw)]
    author = (addresses("sender") or addresses("from"))[:1]
    mail_from = author[0] if author and address_allowed(identity_email, author[0]) \
        else identity_email
    seen, recipients = set(), []
    for address in addresses("to") + addresses("cc") + addresses("bcc"):
        if address.lower() not in seen:
            seen.add(address.lower())
            recipients.append({"email": address, "parameters": None})
    return {"mailFrom": {"email": mail_from, "parameters": None}, "rcptTo": recipients}


def _with_parameters(envelope: dict) -> dict:
    """Every Address with its parameters, null where the client left them out (§7)."""
    def address(a: dict) -> dict:
        return {"email": a["email"], "parameters": a.get("parameters")}
    return {"mailFrom": address(envelope["mailFrom"]),
            "rcptTo": [address(a) for a in envelope["rcptTo"]]}


def submitted_message(core: JmapCore, raw: bytes, headers: list) -> tuple[bytes, str]:
    """What leaves: Bcc removed (§7.5 MUST), and a Date and Message-ID added where the
    draft has none, as a submission server does (RFC 6409 §8.2, §8.3; RFC 5322 §3.6
    requires Date). Also the message's Message-ID, for matching reports later."""
    message = header_fields_removed(raw, {"bcc"})
    message_ids = header_value(headers, "message-id", "asMessageIds", False)
    added = b""
    if not any(name.lower() == "date" for name, _ in headers):
        added += f"Date: {email.utils.format_datetime(core.clock.now())}\r\n".encode()
    if not message_ids:
        message_ids = [f"{core.new_id('m')}.{int(core.now())}@jmapd.local"]
        added += f"Message-ID: <{message_ids[0]}>\r\n".encode()
    return added + message, message_ids[0]


def check_envelope(core: JmapCore, envelope: dict, identity_email: str, now: float) -> float:
    """The §7.5 envelope errors; the time the message may leave (FUTURERELEASE)."""
    mail_from = envelope["mailFrom"]["email"]
    if mail_from and not (is_mailbox_address(mail_from)
                          and address_allowed(identity_email, mail_from)):
        raise SetError("forbiddenMailFrom", f"the Identity ({identity_email}) does not allow "
                       f"the envelope sender {mail_from!r}")
    send_at = _release_time(core, envelope["mailFrom"].get("parameters") or {}, now)
    recipients = envelope["rcptTo"]
    if not recipients:
        raise SetError("noRecipients", "the envelope has no rcptTo address")
    invalid = [a["email"] for a in recipients if not is_mailbox_address(a["email"])]
    if invalid:
        raise SetError("invalidRecipients", f"not an address: {invalid[0]!r}",
                       invalidRecipients=invalid)
    if any(a.get("parameters") for a in recipients):
        raise SetError.invalid_properties(["envelope"], "envelope: jmapd supports no RCPT TO "
                                          "parameters (see submissionExtensions)")
    limit = core.limits["maxRecipients"]
    if len(recipients) > limit:
        raise SetError("tooManyRecipients", f"{len(recipients)} recipients; at most {limit}",
                       maxRecipients=limit)
    return send_at


def _release_time(core: JmapCore, parameters: dict, now: float) -> float:
    """Check MAIL FROM parameters against submissionExtensions; HOLDFOR or HOLDUNTIL
    (RFC 4865 §3) put off the release, up to maxDelayedSend."""
    given = {name.upper(): value for name, value in parameters.items()}
    supported = submission_extensions(core)
    unknown = [n for n in given if MAIL_PARAMETERS.get(n) not in supported]
    problem = f"MAIL FROM parameter {unknown[0]} is not supported" if unknown else None
    if given.get("BODY", "7BIT").upper() not in ("7BIT", "8BITMIME"):
        problem = "BODY is 7BIT or 8BITMIME"
    if "SMTPUTF8" in given and given["SMTPUTF8"] is not None:
        problem = "SMTPUTF8 takes no value"
    if not re.fullmatch(r"[0-9]{1,18}", given.get("SIZE", "0") or "x"):
        problem = "SIZE is a number of octets"
    hold, problem = _hold_seconds(given, now, problem)
    if problem is None and hold > core.limits["maxDelayedSend"]:
        problem = f"a hold of {hold:.0f} s is beyond maxDelayedSend"
    if problem:
        raise SetError.invalid_properties(["envelope"], "envelope: " + problem)
    return now + max(hold, 0)


def _hold_seconds(given: dict, now: float, problem: str | None) -> tuple[float, str | None]:
    if "HOLDFOR" in given and "HOLDUNTIL" in given:
        return 0, "HOLDFOR and HOLDUNTIL exclude each other (RFC 4865 §3)"
    if "HOLDFOR" in given:
        value = given["HOLDFOR"] or ""
        return (int(value), problem) if re.fullmatch(r"[0-9]{1,9}", value) else \
            (0, "HOLDFOR is a number of seconds")
    if "HOLDUNTIL" in given:
        value = given["HOLDUNTIL"] or ""
        if not Date.accepts(value):
            return 0, "HOLDUNTIL is an RFC 3339 date-time"
        return _utc_seconds(value) - now, problem
    return 0, problem


@datatype
class EmailSubmission(DataType):
    """RFC 8621 §7: the sending of an Email, and what became of it."""

    name = "EmailSubmission"
    capability = URN_SUBMISSION
    id_prefix = "S"
    properties = {
        "id": Prop(Id, server_set=True, immutable=True),
        "identityId": Prop(Id, immutable=True, reference="Identity"),
        "emailId": Prop(Id, immutable=True, reference="Email"),
        "threadId": Prop(Id, server_set=True, immutable=True),
        "envelope": Prop(Envelope, nullable=True, immutable=True, default=None),
        "sendAt": Prop(UTCDate, server_set=True, immutable=True),
        "undoStatus": Prop(one_of(*UNDO_STATUSES)),  # server-set on create (§7)
        "deliveryStatus": Prop(AnyJson, nullable=True, server_set=True, default=None),
        "dsnBlobIds": Prop(list_of(Id), server_set=True, default=()),
        "mdnBlobIds": Prop(list_of(Id), server_set=True, default=()),
    }
    filters = {
        "identityIds": _ids_in("identityId"), "emailIds": _ids_in("emailId"),
        "threadIds": _ids_in("threadId"),
        "undoStatus": Filter("equals", "undoStatus", one_of(*UNDO_STATUSES)),
        "before": _send_at_compared("<"), "after": _send_at_compared(">="),
    }
    # §7.3 names the sort "sentAt" though the property is sendAt: both are accepted
    sorts = {"emailId": Sort("emailId"), "threadId": Sort("threadId"),
             "sentAt": Sort("sendAt"), "sendAt": Sort("sendAt")}
    sql_functions = {"jmap_utc_seconds": lambda value: _utc_seconds(value) if value else None}
    set_arguments = {
        "onSuccessUpdateEmail": (_nullable(map_of(AnyJson, key=IdOrCreationRef)), None),
        "onSuccessDestroyEmail": (_nullable(list_of(IdOrCreationRef)), None),
    }

    def before_create(self, context: SetContext, given: dict,
                      base: dict | None) -> tuple[dict, dict | None]:
        if "undoStatus" in given:
            raise SetError.invalid_properties(["undoStatus"], "undoStatus is set by the "
                                              "server on create (RFC 8621 §7)")
        if given.get("envelope", MISSING) is None:  # §7: null means "derive it", shown back
            given = {k: v for k, v in given.items() if k != "envelope"}
        return given, {**(base or {}), "undoStatus": "final"}  # derive() decides

    def derive(self, context: SetContext, object_id: str, record: dict,
               existing: dict | None = None) -> dict:
        """Check the message and envelope (§7.5), then queue the message for sending."""
        if existing is not None:
            return self._derived_update(record, existing)
        store, user = context.store, context.call.user
        email = store.get_objects(context.account.id, "Email", [record["emailId"]])
        email = email[record["emailId"]]
        identity = store.get_objects(context.account.id, "Identity", [record["identityId"]])
        identity = identity[record["identityId"]]
        reason = sending_forbidden(context.call.core, user)
        if reason is not None:
            raise SetError("forbiddenToSend", reason)
        raw = blob_content(store, email["blobId"]) or b""
        limit = context.call.core.limits["maxSizeSubmission"]
        if len(raw) > limit:
            raise SetError("tooLarge", f"the message is {len(raw)} octets; at most {limit} "
                           "may be sent", maxSize=limit)
        headers, _ = split_header_block(raw, 0, len(raw))
        check_sendable(headers, identity["email"])
        envelope = _with_parameters(record["envelope"]) if record["envelope"] \
            else derived_envelope(headers, identity["email"])
        send_at = check_envelope(context.call.core, envelope, identity["email"], context.now)
        recipients = list(dict.fromkeys(a["email"] for a in envelope["rcptTo"]))
        message, message_id = submitted_message(context.call.core, raw, headers)
        context.queued = {**context.queued, object_id: (
            store.put_blob(message), message_id, envelope["mailFrom"]["email"], recipients,
            send_at)}
        return {**record, "threadId": email["threadId"], "envelope": envelope,
                "sendAt": utc_date(send_at),
                "undoStatus": "pending" if send_at > context.now else "final",
                "deliveryStatus": {r: delivery_status("250 2.0.0 queued", "queued")
                                   for r in recipients},
                "dsnBlobIds": [], "mdnBlobIds": []}

    @staticmethod
    def _derived_update(record: dict, existing: dict) -> dict:
        """Once canceled, no recipient's status is "queued": it will never leave."""
        if record["undoStatus"] != "canceled" or existing["undoStatus"] == "canceled":
            return record
        return {**record, "deliveryStatus": {address: delivery_status(
            "550 5.0.0 canceled by the sender before it was sent", "no")
            for address in record.get("deliveryStatus") or {}}}

    def validate(self, context: SetContext, object_id: str, record: dict,
                 existing: dict | None) -> None:
        if existing is None or record["undoStatus"] == existing["undoStatus"]:
            return
        if record["undoStatus"] != "canceled":  # §7: a client may only cancel
            raise SetError.invalid_properties(["undoStatus"], "undoStatus may only be set "
                                              "to \"canceled\"")
        if existing["undoStatus"] != "pending":
            raise SetError("cannotUnsend", f"the submission is {existing['undoStatus']}: "
                           "its message has left and cannot be recalled")

    def after_write(self, context: SetContext, object_id: str, record: dict | None,
                    existing: dict | None) -> None:
        context.succeeded = {**context.succeeded,
                             object_id: (record or existing)["emailId"]}
        account_id = context.account.id
        if existing is None:
            blob_id, message_id, mail_from, recipients, send_at = context.queued.pop(object_id)
            context.store.queue_outgoing(account_id, object_id, blob_id, message_id, mail_from,
                                         recipients, send_at)
            if record["undoStatus"] == "final":
                for send in SEND_SUBMISSION:
                    send(context.call.core, account_id, object_id)
        elif record and record["undoStatus"] == "canceled" and \
                existing["undoStatus"] != "canceled":
            context.store.finish_outgoing(account_id, object_id, "canceled")

    def created_view(self, call: MethodCall, account: Account, object_id: str, record: dict,
                     given: dict) -> dict:
        """What was stored once the send was tried (deliveryStatus may have moved)."""
        stored = call.store.get_objects(account.id, self.name, [object_id])[object_id]
        return super().created_view(call, account, object_id, stored, given)

    def after_set(self, context: SetContext, response: dict) -> None:
        """§7.5: one implicit Email/set for the submissions that succeeded."""
        succeeded = context.succeeded
        def email_of(reference: str) -> str | None:
            return succeeded.get(context.call.resolve_creation_id(reference) or "")
        updates = context.extra["onSuccessUpdateEmail"] or {}
        update = {email_of(k): patch for k, patch in updates.items() if email_of(k)}
        destroy = [email_of(k) for k in context.extra["onSuccessDestroyEmail"] or []
                   if email_of(k)]
        if update or destroy:
            context.call.then = ("Email/set", {"accountId": context.account.id,
                                               "update": update or None,
                                               "destroy": list(dict.fromkeys(destroy)) or None})


# --- 9.7 VacationResponse (RFC 8621 §8) ----------------------------------------
# One object per account, id "singleton": it cannot be created or destroyed, and it
# exists from the account's start (written at modseq 0, so it moves no state). The
# auto-reply itself is delivery's (section 10.2).

URN_VACATION = "urn:ietf:params:jmap:vacationresponse"  # RFC 8621 §1.3.3
capability(URN_VACATION, lambda core: {}, lambda core, account: {})
VACATION_ID = "singleton"


@datatype
class VacationResponse(DataType):
    """RFC 8621 §8: the account's vacation auto-reply settings."""

    name = "VacationResponse"
    capability = URN_VACATION
    id_prefix = "V"
    methods = ("get", "set")
    properties = {
        "id": Prop(Id, server_set=True, immutable=True),
        "isEnabled": Prop(Boolean, default=False),
        "fromDate": Prop(UTCDate, nullable=True, default=None),
        "toDate": Prop(UTCDate, nullable=True, default=None),
        "subject": Prop(String, nullable=True, default=None),
        "textBody": Prop(String, nullable=True, default=None),
        "htmlBody": Prop(String, nullable=True, default=None),
    }

    def before_create(self, context: SetContext, given: dict,
                      base: dict | None) -> tuple[dict, dict | None]:
        raise SetError("singleton", "an account has exactly one VacationResponse")  # §8

    def before_destroy(self, context: SetContext, object_id: str, record: dict) -> None:
        raise SetError("singleton", "the VacationResponse cannot be destroyed")

    def after_write(self, context: SetContext, object_id: str, record: dict | None,
                    existing: dict | None) -> None:
        """New settings start a new period: every sender may be answered once again."""
        context.store.forget_vacation_replies(context.account.id)


def create_vacation_response(core: JmapCore, user: User) -> None:
    """Every account has its singleton, disabled (RFC 8621 §8)."""
    core.store.insert_initial_object(user.account_id, "VacationResponse", VACATION_ID,
                                     core.datatypes["VacationResponse"].defaults, core.now())


ACCOUNT_SETUP.append(create_vacation_response)

# =============================================================================
# 10. Delivery
# =============================================================================
# The one path every message takes. Arriving mail (the embedding API's deliver(),
# EmailSubmission to a local user, a vacation reply or redirect; an SMTP listener
# would come in here too, and Sieve through DELIVERY_FILTERS) is stored,
# then imported through the public core into the Inbox, so filing, threading,
# counts and state changes are those of any Email/import; then the recipient's
# vacation response may answer (RFC 3834, RFC 5230), and a report (MDN or DSN)
# about a message the recipient sent is filed with its EmailSubmission (RFC 8621 §7).
# Mail for anyone else goes to the outbox, as data: `core.outbox`; once the write
# commits, `core.relay` (section 14's --relay) and `core.outbox_listeners` get it.

VACATION_PERIOD_SECONDS = 7 * 86400  # RFC 5230 §4.1: one reply per sender per 7 days
# RFC 5230 §4.6: senders that are lists or robots, never answered
ROBOT_SENDERS = re.compile(r"(?i)(owner-.*|.*-request|listserv|listproc|majordomo|"
                           r"mailer-daemon|no-?reply)")
DEFAULT_VACATION_TEXT = "I am away at the moment and will read your message when I return."


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message sent to recipients outside this server: what --relay forwards."""
    mail_from: str
    rcpt_to: tuple[str, ...]
    raw: bytes
    sent_at: str                       # UTCDate
    account_id: str | None = None      # the sender's account and EmailSubmission, if any
    submission_id: str | None = None

    @property
    def message(self) -> email.message.EmailMessage:
        """The message parsed by the standard library, for tests to read."""
        return email.message_from_bytes(self.raw, policy=email.policy.default)


def user_for_address(core: JmapCore, recipient: str) -> User | None:
    """A login by name or by its address or sub-address (case-insensitive)."""
    found = core.store.user(recipient)
    if found:
        return found
    local, domain = _local_and_domain(recipient)  # else the address without +detail
    return core.store.user_by_email(recipient) or core.store.user_by_email(
        f"{local.split('+', 1)[0]}@{domain}")


def trace_fields(core: JmapCore, mail_from: str | None, via: str) -> bytes:
    """The Received (and, for final delivery, Return-Path) fields an MTA adds (RFC 5321 §4.4)."""
    stamp = email.utils.format_datetime(core.clock.now())
    fields = f"Received: by jmapd ({via}); {stamp}\r\n"
    if mail_from is not None:
        fields = f"Return-Path: <{mail_from}>\r\n" + fields
    return fields.encode()


@dataclasses.dataclass
class Filing:
    """What becomes of a message delivered to one user: by default the Inbox, the given
    keywords, and the vacation response may answer. Each of DELIVERY_FILTERS may change
    it; a Sieve interpreter (RFC 5228, RFC 9661) plugs in there (fileinto, addflag,
    discard, redirect, and its own vacation)."""
    mailbox_ids: list[str]
    keywords: set[str]
    discard: bool = False
    redirect: list[str] = dataclasses.field(default_factory=list)
    auto_reply: bool = True


DELIVERY_FILTERS: list[Callable] = []  # fn(core, user, raw, mail_from, filing) -> Filing


def deliver_message(core: JmapCore, raw: bytes, to: str | Iterable[str],
                    keywords: Iterable[str] = (), received_at: str | None = None,
                    mail_from: str | None = None) -> dict:
    """Deliver raw RFC 5322 octets to each local recipient; {recipient: Email id, or None
    if a filter discarded it}. mail_from is the envelope sender, whom a vacation
    response answers."""
    recipients = [to] if isinstance(to, str) else list(to)
    if isinstance(keywords, str):  # one keyword given bare would become its letters
        raise ValueError("keywords: a list of keywords, e.g. [\"$seen\"]")
    if mail_from not in (None, "") and not is_mailbox_address(mail_from):
        # it becomes the Return-Path field: a line break there would forge header fields
        raise ValueError(f"mail_from: {mail_from!r} is not an address (RFC 5321 §4.1.2)")
    delivered = {}
    for recipient in recipients:
        user = user_for_address(core, recipient)
        if user is None:
            raise ValueError(f"no local user {recipient!r}")
        with core.as_administrator(), core.store.transaction():
            delivered[recipient] = _deliver_to(core, user, raw, set(keywords), received_at,
                                               mail_from)
    return delivered


def _deliver_to(core: JmapCore, user: User, raw: bytes, keywords: set[str],
                received_at: str | None, mail_from: str | None) -> str | None:
    filing = Filing([_inbox_of(core, user)], keywords)
    for decide in DELIVERY_FILTERS:
        filing = decide(core, user, raw, mail_from, filing)
    email_id = None
    if not filing.discard:
        email_id, blob_id = _import_filed(core, user, raw, filing, received_at)
        file_report(core, user, raw, blob_id)
    if filing.redirect:  # RFC 5228 §4.2: the envelope sender stays
        send_message(core, mail_from or "", filing.redirect, raw)
    if filing.auto_reply:
        answer_with_vacation_response(core, user, raw, mail_from)
    return email_id


def _inbox_of(core: JmapCore, user: User) -> str:
    inbox = core.call(user, "Mailbox/query", {"accountId": user.account_id,
                                              "filter": {"role": "inbox"}})["ids"]
    if not inbox:
        raise ValueError(f"{user.name} has no Mailbox with the inbox role")
    return inbox[0]


def _import_filed(core: JmapCore, user: User, raw: bytes, filing: Filing,
                  received_at: str | None) -> tuple[str, str]:
    blob = upload_blob(core, user, user.account_id, raw, "message/rfc822")
    email_ = {"blobId": blob["blobId"], "mailboxIds": dict.fromkeys(filing.mailbox_ids, True),
              "keywords": dict.fromkeys(sorted(filing.keywords), True)}
    if received_at:
        email_["receivedAt"] = received_at
    result = core.call(user, "Email/import", {"accountId": user.account_id,
                                              "emails": {"m": email_}})
    if result["notCreated"]:
        refusal = result["notCreated"]["m"]  # e.g. overQuota (RFC 9425)
        raise ValueError(f"not delivered to {user.name}: {refusal['type']}"
                         + (f" ({refusal['description']})" if refusal.get("description") else ""))
    return result["created"]["m"]["id"], blob["blobId"]


def send_message(core: JmapCore, mail_from: str, recipients: Iterable[str], raw: bytes,
                 origin: tuple[str, str] | None = None) -> dict[str, dict]:
    """Send to each recipient: local users get it in their Inbox, others through the
    outbox. The DeliveryStatus per recipient (RFC 8621 §7, a synthetic smtpReply)."""
    statuses, elsewhere = {}, []
    for recipient in recipients:
        user = user_for_address(core, recipient)
        if user is None:
            elsewhere.append(recipient)
            statuses[recipient] = delivery_status("250 2.0.0 handed to the relay", "queued") \
                if core.relay else delivery_status("250 2.0.0 kept in jmapd's outbox", "unknown")
            continue
        try:
            deliver_message(core, trace_fields(core, mail_from, "local delivery") + raw,
                            recipient, mail_from=mail_from)
            statuses[recipient] = delivery_status(f"250 2.1.5 delivered to {user.name}'s Inbox", "yes")
        except ValueError as error:
            statuses[recipient] = delivery_status(f"550 5.2.0 {error}", "no")
    if elsewhere:
        sent = OutboxMessage(mail_from, tuple(elsewhere), trace_fields(core, None, "outbox")
                             + raw, format_utc(core.clock.now()), *(origin or (None, None)))
        core.store.after_commit(functools.partial(post_to_outbox, core, sent))
    return statuses


def post_to_outbox(core: JmapCore, message: OutboxMessage) -> None:
    core.outbox.append(message)
    for listener in ([core.relay] if core.relay else []) + core.outbox_listeners:
        listener(message)


# --- 10.1 EmailSubmission's sending (RFC 8621 §7.5) ----------------------------

def send_submission(core: JmapCore, account_id: str, submission_id: str) -> None:
    """Send a queued submission now: deliver, then record each recipient's status."""
    queued = core.store.outgoing(account_id, submission_id)
    if queued is None or queued["state"] != "pending":
        return
    raw = core.store.blob_data(queued["blob_id"]) or b""
    statuses = send_message(core, queued["mail_from"], queued["rcpt_to"], raw,
                            (account_id, submission_id))
    core.store.finish_outgoing(account_id, submission_id, "sent")
    update_submission(core, account_id, submission_id, lambda s: {
        **s, "undoStatus": "final", "deliveryStatus": {**(s["deliveryStatus"] or {}),
                                                       **statuses}})


SEND_SUBMISSION.append(send_submission)


def update_submission(core: JmapCore, account_id: str, submission_id: str,
                      change: Callable[[dict], dict]) -> None:
    """Rewrite a live EmailSubmission (a destroyed one keeps no status: §7.5)."""
    found = core.store.get_objects(account_id, "EmailSubmission", [submission_id])
    if submission_id in found:
        core.store.update_object(account_id, "EmailSubmission", submission_id,
                                 change(found[submission_id]), core.now())


def release_held_submissions(core: JmapCore) -> None:
    """Send every held submission whose sendAt has come (FUTURERELEASE, RFC 4865)."""
    now = core.now()
    next_at = core.store.next_send_at()
    if next_at is None or next_at > now:
        return
    with core.store.transaction():
        for account_id, submission_id in core.store.due_outgoing(now):
            send_submission(core, account_id, submission_id)


DUE_WORK.append(release_held_submissions)


def record_relay_result(core: JmapCore, message: OutboxMessage,
                        replies: dict[str, tuple[str, str]]) -> None:
    """What the relay answered per recipient: {address: (delivered, smtpReply)}."""
    if message.submission_id is None:
        return
    with core.store.transaction():
        update_submission(core, message.account_id, message.submission_id, lambda s: {
            **s, "deliveryStatus": {**(s["deliveryStatus"] or {}), **{
                rcpt: delivery_status(reply, delivered) for rcpt, (delivered, reply) in replies.items()}}})


# --- 10.2 Vacation responses (RFC 8621 §8, RFC 3834, RFC 5230) -----------------

def answer_with_vacation_response(core: JmapCore, user: User, raw: bytes,
                                  mail_from: str | None) -> None:
    """Send the user's vacation response to the sender of a delivered message, if it is
    on, the message is personal and not automatic, and this sender had none this period."""
    settings = core.store.get_objects(user.account_id, "VacationResponse", [VACATION_ID])
    settings = settings.get(VACATION_ID)
    if not settings or not vacation_is_active(settings, core.now()):
        return
    headers, _ = split_header_block(raw, 0, len(raw))
    sender = reply_address(headers, mail_from)
    if sender is None or not deserves_auto_reply(headers, sender, user):
        return
    last = core.store.vacation_replied_at(user.account_id, sender.lower())
    if last is not None and core.now() - last < VACATION_PERIOD_SECONDS:
        return
    core.store.record_vacation_reply(user.account_id, sender.lower(), core.now())
    reply = vacation_reply(core, user, settings, headers, sender)
    send_message(core, "", [sender], reply)  # RFC 3834 §3.3: a null return path


def vacation_is_active(settings: dict, now: float) -> bool:
    """§8: enabled, on or after fromDate and before toDate (either may be null)."""
    starts, ends = settings.get("fromDate"), settings.get("toDate")
    return bool(settings.get("isEnabled")) and (starts is None or _utc_seconds(starts) <= now) \
        and (ends is None or now < _utc_seconds(ends))


def reply_address(headers: list[tuple[str, str]], mail_from: str | None) -> str | None:
    """Whom to answer: the envelope sender (RFC 3834 §4), else Return-Path, else From;
    none for a null return path (bounces and other automatic mail)."""
    if mail_from is not None:
        return mail_from or None
    for name in ("return-path", "sender", "from"):
        raws = field_values(headers, name)
        if raws:
            found = header_as_addresses(raws[0]) if name != "return-path" else [
                {"email": raws[0].strip().strip("<>").strip()}]
            address = found[0]["email"] if found else ""
            return address if is_mailbox_address(address) else None
    return None


def deserves_auto_reply(headers: list[tuple[str, str]], sender: str, user: User) -> bool:
    """RFC 3834 §2 and RFC 5230 §4.5-4.6: never to automatic mail, lists, robots or
    oneself, and only to mail that names the user as a recipient."""
    fields = {n.lower(): v.strip().lower() for n, v in headers}
    if fields.get("auto-submitted", "no").split(";")[0].strip() != "no":
        return False
    if fields.get("precedence") in ("bulk", "list", "junk") or any(
            name.startswith("list-") for name in fields):
        return False
    if ROBOT_SENDERS.fullmatch(sender.rpartition("@")[0]) or may_send_as(user.email, sender):
        return False
    named = [a["email"] for n, v in headers if n.lower() in (
        "to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")
        for a in header_as_addresses(v)]
    return any(may_send_as(user.email, address) for address in named)


def vacation_reply(core: JmapCore, user: User, settings: dict,
                   headers: list[tuple[str, str]], sender: str) -> bytes:
    """The auto-reply (RFC 3834 §3): Auto-Submitted, In-Reply-To and References set."""
    identity = core.store.get_objects(user.account_id, "Identity", [PRIMARY_IDENTITY_ID])
    name = identity.get(PRIMARY_IDENTITY_ID, {}).get("name") or user.full_name
    subject = header_as_text(last_field(headers, "subject") or "")
    reply = email.message.EmailMessage(policy=COMPOSE_POLICY)
    fields = {"From": format_addresses([{"name": name, "email": user.email}]),
              "To": format_addresses([{"name": None, "email": sender}]),
              "Subject": encode_unstructured(settings.get("subject")  # RFC 3834 §3.1.5
                                             or f"Auto: {subject or 'away'}"),
              "Date": email.utils.format_datetime(core.clock.now()),
              "Message-ID": f"<{core.new_id('v')}.{int(core.now())}@jmapd.local>"}
    original = header_as_message_ids(last_field(headers, "message-id") or "") or []
    if original:
        earlier = header_as_message_ids(last_field(headers, "references") or "") or []
        fields["In-Reply-To"] = f"<{original[0]}>"
        fields["References"] = " ".join(f"<{m}>" for m in earlier + original[:1])
    fields["Auto-Submitted"] = "auto-replied"  # RFC 3834 §5
    for field, value in fields.items():
        set_header(reply, field, value)
    text, html_body = settings.get("textBody"), settings.get("htmlBody")
    reply.set_content(text if text is not None else html_to_text(html_body) if html_body
                      else DEFAULT_VACATION_TEXT)
    if html_body:
        reply.add_alternative(html_body, subtype="html")
    return reply.as_bytes(policy=COMPOSE_POLICY)


# --- 10.3 Reports about sent mail (RFC 8621 §7: dsnBlobIds, mdnBlobIds) ----------

REPORT_KINDS = {"message/disposition-notification": "mdnBlobIds",  # RFC 8098
                "message/delivery-status": "dsnBlobIds"}           # RFC 3464


def file_report(core: JmapCore, user: User, raw: bytes, blob_id: str) -> None:
    """A delivered MDN or DSN about a message this user sent: keep its blob with the
    EmailSubmission and update that recipient's deliveryStatus."""
    head, _ = split_header_block(raw, 0, len(raw))
    media_type = parse_parameters(last_field(head, "content-type") or "")[0]
    if media_type.strip().lower() != "multipart/report":
        return  # most mail: its header says so, no second MIME parse of the message
    root = parse_mime(raw)
    if root.type != "multipart/report" or len(root.sub_parts) < 2:
        return
    report = root.sub_parts[1]
    key = REPORT_KINDS.get(report.type)
    if key is None:
        return
    blocks = [split_header_block(block, 0, len(block))[0] for block in
              re.split(rb"\r?\n\r?\n", raw[report.start:report.end]) if block.strip()]
    fields = [{n.lower(): v.strip() for n, v in block} for block in blocks]
    original = next((f["original-message-id"] for f in fields if "original-message-id" in f),
                    None)
    if original is None and len(root.sub_parts) > 2:
        returned = root.sub_parts[2]
        original = dict((n.lower(), v) for n, v in split_header_block(
            raw, returned.start, returned.end)[0]).get("message-id")
    for message_id in header_as_message_ids(original or "") or []:
        for submission_id in core.store.outgoing_by_message_id(user.account_id, message_id):
            core.store.add_blob_ref(user.account_id, blob_id, "submission:" + submission_id,
                                    "message/rfc822", None)
            update_submission(core, user.account_id, submission_id,
                              lambda s: _with_report(s, key, blob_id, fields))


def _with_report(submission: dict, key: str, blob_id: str, fields: list[dict]) -> dict:
    """RFC 8621 §7: "displayed" from an MDN, "yes"/"no" from a DSN's Action."""
    statuses = {k: dict(v) for k, v in (submission.get("deliveryStatus") or {}).items()}
    for block in fields:
        recipient = block.get("final-recipient", "").partition(";")[2].strip()
        if recipient not in statuses:
            continue
        if key == "mdnBlobIds" and block.get("disposition", "").rpartition(";")[2].strip(
                ).lower().startswith("displayed"):
            statuses[recipient]["displayed"] = "yes"
        action = block.get("action", "").lower()
        if key == "dsnBlobIds" and action in ("delivered", "failed"):
            statuses[recipient]["delivered"] = "yes" if action == "delivered" else "no"
            code = block.get("diagnostic-code", "").partition(";")[2].strip()
            statuses[recipient]["smtpReply"] = code or statuses[recipient]["smtpReply"]
    return {**submission, key: [*submission.get(key, []), blob_id],
            "deliveryStatus": statuses or submission.get("deliveryStatus")}

# =============================================================================
# 11. Push (logic)
# =============================================================================
# RFC 8620 §7: StateChange objects from the change feed, the EventSource (§7.3)
# wire format, and PushSubscription (§7.2) with the POSTs it is owed, as data.
# Sans-IO: section 14 holds the connections and sends what these functions return.
# Event ids are feed sequence numbers, so a reconnecting client's Last-Event-ID
# says which changes it missed. A subscription gets nothing but its PushVerification
# until the client has set the code that verification carried.

# --- 11.1 StateChange and EventSource (RFC 8620 §7.1, §7.3) -------------------

PING_LIMITS = (1, 3600)  # §7.3: a minimum no higher than 30, a maximum no lower than 300


def parse_event_source_query(query: str) -> tuple[set[str] | None, bool, int]:
    """(types or None for all, close after a state event?, ping seconds) from §7.3's URL."""
    try:
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True, errors="strict"))
    except (UnicodeError, ValueError):
        raise RequestError.http(400, "the query string is not valid UTF-8") from None
    types = params.get("types", "*")
    close_after = params.get("closeafter", "no")
    ping = params.get("ping", "0")
    if close_after not in ("state", "no") or not ping.isdigit() or not types:
        raise RequestError.http(400, "types: names or *, closeafter: state|no, ping: seconds")
    wanted = None if types == "*" else {t for t in types.split(",") if t}
    seconds = int(ping) and min(max(int(ping), PING_LIMITS[0]), PING_LIMITS[1])
    return wanted, close_after == "state", seconds


def merge_changed(*maps: dict) -> dict[str, dict[str, str]]:
    """{accountId: {type: state}} maps folded into one, a later state winning (§7.1)."""
    merged: dict[str, dict[str, str]] = {}
    for changed in maps:
        for account_id, states in changed.items():
            merged.setdefault(account_id, {}).update(states)
    return merged


def state_change(core: JmapCore, user: User, changed: dict[str, dict[str, str]],
                 types: set[str] | None) -> dict | None:
    """The StateChange (§7.1) the user may see of one feed entry, or None."""
    visible = {account.id for account in core.store.accounts_of(user.name)}
    shown = {account: {t: s for t, s in states.items() if types is None or t in types}
             for account, states in changed.items() if account in visible}
    shown = {account: states for account, states in shown.items() if states}
    return {"@type": "StateChange", "changed": shown} if shown else None


def current_state_change(core: JmapCore, user: User, types: set[str] | None) -> dict | None:
    """Every state the user can see, for a client whose Last-Event-ID is too old."""
    changed = {}
    with core.store.transaction():
        for account in core.store.accounts_of(user.name):
            changed[account.id] = {type_: core.state_string(modseq) for type_, modseq
                                   in core.store.type_states(account.id).items()}
    return state_change(core, user, changed, types)


def sse_event(name: str, data: dict, event_id: "int | str | None" = None) -> bytes:
    """One text/event-stream event (the data is one line of JSON)."""
    lines = [f"event: {name}"] + ([f"id: {event_id}"] if event_id is not None else [])
    return ("\n".join(lines + [f"data: {json.dumps(data, separators=(',', ':'))}"]) + "\n\n").encode()


# --- 11.2 PushSubscription (RFC 8620 §7.2) -----------------------------------
# A subscription belongs to the user, not to an account: its objects live in a
# hidden per-user account ("push:" + user name, never an Id, listed in no session).
# The code the server sends is kept in the record under VERIFICATION_KEY, which no
# method reads or writes. PushOutbox turns change-feed entries into PushMessages.

PUSH_MAX_LIFETIME = 7 * 86400  # §7.2: Basic credentials never expire: cap at 7 days (≥ 48 h)
PUSH_TTL_SECONDS = 86400       # RFC 8030 §5.2 TTL header: how long a push service keeps it
CAPTURED_PUSH_HOST = "push.jmapd.test"  # RFC 6761 .test: kept in core.pushes, never sent
PUSH_ACCOUNT_PREFIX = "push:"  # ':' is in no Id (§1.2) and in no user name (add_user)
VERIFICATION_KEY = "_verificationSent"  # stored beside the properties, never shown
KEYS_UNSUPPORTED = ("keys: jmapd cannot encrypt pushes: RFC 8291 needs ECDH P-256 and "
                    "AES-128-GCM, which Python's standard library lacks; create the "
                    "subscription without keys")


def push_account_id(user_name: str) -> str:
    return PUSH_ACCOUNT_PREFIX + user_name


def push_account_user(account_id: str) -> str | None:
    """The user whose push subscriptions this hidden account holds, or None."""
    if account_id.startswith(PUSH_ACCOUNT_PREFIX):
        return account_id[len(PUSH_ACCOUNT_PREFIX):]
    return None


def is_loopback_host(host: str | None) -> bool:
    """localhost, 127.0.0.0/8 or ::1: a receiver on this machine."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def push_url_problem(url: str, allow_http: bool) -> str | None:
    """Why a push url is refused, or None (§7.2: it MUST begin with "https://")."""
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "url: not a URL (it contains spaces or control characters)"
    try:
        parts = urllib.parse.urlsplit(url)
        host, _ = parts.hostname, parts.port  # a bad port raises here
    except ValueError:
        return "url: not an absolute URL"
    if parts.scheme not in ("https", "http") or not host:
        return "url: must be an absolute URL beginning with https:// (RFC 8620 §7.2)"
    if parts.scheme == "http" and not allow_http:
        return ("url: must begin with https:// (RFC 8620 §7.2); for a receiver on this "
                "machine start jmapd with --allow-http-push, or use "
                f"https://{CAPTURED_PUSH_HOST}/NAME to capture pushes in-process")
    if parts.scheme == "http" and not is_loopback_host(host):
        return ("url: --allow-http-push lifts the https rule only for loopback receivers "
                "(127.0.0.0/8, ::1, localhost)")
    return None


def is_verified(record: dict) -> bool:
    """§7.2.2: the client has set the code the server sent."""
    code = record.get("verificationCode")
    return code is not None and code == record.get(VERIFICATION_KEY)


def is_expired(record: dict, now: float) -> bool:
    """§7.2: no request to the url after `expires`."""
    return record.get("expires") is not None and _utc_seconds(record["expires"]) <= now


def narrow_expires(record: dict, now: float) -> str | None:
    """§7.2: the server sets an expiry if none is given and shortens one too far off;
    one not in the future is refused (the problem is returned)."""
    latest = now + PUSH_MAX_LIFETIME
    given = record.get("expires")
    if given is not None and _utc_seconds(given) <= now:
        return "expires: must be in the future"
    if given is None or _utc_seconds(given) > latest:
        record["expires"] = utc_date(latest)
    return None


def _code_matches(given: Any, sent: str) -> bool:
    return isinstance(given, str) and secrets.compare_digest(given.encode(), sent.encode())


@datatype
class PushSubscription(DataType):
    """RFC 8620 §7.2: a url the server POSTs StateChanges to, once verified."""

    name = "PushSubscription"
    capability = URN_CORE
    id_prefix = "P"
    methods = ("get", "set")
    per_user = True
    properties = {
        "id": Prop(Id, server_set=True, immutable=True),
        "deviceClientId": Prop(String, immutable=True),
        "url": Prop(String, immutable=True),
        "keys": Prop(record_of({"p256dh": String, "auth": String}), nullable=True,
                     default=None, immutable=True),
        "verificationCode": Prop(String, nullable=True, default=None),
        "expires": Prop(UTCDate, nullable=True, default=None),
        "types": Prop(list_of(String), nullable=True, default=None),
    }
    # §7.2.1: url and keys are never returned; without `properties`, all but those two
    default_properties = ("id", "deviceClientId", "verificationCode", "expires", "types")

    def user_account(self, call: MethodCall) -> Account:
        account_id = push_account_id(call.user.name)
        call.store.add_unowned_account(account_id, f"push subscriptions of {call.user.name}")
        return Account(account_id, account_id, call.user.name, False)

    def render(self, call: MethodCall, account: Account, records: dict[str, dict],
               wanted: list[str], extra: dict) -> dict[str, dict]:
        if "url" in wanted or "keys" in wanted:  # §7.2.1: "MUST be rejected ... forbidden"
            raise MethodError("forbidden", "url and keys are never returned (RFC 8620 §7.2.1)")
        return super().render(call, account, records, wanted, extra)

    def stored(self, record: dict) -> dict:
        kept = super().stored(record)
        if VERIFICATION_KEY in record:
            kept[VERIFICATION_KEY] = record[VERIFICATION_KEY]
        return kept

    def before_create(self, context: SetContext, given: dict,
                      base: dict | None) -> tuple[dict, dict | None]:
        """§7.2.2: the code "MUST contain sufficient entropy": 128 random bits."""
        return given, {**(base or {}), VERIFICATION_KEY: secrets.token_hex(16)}

    def validate(self, context: SetContext, object_id: str, record: dict,
                 existing: dict | None) -> None:
        problems = {}
        if existing is None:
            problems["url"] = push_url_problem(record["url"], context.call.core.allow_http_push)
            problems["keys"] = KEYS_UNSUPPORTED if record["keys"] is not None else None
            if record["verificationCode"] is not None:  # §7.2 "MUST be null ... when created"
                problems["verificationCode"] = "verificationCode: must be null on create"
        elif record["verificationCode"] != existing.get("verificationCode") and not \
                _code_matches(record["verificationCode"], record[VERIFICATION_KEY]):
            problems["verificationCode"] = ("verificationCode: not the code the server "
                                            "pushed to the url (RFC 8620 §7.2.2)")
        if existing is None or record["expires"] != existing.get("expires"):
            problems["expires"] = narrow_expires(record, context.now)
        problems = {name: text for name, text in problems.items() if text}
        if problems:
            raise SetError.invalid_properties(problems, "; ".join(problems.values()))


@dataclasses.dataclass(frozen=True, slots=True)
class PushMessage:
    """One POST owed to a push subscription's url (§7.2): made here, sent in section 14."""
    subscription_id: str
    user: str
    url: str
    body: dict
    ttl: int = PUSH_TTL_SECONDS

    @property
    def is_verification(self) -> bool:
        return self.body.get("@type") == "PushVerification"


def merge_state_changes(older: dict, newer: dict) -> dict:
    """§7: StateChanges not yet sent coalesce; the later state of each type wins."""
    return {"@type": "StateChange", "changed": merge_changed(older["changed"],
                                                             newer["changed"])}


class PushOutbox:
    """Sans-IO: the POSTs owed to push subscriptions, worked out from change-feed
    entries. `collect(entries)` (or `poll()`, which reads the feed without waiting)
    returns PushMessages to send; those to CAPTURED_PUSH_HOST go to core.pushes.
    Subscriptions are read from the store once, then again only when the feed shows
    that user's hidden push account changed."""

    def __init__(self, core: JmapCore) -> None:
        self.core = core
        self.after = core.feed.sequence
        self.subscriptions: dict[str, dict[str, dict]] | None = None  # user -> id -> record
        self.verification_sent: set[str] = set()

    def poll(self) -> list[PushMessage]:
        return self.collect(self.core.feed.wait(self.after, 0))

    def collect(self, entries: list[tuple[int, dict]]) -> list[PushMessage]:
        messages = []
        if self.subscriptions is None:  # the first look: every user's subscriptions
            self.subscriptions = {}
            for user in self.core.users():
                messages += self._reload(user.name)
        for sequence, changed in entries:
            self.after = max(self.after, sequence)
            for account_id in changed:
                user_name = push_account_user(account_id)
                if user_name is not None:
                    messages += self._reload(user_name)
            messages += self._state_changes(changed)
        return self._capture(messages)

    def _reload(self, user_name: str) -> list[PushMessage]:
        """Re-read one user's subscriptions; the verifications owed to new ones."""
        with self.core.store.transaction():
            records = self.core.store.get_objects(push_account_id(user_name),
                                                  PushSubscription.name, None)
        gone = set(self.subscriptions.get(user_name, {})) - set(records)
        self.verification_sent -= gone  # §7.2: a destroyed url is forgotten
        self.subscriptions[user_name] = records
        now = self.core.now()
        owed = [PushMessage(object_id, user_name, record["url"], {
                    "@type": "PushVerification", "pushSubscriptionId": object_id,
                    "verificationCode": record[VERIFICATION_KEY]})
                for object_id, record in records.items()
                if object_id not in self.verification_sent and not is_verified(record)
                and not is_expired(record, now)]
        self.verification_sent.update(message.subscription_id for message in owed)
        return owed

    def _state_changes(self, changed: dict[str, dict[str, str]]) -> list[PushMessage]:
        """§7.1: one StateChange per verified, unexpired subscription that sees a change."""
        now, messages = self.core.now(), []
        for user_name, records in self.subscriptions.items():
            active = {object_id: record for object_id, record in records.items()
                      if is_verified(record) and not is_expired(record, now)}
            if not active:
                continue
            user = self.core.user(user_name)
            for object_id, record in active.items():
                types = None if record["types"] is None else set(record["types"])
                change = state_change(self.core, user, changed, types)
                if change:
                    messages.append(PushMessage(object_id, user_name, record["url"], change))
        return messages

    def _capture(self, messages: list[PushMessage]) -> list[PushMessage]:
        """POSTs to the reserved host are kept in core.pushes, with no network."""
        kept = []
        for message in messages:
            if urllib.parse.urlsplit(message.url).hostname == CAPTURED_PUSH_HOST:
                self.core.pushes.append({"url": message.url, "body": message.body,
                                         "ttl": message.ttl,
                                         "time": format_utc(self.core.clock.now())})
            else:
                kept.append(message)
        return kept

    def is_live(self, message: PushMessage) -> bool:
        """Whether a queued POST may still go: its subscription exists with that url and
        has not expired, and it is the verification or the subscription is verified."""
        record = (self.subscriptions or {}).get(message.user, {}).get(message.subscription_id)
        if record is None or record["url"] != message.url:
            return False
        if is_expired(record, self.core.now()):
            return False
        return message.is_verification or is_verified(record)


# =============================================================================
# 12. Extensions
# =============================================================================
# One numbered sub-section per extension spec, in the order the issues add them
# (STYLE §3.3). Each registers its capability, data types, methods and routes through
# section 1's registries, so it is advertised exactly when its code is here, and
# changes the engine or a mail type only through a named seam: DataType.references_blobs
# and blob_lookup (12.1), EMAIL_SIZE_HOOKS in 9.3 and DataType.visible (12.2),
# Args.get's read_as and SESSION_URLS (12.5).

# --- 12.1 Blob (RFC 9404) -------------------------------------------------------
# Blob/upload concatenates inline octets and ranges of blobs the account holds and
# stores the result as an upload (section 7: same ref, same expiry); Blob/get reads a
# range as text, base64 and digests; Blob/lookup asks each type that declares
# references_blobs which of its objects reference a blob.

URN_BLOB = "urn:ietf:params:jmap:blob"  # RFC 9404 §3.1
BLOB_MAX_DATA_SOURCES = 256             # RFC 9404 §3.1 maxDataSources: at least 64
# RFC 9404 §3.1: names from the RFC 3230 "HTTP Digest Algorithm Values" registry
# (SHA-256, SHA-512: RFC 5843), lowercased; clients prefer the earlier, so strongest first.
BLOB_DIGESTS = {"sha-256": "sha256", "sha-512": "sha512", "sha": "sha1", "md5": "md5"}
BLOB_DATA_PROPERTIES = ("data", "data:asText", "data:asBase64", "size")
_BLOB_SOURCE_KINDS = ("data:asText", "data:asBase64", "blobId")

capability(URN_BLOB, lambda core: {}, lambda core, account: {
    "maxSizeBlobSet": core.limits["maxSizeUpload"],  # §4.1: uploads' own limit applies
    "maxDataSources": BLOB_MAX_DATA_SOURCES,
    "supportedTypeNames": [d.name for d in core.datatypes.values() if d.references_blobs],
    "supportedDigestAlgorithms": list(BLOB_DIGESTS),
})


@method("Blob/upload", capability=URN_BLOB)
def blob_upload(call: MethodCall, args: Args) -> dict:
    """RFC 9404 §4.1: create blobs from data sources; each joins the createdIds."""
    account = call.account(args, writable=True)
    create = args.get("create", map_of(AnyJson, key=Id))
    args.finish()
    call.require("write", account)
    limit = call.core.limits["maxObjectsInSet"]
    if len(create) > limit:
        raise MethodError("requestTooLarge", f"create: more than maxObjectsInSet ({limit})")
    created, not_created = {}, {}
    for creation_id, upload in creation_order(create, _blob_references):
        try:
            created[creation_id] = _create_blob(call, account, upload)
        except SetError as error:
            not_created[creation_id] = error.to_json()
        else:  # §4.1: later calls may name it "#creationId", createdIds given or not
            call.created_ids[creation_id] = created[creation_id]["id"]
    return {"accountId": account.id, "created": created or None,
            "notCreated": not_created or None}


def _blob_references(upload: Any) -> set[str]:
    """The creation ids an UploadObject's blobId sources name ("#k")."""
    sources = upload.get("data") if isinstance(upload, dict) else None
    return {source["blobId"][1:] for source in sources if isinstance(source, dict)
            and isinstance(source.get("blobId"), str) and source["blobId"].startswith("#")
            } if isinstance(sources, list) else set()


def _create_blob(call: MethodCall, account: Account, upload: Any) -> dict:
    """One UploadObject: its blob stored, answered as the upload endpoint would be."""
    if not isinstance(upload, dict):
        raise SetError.invalid_properties(["data"], "an UploadObject is a JSON object")
    unknown = sorted(set(upload) - {"data", "type"})
    if unknown:
        raise SetError.invalid_properties(unknown, "an UploadObject has only data and type")
    sources, media_type = upload.get("data"), upload.get("type")
    if not isinstance(sources, list):
        raise SetError.invalid_properties(["data"], "data must be a DataSourceObject[]")
    if len(sources) > BLOB_MAX_DATA_SOURCES:
        raise SetError.invalid_properties(["data"], f"more than maxDataSources "
                                          f"({BLOB_MAX_DATA_SOURCES}) data sources")
    if media_type is not None and not (isinstance(media_type, str)
                                       and clean_media_type(media_type)):
        raise SetError.invalid_properties(["type"], "type must be a media type or null")
    limit, pieces, size = call.core.limits["maxSizeUpload"], [], 0
    for index, source in enumerate(sources):
        pieces.append(_source_octets(call, account, source, f"data[{index}]"))
        size += len(pieces[-1])
        if size > limit:
            raise SetError("tooLarge", f"the blob would exceed maxSizeBlobSet ({limit} "
                           "octets)", maxSize=limit)
    try:
        stored = upload_blob(call.core, call.user, account.id, b"".join(pieces), media_type)
    except RequestError as error:  # the upload path's refusals, per creation here
        raise SetError("tooLarge" if error.status == 413 else "forbidden",
                       error.detail or str(error)) from None
    return {"id": stored["blobId"], **stored}


def _source_octets(call: MethodCall, account: Account, source: Any, where: str) -> bytes:
    """RFC 9404 §4.1 DataSourceObject: invalid data or references are never guessed at."""
    kinds = [kind for kind in _BLOB_SOURCE_KINDS if isinstance(source, dict) and kind in source]
    allowed = {"blobId", "offset", "length"} if kinds == ["blobId"] else set(kinds)
    if len(kinds) != 1 or set(source) - allowed:
        raise SetError.invalid_properties(["data"], f"{where}: exactly one of data:asText, "
                                          "data:asBase64, or blobId with offset and length")
    value = source[kinds[0]]
    if kinds == ["blobId"]:
        return _blob_range(call, account, source, where)
    if value is None:  # String|null: no octets
        return b""
    try:
        if not isinstance(value, str):
            raise ValueError("not a String")
        if kinds == ["data:asText"]:
            return value.encode("utf-8")  # a lone surrogate is no UTF-8
        if "=" in value and len(value) % 4:  # RFC 4648 §3.2: padding is whole or absent
            raise ValueError("partial padding")
        padded = value + "=" * (-len(value) % 4) if len(value) % 4 != 1 else value
        return base64.b64decode(padded, validate=True)
    except (ValueError, UnicodeError) as error:
        raise SetError.invalid_properties(["data"], f"{where}: {kinds[0]} is not valid: "
                                          f"{str(error)[:60]}") from None


def _blob_range(call: MethodCall, account: Account, source: dict, where: str) -> bytes:
    """The octets [offset, offset + length) of a blob the account holds (§4.1)."""
    reference, offset, length = source["blobId"], source.get("offset"), source.get("length")
    if not IdOrCreationRef.accepts(reference) or not all(
            value is None or UnsignedInt.accepts(value) for value in (offset, length)):
        raise SetError.invalid_properties(["data"], f"{where}: blobId must be an Id, offset "
                                          "and length UnsignedInt|null")
    blob_id = call.resolve_creation_id(reference)
    octets = held_blob(call.store, account.id, blob_id, call.core.now()) if blob_id else None
    if octets is None:
        raise SetError("blobNotFound", f"{where}: no blob {reference!r}", notFound=[reference])
    start = offset or 0
    end = len(octets) if length is None else start + length
    if start > len(octets) or end > len(octets):
        raise SetError.invalid_properties(["data"], f"{where}: the range reaches past the "
                                          f"blob's {len(octets)} octets")
    return octets[start:end]


@method("Blob/get", capability=URN_BLOB)
def blob_get(call: MethodCall, args: Args) -> dict:
    """RFC 9404 §4.2: blobs' size, and a range of their octets as text, base64, digests."""
    account = call.account(args)
    ids = args.get("ids", list_of(IdOrCreationRef), nullable=True)
    wanted = args.get("properties", list_of(String), nullable=True)
    offset = args.get("offset", UnsignedInt, 0, nullable=True)
    length = args.get("length", UnsignedInt, None, nullable=True)
    args.finish()
    call.require("read", account)
    if ids is None:
        raise invalid_arguments("ids: blobs cannot be listed; name them")
    wanted = _blob_properties(wanted)
    ids, limit = list(dict.fromkeys(ids)), call.core.limits["maxObjectsInGet"]
    if len(ids) > limit:
        raise MethodError("requestTooLarge", f"ids: more than maxObjectsInGet ({limit})")
    found, not_found = [], []
    for requested in ids:
        blob_id = call.resolve_creation_id(requested)
        octets = held_blob(call.store, account.id, blob_id, call.core.now()) if blob_id else None
        if octets is None:
            not_found.append(requested)
        else:
            found.append(blob_view(blob_id, octets, wanted, offset, length))
    return {"accountId": account.id, "list": found, "notFound": not_found}


def _blob_properties(wanted: list[str] | None) -> list[str]:
    """§4.2: data and size unless asked otherwise; digest:<algorithm> as advertised."""
    if wanted is None:
        return ["data", "size"]
    unknown = [name for name in wanted if name != "id" and name not in BLOB_DATA_PROPERTIES
               and name.removeprefix("digest:") not in BLOB_DIGESTS]
    if unknown:
        raise invalid_arguments(f"properties: Blob has no property {unknown[0]!r} (digests: "
                                + ", ".join("digest:" + name for name in BLOB_DIGESTS) + ")")
    return list(dict.fromkeys(wanted))


def blob_view(blob_id: str, octets: bytes, wanted: list[str], offset: int,
              length: int | None) -> dict:
    """One Blob/get result (RFC 9404 §4.2); size is always the whole blob's."""
    end = len(octets) if length is None else offset + length
    selected = octets[offset:end]
    try:
        text = selected.decode("utf-8")  # a sequence cut in the middle is no UTF-8 either
    except UnicodeDecodeError:
        text = None
    view = {"id": blob_id}
    if "data:asText" in wanted or ("data" in wanted and text is not None):
        view["data:asText"] = text  # §5: null, never mangled text
    if "data:asBase64" in wanted or ("data" in wanted and text is None):
        view["data:asBase64"] = base64.b64encode(selected).decode("ascii")
    for name in wanted:
        if name.startswith("digest:"):  # §4.2: of the octets a data field would return
            digest = hashlib.new(BLOB_DIGESTS[name[7:]], selected, usedforsecurity=False)
            view[name] = base64.b64encode(digest.digest()).decode("ascii")
    if "size" in wanted:
        view["size"] = len(octets)
    if text is None and ("data" in wanted or "data:asText" in wanted):
        view["isEncodingProblem"] = True
    if offset > len(octets) or end > len(octets):
        view["isTruncated"] = True
    return view


@method("Blob/lookup", capability=URN_BLOB)
def blob_lookup(call: MethodCall, args: Args) -> dict:
    """RFC 9404 §4.3: the ids of each type's objects that reference each blob."""
    account = call.account(args)
    type_names = args.get("typeNames", list_of(String))
    ids = call.blob_ids(args, "ids")
    args.finish()
    call.require("read", account)
    datatypes = [_lookup_type(call, name) for name in dict.fromkeys(type_names)]
    ids, limit = list(dict.fromkeys(ids)), call.core.limits["maxObjectsInGet"]
    if len(ids) > limit:
        raise MethodError("requestTooLarge", f"ids: more than maxObjectsInGet ({limit})")
    # §4.3: an unknown or invisible blob is listed too, with empty lists: nothing leaks
    listed = [{"id": blob_id, "matchedIds": {d.name: d.blob_lookup(call, account, blob_id)
                                             for d in datatypes}} for blob_id in ids]
    return {"accountId": account.id, "list": listed, "notFound": []}


def _lookup_type(call: MethodCall, name: str) -> DataType:
    """§4.3: a type that can reference blobs, whose capability the request uses."""
    datatype_ = call.core.datatypes.get(name)
    if datatype_ is None or not datatype_.references_blobs:
        raise MethodError("unknownDataType", f"typeNames: {name!r} is no type that "
                          "references blobs")
    if datatype_.capability not in call.using:
        raise MethodError("unknownDataType", f"typeNames: {name!r} needs "
                          f"{datatype_.capability} in 'using'")
    return datatype_


# --- 12.2 Quotas (RFC 9425) ----------------------------------------------------
# Each account has two mail quotas, octets and count, over every Email it holds.
# `used` is stored in the Quota object and moved by EMAIL_SIZE_HOOKS (9.3) on every
# arrival and removal (Email/set, /import, /copy, delivery), as a counts-only write
# (content unchanged), so Quota/changes answers updatedProperties ["used"] and the
# state pushes like any type's. An arrival past hardLimit is overQuota (RFC 8620
# §5.3, RFC 8621 §4.8). Limits come from --quota-octets/--quota-count (the limits
# mailQuotaOctets/mailQuotaCount), a seed file's "quota", or set_mail_quota().

URN_QUOTA = "urn:ietf:params:jmap:quota"  # RFC 9425 §2.1
QUOTA_WARN_SHARE, QUOTA_SOFT_SHARE = 0.8, 0.9  # warnLimit, softLimit: shares of hardLimit
MAIL_QUOTAS = {  # Quota id -> (resourceType, its limit's name, its name)
    "Qoctets": ("octets", "mailQuotaOctets", "Mail storage"),
    "Qcount": ("count", "mailQuotaCount", "Mail messages"),
}
QUOTA_DESCRIPTION = ("The {what} of all Emails in this account. Past the hard limit no Email "
                     "is created, imported, copied or delivered; the warn and soft limits "
                     "only warn.")

capability(URN_QUOTA, lambda core: {}, lambda core, account: {})  # RFC 9425 §2.1: {}


def _quota_has_type(value: str) -> tuple[str, list]:
    return "EXISTS (SELECT 1 FROM json_each(data, '$.types') t WHERE t.value = ?)", [value]


def known_type_names(call: MethodCall) -> list[str]:
    """The data types whose capability the request's `using` names (RFC 9425 §4.1)."""
    return sorted(name for name, datatype_ in call.core.datatypes.items()
                  if datatype_.capability in call.using)


@datatype
class Quota(DataType):
    """RFC 9425 §4: a limit on an account's usage, with the usage itself."""

    name = "Quota"
    capability = URN_QUOTA
    id_prefix = "Q"
    methods = ("get", "changes", "query", "queryChanges")
    properties = {
        "id": Prop(Id, server_set=True, immutable=True),
        "resourceType": Prop(one_of("count", "octets"), server_set=True),  # §3.2
        "used": Prop(UnsignedInt, server_set=True),
        "hardLimit": Prop(UnsignedInt, server_set=True),
        "scope": Prop(one_of("account", "domain", "global"), server_set=True),  # §3.1
        "name": Prop(String, server_set=True),
        "types": Prop(list_of(String), server_set=True),
        "warnLimit": Prop(UnsignedInt, nullable=True, server_set=True, default=None),
        "softLimit": Prop(UnsignedInt, nullable=True, server_set=True, default=None),
        "description": Prop(String, nullable=True, server_set=True, default=None),
    }
    filters = {  # RFC 9425 §4.4
        "name": Filter("contains", "name"),
        "scope": Filter("equals", "scope"),
        "resourceType": Filter("equals", "resourceType"),
        "type": Filter("sql", build=_quota_has_type),
    }
    sorts = {"name": Sort("name", is_text=True), "used": Sort("used")}  # §4.4 MUST
    count_properties = ("used",)  # §4.3 updatedProperties

    def visible(self, call: MethodCall, account: Account,
                records: dict[str, dict]) -> dict[str, dict]:
        """§4.1: "MUST NOT return Quota objects for which there are no types
        recognized by the client"."""
        known = set(known_type_names(call))
        return {i: r for i, r in records.items() if known & set(r.get("types", ()))}

    def render(self, call: MethodCall, account: Account, records: dict[str, dict],
               wanted: list[str], extra: dict) -> dict[str, dict]:
        """§4.1: types the client did not ask for in `using` are filtered out."""
        shown = super().render(call, account, records, wanted, extra)
        known = set(known_type_names(call))
        for quota in shown.values():
            if "types" in quota:
                quota["types"] = [t for t in quota["types"] if t in known]
        return shown

    def query(self, call: MethodCall, account: Account, query: CompiledQuery,
              window: tuple[int, int] | None) -> list[str]:
        return super().query(call, account, _visible_quotas(call, query), window)

    def count(self, call: MethodCall, account: Account, query: CompiledQuery) -> int:
        return super().count(call, account, _visible_quotas(call, query))


def _visible_quotas(call: MethodCall, query: CompiledQuery) -> CompiledQuery:
    """The query narrowed to the Quotas the client may see (Quota.visible, in SQL)."""
    known = known_type_names(call)
    seen = (f"EXISTS (SELECT 1 FROM json_each(data, '$.types') t WHERE t.value IN "
            f"({','.join('?' * len(known))}))") if known else "0"
    return dataclasses.replace(query, where=f"({query.where}) AND {seen}",
                               params=[*query.params, *known])


def mail_quota_record(quota_id: str, hard_limit: int, used: int) -> dict:
    """A mail Quota as stored: limits derived from hardLimit."""
    resource_type, _, name = MAIL_QUOTAS[quota_id]
    return {"resourceType": resource_type, "used": used, "hardLimit": hard_limit,
            "scope": "account", "name": name, "types": ["Email"],
            "warnLimit": int(hard_limit * QUOTA_WARN_SHARE),
            "softLimit": int(hard_limit * QUOTA_SOFT_SHARE),
            "description": QUOTA_DESCRIPTION.format(
                what="total size in octets" if resource_type == "octets" else "number")}


def create_mail_quotas(core: JmapCore, user: User) -> None:
    """Every new account starts with its mail quotas, at the configured limits."""
    for quota_id, (_, limit, _) in MAIL_QUOTAS.items():
        core.store.insert_initial_object(user.account_id, "Quota", quota_id,
                                         mail_quota_record(quota_id, core.limits[limit], 0),
                                         core.now())


ACCOUNT_SETUP.append(create_mail_quotas)


def set_mail_quota(core: JmapCore, user: "User | str", *, octets: int | None = None,
                   count: int | None = None) -> None:
    """Give an account new hard limits (warn and soft limits follow), as an
    administrator would; `used` is kept."""
    user = core.user(user)
    with core.store.transaction():
        found = _ensure_mail_quotas(core, user)
        for quota_id, hard_limit in (("Qoctets", octets), ("Qcount", count)):
            if hard_limit is None:
                continue
            if not UnsignedInt.accepts(hard_limit):
                raise ValueError(f"a quota is an UnsignedInt, not {hard_limit!r}")
            core.store.update_object(user.account_id, "Quota", quota_id, mail_quota_record(
                quota_id, hard_limit, found[quota_id]["used"]), core.now())


def _ensure_mail_quotas(core: JmapCore, user: User) -> dict[str, dict]:
    """The account's mail Quotas, made now if it has none (an account set up without
    ACCOUNT_SETUP, or kept in a --db from before quotas), used counted from its mail."""
    found = core.store.get_objects(user.account_id, "Quota", list(MAIL_QUOTAS))
    if len(found) < len(MAIL_QUOTAS):
        emails = core.store.get_objects(user.account_id, "Email", None).values()
        usage = {"Qoctets": sum(e["size"] for e in emails), "Qcount": len(emails)}
        for quota_id, (_, limit, _) in MAIL_QUOTAS.items():
            if quota_id not in found:
                found[quota_id] = mail_quota_record(quota_id, core.limits[limit],
                                                    usage[quota_id])
                core.store.insert_initial_object(user.account_id, "Quota", quota_id,
                                                 found[quota_id], core.now())
    return found


def apply_configured_quotas(core: JmapCore, limits: dict | None) -> None:
    """serve(): the configured mail quotas hold for every account, seeded ones too."""
    octets, count = ((limits or {}).get(name) for name in ("mailQuotaOctets", "mailQuotaCount"))
    if octets is None and count is None:
        return
    done = set()
    for user in core.users():  # shared accounts too, once each
        for account in core.store.accounts_of(user.name):
            if account.id not in done:
                done.add(account.id)
                set_mail_quota(core, dataclasses.replace(user, account_id=account.id),
                               octets=octets, count=count)


def follow_mail_usage(context: SetContext, octets: int, count: int) -> None:
    """EMAIL_SIZE_HOOKS (9.3): refuse an arrival past a hard limit (overQuota, RFC
    8620 §5.3), else move `used` as a counts-only write (RFC 9425 §4.3)."""
    store, account_id = context.store, context.account.id
    found = store.get_objects(account_id, "Quota", list(MAIL_QUOTAS))
    change = {"Qoctets": octets, "Qcount": count}
    for quota_id, quota in found.items():
        if change[quota_id] > 0 and quota["used"] + change[quota_id] > quota["hardLimit"]:
            raise SetError("overQuota", f"{quota['name']}: {quota['used']} of "
                           f"{quota['hardLimit']} {quota['resourceType']} used; this Email "
                           f"needs {change[quota_id]} more")
    for quota_id, quota in found.items():
        store.update_object(account_id, "Quota", quota_id,
                            {**quota, "used": max(0, quota["used"] + change[quota_id])},
                            context.now, content_changed=False)


EMAIL_SIZE_HOOKS.append(follow_mail_usage)


# --- 12.3 MDN (RFC 9007) -------------------------------------------------------
# MDN/send turns each MDN object into an RFC 8098 report (multipart/report with a
# human-readable part, the message/disposition-notification fields and the original
# message or its header) and hands it to section 10's send_message with a null
# return path (RFC 8098 §3), to the addresses in Disposition-Notification-To; the
# sender's own jmapd files it with her EmailSubmission (10.3 file_report). Its
# onSuccessUpdateEmail, which MUST set $mdnsent (§2.1), becomes an implicit
# Email/set. MDN/parse reads such reports, ours or any other program's, back.

URN_MDN = "urn:ietf:params:jmap:mdn"  # RFC 9007 §1.3
MDN_SENT = "$mdnsent"  # RFC 9007 §1.2: always lowercase
ACTION_MODES = ("manual-action", "automatic-action")
SENDING_MODES = ("mdn-sent-manually", "mdn-sent-automatically")
DISPOSITION_TYPES = ("deleted", "dispatched", "displayed", "processed")
# RFC 8098 §3.2: the fields an MDN report defines; any other is an extension field
MDN_FIELDS = {"reporting-ua": "reportingUA", "mdn-gateway": "mdnGateway",
              "original-recipient": "originalRecipient", "final-recipient": "finalRecipient",
              "original-message-id": "originalMessageId", "disposition": "disposition",
              "error": "error"}
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 §3.6.8 ftext
_DISPOSITION = re.compile(r"\s*([A-Za-z-]+)\s*/\s*([A-Za-z-]+)\s*;\s*([A-Za-z-]+)\s*(?:/.*)?",
                          re.S)
DISPOSITION_WORDS = {"displayed": "displayed", "deleted": "deleted without being displayed",
                     "dispatched": "dispatched without being displayed",
                     "processed": "processed without being displayed"}

capability(URN_MDN, lambda core: {}, lambda core, account: {})  # RFC 9007 §1.3: {}

Disposition = record_of({"actionMode": one_of(*ACTION_MODES),
                         "sendingMode": one_of(*SENDING_MODES),
                         "type": one_of(*DISPOSITION_TYPES)})


class MDN(DataType):
    """RFC 9007 §2: an MDN object. Never stored, so not registered; the engine's
    property checks (check_properties) read this declaration for MDN/send."""

    name = "MDN"
    capability = URN_MDN
    methods = ()
    properties = {
        "forEmailId": Prop(Id, nullable=True),
        "subject": Prop(String, nullable=True, default=None),
        "textBody": Prop(String, nullable=True, default=None),
        "includeOriginalMessage": Prop(Boolean, default=False),
        "reportingUA": Prop(String, nullable=True, default=None),
        "disposition": Prop(Disposition),
        "mdnGateway": Prop(String, nullable=True, server_set=True, default=None),
        "originalRecipient": Prop(String, nullable=True, server_set=True, default=None),
        "finalRecipient": Prop(String, nullable=True, default=None),
        "originalMessageId": Prop(String, nullable=True, server_set=True, default=None),
        "error": Prop(list_of(String), nullable=True, server_set=True, default=None),
        "extensionFields": Prop(map_of(String), nullable=True, default=None),
    }


MDN_TYPE = MDN()


def _mdn_account(call: MethodCall, args: Args, *, writable: bool = False) -> Account:
    """RFC 9007 §2.1, §2.2: an accountId that "cannot be found" is invalidArguments
    (where RFC 8620 §3.6.2 would say accountNotFound)."""
    try:
        return call.account(args, writable=writable)
    except MethodError as error:
        if error.type != "accountNotFound":
            raise
        raise invalid_arguments(str(error)) from None


def _mdnsent_patches(send: dict, updates: dict) -> dict[str, dict]:
    """RFC 9007 §2.1: each MDN's creation id -> its Email patch, which MUST set
    $mdnsent; the server "MUST reject an MDN/send" whose patches do not."""
    patches = {}
    for reference, patch in updates.items():
        if not (reference.startswith("#") and reference[1:] in send):
            raise invalid_arguments(f"onSuccessUpdateEmail: {reference!r} is not '#' and a "
                                    "creation id of this call's send")
        if not isinstance(patch, dict):
            raise invalid_arguments(f"onSuccessUpdateEmail: {reference!r} is no PatchObject")
        patches[reference[1:]] = patch
    for creation_id in send:
        patch = patches.get(creation_id, {})
        keywords = patch.get("keywords")
        if patch.get("keywords/" + MDN_SENT) is not True and not (
                isinstance(keywords, dict) and keywords.get(MDN_SENT) is True):
            raise invalid_arguments(f"onSuccessUpdateEmail: #{creation_id} must set "
                                    f"keywords/{MDN_SENT} to true (RFC 9007 §2.1)")
    return patches


@method("MDN/send", capability=URN_MDN)
def mdn_send(call: MethodCall, args: Args) -> dict:
    """RFC 9007 §2.1: send MDNs for received Emails, then mark those Emails."""
    account = _mdn_account(call, args, writable=True)
    identity_id = args.get("identityId", Id)
    send = args.get("send", map_of(AnyJson, key=Id))
    updates = args.get("onSuccessUpdateEmail", map_of(AnyJson, key=IdOrCreationRef),
                       nullable=True) or {}
    args.finish()
    if URN_MAIL not in call.using:  # §2.1: "MUST contain" both capabilities
        raise MethodError("unknownMethod", f"MDN/send needs {URN_MAIL} in 'using' too")
    _check_set_size(call, len(send))
    identity = call.store.get_objects(account.id, "Identity", [identity_id]).get(identity_id)
    if identity is None:  # §2.1: an unknown identityId is invalidArguments
        raise invalid_arguments(f"identityId: no Identity {identity_id!r}")
    patches = _mdnsent_patches(send, updates)
    call.require("write", account)
    context = SetContext(call, account, MDN_TYPE, {})
    context.identity, context.answered_for = identity, {}
    sent, not_sent = _run_each(context, send.items(), _send_one_mdn)
    update = {context.answered_for[k]: patches[k] for k in sent}
    if update:  # §2.1 and its §3.1 example: an implicit Email/set follows
        call.then = ("Email/set", {"accountId": account.id, "update": update})
    return {"accountId": account.id, "sent": sent or None, "notSent": not_sent or None}


def _send_one_mdn(context: SetContext, creation_id: str, given: Any) -> dict:
    """Check one MDN, build its report and send it; answer what the client did not set."""
    if not isinstance(given, dict):
        raise SetError("invalidProperties", "an MDN must be a JSON object")
    record = {**MDN_TYPE.defaults, **check_properties(context, given, existing=None)}
    missing = [k for k in ("forEmailId", "disposition") if record.get(k) is None]
    if missing:  # §2: forEmailId "MUST NOT be null for MDN/send"
        raise SetError.invalid_properties(missing, f"{missing[0]} is required")
    _check_extension_fields(record["extensionFields"] or {})
    broken = [name for name in ("subject", "reportingUA", "finalRecipient")
              if record[name] is not None and ("\r" in record[name] or "\n" in record[name])]
    if broken:  # each becomes one header or report field: a line break would forge more
        raise SetError.invalid_properties(broken, f"{broken[0]}: one line, no CR or LF")
    email_id = record["forEmailId"]
    raw, headers = _received_message(context, email_id)
    recipients = [a["email"] for a in header_value(
        headers, "disposition-notification-to", "asAddresses", False) or []
        if is_mailbox_address(a["email"])]
    if not recipients:  # §2.1 notFound: "has no valid Disposition-Notification-To"
        raise SetError("notFound", f"Email {email_id!r} asks for no MDN "
                       "(no valid Disposition-Notification-To header field)")
    record = _with_default_texts(_server_set_mdn_fields(context, record, headers), headers)
    core = context.call.core
    reason = sending_forbidden(core, context.call.user)
    if reason is not None:
        raise SetError("forbidden", reason)
    report = mdn_report(core, context.identity, record, headers, raw, recipients)
    limit = core.limits["maxSizeSubmission"]
    if len(report) > limit:
        raise SetError("tooLarge", f"the MDN is {len(report)} octets; at most {limit} may "
                       "be sent", maxSize=limit)
    send_message(core, "", recipients, report)  # RFC 8098 §3: a null return path
    context.answered_for[creation_id] = email_id
    return {k: v for k, v in record.items() if given.get(k, MISSING) != v}


def _check_extension_fields(fields: dict) -> None:
    """RFC 8098 §3.3: extension fields are header fields MDN reports do not define."""
    for name, value in fields.items():
        if not _FIELD_NAME.fullmatch(name) or name.lower() in MDN_FIELDS \
                or "\r" in value or "\n" in value:
            raise SetError.invalid_properties(["extensionFields"], f"extensionFields: "
                                              f"{name!r} is no extension field of one line")


def _received_message(context: SetContext, email_id: str) -> tuple[bytes, list]:
    """The Email's octets and header fields, refusing one already answered (§2.1)."""
    found = context.store.get_objects(context.account.id, "Email", [email_id])
    if email_id not in found:
        raise SetError("notFound", f"no Email {email_id!r}")
    if MDN_SENT in found[email_id].get("keywords", {}) or \
            email_id in context.answered_for.values():
        raise SetError("mdnAlreadySent", f"{MDN_SENT} keyword is already present")
    raw = blob_content(context.store, found[email_id]["blobId"]) or b""
    return raw, split_header_block(raw, 0, len(raw))[0]


def _server_set_mdn_fields(context: SetContext, record: dict, headers: list) -> dict:
    """§2.1: originalRecipient and originalMessageId from the message (RFC 8098 §3.2),
    finalRecipient from the Identity unless the client's is one it may use (§5)."""
    own = context.identity["email"]
    final = record["finalRecipient"]
    if final is None:
        final = f"rfc822; {own}"
    else:
        kind, semicolon, address = final.partition(";")
        if not semicolon or not kind.strip():
            raise SetError.invalid_properties(["finalRecipient"], "finalRecipient: "
                                              "address-type \"; \" address, e.g. rfc822; a@b")
        if kind.strip().lower() != "rfc822" or not address_allowed(own, address.strip()):
            raise SetError("forbiddenFrom", f"the Identity ({own}) may not be the final "
                           f"recipient {final!r}")
    message_ids = header_value(headers, "message-id", "asMessageIds", False)
    original_recipient = field_values(headers, "original-recipient")
    return {**record, "finalRecipient": final,
            "originalMessageId": f"<{message_ids[0]}>" if message_ids else None,
            "originalRecipient": unfold(original_recipient[-1]).strip()
            if original_recipient else None}


def _with_default_texts(record: dict, headers: list) -> dict:
    """The subject and human-readable text the server picks when the client gives none
    (MDN/send answers them in `sent`: "set to a default by the server", §2.1)."""
    original = header_value(headers, "subject", "asText", False) or "your message"
    recipient = record["finalRecipient"].partition(";")[2].strip()
    return {**record, "subject": record["subject"] if record["subject"] is not None
            else f"Read: {original}",
            "textBody": record["textBody"] if record["textBody"] is not None else (
                f"Your message to {recipient} was "
                f"{DISPOSITION_WORDS[record['disposition']['type']]}. This is no guarantee "
                "that it was read or understood.")}


def mdn_report(core: JmapCore, identity: dict, record: dict, headers: list, raw: bytes,
               recipients: list[str]) -> bytes:
    """The RFC 8098 §3 report message for an MDN object, with CRLF line ends."""
    fields = _mdn_fields(record)
    boundary = "=_mdn_" + hashlib.sha256(fields + raw).hexdigest()[:24]
    head = _mdn_head(core, identity, record, recipients)
    if record["includeOriginalMessage"]:
        original = b"Content-Type: message/rfc822\r\n\r\n" + raw
    else:  # RFC 8098 §3: the original's header section, at least
        header_end = split_header_block(raw, 0, len(raw))[1]
        original = b"Content-Type: text/rfc822-headers\r\n\r\n" + raw[:header_end]
    text = quopri.encodestring(record["textBody"].replace("\r\n", "\n").encode("utf-8"))
    text = text.replace(b"\n", b"\r\n")
    parts = [b"Content-Type: text/plain; charset=utf-8\r\n"
             b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + text,
             b"Content-Type: message/disposition-notification\r\n\r\n" + fields, original]
    delimiter = b"\r\n--" + boundary.encode() + b"\r\n"
    return (head + b"MIME-Version: 1.0\r\nContent-Type: multipart/report; "
            b"report-type=disposition-notification;\r\n boundary=\"" + boundary.encode()
            + b"\"\r\n\r\nThis is an MDN (RFC 8098)." + delimiter + delimiter.join(parts)
            + b"\r\n--" + boundary.encode() + b"--\r\n")


def _mdn_head(core: JmapCore, identity: dict, record: dict, recipients: list[str]) -> bytes:
    """From, To, Subject, Date, Message-ID and the reply fields of the report."""
    head = email.message.EmailMessage(policy=COMPOSE_POLICY)
    head["From"] = format_addresses([{"name": identity.get("name") or None,
                                      "email": identity["email"]}])
    head["To"] = format_addresses([{"name": None, "email": r} for r in recipients])
    head["Subject"] = record["subject"]
    head["Date"] = email.utils.format_datetime(core.clock.now())
    head["Message-ID"] = f"<{core.new_id('mdn')}.{int(core.now())}@jmapd.local>"
    if record["originalMessageId"]:
        head["In-Reply-To"] = record["originalMessageId"]
        head["References"] = record["originalMessageId"]
    if record["disposition"]["sendingMode"] == "mdn-sent-automatically":
        head["Auto-Submitted"] = "auto-replied"  # RFC 3834 §5
    return head.as_bytes(policy=COMPOSE_POLICY).rstrip(b"\r\n") + b"\r\n"


def _mdn_fields(record: dict) -> bytes:
    """The message/disposition-notification body (RFC 8098 §3.1, §3.2)."""
    disposition = record["disposition"]
    lines = []
    if record["reportingUA"] is not None:
        lines.append(f"Reporting-UA: {record['reportingUA']}")
    if record["originalRecipient"] is not None:
        lines.append(f"Original-Recipient: {record['originalRecipient']}")
    lines.append(f"Final-Recipient: {record['finalRecipient']}")
    if record["originalMessageId"] is not None:
        lines.append(f"Original-Message-ID: {record['originalMessageId']}")
    sending_mode = disposition["sendingMode"].replace("mdn-", "MDN-")
    lines.append(f"Disposition: {disposition['actionMode']}/{sending_mode}; "
                 f"{disposition['type']}")
    lines += [f"{name}: {value}" for name, value in (record["extensionFields"] or {}).items()]
    return "\r\n".join(lines).encode("utf-8") + b"\r\n"


@method("MDN/parse", capability=URN_MDN)
def mdn_parse(call: MethodCall, args: Args) -> dict:
    """RFC 9007 §2.2: read MDN objects out of report messages held as blobs."""
    account = _mdn_account(call, args)
    blob_ids = call.blob_ids(args)
    args.finish()
    call.require("read", account)
    limit = call.core.limits["maxObjectsInGet"]
    if len(blob_ids) > limit:
        raise MethodError("requestTooLarge", f"blobIds: more than {limit}")
    parsed, not_parsable, not_found, now = {}, [], [], call.core.now()
    for blob_id in dict.fromkeys(blob_ids):
        raw = held_blob(call.store, account.id, blob_id, now)
        mdn = parse_mdn(raw) if raw is not None else None
        if raw is None:
            not_found.append(blob_id)
        elif mdn is None:
            not_parsable.append(blob_id)
        else:
            parsed[blob_id] = {"forEmailId": _email_with_message_id(
                call, account, mdn["originalMessageId"]), **mdn}
    return {"accountId": account.id, "parsed": parsed or None,
            "notParsable": not_parsable or None, "notFound": not_found or None}


def parse_mdn(raw: bytes) -> dict | None:
    """An MDN object (without forEmailId) from an RFC 8098 report, else None."""
    root = parse_mime(raw)
    report = next((p for p in root.sub_parts if p.type == "message/disposition-notification"),
                  None)
    if root.type != "multipart/report" or report is None:
        return None
    body = transfer_decode(raw, report)[0].lstrip(b"\r\n")
    fields = [(n.lower(), unfold(v).strip()) for n, v in split_header_block(body, 0, len(body))[0]]
    values = dict(fields)
    match = _DISPOSITION.fullmatch(values.get("disposition", ""))
    if match is None or "final-recipient" not in values:  # RFC 8098 §3.1: both required
        return None
    action, sending, kind = (group.lower() for group in match.groups())
    if action not in ACTION_MODES or sending not in SENDING_MODES or kind not in DISPOSITION_TYPES:
        return None
    texts = [p for p in root.sub_parts if p.type == "text/plain" and p is not report]
    errors = [v for n, v in fields if n == "error"]
    extensions = {n: v for n, v in split_header_block(body, 0, len(body))[0]
                  if n.lower() not in MDN_FIELDS}
    subject = root.header("subject")
    return {"subject": header_as_text(subject) if subject is not None else None,
            "textBody": decode_bytes(transfer_decode(raw, texts[0])[0],
                                     texts[0].params.get("charset"))[0].replace("\r\n", "\n")
            if texts else None,
            "includeOriginalMessage": any(p.type in ("message/rfc822", "message/global")
                                          for p in root.sub_parts),
            "reportingUA": values.get("reporting-ua"), "mdnGateway": values.get("mdn-gateway"),
            "disposition": {"actionMode": action, "sendingMode": sending, "type": kind},
            "originalRecipient": values.get("original-recipient"),
            "finalRecipient": values["final-recipient"],
            "originalMessageId": values.get("original-message-id"),
            "error": errors or None,
            "extensionFields": {n: unfold(v).strip() for n, v in extensions.items()} or None}


def _email_with_message_id(call: MethodCall, account: Account, message_id: str | None) -> str | None:
    """§2.2: the one Email whose Message-ID this is; null if none or several."""
    wanted = header_as_message_ids(message_id or "") or []
    if len(wanted) != 1:
        return None
    email_type = call.core.datatypes["Email"]
    query = compile_query(email_type, {"header": ["Message-ID", wanted[0]]}, [],
                          {"collapseThreads": False})
    found = [email_id for email_id, parsed in load_parsed(
        call.store, account.id, email_type.query(call, account, query, None)).items()
        if header_value(parsed["structure"]["headers"], "message-id", "asMessageIds",
                        False) == wanted]
    return found[0] if len(found) == 1 else None


# --- 12.4 Backend info (draft-baum-jmap-backend-info) ----------------------------
# draft-baum-jmap-backend-info-00 §1.2.1: which software answers, so that a client can
# work around its quirks. A session capability only; accounts get nothing (§1.2.1).

# §1.2.1 names the URN with ":core:"; its IANA section (§3.1) spells it without.
URN_BACKEND_INFO = "urn:ietf:params:jmap:core:backendinfo"
# §1.2.1 types environment as String|null (its example shows an object instead).
BACKEND_ENVIRONMENT = f"Python {sys.version.split()[0]} ({sys.implementation.name})"

capability(URN_BACKEND_INFO, lambda core: {
    "apiBackend": {"name": "jmapd", "version": __version__},
    "product": {"name": "jmapd", "version": __version__},
    "environment": BACKEND_ENVIRONMENT,
})


# --- 12.5 REST mapping (draft-baum-jmap-rest) ------------------------------------
# draft-baum-jmap-rest-01: one method call per POST to apiUrlRest, named by the path;
# its arguments come from the query string (an array as comma-separated values) and
# from an optional Request object body, which wins where both give one. The Request
# built here runs through the API's own path (section 14), so errors are the API's;
# the method call id is "" (§2). An empty query value counts as not given.

URN_REST = "urn:ietf:params:jmap:rest"
REST_PREFIX = "/jmap/rest/"
REST_VARIABLES = ("using", "accountId", "ids")  # §1.3: variables beside methodCall
_URL_INTEGER = re.compile(r"-?[0-9]{1,16}")

capability(URN_REST, lambda core: {}, lambda core, account: {})  # §1.2.1: both empty
SESSION_URLS["apiUrlRest"] = lambda base_url: (
    base_url + REST_PREFIX + "<methodCall>?" + "&".join(f"{name}=<{name}>"
                                                          for name in REST_VARIABLES))


class UrlValue(str):
    """A query-string argument, read as the type its method asks for (Args.get): the
    text itself, else a Boolean, an Int, or an array of its comma-separated values."""

    def read_as(self, type_: JmapType) -> Any:
        text = str(self)
        items = text.split(",")
        readings = [text, {"true": True, "false": False}.get(text),
                    int(text) if _URL_INTEGER.fullmatch(text) else None, items]
        if all(_URL_INTEGER.fullmatch(item) for item in items):
            readings.append([int(item) for item in items])
        return next((r for r in readings if r is not None and type_.accepts(r)), text)


def rest_request(core: JmapCore, method_name: str, query: str, body: Any) -> dict:
    """The Request object of one REST call; body is the parsed JSON body, or None."""
    variables = _url_variables(query)
    request = {} if body is None else body
    if not isinstance(request, dict):
        raise RequestError("notRequest", "the body is not a Request object")
    calls = request.get("methodCalls", [[method_name, {}, ""]])
    if not (isinstance(calls, list) and len(calls) == 1 and isinstance(calls[0], list)
            and len(calls[0]) == 3 and isinstance(calls[0][1], dict)):
        raise RequestError("notRequest", "a REST request's methodCalls, if given, is one "
                           "Invocation (§2: no batching)")
    if calls[0][0] != method_name:
        raise RequestError("notRequest", f"the body calls {calls[0][0]!r}, the URL "
                           f"{method_name!r}")
    url_using = variables.pop("using", None)
    # no `using` at all: every capability the server has (the draft sets no default; a
    # learner's call then works as it would with the right list, e.g. Quota/get, whose
    # quotas for Email hide without the mail capability, RFC 9425 §4.1)
    using = (request["using"] if "using" in request else url_using.split(",") if url_using
             else list(core.capabilities))
    return {**request, "using": using,
            "methodCalls": [[method_name, {**variables, **calls[0][1]}, ""]]}


def _url_variables(query: str) -> dict[str, UrlValue]:
    try:
        query = query.encode("latin-1").decode("utf-8")  # http.server read it as latin-1
    except UnicodeError:
        pass
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, errors="strict")
    except (UnicodeError, ValueError):
        raise RequestError.http(400, "the query string is not valid UTF-8") from None
    names = [name for name, _ in pairs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise RequestError("notRequest", f"{twice[0]!r} is given twice in the URL")
    return {name: UrlValue(value) for name, value in pairs if value != ""}


# =============================================================================
# 13. WebSocket (codec)
# =============================================================================
# RFC 6455 framing and RFC 8887 message types, sans-IO: bytes in, frames and
# messages out (FrameReader, MessageAssembler), encode_frame for the way back,
# and the handshake checks. A protocol error raises FrameError carrying the close
# code (§7.4.1) the connection must end with; section 14 sends it. We negotiate no
# extension (§9), so every RSV bit must be 0. pushState is a feed sequence number.

URN_WEBSOCKET = "urn:ietf:params:jmap:websocket"  # RFC 8887 §3
WEBSOCKET_PATH = "/jmap/ws"
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
WEBSOCKET_VERSION = "13"  # RFC 6455 §4.2.1 item 6
WEBSOCKET_SUBPROTOCOL = "jmap"  # RFC 8887 §4.2
MAX_CONTROL_PAYLOAD = 125  # RFC 6455 §5.5


class Opcode(enum.IntEnum):
    """RFC 6455 §5.2 opcodes; the others (0x3-0x7, 0xB-0xF) are reserved."""
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        return self >= 0x8  # RFC 6455 §5.5: the most significant opcode bit is 1


class CloseCode(enum.IntEnum):
    """RFC 6455 §7.4.1 status codes jmapd sends or must recognise."""
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005       # never sent: what an empty Close payload means (§7.1.5)
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011


# RFC 6455 §7.4.1-7.4.2: codes a peer may put in a Close frame; 1005, 1006 and 1015
# are for reporting only, 1004 and 1012-2999 are reserved; 3000-4999 are registered
# or private, and any of those is acceptable.
SENDABLE_CLOSE_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011}


class FrameError(Exception):
    """A WebSocket protocol violation; the connection closes with close_code."""

    def __init__(self, detail: str, close_code: CloseCode = CloseCode.PROTOCOL_ERROR) -> None:
        super().__init__(detail)
        self.close_code = close_code


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """One RFC 6455 §5.2 frame, its payload already unmasked."""
    opcode: Opcode
    payload: bytes
    fin: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """A complete data message (§5.4: the payloads of its fragments joined)."""
    opcode: Opcode
    payload: bytes

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")  # MessageAssembler validated it


def apply_mask(payload: bytes, mask: bytes) -> bytes:
    """RFC 6455 §5.3: XOR with the 4-octet key, repeated (the same both ways)."""
    if not payload:
        return payload
    repeated = (mask * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big")


class FrameReader:
    """RFC 6455 §5.2 frames from a byte stream: feed(data), then frames().

    require_mask: frames from a client MUST be masked (§5.1); max_payload bounds one
    frame's payload before it is buffered (§10.4), closing with 1009 beyond it.
    """

    def __init__(self, max_payload: int, require_mask: bool = True) -> None:
        self.buffer = bytearray()
        self.max_payload = max_payload
        self.require_mask = require_mask

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def frames(self) -> Iterator[Frame]:
        """Every complete frame buffered so far; raises FrameError at the first bad one."""
        while True:
            header = self._parse_header()
            if header is None:
                return
            opcode, fin, mask, start, length = header
            if len(self.buffer) < start + length:
                return
            payload = bytes(self.buffer[start:start + length])
            del self.buffer[:start + length]
            yield Frame(opcode, apply_mask(payload, mask) if mask else payload, fin)

    def _parse_header(self) -> tuple | None:
        """(opcode, fin, mask key, payload offset, payload length), None if incomplete."""
        if len(self.buffer) < 2:
            return None
        first, second = self.buffer[0], self.buffer[1]
        if first & 0x70:  # RFC 6455 §5.2: RSV1-3 MUST be 0 unless an extension says
            raise FrameError("reserved bits set without a negotiated extension")
        try:
            opcode = Opcode(first & 0x0F)
        except ValueError:
            raise FrameError(f"reserved opcode {first & 0x0F:#x}") from None
        fin, masked, length = bool(first & 0x80), bool(second & 0x80), second & 0x7F
        if opcode.is_control and (not fin or length > MAX_CONTROL_PAYLOAD):
            raise FrameError("control frames are at most 125 octets and never "
                             "fragmented (RFC 6455 §5.5)")
        if self.require_mask and not masked:
            raise FrameError("client frames must be masked (RFC 6455 §5.1)")
        offset = 2
        if length >= 126:
            size = 2 if length == 126 else 8
            if len(self.buffer) < 2 + size:
                return None
            length = int.from_bytes(self.buffer[2:2 + size], "big")
            offset += size
            if length >> 63:  # §5.2: the most significant bit MUST be 0
                raise FrameError("payload length has its most significant bit set")
        if length > self.max_payload:
            raise FrameError(f"frame larger than {self.max_payload} octets",
                             CloseCode.MESSAGE_TOO_BIG)
        mask = b""
        if masked:
            if len(self.buffer) < offset + 4:
                return None
            mask, offset = bytes(self.buffer[offset:offset + 4]), offset + 4
        return opcode, fin, mask, offset, length


class MessageAssembler:
    """RFC 6455 §5.4: joins fragments into Messages; control frames pass through.

    Text is validated as UTF-8 frame by frame (§8.1), so a bad sequence fails fast
    with 1007 even mid-message; a message over max_size closes with 1009.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.opcode: Opcode | None = None  # the data opcode of a message in progress
        self.parts: list[bytes] = []
        self.size = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")("strict")

    def add(self, frame: Frame) -> Frame | Message | None:
        """The control frame itself, a completed Message, or None (more to come)."""
        if frame.opcode.is_control:
            return frame  # §5.4: control frames MAY be injected between fragments
        if frame.opcode == Opcode.CONTINUATION and self.opcode is None:
            raise FrameError("continuation frame with no message to continue")
        if frame.opcode != Opcode.CONTINUATION:
            if self.opcode is not None:
                raise FrameError("a new message began before the fragmented one ended")
            self.opcode = frame.opcode
        self.size += len(frame.payload)
        if self.size > self.max_size:
            raise FrameError(f"message larger than {self.max_size} octets",
                             CloseCode.MESSAGE_TOO_BIG)
        if self.opcode == Opcode.TEXT:
            self._check_utf8(frame.payload, final=frame.fin)
        self.parts.append(frame.payload)
        if not frame.fin:
            return None
        message = Message(self.opcode, b"".join(self.parts))
        self.opcode, self.parts, self.size = None, [], 0
        return message

    def _check_utf8(self, payload: bytes, final: bool) -> None:
        try:
            self.decoder.decode(payload, final)
        except UnicodeDecodeError:
            raise FrameError("text frame is not valid UTF-8 (RFC 6455 §8.1)",
                             CloseCode.INVALID_PAYLOAD) from None
        finally:
            if final:
                self.decoder.reset()


def encode_frame(opcode: Opcode, payload: bytes = b"", *, fin: bool = True,
                 mask: bytes | None = None) -> bytes:
    """One frame (§5.2). A server sends unmasked frames (§5.1); mask is for clients."""
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask else 0
    length = len(payload)
    if length < 126:
        header = bytes([first, mask_bit | length])
    elif length < 1 << 16:
        header = bytes([first, mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([first, mask_bit | 127]) + length.to_bytes(8, "big")
    if mask:
        return header + mask + apply_mask(payload, mask)
    return header + payload


def encode_close(code: int | None, reason: str = "") -> bytes:
    """A Close payload (§5.5.1): the 2-octet code, then a UTF-8 reason that fits in 125."""
    if code is None or code == CloseCode.NO_STATUS:
        return b""
    reason_bytes = reason.encode("utf-8")[:MAX_CONTROL_PAYLOAD - 2]
    return code.to_bytes(2, "big") + reason_bytes.decode("utf-8", "ignore").encode("utf-8")


def parse_close(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a received Close frame; NO_STATUS for an empty one (§7.1.5)."""
    if not payload:
        return CloseCode.NO_STATUS, ""
    if len(payload) == 1:
        raise FrameError("a Close payload of one octet has no room for a status code")
    code = int.from_bytes(payload[:2], "big")
    if code not in SENDABLE_CLOSE_CODES and not 3000 <= code <= 4999:
        raise FrameError(f"close code {code} may not be sent (RFC 6455 §7.4)")
    try:
        return code, payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("close reason is not valid UTF-8 (RFC 6455 §5.5.1)",
                         CloseCode.INVALID_PAYLOAD) from None


def websocket_accept(key: str) -> str:
    """RFC 6455 §4.2.2 item 5.4: base64(SHA-1(key + GUID))."""
    return base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()


def _header_tokens(headers: Any, name: str) -> list[str]:
    """The comma-separated tokens of every `name` field, lowercased."""
    values = ",".join(headers.get_all(name) or [])
    return [token.strip().lower() for token in values.split(",") if token.strip()]


def check_websocket_handshake(command: str, request_version: str, headers: Any) -> str:
    """RFC 6455 §4.2.1 and RFC 8887 §4.2: the Sec-WebSocket-Key of a valid opening
    handshake, else RequestError: 426 (not an upgrade, or not version 13) or 400."""
    if "websocket" not in _header_tokens(headers, "Upgrade"):
        raise RequestError.http(426, "this resource speaks only WebSocket: send "
                                "Upgrade: websocket (RFC 6455 §4.1)")
    if (headers.get_all("Sec-WebSocket-Version") or [""]) != [WEBSOCKET_VERSION]:
        raise RequestError.http(426, "Sec-WebSocket-Version must be 13 (RFC 6455 §4.2.2)")
    if command != "GET" or request_version != "HTTP/1.1":
        raise RequestError.http(400, "a WebSocket handshake is an HTTP/1.1 GET")
    if "upgrade" not in _header_tokens(headers, "Connection"):
        raise RequestError.http(400, "Connection must include Upgrade (RFC 6455 §4.2.1)")
    keys = headers.get_all("Sec-WebSocket-Key") or []
    try:
        valid_key = len(keys) == 1 and len(base64.b64decode(keys[0].strip(),
                                                            validate=True)) == 16
    except ValueError:
        valid_key = False
    if not valid_key:
        raise RequestError.http(400, "Sec-WebSocket-Key must be 16 octets in base64 "
                                "(RFC 6455 §4.2.1)")
    # RFC 8887 §4.2: the client MUST offer "jmap", and a JMAP connection exists only if
    # the reply names it; the reply may name only an offered protocol (RFC 6455 §4.2.2).
    if WEBSOCKET_SUBPROTOCOL not in _header_tokens(headers, "Sec-WebSocket-Protocol"):
        raise RequestError.http(400, "Sec-WebSocket-Protocol must offer jmap (RFC 8887 §4.2)")
    return keys[0].strip()


def websocket_url(base_url: str) -> str:
    """The session's WebSocket URL for the origin base_url (http -> ws, https -> wss)."""
    scheme, _, authority = base_url.partition("://")
    return ("wss" if scheme == "https" else "ws") + "://" + authority + WEBSOCKET_PATH


capability(URN_WEBSOCKET, lambda core: {"supportsPush": True},
           session_urls=lambda base_url: {"url": websocket_url(base_url)})


# --- 13.1 RFC 8887 messages -------------------------------------------------

WEBSOCKET_CLIENT_TYPES = ("Request", "WebSocketPushEnable", "WebSocketPushDisable")


def read_websocket_message(value: Any) -> tuple[str, dict, str | None]:
    """(@type, the message, its request id) of a client message (RFC 8887 §4.3);
    RequestError notRequest for anything that is none of §4.3's three objects."""
    if not isinstance(value, dict):
        raise RequestError("notRequest", "a message must be a JSON object")
    if not isinstance(value.get("id", ""), str):
        raise RequestError("notRequest", "a Request's id must be a String (RFC 8887 §4.3.2)")
    request_id, message_type = value.get("id"), value.get("@type")
    if message_type not in WEBSOCKET_CLIENT_TYPES:
        raise RequestError("notRequest", f"@type must be one of {', '.join(WEBSOCKET_CLIENT_TYPES)}"
                           f" (RFC 8887 §4.3), not {json.dumps(message_type)[:40]}")
    if message_type == "Request":
        return message_type, {k: v for k, v in value.items() if k not in ("@type", "id")}, \
            request_id
    if message_type == "WebSocketPushEnable":
        data_types, push_state = value.get("dataTypes", MISSING), value.get("pushState")
        if data_types is not None and not list_of(String).accepts(data_types):
            raise RequestError("notRequest", "dataTypes must be null or an array of type "
                               "names (RFC 8887 §4.3.5.2)")
        if push_state is not None and not isinstance(push_state, str):
            raise RequestError("notRequest", "pushState must be a String (RFC 8887 §4.3.5.2)")
    return message_type, value, None


def websocket_response(response: dict, request_id: str | None) -> dict:
    """RFC 8887 §4.3.3: the Response with @type, and requestId if the Request had an id."""
    return {"@type": "Response", **({"requestId": request_id} if request_id is not None
                                    else {}), **response}


def websocket_request_error(error: RequestError, request_id: str | None) -> dict:
    """RFC 8887 §4.3.4: the problem details with @type and the request's id."""
    return {"@type": "RequestError", **({"requestId": request_id} if request_id is not None
                                        else {}), **error.problem()}


def format_push_state(epoch: str, sequence: int) -> str:
    """RFC 8887 §4.3.5.1 pushState: which feed and how far along it; opaque to clients."""
    return f"{epoch}.{sequence}"


def parse_push_state(push_state: str, epoch: str) -> int | None:
    """The feed sequence a pushState names, or None if it is not one of this feed's."""
    tag, _, sequence = push_state.rpartition(".")
    return int(sequence) if tag == epoch and sequence.isdigit() else None


# =============================================================================
# 14. Network I/O
# =============================================================================
# The HTTP/1.1 transport (threaded, keep-alive) over the sans-IO core: routing,
# authentication (Basic and Bearer), CORS, request bodies, problem details, the
# EventSource; the WebSocket connection loop (14.1); the SMTP relay and the
# PushSubscription deliverer that carry out what the core left as data (14.2); and
# serve() with the JmapServer it returns (14.3). Every error answer consumes or
# discards the request body (or closes the connection), so a rejected body is never
# read as the next request; no error body carries a traceback, path, SQL or version.

MAX_DISCARD = 64_000_000  # an unread body up to this size is drained and the connection
                          # kept; a larger one is drained too, then the connection closed
_HOST_HEADER = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
CORS_ALLOW_HEADERS = "Authorization, Content-Type, Accept, Last-Event-ID, Cache-Control"
CORS_EXPOSE_HEADERS = "Content-Disposition, Content-Length, Location, WWW-Authenticate"
CORS_ALLOW_METHODS = "GET, POST, OPTIONS"


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """One HTTP endpoint: method, path pattern, handler(handler, **path_params)."""
    method: str
    pattern: re.Pattern
    send: Callable


ROUTES: list[Route] = []


def route(method_: str, pattern: str) -> Callable:
    """Register an HTTP endpoint; pattern is a regex over the percent-encoded path."""
    def register(send: Callable) -> Callable:
        ROUTES.append(Route(method_, re.compile(pattern), send))
        return send
    return register


def parse_json_body(body: bytes) -> Any:
    """Bytes -> JSON value, or notJSON: UTF-8, I-JSON (no duplicate names, no NaN)."""
    def no_duplicates(pairs: list) -> dict:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate member name")
        return dict(pairs)

    def finite(text: str) -> float:
        number = float(text)
        if number in (float("inf"), float("-inf")):
            raise ValueError("number out of range")
        return number

    def not_json(text: str) -> Any:
        raise ValueError(f"{text} is not JSON")
    try:
        value = json.loads(body.decode("utf-8"), object_pairs_hook=no_duplicates,
                           parse_float=finite, parse_constant=not_json)
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # lone surrogates fail here
    except (UnicodeError, ValueError, RecursionError) as error:
        raise RequestError("notJSON", f"the body is not I-JSON: {str(error)[:80]}") from None
    return value


def encode_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def is_json_media_type(value: str | None) -> bool:
    return (value or "").split(";")[0].strip().lower() == "application/json"


def decode_segment(raw: str) -> str:
    """A path segment or query value, percent-encoded or raw UTF-8, decoded."""
    try:
        raw = raw.encode("latin-1").decode("utf-8")  # http.server reads the line as latin-1
    except UnicodeError:
        pass
    return urllib.parse.unquote(raw, errors="strict")


TCP_KEEPALIVE = (60, 10, 3)  # idle seconds, probe interval, probes: a dead peer in ~90 s


def enable_keepalive(connection: socket.socket) -> None:
    """TCP keepalive, so a push connection whose peer vanished without a FIN (a laptop
    closed, a network gone) ends within about 90 s instead of holding its thread."""
    with contextlib.suppress(OSError, AttributeError):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in zip(("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"),
                                 TCP_KEEPALIVE):
            if hasattr(socket, option):  # Linux names; elsewhere the system's defaults
                connection.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class JmapHTTPServer(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer with a core, options, and the open connections it can close."""
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128  # socketserver's 5 drops connections under a burst

    def __init__(self, address: tuple, core: JmapCore, cors_origin: str, trace: bool) -> None:
        self.core, self.cors_origin, self.trace = core, cors_origin, trace
        self.connections: set[socket.socket] = set()
        self.event_streams: set[socket.socket] = set()  # open EventSource connections
        self.websockets: set = set()  # open WebSocketConnections (14.1)
        self.connections_lock = threading.Lock()
        self.control = True  # the /_jmapd/ control API answers (section 15); --no-control
        self.trace_lock = threading.Lock()
        self.push_epoch = secrets.token_hex(3)  # RFC 8887 pushState: names this feed
        super().__init__(address, JmapHTTPHandler)

    def finish_request(self, request: socket.socket, client_address: tuple) -> None:
        enable_keepalive(request)
        with self.connections_lock:
            self.connections.add(request)
        try:
            super().finish_request(request, client_address)
        finally:
            with self.connections_lock:
                self.connections.discard(request)

    def handle_error(self, request: Any, client_address: tuple) -> None:
        """A client that vanished is routine; anything else is logged, never printed raw."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.debug("connection from %s ended: %s", client_address, error)
        else:
            log.error("connection from %s failed:\n%s", client_address, traceback.format_exc())

    def trace_outbox(self, message: OutboxMessage) -> None:
        """--trace: what left for the outbox (or the relay), headers only."""
        head = message.raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        with self.trace_lock:
            print(f"--- outbox: MAIL FROM:<{message.mail_from}> RCPT TO:"
                  + ",".join(f"<{r}>" for r in message.rcpt_to) + f"\n{head}", file=sys.stderr)

    def close_connections(self, only: set[socket.socket] | None = None) -> int:
        """Shut down every open connection (or those of `only`); how many there were."""
        with self.connections_lock:
            chosen = list(self.connections if only is None else only & self.connections)
            for connection in chosen:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        return len(chosen)

    def close_event_streams(self) -> int:
        """End every open EventSource stream, as a proxy or a restart would (a dev fault)."""
        with self.connections_lock:
            streams, self.event_streams = self.event_streams, set()
        return self.close_connections(streams)

    def close_websockets(self) -> int:
        """Close every JMAP WebSocket with 1001 Going Away (a dev fault, RFC 6455 §7.4.1)."""
        with self.connections_lock:
            sockets, self.websockets = self.websockets, set()
        for connection in sockets:
            connection.close(1001, "closed by the server (a jmapd dev fault)")
        return len(sockets)


def _query_parameter(query: str, name: str) -> str | None:
    try:
        return dict(urllib.parse.parse_qsl(query, errors="strict")).get(name)
    except (UnicodeError, ValueError):
        return None


class JmapHTTPHandler(http.server.BaseHTTPRequestHandler):
    """One HTTP connection: each request is routed through ROUTES to the core."""
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.1"  # so even a garbled request line gets a status line
    server: JmapHTTPServer
    timeout = 120  # seconds an idle keep-alive connection stays open
    disable_nagle_algorithm = True
    wbufsize = 1 << 16  # headers and body leave in one write (http.server flushes per request)

    def version_string(self) -> str:
        return "jmapd"  # no version banner

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self.dispatch()

    def send_response(self, code: int, message: str | None = None) -> None:
        self.status = code  # for the request log
        super().send_response(code, message)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, ...) as problem details."""
        self.close_connection = True
        self.send_problem(RequestError.http(code, message or ""))

    # -- the request cycle --

    def dispatch(self) -> None:
        self.body_read = False
        self.status = self.user = self.exchange = self.fault = self.problem = None
        started = time.monotonic()
        with self.server.core.collect_findings() as self.warnings:
            self.answer(started)

    def answer(self, started: float) -> None:
        try:
            self.check_framing()
            path, _, query = self.path.partition("?")
            if self.command == "OPTIONS":
                return self.send_preflight()
            if self.apply_fault(path):
                return
            send, params = self.find_route(path)
            send(self, query=query, **params)
        except RequestError as error:
            self.send_problem(error)
        except Exception:  # a transport bug: logged, answered without detail
            log.error("HTTP %s %s failed:\n%s", self.command, self.path, traceback.format_exc())
            self.close_connection = True
            self.send_problem(RequestError.http(500, "the server failed"))
        finally:
            self.discard_body()
            self.finish_fault()
            self.record(started)

    def apply_fault(self, path: str) -> bool:
        """A dev-control fault (section 15) for this request: True if it answered."""
        self.fault = self.server.core.controls.before_http(self.command, path)
        if self.fault is None:
            return False
        self.close_connection = self.close_connection or self.fault.drops
        if self.fault.drops and not self.fault.after:
            self.connection.shutdown(socket.SHUT_RDWR)  # no status line: the peer sees EOF
            return True
        if self.fault.drops:  # process the request, then lose the answer
            self.wfile = io.BytesIO()
            return False
        error = self.fault.error()
        self.send_body(error.status, encode_json(error.problem()), "application/problem+json",
                       self.fault.headers())
        return True

    def finish_fault(self) -> None:
        if self.fault is not None and self.fault.drops and self.fault.after:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def record(self, started: float) -> None:
        """Tell the request log what happened (the control API's own requests excepted)."""
        request, response = self.exchange or (None, None)
        self.server.core.controls.record({
            "transport": "http", "method": self.command, "path": self.path,
            "status": self.status, "user": self.user.name if self.user else None,
            "durationMs": round((time.monotonic() - started) * 1000, 3),
            "request": request, "response": response if response is not None else self.problem,
            "fault": self.fault.name if self.fault else
            ", ".join(self.server.core.fired_faults()) or None, "warnings": list(self.warnings)})
        if self.warnings:
            self.trace("warnings (--pedantic refuses these)", self.warnings)

    def check_framing(self) -> None:
        """RFC 7230 §3.3.3: a message whose body length is in doubt is refused and the
        connection closed, so no body can be read as the next request."""
        if self.request_version == "HTTP/1.1" and len(self.headers.get_all("Host") or []) != 1:
            self.close_connection = True  # RFC 9112 §3.2 (RFC 6455 §4.2.1 item 2 too)
            raise RequestError.http(400, "an HTTP/1.1 request has exactly one Host field")
        lengths = set(v.strip() for v in self.headers.get_all("Content-Length") or [])
        coding = [c.strip().lower() for c in
                  ",".join(self.headers.get_all("Transfer-Encoding") or []).split(",") if c.strip()]
        if (self.headers.defects or len(lengths) > 1
                or not all(re.fullmatch(r"[0-9]{1,15}", v) for v in lengths)):
            self.close_connection = True
            raise RequestError.http(400, "malformed header section or Content-Length")
        if coding and coding != ["chunked"]:
            self.close_connection = True
            raise RequestError.http(501 if coding[-1] == "chunked" else 400,
                                    "only the chunked transfer coding is supported")
        if coding and lengths:
            self.close_connection = True  # RFC 7230 §3.3.3: both given; close after
        elif lengths and int(lengths.pop()) > MAX_DISCARD:
            self.close_connection = True  # a body we will not drain: answer, then close

    def find_route(self, path: str) -> tuple[Callable, dict]:
        if not self.server.control and (path == CONTROL_PREFIX
                                        or path.startswith(CONTROL_PREFIX + "/")):
            raise RequestError.http(404, "no such resource")  # --no-control: not there at all
        allowed = []
        for candidate in ROUTES:
            match = candidate.pattern.fullmatch(path)
            if match:
                if candidate.method == self.command or (self.command == "HEAD"
                                                        and candidate.method == "GET"):
                    return candidate.send, match.groupdict()
                allowed.append(candidate.method)
        if allowed:
            self.allowed = ", ".join(sorted(set(allowed)) + ["OPTIONS"])
            raise RequestError.http(405, f"{self.command} is not allowed here")
        raise RequestError.http(404, "no such resource")

    def authenticate(self, query: str | None = None) -> User:
        """RFC 8620 §1.7: Basic or Bearer credentials, else 401 with a challenge. Where
        a browser cannot set headers (EventSource, the WebSocket upgrade: pass the query)
        an access_token parameter, the Bearer token, is accepted instead: a development
        convenience, as the token then shows in URLs and logs."""
        header = self.headers.get("Authorization", "")
        if query is not None and not header:
            token = _query_parameter(query, "access_token")
            if token:
                user = self.server.core.check_token(token)
                if user is None:
                    raise RequestError.http(401, "wrong access_token")
                return user
        scheme, _, credentials = header.strip().partition(" ")
        user = None
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in header):
            user = None
        elif scheme.lower() == "basic":
            user = self._basic_user(credentials.strip())
        elif scheme.lower() == "bearer":
            user = self.server.core.check_token(credentials.strip())
        if user is None:
            raise RequestError.http(401, "missing or wrong credentials" if header
                                    else "authentication required")
        self.user = user
        return user

    def _basic_user(self, credentials: str) -> User | None:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (ValueError, UnicodeError):
            return None
        name, colon, password = decoded.partition(":")
        if not colon or any(ord(ch) < 32 or ord(ch) == 127 for ch in decoded):
            return None  # NUL and other control characters are never valid credentials
        return self.server.core.check_password(name, password)

    def read_body(self, limit: int, limit_name: str) -> bytes:
        """The request body (Content-Length or chunked), refusing more than limit."""
        if self.headers.get("Transfer-Encoding"):  # check_framing allows only chunked
            return self._read_chunked(limit, limit_name)
        length = self._content_length()
        if length > limit:
            raise RequestError("limit", f"body larger than {limit_name} ({limit} octets)",
                               status=413, limit=limit_name)  # discard_body drains it
        self.body_read = True
        return self.rfile.read(length)

    def _content_length(self) -> int:
        return int(self.headers.get("Content-Length", "0").strip())  # check_framing vetted it

    def _read_chunked(self, limit: int, limit_name: str) -> bytes:
        self.body_read, chunks, total = True, [], 0
        while True:
            line = self.rfile.readline(1024).split(b";")[0].strip()
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,15}", line):
                self.close_connection = True
                raise RequestError.http(400, "bad chunked encoding")
            size = int(line, 16)
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailer fields
                return b"".join(chunks)
            total += size
            if total > limit:
                self.close_connection = True
                raise RequestError("limit", f"body larger than {limit_name}", status=413,
                                   limit=limit_name)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def discard_body(self) -> None:
        """Drain an unread body so it is not parsed as the next request."""
        if self.body_read or self.close_connection:
            return
        self.body_read = True
        try:
            if self.headers.get("Transfer-Encoding"):
                self._read_chunked(MAX_DISCARD, "body")
                return
            length = self._content_length()
        except (ValueError, RequestError):
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)

    # -- responses --

    def base_url(self) -> str:
        """The absolute origin the client used (Host header), else our own address."""
        host = self.headers.get("Host", "")
        if not _HOST_HEADER.fullmatch(host):
            address, port = self.server.server_address[:2]
            host = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        return f"http://{host}"

    def send_cors_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", self.server.cors_origin)
        self.send_header("Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS)
        if self.server.cors_origin != "*":
            self.send_header("Vary", "Origin")

    def send_body(self, status: int, body: bytes, content_type: str,
                  headers: Iterable[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_cors_headers()
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, value: Any, headers: Iterable = ()) -> None:
        self.send_body(status, encode_json(value), "application/json",
                       [("Cache-Control", "no-store"), *headers])

    def send_problem(self, error: RequestError) -> None:
        headers = [("Cache-Control", "no-store")]
        if error.status == 401:  # RFC 7235 §3.1: a 401 carries a challenge
            headers += [("WWW-Authenticate", 'Basic realm="jmapd", charset="UTF-8"'),
                        ("WWW-Authenticate", 'Bearer realm="jmapd"')]
        if error.status == 405:
            headers.append(("Allow", getattr(self, "allowed", CORS_ALLOW_METHODS)))
        if error.status == 426:  # RFC 6455 §4.2.2; RFC 9110 §7.8: Upgrade needs Connection
            headers += [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                        ("Sec-WebSocket-Version", WEBSOCKET_VERSION)]
        self.problem = error.problem()
        self.send_body(error.status, encode_json(self.problem), "application/problem+json",
                       headers)
        self.trace("problem", self.problem)

    def send_bare(self, status: int) -> None:
        """A status line and headers only (a 204 carries no Content-Length, RFC 9110 §8.6)."""
        self.send_response(status)
        self.send_cors_headers()
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def send_preflight(self) -> None:
        """A CORS preflight: 204, naming Authorization explicitly ('*' does not cover it)."""
        self.send_response(204)
        self.send_cors_headers()
        self.send_header("Access-Control-Allow-Methods", CORS_ALLOW_METHODS)
        self.send_header("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS)
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def trace(self, label: str, value: Any) -> None:
        """--trace: pretty-print JMAP traffic to stderr, for learning."""
        if self.server.trace:
            with self.server.trace_lock:
                print(f"--- {label} ({self.command} {self.path})\n"
                      + json.dumps(value, indent=2, ensure_ascii=False), file=sys.stderr)


@route("GET", re.escape(WELL_KNOWN_PATH) + "/?")
def send_well_known(handler: JmapHTTPHandler, query: str) -> None:
    """RFC 8620 §2.2: the well-known URI redirects to the session resource."""
    location = handler.base_url() + SESSION_PATH
    handler.send_body(307, b"", "text/plain", [("Location", location)])


@route("GET", re.escape(SESSION_PATH))
def send_session(handler: JmapHTTPHandler, query: str) -> None:
    user = handler.authenticate()
    handler.send_json(200, handler.server.core.session(user, handler.base_url()))


@route("POST", re.escape(API_PATH))
def send_api_response(handler: JmapHTTPHandler, query: str) -> None:
    """RFC 8620 §3.1: a Request object in, a Response object out."""
    answer_api_request(handler)


@route("POST", re.escape(REST_PREFIX) + r"(?P<method_name>[^/]+(?:/[^/]+)?)/?")
def send_rest_response(handler: JmapHTTPHandler, query: str, method_name: str) -> None:
    """draft-baum-jmap-rest-01 §2: one method call, named by the path (12.5); the body
    may be left out."""
    try:
        method_name = decode_segment(method_name)
    except UnicodeError:
        raise RequestError.http(404, "no such method") from None
    answer_api_request(handler, lambda body: rest_request(handler.server.core, method_name,
                                                          query, body), body_optional=True)


def answer_api_request(handler: JmapHTTPHandler, build: Callable[[Any], Any] = lambda b: b,
                       *, body_optional: bool = False) -> None:
    """The API's one path: authenticate, read the JSON body, run the Request that
    build makes of it (None for an empty optional body), send the Response."""
    user = handler.authenticate()
    core = handler.server.core
    body = handler.read_body(core.limits["maxSizeRequest"], "maxSizeRequest")
    if body_optional and not body.strip():
        request = build(None)
    elif not is_json_media_type(handler.headers.get("Content-Type")):
        raise RequestError("notJSON", "Content-Type must be application/json")
    else:
        charset = parse_parameters(handler.headers.get("Content-Type") or "")[1].get("charset")
        if charset is not None and charset.lower() not in ("utf-8", "utf8"):
            core.lint("json-charset", f"Content-Type charset={charset} (read as UTF-8)",
                      lambda description: RequestError("notJSON", description))
        request = build(parse_json_body(body))
    handler.trace("request", request)
    handler.exchange = (request, None)
    response = core.handle_request(user, request)
    handler.exchange = (request, response)
    handler.trace("response", response)
    handler.send_json(200, response)


@route("POST", re.escape(UPLOAD_PREFIX) + r"(?P<account_id>[^/]+)/?")
def receive_upload(handler: JmapHTTPHandler, query: str, account_id: str) -> None:
    """RFC 8620 §6.1."""
    user = handler.authenticate()
    core = handler.server.core
    if not core.upload_slots.acquire(blocking=False):
        raise RequestError("limit", "too many concurrent uploads", status=429,
                           limit="maxConcurrentUpload")
    try:
        data = handler.read_body(core.limits["maxSizeUpload"], "maxSizeUpload")
        try:
            account_id = decode_segment(account_id)
        except UnicodeError:
            raise RequestError.http(404, "no such account") from None
        result = upload_blob(core, user, account_id, data, handler.headers.get("Content-Type"))
    finally:
        core.upload_slots.release()
    handler.send_json(201, result)


@route("GET", re.escape(DOWNLOAD_PREFIX) + r"(?P<account_id>[^/]+)/(?P<blob_id>[^/]+)/(?P<name>[^/]*)")
def send_download(handler: JmapHTTPHandler, query: str, account_id: str, blob_id: str,
                  name: str) -> None:
    """RFC 8620 §6.2: the blob, typed by the `type` variable, named by `name`."""
    user = handler.authenticate()
    try:
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True, errors="strict"))
        account_id, blob_id, name = map(decode_segment, (account_id, blob_id, name))
    except (UnicodeError, ValueError):
        raise RequestError.http(400, "the download URL is not valid UTF-8") from None
    core = handler.server.core
    data, stored_type = download_blob(core, user, account_id, blob_id)
    given_type = params.get(core.quirks.download_type_variable)
    if not given_type:
        core.lint("download-type", f"no {core.quirks.download_type_variable} in the "
                  "download URL", lambda description: RequestError.http(400, description))
    media_type = clean_media_type(given_type) if given_type else stored_type
    if media_type is None:
        raise RequestError.http(400, "type is not a media type")
    handler.send_body(200, data, media_type, [
        ("Content-Disposition", content_disposition(name or blob_id)),
        ("Cache-Control", "private, immutable, max-age=31536000")])


@route("GET", re.escape(EVENTSOURCE_PATH) + "/?")
def send_event_stream(handler: JmapHTTPHandler, query: str) -> None:
    """RFC 8620 §7.3: state events as they happen, pings between, until told to stop."""
    user = handler.authenticate(query)
    core = handler.server.core
    if core.quirks.event_source_status is not None:  # a server without push (section 15)
        return handler.send_bare(core.quirks.event_source_status)
    given = {name for name, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)}
    missing = [name for name in ("types", "closeafter", "ping") if name not in given]
    if missing:
        core.lint("event-source-variables", f"{', '.join(missing)} not in the URL",
                  lambda description: RequestError.http(400, description))
    types, close_after, ping = parse_event_source_query(query)
    after = core.feed.sequence
    handler.close_connection = True  # no Content-Length: the stream ends with the connection
    handler.send_response(200)
    handler.send_cors_headers()
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Cache-Control", "no-cache")
    handler.end_headers()
    with handler.server.connections_lock:
        handler.server.event_streams.add(handler.connection)
    try:
        handler.wfile.flush()  # the headers go now: events may be a long way off
        missed = _missed_on_reconnect(handler, core, user, types, after)
        if missed and close_after:
            return
        _stream_events(handler, core, user, types, close_after, ping, after)
    except OSError:
        return  # the client went away
    finally:
        with handler.server.connections_lock:
            handler.server.event_streams.discard(handler.connection)


EVENT_STREAM_POLL = 1.0  # seconds between an idle stream's looks at its own socket


def _missed_on_reconnect(handler: JmapHTTPHandler, core: JmapCore, user: User,
                         types: set[str] | None, now: int) -> bool:
    """§7.3: a Last-Event-ID this feed issued before now, or one from before a restart
    (another epoch) or not ours at all, gets the current states at once."""
    last = handler.headers.get("Last-Event-ID")
    if last is None:
        return False
    seen = parse_push_state(last, handler.server.push_epoch)
    if seen is not None and seen >= now:
        return False
    change = current_state_change(core, user, types)
    if change:
        handler.wfile.write(sse_event("state", change,
                                      format_push_state(handler.server.push_epoch, now)))
        handler.wfile.flush()
    return bool(change)


def _stream_events(handler: JmapHTTPHandler, core: JmapCore, user: User,
                   types: set[str] | None, close_after: bool, ping: int, after: int) -> None:
    """Events as the feed brings them; a ping whenever `ping` seconds passed since the
    last event this client was sent (§7.3 MUST, whatever others' changes do); and the
    stream ends as soon as the client has gone, even when nothing is ever sent to it."""
    last_sent = time.monotonic()
    while not core.feed.closed and handler.connection in handler.server.event_streams:
        until_ping = last_sent + ping - time.monotonic() if ping else EVENT_STREAM_POLL
        entries = core.feed.wait(after, max(0.0, min(until_ping, EVENT_STREAM_POLL)))
        if _peer_has_gone(handler.connection):
            return
        for sequence, changed in entries:
            after = sequence
            change = state_change(core, user, changed, types)
            if change:
                event_id = format_push_state(handler.server.push_epoch, sequence)
                handler.wfile.write(sse_event("state", change, event_id))
                last_sent = time.monotonic()
                if close_after:
                    handler.wfile.flush()
                    return
        if ping and time.monotonic() - last_sent >= ping and not core.feed.closed:
            handler.wfile.write(sse_event("ping", {"interval": ping}))  # no new event id
            last_sent = time.monotonic()
        handler.wfile.flush()


def _peer_has_gone(connection: socket.socket) -> bool:
    """Whether the client closed its end (an EventSource client sends nothing, so a
    readable socket with nothing to read is the end)."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


# --- 14.1 JMAP over WebSocket (RFC 8887) ------------------------------------

WEBSOCKET_WORKERS = 4       # Requests one socket runs at once (RFC 8887 §4.3.2: any order)
WEBSOCKET_IN_FLIGHT = 64    # Requests read ahead of their answers before reading pauses
WEBSOCKET_FEED_POLL = 0.2   # seconds between the push thread's looks at its own socket
WEBSOCKET_CLOSE_WAIT = 2.0  # seconds to wait for the peer after failing a connection
WEBSOCKET_HARD_CAP = 2      # messages up to this many times maxSizeRequest are read whole


@route("GET", re.escape(WEBSOCKET_PATH) + "/?")
def accept_websocket(handler: JmapHTTPHandler, query: str) -> None:
    """RFC 6455 §4.2.2, RFC 8887 §4.2: check the opening handshake, authenticate, switch
    protocols, then serve the connection on this handler thread until it closes."""
    key = check_websocket_handshake(handler.command, handler.request_version, handler.headers)
    user = handler.authenticate(query)  # RFC 8887 §4.1: like any request
    handler.close_connection = True  # once the socket closes, so does this connection
    handler.send_response(101)
    handler.send_header("Upgrade", "websocket")
    handler.send_header("Connection", "Upgrade")
    handler.send_header("Sec-WebSocket-Accept", websocket_accept(key))
    handler.send_header("Sec-WebSocket-Protocol", WEBSOCKET_SUBPROTOCOL)
    handler.end_headers()  # RFC 6455 §9.1: no Sec-WebSocket-Extensions, we accept none
    handler.wfile.flush()
    WebSocketConnection(handler, user).run()


class WebSocketConnection:
    """One JMAP-over-WebSocket connection. The handler thread reads frames; Requests
    run on a small pool, so a slow one blocks neither pings nor pushes; a push thread
    follows core.feed. Every write holds send_lock for one whole frame."""

    def __init__(self, handler: JmapHTTPHandler, user: User) -> None:
        self.handler, self.user, self.core = handler, user, handler.server.core
        self.socket = handler.connection
        self.epoch = handler.server.push_epoch
        # RFC 8887 §4.3.1: a Request over maxSizeRequest is answered with a RequestError
        # (limit); only a message beyond WEBSOCKET_HARD_CAP times it ends the socket (1009)
        limit = self.core.limits["maxSizeRequest"] * WEBSOCKET_HARD_CAP
        self.reader, self.assembler = FrameReader(limit), MessageAssembler(limit)
        self.send_lock, self.close_sent = threading.Lock(), False
        self.finished = threading.Event()
        self.push_lock = threading.Lock()  # keeps StateChanges in feed order
        self.push_enabled, self.push_types = False, None
        self.pushed_through = self.core.feed.sequence
        self.in_flight = threading.BoundedSemaphore(WEBSOCKET_IN_FLIGHT)
        self.workers = concurrent.futures.ThreadPoolExecutor(
            WEBSOCKET_WORKERS, thread_name_prefix="jmapd-ws-request")

    def run(self) -> None:
        self.socket.settimeout(None)  # push sockets idle for long; stop() shuts them down
        pusher = threading.Thread(target=self._follow_feed, name="jmapd-ws-push", daemon=True)
        pusher.start()
        server = self.handler.server
        with server.connections_lock:
            server.websockets.add(self)
        try:
            self._read_until_closed()
        finally:
            with server.connections_lock:
                server.websockets.discard(self)
            self.finished.set()
            with self.send_lock:
                self.close_sent = True  # whatever is still running sends nothing now
            with contextlib.suppress(OSError):
                self.socket.shutdown(socket.SHUT_WR)  # the peer sees the end at once
            self.workers.shutdown(wait=True, cancel_futures=True)
            pusher.join()

    # -- reading --

    def _read_until_closed(self) -> None:
        """Frames until the close handshake ends or the peer goes. A FrameError fails
        this connection only, with its close code (RFC 6455 §7.1.7)."""
        try:
            while True:
                data = self.handler.rfile.read1(1 << 16)  # rfile may hold early frames
                if not data:
                    return
                self.reader.feed(data)
                for frame in self.reader.frames():
                    event = self.assembler.add(frame)
                    if isinstance(event, Message):
                        self._on_message(event)
                    elif event is not None and self._on_control(event):
                        return
        except FrameError as error:
            self.close(error.close_code, str(error))
            with contextlib.suppress(OSError):
                self.socket.shutdown(socket.SHUT_WR)  # §7.1.1: the server closes first
            self._drain()
        except OSError:
            return  # the peer went away, or stop() shut the socket down

    def _drain(self) -> None:
        """After failing the connection: discard input until the peer closes too, so
        unread input cannot turn our close into a reset that loses the Close frame."""
        with contextlib.suppress(OSError):
            self.socket.settimeout(WEBSOCKET_CLOSE_WAIT)
            while self.handler.rfile.read1(1 << 16):
                pass

    def _on_control(self, frame: Frame) -> bool:
        """Ping gets Pong (§5.5.2), a Pong is ignored (§5.5.3); a Close is answered
        with one echoing its code (§5.5.1), and ends reading (True)."""
        if frame.opcode == Opcode.PING:
            self._send(Opcode.PONG, frame.payload)
        elif frame.opcode == Opcode.CLOSE:
            code, _ = parse_close(frame.payload)
            self.close(code)
            return True
        return False

    def _on_message(self, message: Message) -> None:
        """RFC 8887 §4.3: a Request, WebSocketPushEnable or WebSocketPushDisable."""
        if message.opcode == Opcode.BINARY:
            raise FrameError("JMAP messages are text frames (RFC 8887 §4.3.1)",
                             CloseCode.UNSUPPORTED_DATA)
        if self.close_sent:
            return  # §5.5.1: closing; what still arrives is not acted on
        request_id = None
        try:
            value = parse_json_body(message.payload)
            if isinstance(value, dict) and isinstance(value.get("id"), str):
                request_id = value["id"]
            limit = self.core.limits["maxSizeRequest"]
            if len(message.payload) > limit:
                raise RequestError("limit", f"the message is over maxSizeRequest ({limit} "
                                   "octets)", status=413, limit="maxSizeRequest")
            message_type, body, request_id = read_websocket_message(value)
        except RequestError as error:
            self.send_json(websocket_request_error(error, request_id))
            return
        if self.core.store.user(self.user.name) != self.user:
            # RFC 8887 §4.2: the handshake's credentials stay in effect; once they are
            # changed or gone, the server may close with 1008 (Policy Violation)
            self.close(CloseCode.POLICY_VIOLATION, "the credentials are no longer valid")
            return
        if message_type == "Request":
            self.in_flight.acquire()
            self.workers.submit(self._answer, body, request_id)
        elif message_type == "WebSocketPushEnable":
            self._enable_push(body)
        else:
            with self.push_lock:
                self.push_enabled = False  # RFC 8887 §4.3.5.3

    def _answer(self, request: dict, request_id: str | None) -> None:
        """One Request on a worker: the same core.handle_request as HTTP's."""
        started = time.monotonic()
        try:
            self.handler.trace("request", request)
            with self.core.collect_findings() as warnings:
                try:
                    response = self.core.handle_request(self.user, request)
                    reply = websocket_response(response, request_id)
                except RequestError as error:
                    reply = websocket_request_error(error, request_id)
                fired = self.core.fired_faults()
            self.send_json(reply)
            self.core.controls.record({  # the request log (section 15), as for HTTP
                "transport": "ws", "method": "Request", "path": WEBSOCKET_PATH,
                "status": reply.get("status", 200), "user": self.user.name,
                "durationMs": round((time.monotonic() - started) * 1000, 3),
                "request": request, "response": reply, "fault": ", ".join(fired) or None,
                "warnings": list(warnings)})
        except Exception:  # a bug: logged, answered without detail, the socket lives on
            log.error("WebSocket request failed:\n%s", traceback.format_exc())
            self.send_json(websocket_request_error(
                RequestError.http(500, "the server failed"), request_id))
        finally:
            self.in_flight.release()

    # -- pushing (RFC 8887 §4.3.5) --

    def _enable_push(self, body: dict) -> None:
        """§4.3.5.2: push dataTypes from now on; given a pushState, first send what
        changed since, or every current state if the feed no longer reaches back."""
        feed = self.core.feed
        with self.push_lock:
            self.push_enabled = True
            self.push_types = None if body["dataTypes"] is None else set(body["dataTypes"])
            with feed.condition:
                now, entries = feed.sequence, list(feed.entries)
            self.pushed_through = now
            if body.get("pushState") is None:
                return
            since = parse_push_state(body["pushState"], self.epoch)
            if since == now:
                return  # nothing happened since
            if since is not None and since < now and entries[0][0] <= since + 1:
                missed = merge_changed(*(changed for seq, changed in entries if seq > since))
                change = state_change(self.core, self.user, missed, self.push_types)
            else:
                change = current_state_change(self.core, self.user, self.push_types)
            if change:
                self.send_json({**change, "pushState": format_push_state(self.epoch, now)})

    def _follow_feed(self) -> None:
        """The push thread: waits on core.feed (never polls sqlite); 1001 Going Away
        when the server stops (RFC 6455 §7.4.1)."""
        feed, after = self.core.feed, self.pushed_through
        try:
            while not self.finished.is_set():
                if feed.closed:
                    self.close(CloseCode.GOING_AWAY, "the server is stopping")
                    return
                entries = feed.wait(after, WEBSOCKET_FEED_POLL)
                if entries:
                    after = entries[-1][0]
                    self._push(entries)
        except Exception:
            log.error("WebSocket push failed:\n%s", traceback.format_exc())

    def _push(self, entries: list[tuple[int, dict]]) -> None:
        """One StateChange for the entries not yet pushed, carrying its pushState."""
        with self.push_lock:
            fresh = [entry for entry in entries if entry[0] > self.pushed_through]
            if not fresh:
                return
            self.pushed_through = fresh[-1][0]
            if not self.push_enabled:
                return
            change = state_change(self.core, self.user, merge_changed(*(changed for _, changed in fresh)), self.push_types)
            if change:
                self.send_json({**change, "pushState": format_push_state(
                    self.epoch, self.pushed_through)})

    # -- writing --

    def send_json(self, value: dict) -> None:
        self.handler.trace(value.get("@type", "message"), value)
        self._send(Opcode.TEXT, encode_json(value))

    def _send(self, opcode: Opcode, payload: bytes) -> None:
        with self.send_lock:
            if self.close_sent:
                return  # RFC 6455 §5.5.1: nothing follows our Close
            with contextlib.suppress(OSError):
                self.socket.sendall(encode_frame(opcode, payload))

    def close(self, code: int, reason: str = "") -> None:
        """Send our Close frame once (§5.5.1); the reader ends the connection."""
        with self.send_lock:
            if self.close_sent:
                return
            self.close_sent = True
            with contextlib.suppress(OSError):
                self.socket.sendall(encode_frame(Opcode.CLOSE, encode_close(code, reason)))


# --- 14.2 Outbound: the SMTP relay and push POSTs -----------------------------
# What the core produced as data (section 10's outbox, section 11's PushOutbox) is
# carried out here, each on threads of its own, so a slow receiver never slows the API.

def relay_address(address: str) -> tuple[str, int]:
    """--relay HOST:PORT (an IPv6 host in brackets) as (host, port)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--relay {address!r}: HOST:PORT")
    return host.strip("[]"), int(port)


def _mail_options(message: OutboxMessage) -> list[str]:
    """MAIL FROM parameters the octets need: SMTPUTF8 for UTF-8 addresses or headers
    (RFC 6531 §3.4), else BODY=8BITMIME for 8-bit content (RFC 6152 §2)."""
    addresses = [message.mail_from, *message.rcpt_to]
    if not all(a.isascii() for a in addresses) or not _header_section(message.raw).isascii():
        return ["SMTPUTF8", "BODY=8BITMIME"]
    return [] if message.raw.isascii() else ["BODY=8BITMIME"]


def _header_section(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    return raw if end < 0 else raw[:end]


class SmtpRelay:
    """--relay HOST:PORT: forwards outbox messages over SMTP (e.g. to a capture server)
    on its own thread, so a slow relay never holds up a request, and records each
    recipient's reply on the EmailSubmission (RFC 8621 §7 deliveryStatus)."""

    ATTEMPTS, BACKOFF_SECONDS = 3, (1, 5)

    def __init__(self, core: JmapCore, address: str) -> None:
        self.core, (self.host, self.port) = core, relay_address(address)
        self.pending: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="jmapd-relay", daemon=True)
        self.thread.start()

    def __call__(self, message: OutboxMessage) -> None:
        self.pending.put(message)

    def stop(self) -> None:
        self.pending.put(None)
        self.thread.join(10)

    def _run(self) -> None:
        while (message := self.pending.get()) is not None:
            replies = self._send(message)
            with contextlib.suppress(sqlite3.ProgrammingError):  # the store closed meanwhile
                record_relay_result(self.core, message, replies)

    def _send(self, message: OutboxMessage) -> dict[str, tuple[str, str]]:
        """{recipient: (delivered, smtpReply)} after up to ATTEMPTS tries."""
        error: Exception | None = None
        for attempt in range(self.ATTEMPTS):
            try:
                with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
                    refused = smtp.sendmail(message.mail_from, list(message.rcpt_to),
                                            message.raw, mail_options=_mail_options(message))
                return {rcpt: ("no", f"{code} {text.decode(errors='replace')}")
                        if rcpt in refused else ("unknown", f"250 2.0.0 relayed to "
                                                 f"{self.host}:{self.port}")
                        for rcpt in message.rcpt_to
                        for code, text in [refused.get(rcpt, (250, b""))]}
            except smtplib.SMTPRecipientsRefused as refusal:
                return {rcpt: ("no", f"{code} {text.decode(errors='replace')}")
                        for rcpt, (code, text) in refusal.recipients.items()}
            except smtplib.SMTPResponseException as refusal:
                if refusal.smtp_code >= 500:
                    reply = f"{refusal.smtp_code} {refusal.smtp_error.decode(errors='replace')}"
                    return dict.fromkeys(message.rcpt_to, ("no", reply))
                error = refusal
            except (OSError, smtplib.SMTPException) as failure:
                error = failure
            if attempt + 1 < self.ATTEMPTS:
                time.sleep(self.BACKOFF_SECONDS[min(attempt, len(self.BACKOFF_SECONDS) - 1)])
        log.warning("relay %s:%s failed: %s", self.host, self.port, error)
        return dict.fromkeys(message.rcpt_to, ("no", f"554 5.4.4 relay {self.host}:{self.port} "
                                               f"failed after {self.ATTEMPTS} attempts: {error}"))


# PushSubscription delivery (RFC 8620 §7.2).

@dataclasses.dataclass(frozen=True, slots=True)
class PushPolicy:
    """How push POSTs are delivered; tests shorten the times (serve(push_policy=...))."""
    timeout: float = 5.0       # seconds per POST: a slow endpoint holds one sender no longer
    backoff: float = 1.0       # the first retry's delay; it doubles with each failure
    max_backoff: float = 300.0
    attempts: int = 5          # a POST that failed this many times is dropped
    senders: int = 32          # POSTs in flight at once, each on a thread of its own


def post_push(message: PushMessage, ssl_context: ssl.SSLContext | None,
              timeout: float) -> tuple[int, str | None]:
    """One POST: UTF-8 JSON and a TTL header (§7.2, RFC 8030 §5.2). No proxy, no
    redirect is followed. Returns the HTTP status and any Retry-After."""
    parts = urllib.parse.urlsplit(message.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                                 context=ssl_context)
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("POST", target, body=encode_json(message.body), headers={
            "Content-Type": "application/json", "TTL": str(message.ttl)})
        response = connection.getresponse()
        response.read(65536)
        return response.status, response.getheader("Retry-After")
    finally:
        connection.close()


def _retry_after_seconds(value: str | None) -> float:
    return float(value) if value and value.strip().isdigit() else 0.0


class PushDeliverer:
    """Carries out the PushOutbox's POSTs off the API's threads: one thread waits on
    core.feed and queues what the outbox owes, a dispatcher gives each POST that may go
    a thread of its own (up to policy.senders at once). Each subscription has its own
    queue (unsent StateChanges coalesce, so it stays short) and at most one POST in
    flight; a failure retries after a doubling back-off, and a POST that failed
    policy.attempts times is dropped. A dead or slow endpoint holds only its own thread,
    so it delays only itself (§7.2.2: a PushVerification goes "immediately")."""

    def __init__(self, core: JmapCore, policy: PushPolicy | None = None,
                 ssl_context: ssl.SSLContext | None = None, allow_http: bool = False) -> None:
        self.core, self.policy = core, policy or PushPolicy()
        self.ssl_context, self.allow_http = ssl_context, allow_http
        self.outbox = PushOutbox(core)
        self.condition = threading.Condition()
        self.queues: dict[str, list[PushMessage]] = {}  # subscription id -> unsent POSTs
        self.due: dict[str, float] = {}                  # -> monotonic time of the next try
        self.failures: dict[str, int] = {}               # -> failures of the queue's head
        self.busy: set[str] = set()                      # -> a POST in flight
        self.stats = {"sent": 0, "retried": 0, "dropped": 0}
        self.stopping = False
        self.threads = [threading.Thread(target=self._collect, name="jmapd-push-feed",
                                         daemon=True)]
        self.threads.append(threading.Thread(target=self._dispatch, name="jmapd-push-dispatch",
                                             daemon=True))
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        with self.condition:
            self.stopping = True
            self.condition.notify_all()
        for thread in self.threads:
            thread.join(self.policy.timeout + 1)

    def _collect(self) -> None:
        entries: list = []
        while not self.stopping:
            try:
                messages = self.outbox.collect(entries)
            except Exception:  # the store closed under us, or a bug: never a dead thread
                log.error("push: reading the change feed failed:\n%s", traceback.format_exc())
                messages = []
            for message in messages:
                self.enqueue(message)
            if self.core.feed.closed:
                return
            entries = self.core.feed.wait(self.outbox.after, 1.0)

    def enqueue(self, message: PushMessage) -> None:
        """Queue a POST; a StateChange joins one still unsent (§7: they coalesce)."""
        with self.condition:
            queue = self.queues.setdefault(message.subscription_id, [])
            first_unsent = 1 if message.subscription_id in self.busy else 0
            waiting = [i for i in range(first_unsent, len(queue))
                       if not queue[i].is_verification]
            if waiting and not message.is_verification:
                older = queue[waiting[-1]]
                queue[waiting[-1]] = dataclasses.replace(
                    older, body=merge_state_changes(older.body, message.body))
            else:
                queue.append(message)
            self.due.setdefault(message.subscription_id, 0.0)
            self.condition.notify()

    def _next_ready(self) -> tuple[str | None, float | None]:
        """A subscription whose head POST may go now, else how long until one may."""
        now, soonest = time.monotonic(), None
        for subscription_id, queue in self.queues.items():
            if queue and subscription_id not in self.busy:
                if self.due[subscription_id] <= now:
                    return subscription_id, None
                wait = self.due[subscription_id] - now
                soonest = wait if soonest is None else min(soonest, wait)
        return None, soonest

    def _dispatch(self) -> None:
        while True:
            with self.condition:
                subscription_id, wait = self._next_ready()
                while subscription_id is None or len(self.busy) >= self.policy.senders:
                    if self.stopping:
                        return
                    self.condition.wait(wait if subscription_id is None else None)
                    subscription_id, wait = self._next_ready()
                self.busy.add(subscription_id)
                message = self.queues[subscription_id][0]
            threading.Thread(target=self._deliver, args=(subscription_id, message),
                             name="jmapd-push-post", daemon=True).start()

    def _deliver(self, subscription_id: str, message: PushMessage) -> None:
        try:
            outcome, retry_after = self._attempt(message)
        except Exception:  # e.g. the store closed as the server stopped
            if not self.stopping:
                log.error("push to %s failed:\n%s", subscription_id, traceback.format_exc())
            outcome, retry_after = "drop", 0.0
        with self.condition:
            self.busy.discard(subscription_id)
            self._settle(subscription_id, outcome, retry_after)
            self.condition.notify_all()

    def _attempt(self, message: PushMessage) -> tuple[str, float]:
        """"sent", "retry" (with a server-asked delay) or "drop"."""
        if not self.outbox.is_live(message) or push_url_problem(message.url, self.allow_http):
            return "drop", 0.0  # §7.2: destroyed, expired, or no longer an allowed url
        if self.ssl_context is None and message.url.lower().startswith("https:"):
            self.ssl_context = ssl.create_default_context()  # verifies against system CAs
        try:
            status, retry_after = post_push(message, self.ssl_context, self.policy.timeout)
        except (OSError, http.client.HTTPException) as error:  # refused, timed out, TLS
            log.info("push to subscription %s failed: %s", message.subscription_id, error)
            return "retry", 0.0
        if 200 <= status < 300:
            return "sent", 0.0
        if status == 429 or status >= 500:  # §7.2: a 429 MUST reduce the frequency
            return "retry", _retry_after_seconds(retry_after)
        log.info("push to subscription %s answered %d: dropped", message.subscription_id,
                 status)
        return "drop", 0.0

    def _settle(self, subscription_id: str, outcome: str, retry_after: float) -> None:
        queue = self.queues.get(subscription_id, [])
        if outcome == "retry":
            failures = self.failures.get(subscription_id, 0) + 1
            if failures < self.policy.attempts:
                self.failures[subscription_id] = failures
                self.stats["retried"] += 1
                delay = self.policy.backoff * 2 ** (failures - 1)
                self.due[subscription_id] = time.monotonic() + min(
                    max(delay, retry_after), self.policy.max_backoff)
                return
            log.warning("push to subscription %s: dropped after %d failures",
                        subscription_id, failures)
        self.stats["sent" if outcome == "sent" else "dropped"] += 1
        self.failures.pop(subscription_id, None)
        if queue:
            queue.pop(0)
        if not queue:
            self.queues.pop(subscription_id, None)
            self.due.pop(subscription_id, None)


# --- 14.3 The running server and serve() ------------------------------------

class JmapServer:
    """A running HTTP server around a JmapCore; what serve() returns.

    Attributes: url, session_url, users (User objects with name, password, token,
    email, account_id), core, pushes (the POSTs to https://push.jmapd.test/...,
    captured: {url, body, ttl, time}). Use as a context manager or call stop().
    allow_http_push lets push urls be http:// on loopback; push_ca is a PEM file of
    extra CAs for https push receivers; push_policy sets timeouts and retries.
    The dev controls (section 15) are here too: deliver, outbox, requests, faults,
    clock, add_user, reset, snapshot/restore; control=False turns off their HTTP API.
    """

    def __init__(self, core: JmapCore, host: str = "127.0.0.1", port: int = 0,
                 cors_origin: str = "*", trace: bool = False, relay: str | None = None, *,
                 allow_http_push: bool = False, push_ca: str | None = None,
                 push_policy: PushPolicy | None = None, control: bool = True) -> None:
        self.core = core
        core.allow_http_push = allow_http_push
        if relay:
            relay_address(relay)  # a bad --relay stops the start before anything is bound
        tls = None  # the system's CAs, made at the first https push (30 ms), plus --push-ca
        if push_ca:
            tls = ssl.create_default_context()
            tls.load_verify_locations(push_ca)  # a bad file stops the start, not a push
        self.httpd = JmapHTTPServer((host, port), core, cors_origin, trace)
        self.httpd.control = control
        self.relay = core.relay = SmtpRelay(core, relay) if relay else None
        if trace:
            core.outbox_listeners.append(self.httpd.trace_outbox)
        self._stopping = threading.Event()
        self.timer = threading.Thread(target=self._run_due_work, name="jmapd-timer", daemon=True)
        self.timer.start()
        bound_host, bound_port = self.httpd.server_address[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}"
        self.session_url = self.url + WELL_KNOWN_PATH
        self.deliverer = PushDeliverer(core, push_policy, tls, allow_http_push)
        core.controls.attach(self)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="jmapd-http",
                                       kwargs={"poll_interval": 0.5}, daemon=True)
        self.thread.start()

    def _poke(self) -> None:
        host, port = self.httpd.server_address[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        with contextlib.suppress(OSError):
            socket.create_connection((host, port), timeout=0.2).close()

    def _run_due_work(self) -> None:
        """Held submissions leave on time even when no request comes (section 10)."""
        while not self._stopping.wait(0.5):
            try:
                self.core.run_due_work()
            except sqlite3.ProgrammingError:
                return  # the store closed: the server is stopping
            except Exception:
                log.error("due work failed:\n%s", traceback.format_exc())

    @property
    def users(self) -> list[User]:
        return self.core.users()

    @property
    def outbox(self) -> list[OutboxMessage]:
        """What was sent to recipients outside this server, oldest first."""
        return list(self.core.outbox)

    @property
    def pushes(self) -> list[dict]:
        """The POSTs to https://push.jmapd.test/NAME urls, kept instead of sent."""
        return self.core.pushes

    def user(self, name: str) -> User:
        return self.core.user(name)

    def deliver(self, message: "bytes | dict", to: "str | Iterable[str] | None" = None,
                **options: Any) -> dict:
        """Deliver a message to local users' Inboxes, as mail arriving would (push fires):
        `server.deliver(raw_bytes, to="alice")` -> {"alice": emailId}, or a description
        `server.deliver({"from": "carol@example.org", "to": "alice", "subject": "Hi",
        "text": "..."})` that section 15 composes into RFC 5322 octets."""
        return self.core.controls.deliver(message, to, **options)

    # -- dev controls (section 15), the core's: server.core.controls --

    @property
    def faults(self) -> Any:
        """Injected failures: server.faults.fail("Email/get", error="serverFail")."""
        return self.core.controls.faults

    @property
    def requests(self) -> Any:
        """Every HTTP request and its response; requests.format() pretty-prints them."""
        return self.core.controls.requests

    @property
    def clock(self) -> Any:
        """The server's time: clock.advance(hours=2) also runs what became due."""
        return self.core.controls.clock

    def add_user(self, name: str, password: str | None = None, **options: Any) -> User:
        """A new login with a pristine account, at once (seed=... fills it)."""
        return self.core.controls.add_user(name, password, **options)

    def bump_session_state(self) -> str:
        """Give the Session a new state, as a server whose configuration changed."""
        return self.core.controls.faults.bump_session_state()

    def snapshot(self, name: str | None = None) -> Any:
        """A copy of all data now (sqlite backup), for restore()."""
        return self.core.controls.snapshot(name)

    def restore(self, snapshot: Any) -> None:
        """Put back a snapshot's data; every state issued before is then unknown."""
        self.core.controls.restore(snapshot)

    def reset(self) -> None:
        """Back to the data, clock, outbox and log the server started with; no faults."""
        self.core.controls.reset()

    def stop(self) -> None:
        """Stop serving, close every connection, and close the store."""
        self.core.feed.close()  # event streams and the push deliverer end
        self.deliverer.stop()
        self._stopping.set()
        self.timer.join()
        if self.relay:
            self.relay.stop()
        if self.thread.is_alive():
            stopper = threading.Thread(target=self.httpd.shutdown)
            stopper.start()
            while stopper.is_alive():  # wake the accept loop instead of waiting out its poll
                self._poke()
                stopper.join(0.005)
            self.thread.join()
        self.httpd.server_close()
        self.httpd.close_connections()
        self.core.close()

    def __enter__(self) -> "JmapServer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def seed_builder(seed: str | None) -> Callable:
    """The builder for "demo", "generated:N" (name before the colon), or a path."""
    return SEEDS.get((seed or "").partition(":")[0]) or SEEDS[FILE_SEED]


_SEED_TEMPLATES: dict[tuple, JmapCore] = {}  # per process: a named seed is built once
_SEED_TEMPLATES_LOCK = threading.Lock()


def _seeded_core(seed: str | None, db: str, clock: Any, ids: Any,
                 limits: dict | None) -> JmapCore:
    """A core holding the seed: an in-memory copy of a template built once per process
    for a named seed, else built here (files, or a --db that may already have data)."""
    deterministic = getattr(ids, "counter", None) is not None
    if db != ":memory:" or seed_builder(seed) is SEEDS[FILE_SEED]:
        core = JmapCore(db, clock=clock, ids=ids, limits=limits)
        if seed and not core.users():  # a --db that has users keeps them as they are
            seed_builder(seed)(core, seed)
        return core
    key = (seed, deterministic, clock.now() if isinstance(clock, FixedClock) else None)
    with _SEED_TEMPLATES_LOCK:
        if key not in _SEED_TEMPLATES:
            template = JmapCore(clock=FixedClock(clock.now()) if isinstance(clock, FixedClock)
                                else None, ids=SequentialIds() if deterministic else None)
            seed_builder(seed)(template, seed)
            _SEED_TEMPLATES[key] = template
        template = _SEED_TEMPLATES[key]
    return JmapCore(clock=clock, ids=ids, limits=limits, copy_of=template)


def serve(seed: str | None = "demo", *, host: str = "127.0.0.1", port: int = 0,
          db: str = ":memory:", users: Iterable[str] = (), limits: dict | None = None,
          clock: Any = None, ids: Any = None, cors_origin: str = "*",
          trace: bool = False, relay: str | None = None, allow_http_push: bool = False,
          push_ca: str | None = None, push_policy: PushPolicy | None = None,
          control: bool = True, quirks: "str | Iterable[str] | None" = None,
          pedantic: bool = False) -> JmapServer:
    """Start jmapd in a background thread: `with serve(seed="demo") as server: ...`.

    seed: a registered seed name ("demo", "empty") or a JSON seed file, or None.
    users: extra "NAME:PASSWORD" logins. relay: "HOST:PORT" of an SMTP server that
    mail for outside recipients is forwarded to. Other arguments as for JmapCore,
    JmapServer and the CLI (allow_http_push is --allow-http-push: a dev-only deviation;
    control=False is --no-control: no /_jmapd/ control API). quirks: a real server
    family's deviations to imitate, "cyrus" or "no-query-changes,..." (section 15.6);
    pedantic: refuse what the RFCs do not allow a client, rather than warn (section 5).
    """
    core = _seeded_core(seed, db, clock, ids, limits)
    try:
        core.controls.set_quirks(quirks)
        core.controls.set_pedantic(pedantic)
        for spec in users:
            name, _, password = spec.partition(":")
            if not core.store.user(name):
                core.add_user(name, password)
        apply_configured_quotas(core, limits)  # 12.2: seeded accounts get them too
        return JmapServer(core, host, port, cors_origin, trace, relay,
                          allow_http_push=allow_http_push, push_ca=push_ca,
                          push_policy=push_policy, control=control)
    except BaseException:
        core.close()
        raise


# =============================================================================
# 15. Dev controls
# =============================================================================
# What a client's test suite needs from a fake server: faults real servers rarely
# show, a request log, the outbox parsed, a clock to move, accounts on demand,
# reset/snapshot/restore, and real servers' quirks to imitate (15.6). DevControls
# takes the place of the core's Controls seam (section 5) in every core; JmapServer
# (14) delegates to it, and /_jmapd/... (15.7) serves the same over HTTP for clients
# in any language. A fault answers exactly as the
# spec's error would from a real server; the core stays sans-IO (14 drops sockets).

CONTROL_PREFIX = "/_jmapd"
REQUEST_LOG_SIZE = 1000  # entries kept; the oldest go first
TRANSPORT_TITLES = {429: ("limit", "maxConcurrentRequests"),  # RFC 8620 §3.6.1
                    413: ("limit", "maxSizeRequest")}


# --- 15.1 Faults ------------------------------------------------------------------

@dataclasses.dataclass(slots=True)
class FaultRule:
    """One armed fault: the method calls (fnmatch patterns) or HTTP path it matches,
    what it does (`fault` names the Faults method that made it), how often."""
    id: str
    fault: str
    methods: tuple[str, ...] = ()
    path: str | None = None
    times: int | None = 1        # firings left; None: until cleared
    options: dict = dataclasses.field(default_factory=dict)
    fired: int = 0

    def matches_call(self, name: str, arguments: dict) -> bool:
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in self.methods):
            return False
        needs = self.options.get("requires", ())  # e.g. stateMismatch needs an ifInState
        return not needs or any(arguments.get(arg) is not None for arg in needs)

    def matches_path(self, path: str) -> bool:
        return self.path is not None and (self.path == "*" or path.startswith(self.path))

    def to_json(self) -> dict:
        shown = {k: v for k, v in self.options.items() if k != "requires"}
        return {"id": self.id, "fault": self.fault, "methods": list(self.methods) or None,
                "path": self.path, "times": self.times, "fired": self.fired, **shown}


@dataclasses.dataclass(frozen=True, slots=True)
class TransportFault:
    """What the transport does instead of (or after) answering one HTTP request."""
    name: str
    drops: bool = False
    after: bool = False          # drop only once the request has been processed
    status: int = 0
    retry_after: int | None = None

    def error(self) -> RequestError:
        """The problem details a real server would send with this status."""
        type_, limit = TRANSPORT_TITLES.get(self.status, (None, None))
        detail = f"{HTTP_TITLES.get(self.status, 'error')} (a jmapd dev fault)"
        if type_:
            return RequestError(type_, detail, status=self.status, limit=limit)
        return RequestError.http(self.status, detail)

    def headers(self) -> list[tuple[str, str]]:
        headers = [("Cache-Control", "no-store")]
        if self.retry_after is not None:  # RFC 9110 §10.2.3
            headers.append(("Retry-After", str(self.retry_after)))
        if self.status == 401:  # RFC 7235 §3.1: a 401 carries a challenge
            headers.append(("WWW-Authenticate", 'Basic realm="jmapd", charset="UTF-8"'))
        return headers


def _times(value: Any) -> int | None:
    if value is not None and not (_is_int(value) and value > 0):
        raise ValueError(f"times: a positive integer, or null for always (got {value!r})")
    return value


class Faults:
    """Failures to inject, each looking to the client exactly like the spec's error
    from a real server. Method faults match calls by name ("Email/get", "Email/*",
    "*"); transport faults match HTTP paths (a prefix, default the API). `times` is how
    often a fault fires (None: until clear()). Each arming method returns its rule."""

    def __init__(self, core: JmapCore) -> None:
        self.core = core
        self.lock = threading.Lock()
        self.rules: list[FaultRule] = []
        self.counter = 0
        self.expired: dict[tuple[str, str], int] = {}  # (account, type) -> oldest modseq kept
        self.push_channels: list[Callable[[], int]] = []  # transports' stream closers

    # -- arming --

    def _arm(self, fault: str, times: int | None, **fields: Any) -> FaultRule:
        with self.lock:
            self.counter += 1
            rule = FaultRule(f"f{self.counter}", fault, times=_times(times), **fields)
            self.rules.append(rule)
        return rule

    def _type_methods(self, type_: str, *suffixes: str) -> tuple[str, ...]:
        if not isinstance(type_, str) or (type_ != "*" and type_ not in self.core.datatypes):
            raise ValueError(f"type: a data type name such as 'Email', or '*' (got {type_!r})")
        return tuple(f"{type_}/{suffix}" for suffix in suffixes)

    def _method_pattern(self, method_: Any) -> tuple[str, ...]:
        if not isinstance(method_, str) or not method_ or (
                not any(ch in method_ for ch in "*?[") and method_ not in self.core.methods):
            raise ValueError(f"method: a registered method name or an fnmatch pattern "
                             f"(got {method_!r})")
        return (method_,)

    def fail(self, method: str, error: str = "serverFail", *, times: int | None = 1,
             description: str | None = None) -> FaultRule:
        """The next `times` calls of `method` answer ["error", {"type": error}]."""
        if error not in METHOD_ERRORS:
            raise ValueError(f"error: {error!r} is not a method-level error type "
                             "(RFC 8620 §3.6.2; see jmapd.METHOD_ERRORS)")
        return self._arm("fail", times, methods=self._method_pattern(method), options={
            "error": error, "description": description})

    def latency(self, ms: float, method: str = "*", *, times: int | None = None) -> FaultRule:
        """Each matching method call waits `ms` milliseconds before it runs."""
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not 0 <= ms <= 60_000:
            raise ValueError(f"ms: a number of milliseconds from 0 to 60000 (got {ms!r})")
        return self._arm("latency", times, methods=self._method_pattern(method),
                         options={"ms": ms})

    def cannot_calculate_changes(self, type: str = "*", *,
                                 times: int | None = None) -> FaultRule:
        """type/changes and type/queryChanges answer cannotCalculateChanges (§5.2, §5.6)."""
        return self._arm("cannot_calculate_changes", times, options={
            "error": "cannotCalculateChanges", "description": None},
            methods=self._type_methods(type, "changes", "queryChanges"))

    def state_mismatch(self, type: str = "*", *, times: int | None = 1) -> FaultRule:
        """type/set, /copy and /import calls that carry an ifInState (or ifFromInState)
        answer stateMismatch, as if another client had just written (RFC 8620 §5.3)."""
        return self._arm("state_mismatch", times, options={
            "error": "stateMismatch", "description": None,
            "requires": ("ifInState", "ifFromInState")},
            methods=self._type_methods(type, "set", "copy", "import"))

    def has_more_changes(self, type: str = "*", *, max_changes: int = 1,
                         times: int | None = None) -> FaultRule:
        """type/changes pages at most max_changes ids, so a client must follow
        hasMoreChanges (RFC 8620 §5.2); the answers stay exact."""
        if not (_is_int(max_changes) and max_changes > 0):
            raise ValueError(f"max_changes: a positive integer (got {max_changes!r})")
        return self._arm("has_more_changes", times, options={"max_changes": max_changes},
                         methods=self._type_methods(type, "changes"))

    def http_status(self, status: int = 503, *, retry_after: int | None = None,
                    times: int | None = 1, path: str = API_PATH) -> FaultRule:
        """The next `times` HTTP requests to path answer `status` with problem details
        (429 and 413 as RFC 8620 §3.6.1 "limit"), and Retry-After if given."""
        if not (_is_int(status) and 400 <= status <= 599):
            raise ValueError(f"status: an HTTP error status, 400-599 (got {status!r})")
        if retry_after is not None and not (_is_int(retry_after) and retry_after >= 0):
            raise ValueError(f"retry_after: seconds, a non-negative integer (got {retry_after!r})")
        return self._arm("http_status", times, path=self._path(path), options={
            "status": status, "retry_after": retry_after})

    def drop_connection(self, *, times: int | None = 1, path: str = API_PATH,
                        after: bool = False) -> FaultRule:
        """The next `times` HTTP requests to path get no answer: the connection closes.
        after=True processes the request first (its writes happen; the answer is lost)."""
        if not isinstance(after, bool):
            raise ValueError("after: true or false")
        return self._arm("drop_connection", times, path=self._path(path),
                         options={"after": after})

    @staticmethod
    def _path(path: Any) -> str:
        if not isinstance(path, str) or not (path == "*" or path.startswith("/")):
            raise ValueError(f"path: an HTTP path prefix such as {API_PATH!r}, or '*'")
        return path

    # -- immediate faults --

    def expire_states(self, type: str = "*") -> dict[str, dict[str, str]]:
        """Forget the change history of type up to now: every state issued before the
        current one gets cannotCalculateChanges, as after a real server's purge. The
        states still known, {accountId: {type: state}}."""
        self._type_methods(type)  # checks the name
        names = [n for n in self.core.datatypes if type in ("*", n)]
        kept: dict[str, dict[str, str]] = {}
        with self.core.store.transaction():
            for user in self.core.users():
                for account in self.core.store.accounts_of(user.name):
                    for name in names:
                        modseq = self.core.store.type_state(account.id, name)
                        with self.lock:
                            floor = max(self.expired.get((account.id, name), 0), modseq)
                            self.expired[(account.id, name)] = floor
                        kept.setdefault(account.id, {})[name] = self.core.state_string(modseq)
        return kept

    def disconnect_push(self) -> int:
        """Close every open push channel (EventSource streams, WebSockets) now; how many
        there were. A client must reconnect, with Last-Event-ID (RFC 8620 §7.3) or a
        pushState (RFC 8887 §4.3.5.2)."""
        return sum(close() for close in list(self.push_channels))

    def bump_session_state(self) -> str:
        """Give the Session a new state (RFC 8620 §2), as after a server reconfiguration:
        every API response's sessionState changes, so clients refetch the Session."""
        self.core.session_generation += 1
        self.core._session_states.clear()
        return f"generation {self.core.session_generation}"

    def clear(self) -> int:
        """Disarm every fault (expired states stay expired); how many were armed."""
        with self.lock:
            count, self.rules = len(self.rules), []
        return count

    @property
    def active(self) -> list[FaultRule]:
        with self.lock:
            return list(self.rules)

    # -- the seam (section 5's Controls, section 14's dispatch) --

    def _take(self, test: Callable[[FaultRule], bool]) -> FaultRule | None:
        """The rule that fires now, oldest armed first, used once more (a spent one is
        dropped); one per call, so rules armed one after another fire one after another."""
        with self.lock:
            fired = next((rule for rule in self.rules if test(rule)), None)
            if fired is None:
                return None
            fired.fired += 1
            if fired.times is not None:
                fired.times -= 1
            self.rules = [rule for rule in self.rules if rule.times != 0]
        return fired

    def before_method(self, call: MethodCall, arguments: dict) -> dict:
        self._check_expired(call.name, arguments)
        rule = self._take(lambda r: bool(r.methods) and r.matches_call(call.name, arguments))
        if rule is None:
            return arguments
        self.core.note_fault(f"{rule.fault} {call.name}")  # for the request log
        if rule.fault == "latency":
            time.sleep(rule.options["ms"] / 1000)
        elif rule.fault == "has_more_changes":
            given = arguments.get("maxChanges")
            limit = rule.options["max_changes"]
            arguments = {**arguments, "maxChanges": min(given, limit)
                         if _is_int(given) and given > 0 else limit}
        else:
            raise MethodError(rule.options["error"], rule.options["description"])
        return arguments

    def _check_expired(self, name: str, arguments: dict) -> None:
        type_, _, verb = name.partition("/")
        state = arguments.get({"changes": "sinceState", "queryChanges": "sinceQueryState"}
                              .get(verb, ""))
        account_id = arguments.get("accountId")
        if not self.expired or not isinstance(account_id, str):
            return
        floor = self.expired.get((account_id, type_))
        epoch = self.core.state_epoch
        if floor is None or not isinstance(state, str) or not state.startswith(epoch):
            return
        digits = state[len(epoch):]
        if digits.isdigit() and int(digits) < floor:  # RFC 8620 §5.2
            raise MethodError("cannotCalculateChanges",
                              f"state {state!r} is older than the server's change history")

    def before_http(self, method: str, path: str) -> TransportFault | None:
        rule = self._take(lambda rule: rule.matches_path(path))
        if rule is None:
            return None
        if rule.fault == "drop_connection":
            return TransportFault(rule.fault, drops=True, after=rule.options["after"])
        return TransportFault(rule.fault, status=rule.options["status"],
                              retry_after=rule.options["retry_after"])


# --- 15.2 The request log ---------------------------------------------------------

class RequestLog:
    """The last REQUEST_LOG_SIZE requests a transport answered, oldest first: each a
    dict {seq, time, transport, method, path, status, user, durationMs, request,
    response, fault}; request and response are the JSON bodies of API calls."""

    def __init__(self, core: JmapCore, size: int = REQUEST_LOG_SIZE) -> None:
        self.core = core
        self.entries: collections.deque = collections.deque(maxlen=size)
        self.lock = threading.Lock()
        self.counter = 0

    def add(self, entry: dict) -> None:
        with self.lock:
            self.counter += 1
            self.entries.append({"seq": self.counter,
                                 "time": format_utc(self.core.clock.now()), **entry})

    def __iter__(self) -> Iterator[dict]:
        return iter(self.recent())

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        return self.recent()[index]

    def recent(self, last: int | None = None) -> list[dict]:
        """The log, or its newest `last` entries."""
        with self.lock:
            entries = list(self.entries)
        return entries[-last:] if last else entries

    def clear(self) -> int:
        with self.lock:
            count = len(self.entries)
            self.entries.clear()
        return count

    def calls(self, name: str | None = None) -> list[list]:
        """Every method call sent, [name, arguments, callId], optionally of one name."""
        return [call for entry in self.recent() if isinstance(entry["request"], dict)
                for call in entry["request"].get("methodCalls") or []
                if isinstance(call, list) and call and (name is None or call[0] == name)]

    def format(self, last: int | None = None, width: int = 160) -> str:
        """The log as text for a failing test's output: one line per request, then
        its method calls (>) and responses (<), each cut to `width` characters."""
        def cut(value: Any) -> str:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            return text if len(text) <= width else text[:width - 3] + "..."
        lines = []
        for entry in self.recent(last):
            fault = f" [fault: {entry['fault']}]" if entry["fault"] else ""
            lines.append(f"#{entry['seq']} {entry['method']} {entry['path']} -> "
                         f"{entry['status']} ({entry['user'] or '-'}, {entry['durationMs']} ms, "
                         f"{entry['transport']}){fault}")
            request, response = entry["request"], entry["response"]
            for call in (request or {}).get("methodCalls", []) if isinstance(request, dict) else []:
                lines.append(f"    > {cut(call)}")
            if isinstance(response, dict) and "methodResponses" in response:
                lines += [f"    < {cut(item)}" for item in response["methodResponses"]]
            elif response is not None:
                lines.append(f"    < {cut(response)}")
        return "\n".join(lines) or "(no requests)"


# --- 15.3 Messages: a description composed, the outbox parsed ------------------------

MESSAGE_FIELDS = ("from", "to", "cc", "bcc", "replyTo", "sender", "subject", "date",
                  "messageId", "inReplyTo", "references", "text", "html", "headers",
                  "attachments")
ADDRESS_HEADERS = {"from": "From", "sender": "Sender", "to": "To", "cc": "Cc",
                   "replyTo": "Reply-To"}


def _address_list(core: JmapCore, value: Any, field: str) -> list[dict]:
    """"Carol <carol@example.org>", {"name", "email"}, a local user's name, or a list
    of those, as EmailAddress objects."""
    items = value if isinstance(value, list) else [value]
    found = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("email"), str):
            found.append({"name": item.get("name"), "email": item["email"]})
        elif isinstance(item, str) and "@" not in item and core.store.user(item):
            found.append({"name": None, "email": core.store.user(item).email})
        elif isinstance(item, str) and is_mailbox_address(email.utils.parseaddr(item)[1]):
            name, address = email.utils.parseaddr(item)
            found.append({"name": name or None, "email": address})
        else:
            raise ValueError(f"{field}: {item!r} is not an address, a user name or "
                             "{name, email}")
    return found


def compose_message(core: JmapCore, description: dict) -> tuple[bytes, list[str]]:
    """A message described in a few JSON fields as RFC 5322 octets, and its recipients
    (to, cc and bcc; Bcc itself is left out of the header, as a sender's client does)."""
    unknown = sorted(set(description) - set(MESSAGE_FIELDS))
    if unknown:
        raise ValueError(f"message: unknown field {unknown[0]!r}; known: {', '.join(MESSAGE_FIELDS)}")
    message = email.message.EmailMessage(policy=COMPOSE_POLICY)
    recipients = []
    for field, header in ADDRESS_HEADERS.items():
        if description.get(field) is not None:
            addresses = _address_list(core, description[field], field)
            message[header] = format_addresses(addresses)
            recipients += [a["email"] for a in addresses] if field in ("to", "cc") else []
    recipients += [a["email"] for a in _address_list(core, description.get("bcc") or [], "bcc")]
    message["Subject"] = str(description.get("subject", ""))
    message["Date"] = description.get("date") or email.utils.format_datetime(core.clock.now())
    with core.store.transaction():
        default_id = f"<{core.new_id('d')}.{int(core.now())}@jmapd.local>"
    message["Message-ID"] = description.get("messageId") or default_id
    for field, header in (("inReplyTo", "In-Reply-To"), ("references", "References")):
        if description.get(field):
            message[header] = description[field]
    for name, value in (description.get("headers") or {}).items():
        message[name] = str(value)
    _compose_body(message, description)
    return message.as_bytes(policy=COMPOSE_POLICY), list(dict.fromkeys(recipients))


def _compose_body(message: email.message.EmailMessage, description: dict) -> None:
    text, html_body = description.get("text"), description.get("html")
    if text is None and html_body is None:
        text = ""
    if text is not None:
        message.set_content(str(text))
        if html_body is not None:
            message.add_alternative(str(html_body), subtype="html")
    else:
        message.set_content(str(html_body), subtype="html")
    for attachment in description.get("attachments") or []:
        if not isinstance(attachment, dict):
            raise ValueError("attachments: each is {name, type, text | base64}")
        maintype, _, subtype = str(attachment.get("type", "application/octet-stream")
                                   ).partition("/")
        name = attachment.get("name")
        if "text" in attachment:
            message.add_attachment(str(attachment["text"]), subtype=subtype or "plain",
                                   filename=name)
            continue
        try:
            content = base64.b64decode(attachment.get("base64", ""), validate=True)
        except (ValueError, TypeError):
            raise ValueError(f"attachments: {name!r}: base64 is not valid base64") from None
        message.add_attachment(content, maintype=maintype, subtype=subtype or "octet-stream",
                               filename=name)


def outbox_view(message: OutboxMessage, raw: bool = False) -> dict:
    """An outbox message as JSON: envelope, header fields, subject and text."""
    parsed = message.message

    def body(kind: str) -> str | None:
        part = parsed.get_body((kind,))
        try:
            return part.get_content() if part is not None else None
        except (LookupError, ValueError):  # an unknown charset: the octets as best we can
            return part.get_payload(decode=True).decode("utf-8", "replace")
    view = {"mailFrom": message.mail_from, "rcptTo": list(message.rcpt_to),
            "sentAt": message.sent_at, "accountId": message.account_id,
            "submissionId": message.submission_id,
            "messageId": str(parsed.get("Message-ID", "")) or None,
            "subject": str(parsed.get("Subject", "")),
            "from": str(parsed.get("From", "")), "to": str(parsed.get("To", "")),
            "headers": [[name, str(value)] for name, value in parsed.items()],
            "text": body("plain"), "html": body("html"), "size": len(message.raw)}
    if raw:
        view["raw"] = message.raw.decode("utf-8", "replace")
    return view


# --- 15.4 The clock -----------------------------------------------------------------

class ClockControl:
    """The server's time as a test moves it: fixed (FixedClock) or real (SystemClock,
    advance() adds an offset). After each move, what became due runs at once: held
    EmailSubmissions are sent, uploads and tombstones expire (sections 5, 10)."""

    def __init__(self, core: JmapCore) -> None:
        self.core = core

    @property
    def fixed(self) -> bool:
        return isinstance(self.core.clock, FixedClock)

    def now(self) -> datetime.datetime:
        return self.core.clock.now()

    def advance(self, seconds: float = 0, *, minutes: float = 0, hours: float = 0,
                days: float = 0) -> datetime.datetime:
        """Move time forward: advance(90), advance(hours=2); the new now."""
        units = {"seconds": seconds, "minutes": minutes, "hours": hours, "days": days}
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in units.values()):
            raise ValueError("advance: seconds, minutes, hours and days are numbers")
        try:
            step = _duration(seconds, minutes, hours, days)
            (self.now() + step).timestamp()
        except (OverflowError, ValueError, OSError):
            raise ValueError("advance: that is past the last date a clock can show") from None
        if step < datetime.timedelta():
            raise ValueError("advance: time only moves forward here; set() moves it anywhere")
        if not hasattr(self.core.clock, "advance"):
            raise ValueError(f"advance: the server's clock {self.core.clock!r} cannot move")
        self.core.clock.advance(seconds, minutes=minutes, hours=hours, days=days)
        return self.run_due_work()

    def set(self, moment: "str | datetime.datetime") -> datetime.datetime:
        """Stand the clock still at moment (a UTCDate or an aware datetime)."""
        if isinstance(moment, str) and not UTCDate.accepts(moment):
            raise ValueError(f"set: a UTCDate such as 2026-01-01T09:00:00Z (got {moment!r})")
        if not isinstance(moment, (str, datetime.datetime)):
            raise ValueError("set: a UTCDate string or a datetime")
        self.core.clock = FixedClock(moment if isinstance(moment, datetime.datetime)
                                     else moment[:19] + "Z")
        return self.run_due_work()

    def freeze(self) -> datetime.datetime:
        """Stop the clock where it is."""
        return self.set(self.now())

    def use_real_time(self) -> datetime.datetime:
        """Follow the real time again."""
        self.core.clock = SystemClock()
        return self.run_due_work()

    def run_due_work(self) -> datetime.datetime:
        self.core.maintain()
        self.core.run_due_work()
        return self.now()

    def to_json(self) -> dict:
        return {"now": format_utc(self.now()), "fixed": self.fixed}


# --- 15.5 DevControls: snapshots, reset, accounts on demand --------------------------
# A restore puts back old data, and with it old modseqs: a state string the server
# issued after the snapshot would then name different data. So every restore (and
# reset) takes a new state epoch (section 5): each state issued before it, older or
# newer than the snapshot, gets cannotCalculateChanges and the client resyncs, never
# a wrong answer. Ids are not reused either: the id counter only moves forward.

@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """A copy of a core's whole database at one moment (sqlite's online backup)."""
    name: str
    db: sqlite3.Connection
    taken_at: str
    epoch: str
    clock: datetime.datetime | None = None  # the fixed clock's moment, for reset()

    def to_json(self) -> dict:
        return {"snapshot": self.name, "takenAt": self.taken_at}


def next_state_epoch(core: JmapCore, seen: Iterable[str]) -> str:
    """An epoch no state string of this database ever had: "r1-", "r2-", ... with
    deterministic ids (readable, reproducible), else four new random letters."""
    if getattr(core.ids, "counter", None) is not None:
        numbers = [int(m.group(1)) for e in seen if (m := re.fullmatch(r"r([0-9]+)-", e))]
        return f"r{max(numbers, default=0) + 1}-"
    while True:
        epoch = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(4))
        if epoch not in seen:
            return epoch


class DevControls(Controls):
    """The dev controls of one core (what JmapServer and /_jmapd/ delegate to)."""

    def __init__(self, core: JmapCore) -> None:
        self.core = core
        self.faults = Faults(core)
        self.requests = RequestLog(core)
        self.clock = ClockControl(core)
        self.snapshots: dict[str, Snapshot] = {}
        self.baseline: Snapshot | None = None
        self.epochs = {core.state_epoch}
        self.counter = 0

    # -- the seam --

    def before_method(self, call: MethodCall, arguments: dict) -> dict:
        return self.faults.before_method(call, arguments)

    def before_http(self, method: str, path: str) -> TransportFault | None:
        if path.startswith(CONTROL_PREFIX):
            return None  # the controls stay reachable whatever is armed
        return self.faults.before_http(method, path)

    def record(self, entry: dict) -> None:
        if not entry["path"].startswith(CONTROL_PREFIX):
            self.requests.add(entry)

    def attach(self, server: Any) -> None:
        self.faults.push_channels += [server.httpd.close_event_streams,
                                      server.httpd.close_websockets]
        self.take_baseline()

    # -- mail and users --

    def deliver(self, message: "bytes | str | dict", to: "str | Iterable[str] | None" = None,
                **options: Any) -> dict:
        """Deliver raw octets, or a description composed by compose_message (whose
        to/cc/bcc are the recipients unless `to` is given); {recipient: Email id}."""
        recipients: list[str] = []
        if isinstance(message, dict):
            raw, recipients = compose_message(self.core, message)
        elif isinstance(message, (bytes, bytearray, str)):
            raw = message.encode() if isinstance(message, str) else bytes(message)
        else:
            raise ValueError("message: raw RFC 5322 octets or a description object")
        to = to if to is not None else recipients
        if not to:
            raise ValueError("to: whom to deliver to (a user name or address, or a list)")
        return deliver_message(self.core, raw, to, **options)

    def add_user(self, name: str, password: str | None = None, *, seed: Iterable = (),
                 email: str | None = None, full_name: str = "",
                 token: str | None = None) -> User:
        """A new login whose account has what every new account has (the standard
        mailboxes, an Identity); `seed` messages (raw or described) land in its Inbox."""
        if not isinstance(name, str) or (password is not None and not isinstance(password, str)):
            raise ValueError("name and password: strings")
        user = self.core.add_user(name, name if password is None else password, token,
                                  email, full_name=full_name)
        for message in seed or ():
            self.deliver(message, to=user.name)
        return user

    # -- quirks and lint (15.6, section 5) --

    def set_quirks(self, spec: "str | Iterable[str] | None") -> Any:
        """Imitate these quirk profiles and quirks from now on (None: strict RFC);
        the Session then changes, and so does its state."""
        self.core.quirks = parse_quirks(spec)
        self.core._session_states.clear()  # the state hashes the quirk names too
        return self.core.quirks

    def set_pedantic(self, pedantic: bool) -> None:
        """Refuse every LINT_FINDINGS detail (True), or only warn of it (False)."""
        if not isinstance(pedantic, bool):
            raise ValueError("pedantic: true or false")
        self.core.pedantic = pedantic

    # -- snapshots --

    def take_baseline(self) -> None:
        """What reset() goes back to: the data, quirks and pedantic mode as they are now
        (JmapServer calls this once it is set up)."""
        self.baseline = self._copy("baseline")
        self.baseline_modes = (self.core.quirks, self.core.pedantic)

    def _copy(self, name: str) -> Snapshot:
        copy = sqlite3.connect(":memory:", check_same_thread=False)
        with self.core.store.lock:
            self.core.store.db.backup(copy)
        clock = self.core.clock.now() if isinstance(self.core.clock, FixedClock) else None
        return Snapshot(name, copy, format_utc(self.core.clock.now()), self.core.state_epoch,
                        clock)

    def snapshot(self, name: str | None = None) -> Snapshot:
        """A named copy of all data now (default names s1, s2, ...), for restore()."""
        if name is not None and not (isinstance(name, str) and ID_PATTERN.fullmatch(name)):
            raise ValueError("snapshot: a name of letters, digits, '-' and '_'")
        self.counter += 1
        snapshot = self._copy(name or f"s{self.counter}")
        old = self.snapshots.pop(snapshot.name, None)
        if old is not None:
            old.db.close()
        self.snapshots[snapshot.name] = snapshot
        return snapshot

    def restore(self, snapshot: "Snapshot | str") -> None:
        """Put a snapshot's data back, with a new state epoch (see above), and tell push
        clients: every account's states changed."""
        if isinstance(snapshot, str):
            if snapshot not in self.snapshots:
                raise KeyError(f"no snapshot {snapshot!r}")
            snapshot = self.snapshots[snapshot]
        store = self.core.store
        with store.lock:
            epoch = next_state_epoch(self.core, self.epochs | {snapshot.epoch,
                                                                self.core.state_epoch})
            snapshot.db.backup(store.db)
            store.set_meta("state_epoch", epoch)
            self.core.caches.clear()
            self.core._session_states.clear()
            self.core._load_meta()
            self.epochs.add(epoch)
            self.faults.expired.clear()  # those floors counted modseqs of the old epoch
        self.announce_states()

    def announce_states(self) -> None:
        """Publish every account's current states, as one StateChange (RFC 8620 §7.1)."""
        changed: dict[str, dict[str, str]] = {}
        store = self.core.store
        with store.transaction():
            for user in self.core.users():
                for account in store.accounts_of(user.name):
                    changed[account.id] = {
                        name: self.core.state_string(store.type_state(account.id, name))
                        for name, type_ in self.core.datatypes.items() if not type_.per_user}
                push_account = push_account_id(user.name)  # PushOutbox re-reads it
                changed[push_account] = {PushSubscription.name: self.core.state_string(
                    store.type_state(push_account, PushSubscription.name))}
        self.core.feed.publish(changed)

    def reset(self) -> None:
        """Back to the start: the data, the clock (the fixed moment, or real time), the
        quirks and pedantic mode the server started with, an empty outbox and request
        log, no faults and the first session state. Snapshots are kept."""
        if self.baseline is None:
            raise ValueError("reset: no baseline (a core without a server: take_baseline())")
        self.faults.clear()
        self.restore(self.baseline)
        self.core.clock = FixedClock(self.baseline.clock) if self.baseline.clock is not None \
            else SystemClock()  # real time again, even if a test froze or moved it
        self.core.quirks, self.core.pedantic = self.baseline_modes  # as the server started
        self.core.session_generation = 0
        self.core._session_states.clear()
        self.core.outbox.clear()
        self.core.pushes.clear()
        self.requests.clear()


CORE_SETUP.append(lambda core: setattr(core, "controls", DevControls(core)))


# --- 15.6 Quirk profiles: real servers' documented deviations ----------------------
# Clients carry workarounds for servers that deviate from the RFCs; a quirk makes
# jmapd deviate the same way, so the workaround gets tested. Each quirk names the
# servers and the public report it comes from (README has the table); a profile is a
# server family's set, and backendinfo (12.4) then names that product. Everything
# goes through the Quirks seam of section 5; none is on unless asked for.

@dataclasses.dataclass(frozen=True, slots=True)
class Quirk:
    """One documented deviation of a real server from RFC 8620/8621."""
    name: str
    servers: str
    behaviour: str
    sources: tuple[str, ...]


QUIRKS = {quirk.name: quirk for quirk in (
    Quirk("no-event-source-url", "Cyrus IMAP (2020), Fastmail",
          "the Session has no eventSourceUrl (RFC 8620 §2 requires it)",
          ("https://github.com/cyrusimap/cyrus-imapd/issues/3272",
           "https://github.com/fastmail/JMAP-Samples/issues/8")),
    Quirk("event-source-no-content", "Cyrus IMAP (its push stub)",
          "the eventSourceUrl answers 204 No Content: no push, and no reconnecting",
          ("https://github.com/cyrusimap/cyrus-imapd/pull/3286",)),
    Quirk("no-push-subscription", "Fastmail",
          "PushSubscription/get and /set answer unknownMethod",
          ("https://github.com/fastmail/JMAP-Samples/issues/8",)),
    Quirk("no-query-changes", "Cyrus IMAP (Mailbox, 2018), Apache James (Mailbox)",
          "every /queryChanges answers cannotCalculateChanges",
          ("https://github.com/cyrusimap/cyrus-imapd/issues/2465",
           "https://github.com/linagora/james-project/issues/4799")),
    Quirk("invalid-since-state", "Cyrus IMAP (before 2022)",
          "a sinceState the server never issued answers invalidArguments, not "
          "cannotCalculateChanges",
          ("https://github.com/cyrusimap/cyrus-imapd/pull/4205",)),
    Quirk("lenient-get-properties", "Cyrus IMAP",
          "/get ignores unknown names in properties instead of invalidArguments",
          ("https://github.com/cyrusimap/cyrus-imapd/issues/1846",)),
    Quirk("set-without-old-state", "Cyrus IMAP (2018)",
          "/set answers no oldState",
          ("https://github.com/cyrusimap/cyrus-imapd/issues/2260",)),
    Quirk("download-url-accept", "Stalwart",
          "downloadUrl names its media type variable accept: .../{name}?accept={type}",
          ("https://github.com/stalwartlabs/stalwart/issues/1862",)),
    Quirk("changes-old-state-not-echoed", "Stalwart (before 0.4.2)",
          "/changes answers an oldState other than the sinceState sent (jmapd: newState)",
          ("https://github.com/stalwartlabs/jmap-server/issues/56",)),
    Quirk("implicit-cannot-calculate", "Apache James",
          "instead of cannotCalculateChanges, /changes answers hasMoreChanges: true with "
          "newState equal to oldState and nothing changed, call after call",
          ("https://github.com/iNPUTmice/jmap/issues/47",)),
)}

QUIRK_PROFILES = {  # profile -> (the product backendinfo names, its quirks)
    "cyrus": ("Cyrus IMAP", ("no-event-source-url", "no-query-changes", "invalid-since-state",
                             "lenient-get-properties", "set-without-old-state")),
    "fastmail": ("Fastmail", ("no-event-source-url", "no-push-subscription")),
    "stalwart": ("Stalwart", ("download-url-accept", "changes-old-state-not-echoed")),
    "james": ("Apache James", ("no-query-changes", "implicit-cannot-calculate")),
}


def parse_quirks(spec: "str | Iterable[str] | None") -> "QuirkSet":
    """"cyrus", "no-query-changes,download-url-accept" or a list of such names (profiles
    and single quirks mixed) as a QuirkSet; an unknown name is a ValueError."""
    if spec is not None and not isinstance(spec, (str, list, tuple, set, frozenset)):
        raise ValueError(f"quirks: a comma-separated string or a list of names, not {spec!r}")
    items = spec.split(",") if isinstance(spec, str) else list(spec or ())
    names: set[str] = set()
    profiles: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"quirks: names, not {item!r}")
        item = item.strip()
        if item in QUIRK_PROFILES:
            profiles.append(item)
            names.update(QUIRK_PROFILES[item][1])
        elif item in QUIRKS:
            names.add(item)
        elif item:
            raise ValueError(f"unknown quirk {item!r}; the profiles are "
                             f"{', '.join(QUIRK_PROFILES)}, the quirks {', '.join(QUIRKS)}")
    product = QUIRK_PROFILES[profiles[0]][0] if len(set(profiles)) == 1 else None
    return QuirkSet(names, product, profiles)


def _issued_state_form(core: JmapCore, state: Any) -> bool:
    """Whether a state string has the form of one this core issues (section 5)."""
    return (isinstance(state, str) and state.startswith(core.state_epoch)
            and state[len(core.state_epoch):].isdigit())


class QuirkSet(Quirks):
    """The quirks one core imitates: section 5's seam, filled from QUIRKS."""

    def __init__(self, names: Iterable[str], product: str | None = None,
                 profiles: Iterable[str] = ()) -> None:
        self.names = frozenset(names)
        self.product, self.profiles = product, tuple(dict.fromkeys(profiles))
        if "download-url-accept" in self.names:
            self.download_type_variable = "accept"
        if "event-source-no-content" in self.names:
            self.event_source_status = 204

    def to_json(self) -> dict:
        return {"quirks": sorted(self.names), "profiles": list(self.profiles),
                "product": self.product}

    def session(self, content: dict) -> dict:
        if "no-event-source-url" in self:
            content.pop("eventSourceUrl", None)
        if "download-url-accept" in self:
            content["downloadUrl"] = content["downloadUrl"].replace("?type={type}",
                                                                    "?accept={type}")
        info = content["capabilities"].get(URN_BACKEND_INFO)
        if info is not None and self.names:  # draft-baum-jmap-backend-info §1.2.1
            content["capabilities"][URN_BACKEND_INFO] = {
                **info, "product": {"name": self.product, "version": None}
                if self.product else info["product"],
                "environment": f"{info['environment']}; jmapd quirks: "
                               + ",".join(sorted(self.names))}
        return content

    def before_method(self, call: MethodCall, arguments: dict) -> dict:
        type_name, _, verb = call.name.partition("/")
        if "no-push-subscription" in self and type_name == "PushSubscription":
            raise MethodError("unknownMethod", f"unknown method {call.name!r}")
        if "no-query-changes" in self and verb == "queryChanges":
            raise MethodError("cannotCalculateChanges")
        wanted = arguments.get("properties")
        if ("lenient-get-properties" in self and verb == "get" and isinstance(wanted, list)
                and type_name in call.core.datatypes):
            datatype_ = call.core.datatypes[type_name]
            arguments = {**arguments, "properties": [
                name for name in wanted
                if not isinstance(name, str) or datatype_.accepts_property(name)]}
        return arguments

    def after_method(self, call: MethodCall, arguments: dict, name: str,
                     result: dict) -> tuple[str, dict]:
        verb = call.name.partition("/")[2]
        if name == "error":
            return self._error(call, arguments, verb, result)
        if "set-without-old-state" in self and verb == "set":
            result = {k: v for k, v in result.items() if k != "oldState"}
        if "changes-old-state-not-echoed" in self and verb == "changes":
            result = {**result, "oldState": result["newState"]}
        return name, result

    def _error(self, call: MethodCall, arguments: dict, verb: str,
               error: dict) -> tuple[str, dict]:
        if error.get("type") != "cannotCalculateChanges":
            return "error", error
        since = arguments.get({"changes": "sinceState"}.get(verb, "sinceQueryState"))
        if "implicit-cannot-calculate" in self and verb == "changes" and isinstance(since, str):
            return call.name, {"accountId": arguments.get("accountId"), "oldState": since,
                               "newState": since, "hasMoreChanges": True,
                               "created": [], "updated": [], "destroyed": []}
        if "invalid-since-state" in self and not _issued_state_form(call.core, since):
            return "error", {"type": "invalidArguments",
                             "description": f"invalid state {since!r}"}
        return "error", error


# --- 15.7 The control API: /_jmapd/... (JSON over HTTP, for any language) -------------
# No credentials: jmapd is a dev server on loopback by default, and its demo logins
# are published, so a password here would protect nothing; what it would cost is
# every harness in every language juggling one more secret. --no-control (serve(
# control=False)) turns the whole API off (404) where that trade is wrong.

FAULT_NAMES = ("fail", "latency", "drop_connection", "cannot_calculate_changes",
               "state_mismatch", "http_status", "expire_states", "has_more_changes",
               "disconnect_push", "bump_session_state")
IMMEDIATE_FAULTS = ("expire_states", "disconnect_push", "bump_session_state")


def control_route(method_: str, name: str) -> Callable:
    """Register action(controls, body, params) -> (status, JSON value or text) under
    CONTROL_PREFIX + name; a ValueError or KeyError from it is a 400 or 404."""
    def register(action: Callable) -> Callable:
        def send(handler: JmapHTTPHandler, query: str) -> None:
            if not handler.server.control:
                raise RequestError.http(404, "no such resource")
            body = _control_body(handler) if method_ == "POST" else {}
            try:
                params = dict(urllib.parse.parse_qsl(query, errors="strict"))
                status, value = action(handler.server.core.controls, body, params)
            except KeyError as error:
                raise RequestError.http(404, str(error.args[0])) from None
            except (ValueError, UnicodeError) as error:
                raise RequestError.http(400, str(error)) from None
            if isinstance(value, str):
                handler.send_body(status, value.encode(), "text/plain; charset=utf-8")
            else:
                handler.send_json(status, value)
        route(method_, re.escape(CONTROL_PREFIX + name) + "/?")(send)
        return action
    return register


def _control_body(handler: JmapHTTPHandler) -> dict:
    """A JSON object, whatever the Content-Type says (curl -d sends a form type)."""
    body = handler.read_body(handler.server.core.limits["maxSizeRequest"], "maxSizeRequest")
    value = parse_json_body(body) if body.strip() else {}
    if not isinstance(value, dict):
        raise RequestError.http(400, "the body must be a JSON object")
    return value


def _user_json(user: User) -> dict:
    return {"name": user.name, "password": user.password, "token": user.token,
            "email": user.email, "accountId": user.account_id, "fullName": user.full_name}


def _int_param(params: dict, name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name}: a positive integer")
    return int(value)


@control_route("GET", "")
def control_index(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    return 200, {"jmapd": __version__, "endpoints": sorted(
        f"{r.method} {r.pattern.pattern.replace(chr(92), '').removesuffix('/?')}"
        for r in ROUTES if r.pattern.pattern.startswith(re.escape(CONTROL_PREFIX)))}


@control_route("POST", "/deliver")
def control_deliver(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    """{"to", "raw": "..."} or {"to"?, "message": {...}}, plus keywords, receivedAt, mailFrom."""
    unknown = sorted(set(body) - {"to", "raw", "message", "keywords", "receivedAt", "mailFrom"})
    if unknown or ("raw" in body) == ("message" in body):
        raise ValueError("deliver: give either raw (a string) or message (an object), "
                         "with to, keywords, receivedAt, mailFrom"
                         + (f"; unknown {unknown[0]!r}" if unknown else ""))
    message = body.get("raw") if "raw" in body else body["message"]
    if not isinstance(message, (str, dict)):
        raise ValueError("deliver: raw is a string, message an object")
    options = {"keywords": body.get("keywords") or (), "received_at": body.get("receivedAt"),
               "mail_from": body.get("mailFrom")}
    if not list_of(String).accepts(options["keywords"]) and options["keywords"] != ():
        raise ValueError("keywords: an array of strings")
    return 200, {"delivered": controls.deliver(message, body.get("to"), **options)}


@control_route("GET", "/outbox")
def control_outbox(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    raw = params.get("raw") in ("1", "true")
    return 200, {"messages": [outbox_view(m, raw) for m in list(controls.core.outbox)]}


@control_route("POST", "/outbox/clear")
def control_outbox_clear(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    count = len(controls.core.outbox)
    controls.core.outbox.clear()
    return 200, {"cleared": count}


@control_route("GET", "/pushes")
def control_pushes(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    """The POSTs to https://push.jmapd.test/NAME urls, captured instead of sent
    (RFC 8620 §7.2: a test reads its PushVerification's code here); ?url= filters."""
    url = params.get("url")
    return 200, {"pushes": [push for push in list(controls.core.pushes)
                            if url is None or push["url"] == url]}


@control_route("GET", "/requests")
def control_requests(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    """?last=N for the newest N; ?format=text for requests.format()."""
    last = _int_param(params, "last")
    if params.get("format", "json") not in ("json", "text"):
        raise ValueError("format: json or text")
    if params.get("format") == "text":
        return 200, controls.requests.format(last) + "\n"
    return 200, {"requests": controls.requests.recent(last)}


@control_route("POST", "/requests/clear")
def control_requests_clear(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    return 200, {"cleared": controls.requests.clear()}


@control_route("GET", "/faults")
def control_faults(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    return 200, {"faults": [rule.to_json() for rule in controls.faults.active]}


@control_route("POST", "/faults")
def control_arm_fault(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    """{"fault": NAME, ...the Python method's keyword arguments}."""
    name = body.pop("fault", None)
    if name not in FAULT_NAMES:
        raise ValueError(f"fault: one of {', '.join(FAULT_NAMES)}")
    try:
        result = getattr(controls.faults, name)(**body)
    except TypeError as error:  # an unknown or missing argument
        raise ValueError(f"{name}: {str(error).partition('() ')[2] or error}") from None
    if name in IMMEDIATE_FAULTS:
        return 200, {"fault": name, "result": result}
    return 201, {"fault": result.to_json()}


@control_route("POST", "/faults/clear")
def control_faults_clear(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    return 200, {"cleared": controls.faults.clear()}


@control_route("GET", "/clock")
def control_clock(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    return 200, controls.clock.to_json()


@control_route("POST", "/clock")
def control_set_clock(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    """One of {"advance": {"hours": 2, ...}}, {"set": UTCDate}, {"fixed": true|false}."""
    if len(body) != 1 or next(iter(body)) not in ("advance", "set", "fixed"):
        raise ValueError('clock: one of {"advance": {"seconds"|"minutes"|"hours"|"days": N}}, '
                         '{"set": "2026-01-01T09:00:00Z"}, {"fixed": true|false}')
    if "advance" in body:
        units = body["advance"]
        if not isinstance(units, dict) or not units or set(units) - {
                "seconds", "minutes", "hours", "days"}:
            raise ValueError("advance: an object of seconds, minutes, hours, days")
        controls.clock.advance(**units)
    elif "set" in body:
        controls.clock.set(body["set"])
    elif body["fixed"] is True:
        controls.clock.freeze()
    elif body["fixed"] is False:
        controls.clock.use_real_time()
    else:
        raise ValueError("fixed: true or false")
    return 200, controls.clock.to_json()


@control_route("GET", "/quirks")
def control_quirks(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    """The active quirks and lint mode, and the catalogue to choose from (15.6)."""
    return 200, {**_quirks_json(controls), "catalogue": {
        "profiles": {name: {"product": product, "quirks": list(names)}
                     for name, (product, names) in QUIRK_PROFILES.items()},
        "quirks": {q.name: {"servers": q.servers, "behaviour": q.behaviour,
                            "sources": list(q.sources)} for q in QUIRKS.values()}}}


@control_route("POST", "/quirks")
def control_set_quirks(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    """{"quirks": "cyrus" | ["no-query-changes", ...] | null, "pedantic"?: bool}."""
    if not body or set(body) - {"quirks", "pedantic"}:
        raise ValueError('quirks: {"quirks": NAMES or null, "pedantic": true|false}')
    if not isinstance(body.get("pedantic", False), bool):
        raise ValueError("pedantic: true or false")
    if "quirks" in body:
        controls.set_quirks(body["quirks"])
    if "pedantic" in body:
        controls.set_pedantic(body["pedantic"])
    return 200, _quirks_json(controls)


def _quirks_json(controls: DevControls) -> dict:
    quirks = controls.core.quirks
    shown = quirks.to_json() if isinstance(quirks, QuirkSet) else {
        "quirks": [], "profiles": [], "product": None}
    return {**shown, "pedantic": controls.core.pedantic}


@control_route("GET", "/users")
def control_users(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    return 200, {"users": [_user_json(u) for u in controls.core.users()]}


@control_route("POST", "/users")
def control_add_user(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    """{"name", "password"?, "email"?, "fullName"?, "seed"?: [message, ...]}."""
    unknown = sorted(set(body) - {"name", "password", "email", "fullName", "seed"})
    if unknown or "name" not in body:
        raise ValueError("users: {name, password?, email?, fullName?, seed?}"
                         + (f"; unknown {unknown[0]!r}" if unknown else ""))
    if not isinstance(body.get("seed", []), list):
        raise ValueError("seed: an array of messages (raw strings or objects)")
    user = controls.add_user(body["name"], body.get("password"), seed=body.get("seed", []),
                             email=body.get("email"), full_name=body.get("fullName", ""))
    return 201, {"user": _user_json(user)}


@control_route("POST", "/reset")
def control_reset(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    controls.reset()
    return 200, {"reset": True}


@control_route("GET", "/snapshot")
def control_snapshots(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    return 200, {"snapshots": [s.to_json() for s in controls.snapshots.values()]}


@control_route("POST", "/snapshot")
def control_snapshot(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    """{"name"?}: the snapshot's name (default s1, s2, ...)."""
    if set(body) - {"name"}:
        raise ValueError('snapshot: {"name"?}')
    return 201, controls.snapshot(body.get("name")).to_json()


@control_route("POST", "/restore")
def control_restore(controls: DevControls, body: dict, params: dict) -> tuple[int, Any]:
    """{"snapshot": NAME}."""
    if set(body) != {"snapshot"} or not isinstance(body["snapshot"], str):
        raise ValueError('restore: {"snapshot": NAME}')
    controls.restore(body["snapshot"])
    return 200, {"restored": body["snapshot"]}


# =============================================================================
# 16. Seeds
# =============================================================================
# Seeds build their data through the public core (add_user, core.call), so the
# demo data is also a usage example. "empty": the demo users with the standard
# mailboxes every new account gets; "demo": the same plus nested folders; a path
# to a JSON file: users and mailbox trees of your own (see fixtures/seeds/).

DEMO_USERS = (  # fixed: every doc and tool relies on them
    {"name": "alice", "password": "alice", "token": "token-alice", "email": "alice@example.com",
     "full_name": "Alice Archer"},
    {"name": "bob", "password": "bob", "token": "token-bob", "email": "bob@example.com",
     "full_name": "Bob Baker"},
)
STANDARD_MAILBOXES = (  # (name, role), created in every new personal account
    ("Inbox", "inbox"), ("Drafts", "drafts"), ("Sent", "sent"), ("Archive", "archive"),
    ("Junk", "junk"), ("Trash", "trash"),
)
DEMO_FOLDERS = {
    "alice": [{"name": "Projects", "children": [{"name": "Apollo"}, {"name": "Zephyr"}]},
              {"name": "Receipts"}, {"name": "Family"}],
    "bob": [{"name": "Clients", "children": [{"name": "Acme"}, {"name": "Globex"}]},
            {"name": "Travel"}],
}


def create_standard_mailboxes(core: JmapCore, user: User) -> None:
    """Every new personal account starts with the role mailboxes (RFC 8621 §2 roles)."""
    create_mailbox_tree(core, user, [{"name": name, "role": role, "sortOrder": order}
                                     for order, (name, role) in enumerate(STANDARD_MAILBOXES, 1)])


ACCOUNT_SETUP.append(create_standard_mailboxes)


def create_mailbox_tree(core: JmapCore, user: User, tree: list[dict],
                        parent_id: str | None = None) -> None:
    """Create mailboxes from [{name, role?, sortOrder?, children?}], depth first."""
    for node in tree:
        fields = {k: v for k, v in node.items() if k != "children"}
        result = core.call(user, "Mailbox/set", {"accountId": user.account_id, "create": {
            "m": {**fields, "parentId": parent_id}}})
        if not result["created"]:
            raise ValueError(f"mailbox {node.get('name')!r}: {result['notCreated']['m']}")
        create_mailbox_tree(core, user, node.get("children", []), result["created"]["m"]["id"])


@seed("empty")
def seed_empty(core: JmapCore, source: str = "empty") -> None:
    """alice and bob, each with only the standard mailboxes."""
    with core.store.transaction():
        for demo_user in DEMO_USERS:
            core.add_user(**demo_user)


@seed("demo")
def seed_demo(core: JmapCore, source: str = "demo") -> None:
    """alice and bob with standard mailboxes, nested folders and a believable mailbox."""
    with core.store.transaction():
        seed_empty(core)
        for name, folders in DEMO_FOLDERS.items():
            create_mailbox_tree(core, core.user(name), folders)
        packed = json.loads(zlib.decompress(base64.b64decode("".join(DEMO_MAIL))))
        import_mail(core, packed["manifest"],
                    lambda name: base64.b64decode(packed["files"][name]))
        add_team_account(core, "team", "Team", members=["alice"])


def add_team_account(core: JmapCore, account_id: str, name: str,
                     members: list[str]) -> None:
    """An account no login owns, usable by its members (isPersonal false), set up like
    every account (standard mailboxes, VacationResponse, quotas, an Identity for the
    first member): what Email/copy between accounts needs until sharing (RFC 9670)."""
    with core.store.transaction():
        if core.store.account(account_id) is not None:
            raise ValueError(f"account {account_id!r} exists")
        core.store.add_unowned_account(account_id, name)
        for member in members:
            core.store.grant_access(account_id, member)
        first = dataclasses.replace(core.user(members[0]), account_id=account_id)
        for fill_account in ACCOUNT_SETUP:
            fill_account(core, first)


def mailbox_paths(core: JmapCore, user: User) -> dict[str, str]:
    """{"Projects/Apollo": id, ...} for the user's mailboxes."""
    listed = core.call(user, "Mailbox/get", {"accountId": user.account_id,
                                             "properties": ["name", "parentId"]})["list"]
    by_id = {m["id"]: m for m in listed}

    def path(mailbox: dict) -> str:
        parent = by_id.get(mailbox["parentId"])
        return f"{path(parent)}/{mailbox['name']}" if parent else mailbox["name"]
    return {path(m): m["id"] for m in listed}


def mailbox_for_path(core: JmapCore, user: User, path: str, paths: dict[str, str]) -> str:
    """The id of the mailbox at path, creating missing levels."""
    if path not in paths:
        parent, _, name = path.rpartition("/")
        parent_id = mailbox_for_path(core, user, parent, paths) if parent else None
        created = core.call(user, "Mailbox/set", {"accountId": user.account_id, "create": {
            "m": {"name": name, "parentId": parent_id}}})["created"]["m"]["id"]
        paths[path] = created
    return paths[path]


def import_mail(core: JmapCore, manifest: list[dict], read: Callable[[str], bytes]) -> None:
    """Upload and Email/import each manifest entry {file, user, mailbox, keywords,
    receivedAt}, as any client would (RFC 8620 §6.1, RFC 8621 §4.8)."""
    with core.as_administrator():
        _import_batches(core, manifest, read)


def _import_batches(core: JmapCore, manifest: list[dict], read: Callable[[str], bytes]) -> None:
    for start in range(0, len(manifest), 100):
        batch: dict[str, dict] = {}
        for index, entry in enumerate(manifest[start:start + 100], start):
            user = core.user(entry.get("user") or core.users()[0].name)
            if user.name not in batch:
                batch[user.name] = {"paths": mailbox_paths(core, user), "emails": {}}
            paths = batch[user.name]
            mailbox_id = mailbox_for_path(core, user, entry.get("mailbox", "Inbox"), paths["paths"])
            blob = upload_blob(core, user, user.account_id, read(entry["file"]), "message/rfc822")
            email = {"blobId": blob["blobId"], "mailboxIds": {mailbox_id: True},
                     "keywords": dict.fromkeys(entry.get("keywords", []), True)}
            if entry.get("receivedAt"):
                email["receivedAt"] = entry["receivedAt"]
            paths["emails"][f"m{index}"] = email
        for name, pending in batch.items():
            result = core.call(name, "Email/import", {"accountId": core.user(name).account_id,
                                                      "emails": pending["emails"]})
            if result["notCreated"]:
                raise ValueError(f"seed mail not imported: {result['notCreated']}")


GENERATED_WORDS = ("budget launch review agenda invoice report update meeting travel offsite "
                   "design roadmap hiring release backup security lunch contract draft "
                   "feedback metrics migration outage survey workshop").split()
GENERATED_TEXT = [GENERATED_WORDS[(n * n + 3 * n) % len(GENERATED_WORDS)] for n in range(4096)]
GENERATED_NAMES = ("Ava Brooks|Ben Carter|Chloé Dubois|Dmitri Orlov|Emma Fischer|Farah Khan|"
                   "Gabriel Silva|Hana Sato|Ivan Petrov|Júlia Costa|Kofi Mensah|Lena Müller|"
                   "Marco Rossi|Nadia Haddad|Oskar Berg|Priya Nair").split("|")


def generated_message(number: int, rng: "random.Random") -> tuple[bytes, str, list[str]]:
    """One synthetic message (raw, mailbox path, keywords): threads of up to five
    replies, an attachment in one of eight, HTML in one of four."""
    thread, position = divmod(number, 5)
    name = GENERATED_NAMES[thread % len(GENERATED_NAMES)]
    address = name.split()[0].lower().encode("ascii", "ignore").decode() + "@example.net"
    topic = " ".join(GENERATED_WORDS[(thread * 7 + k) % len(GENERATED_WORDS)] for k in range(3))
    subject = ("Re: " if position else "") + f"{topic.capitalize()} #{thread}"
    moment = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
        minutes=number * 7 + rng.randrange(5))
    refs = " ".join(f"<g{thread}.{p}@gen.example>" for p in range(position))
    lines = [f"From: {encode_header_words(name)} <{address}>", "To: alice@example.com",
             f"Subject: {subject}", f"Date: {email.utils.format_datetime(moment)}",
             f"Message-ID: <g{thread}.{position}@gen.example>", "MIME-Version: 1.0"]
    if refs:
        lines += [f"In-Reply-To: <g{thread}.{position - 1}@gen.example>", f"References: {refs}"]
    start = rng.randrange(len(GENERATED_TEXT) - 120)
    words = " ".join(GENERATED_TEXT[start:start + 40 + number % 80])
    body = f"Hi Alice,\r\n\r\n{words}.\r\n\r\n{name}\r\n"
    if number % 8 == 3:
        attachment = base64.b64encode(rng.randbytes(600)).decode()
        lines.append('Content-Type: multipart/mixed; boundary="g"')
        body = (f"--g\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}--g\r\n"
                f"Content-Type: application/pdf\r\nContent-Disposition: attachment; "
                f"filename=\"{topic.replace(' ', '-')}.pdf\"\r\nContent-Transfer-Encoding: base64"
                f"\r\n\r\n{attachment}\r\n--g--\r\n")
    elif number % 4 == 1:
        lines.append('Content-Type: multipart/alternative; boundary="a"')
        body = (f"--a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}--a\r\n"
                f"Content-Type: text/html; charset=utf-8\r\n\r\n<p>{words}</p>\r\n--a--\r\n")
    else:
        lines.append("Content-Type: text/plain; charset=utf-8")
    box = ("Inbox", "Archive", "Projects/Apollo", "Projects/Zephyr", "Receipts")[
        0 if number % 10 < 6 else 1 + number % 4]
    keywords = (["$seen"] if rng.random() < 0.7 else []) + (["$flagged"] if number % 37 == 0 else [])
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8"), box, keywords


def encode_header_words(text: str) -> str:
    """RFC 2047 B-encoding for a non-ASCII phrase (ASCII stays as it is)."""
    if text.isascii():
        return text
    return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="


@seed("generated")
def seed_generated(core: JmapCore, source: str) -> None:
    """`generated:N`: the demo users and folders, then N synthetic messages for alice."""
    count = int(source.partition(":")[2] or 1000)
    rng = random.Random(count)
    with core.store.transaction():
        seed_empty(core)
        for name, folders in DEMO_FOLDERS.items():
            create_mailbox_tree(core, core.user(name), folders)
    for start in range(0, count, 500):  # one transaction per batch keeps memory flat
        messages = [generated_message(n, rng) for n in range(start, min(count, start + 500))]
        with core.store.transaction():
            import_mail(core, [{"file": str(i), "user": "alice", "mailbox": box,
                                "keywords": keywords, "receivedAt": None}
                               for i, (_, box, keywords) in enumerate(messages)],
                        lambda name: messages[int(name)][0])


@seed(FILE_SEED)
def seed_from_file(core: JmapCore, path: str) -> None:
    """A JSON user file (see fixtures/seeds/), a folder laid out like fixtures/demo/
    (manifest.json and .eml files), a folder of .eml files, or an mbox file. Mail
    without a manifest goes to the first user's Inbox (the demo users unless the
    JSON file names others)."""
    if os.path.isdir(path):
        return _seed_from_folder(core, path)
    if not os.path.isfile(path):
        raise ValueError(f"no seed named {path!r} (known: {', '.join(sorted(SEEDS)[1:])}) "
                         "and no such file or folder")
    if path.endswith(".json"):
        return _seed_users_from_json(core, path)
    with open(path, "rb") as mbox_file:
        messages = split_mbox(mbox_file.read())
    with core.store.transaction():
        seed_empty(core)
        import_mail(core, [{"file": str(i)} for i in range(len(messages))],
                    lambda name: messages[int(name)])


def _seed_from_folder(core: JmapCore, path: str) -> None:
    manifest_path = os.path.join(path, "manifest.json")
    if os.path.exists(manifest_path):
        with open(manifest_path, encoding="utf-8") as manifest_file:
            manifest = json.load(manifest_file)
    else:
        manifest = [{"file": name} for name in sorted(os.listdir(path)) if name.endswith(".eml")]

    def read(name: str) -> bytes:
        with open(os.path.join(path, name), "rb") as message_file:
            return message_file.read()
    with core.store.transaction():
        seed_empty(core)
        for user in {entry["user"] for entry in manifest if entry.get("user")}:
            if not core.store.user(user):
                core.add_user(user, user)
        import_mail(core, manifest, read)


def split_mbox(data: bytes) -> list[bytes]:
    """The messages of an mbox file (mboxrd: '>From ' lines unescaped once)."""
    messages = []
    for chunk in re.split(rb"(?m)^From [^\n]*\n", data.replace(b"\r\n", b"\n")):
        if chunk.strip():
            body = re.sub(rb"(?m)^>(>*From )", rb"\1", chunk)
            if body.endswith(b"\n\n"):
                body = body[:-1]  # the blank line before "From " belongs to the mbox
            messages.append(body.replace(b"\n", b"\r\n"))
    return messages


def _seed_users_from_json(core: JmapCore, path: str) -> None:
    with open(path, encoding="utf-8") as seed_file:
        description = json.load(seed_file)
    with core.store.transaction():
        for entry in description.get("users", []):
            mailboxes = entry.get("mailboxes")
            user = core.add_user(entry["name"], entry["password"], entry.get("token"),
                                 entry.get("email"), setup=mailboxes is None)
            create_mailbox_tree(core, user, mailboxes or [])
            if "quota" in entry:  # 12.2: {"octets": N, "count": N}, either optional
                set_mail_quota(core, user, **entry["quota"])


# The demo mailbox of fixtures/demo/, compressed; fixtures/demo/make_demo.py writes it.
# BEGIN DEMO MAIL
DEMO_MAIL = (
    "eNrtfVmXqsiX71fpVavf6tYtBs2T1lr9kCggpKBMAcRd/cBgiRAoR3GiV3/33oE5qDlhpnWO5/b/IVeqDDsifnuOHRH/9dvf"
    "UzJe/vbXv/3Xb0ExJ2T+B/t/xzmBH34zZ+o6tOcTg5N2IbeZmNqw9L35ZCTrSZR3loaMWr7LbkLZWYW8OhtNmHsk394oXVUI"
    "ZZJiSxCiXJ9jT5kqvW1S/+YIZCxLZSRvySDX4f2tpSKaSZw7E5srE5x3dnBv5nuYHL0/Rwx9v8OjaZCjNO5BuzxhHcrbtSJv"
    "k9htp0FXgHulVc8oRN8zyXAq6CEH7+8pEzvvcPB/o6X+ROtlN5pt3Gi9u8l9dbeF/3o3Y0nE6wnmnNJyjBva3kjuLEP5ttQc"
    "IcMuux7kT+35HWjolsNKA4RJNNMLoAPPiCvtjrk3uM4qltEq7rLO2BNoO8rY3TKBJyTRzFj78Bl76graWEC/vymyuob2Q5/V"
    "9shSn+jS+wa2OO0Zc707ZWDs9/0duNIy7jJbaEMv5NoMdtvMAJntSHZulL5Jxn1jDeObBG4L3q3P4b0V9oxO7Jn5wJ5AX2Hc"
    "ZyYJZ0aJ+moSzvQcMCpNGMOQM4swj+A9EhvyJsFddhPlBPojTaHfehcwsORs4ucdJuhuHr6jHWBdRDuBCWRnAhiwIeCu9IWl"
    "77YmNaaitAm57TKs5hM8Uwn2CqLInRW0d46tu50G/wdduN9DK5+bTGA8J7GcEMCMj+UJxdQIZZREnDOJuGQde8YkcP39PTLw"
    "j4wq6Cs8T+nGBTwz8d12G67T/qzqMcz2fAufSxjDfXt2bBL2jVIzXsUNcEqYAZcwobv5R8ZyJNfv/n0EPID72e+j/t3vB+N7"
    "O+DvHn47HuORrPx+Ms63A075XZHxOpqC3O156Aa+70bQN+yiG3h+HU73z2upQN//jNUBFjoPWKSbddRr3Ua9dg/6vA57++8D"
    "7qGd3c48ltkllcmBxZ7ybDkAmr/9n3971CncqU5RMmkZuDoBvtj5XEKiqQJ92v92KPc+1ymf9Iq4x08R7d7ClaiMpnXbxEOd"
    "0tnh6vM6xclBhh55dffMj1SeQrjXlCUGQ/ttt7MadO+Ar9vreAr821NAv4jbYXq3g7+N0l1uNPtuQ/UE9vTKd2MycIg4nN7d"
    "Psmxrd5hGZXhrv3Uftoey22VTo42YT8r635/rIss7IIeymlbUXVMQ3qVhu0Q3bRYF/RQFUBf4JntIL074WeyoX0FmWjF3Q7V"
    "rUWYLieAF+gxncQ9lo1lvxye6Lwol1YRB+2ZshLw1hrLZIVB7oeyWsRwL7TXA3uxAF7OQ16ZhK6zUsRsEnNkGXaFach1Fnte"
    "FMDudMoHnj7RLSqJc0LiXWsvR1NBgb6ALiDVw7PH2E33tB5tBsh2DuNFxsAjB7pmA3pjeWBPDuQlBnmhtP7jPw74mv9VbOUX"
    "+ZoZpsamOV/r5/N1dgG+biBbP5nvnQD8k4DXJoa7LXzOSR7wBJ7TKY+2Q94BOp0VzskutPa8B/1fYleqgEdW1I6A3EzHliCD"
    "LQHssz/Bnh3yZOuUJwFbDp4dBZxUy8CI2ssc3YFtS0JPWGKrvQKbRsfbofb5LN083ZzF85/hSdRHBHiyOubJO36YOuwTT/Y+"
    "4knzfJ5kfgBPNpCbn8yz1MfMA08tsWssH/UydrcEfC3Qt4AJ9b3A5wrlDfgtNb8m4CPUehXJCQv0KZ+uHvk0nIcXCDJEde1P"
    "ha7vltB4GMS8M33NcTgKGFy9hMan1GmGjqdxl3akTWJOWh4EDU7sgkCCMT9huDZltg8ZDtpxpUZX8DkWAKtp7XxXZ6gRBWPB"
    "++4GHEWTxJRWXwPHug3tM8lgsnfiasCYr6oVA0YGUEsCDlGzBWZePbwXUGHovXbsqt8xtA6Q2Le4HxPslktQeRW0kIk9baJU"
    "GowadftBhUg6G4Ia0mznOMyzHRriPYZ5mzfCPGiHUmq2cI2I2Y/9jaiK4lUGxI0NXZVyPKgeIaEih3kIp9zWsXj9TPniIdhY"
    "gEKdRDwg1Afl0NWYA/kChGlQLnInTgbbXL7ErQH8Grq3qycOslsUXdV2nBLlaBdxZB2m84lmtTb/aKDcS6aBZ9ROqPPYX5Ar"
    "MCI70C+r2GWn8MxEh/GB4AgMfQw6B62OZIu7LtlyXpGt6Auypf5qssW+K1v8lckW94pstb4gW9UvJ1vpO7LVui7Zil6RrewL"
    "smX+arLFvytb7SuTrdZL2VI2X5At9leTreF7duvmumQreylbqfgF2cK/mmy135Wtb1cmW1s6WfIY5MMzdeJJmwrDkAek0rud"
    "DiOr23NACf66dwsqW/QZ20VVxEkzbLGq2aPtpu1itjrz5YmafcKfpwl1shruhDSQJZBJxIw8xOAp0zqRSYij2hUGuR04NCHQ"
    "ySB2mgFHtPycMPWkA9EZ0B9stINYEwL9aGZMwhkq/ZxyvLh5F7Hb65IvcfuKNqy+oA1bv5o21GwRImWJpqlnNH0cTp9TwjVi"
    "nauTsclLGdO7n5exofPLydjuPRn7GaFXP5Q7wE6TScCRNOA6OYYGYg6tsCwemDCTxRZ1D1+ZvW5qwrIrBCuLlzBGZNwVFoGr"
    "L0IO5yBSM0xnwGH8weQyQGsJYBYgqgUGpj8C7MoSUWL1ilJkP68Ulc2vpxS1d5Uid23JqK3+iuOhf97x2Gm/nlJk3lOK/GWm"
    "688Hze4/l38cTB38+Up2vvp8dv4qp1m0gylnJ+hTMTeTsX37YWa+9TOky8y3BeYSBnTNWhG3RcSptOHpwVzRK5bM+LQl08Vr"
    "tGQYBCCegy5kwp2gBZ4+pYz7NH/rogzoZtgzQQ9vKwVAB92dYetYP77IeYzsDkIicFGv0x1VaKNlt6xe4dGoYgBMlgTHhQGr"
    "rwB5QkvT8oj1UdS2HHQfEzIb2cyftIDoZDJ2q1tH6nIzbK4urzIH0mgcGrgnL1IiQc4mUZcFLvBhAAqQyLsSXsIZMkgNb1YH"
    "HP1lqXS55/d7luBhdwudpZ4LSOlDVQxwKfOKOuU+r06vMk0SPo87jhUpJiGd+HQdoHX7UDVIx9/4UL2+zJo0cx/PL6V4tTxi"
    "+1yeJ5nzmHK5LLVHm2eJhHYVVCK13bEDo6WNJZJ/XSLJaoCou7dtg+StP7KfTo5yWoIF7SVR9fTuq5xNcGEcFKseo0rrCglV"
    "4bTUJvZ01nc3dQmKzx1L9rUlY16ZSNA+newcir+cB/tuzHFteZjdK3N0zOeDRPKrZabfzsEs5tl49kc+zcc/tG7tFDqgCXK5"
    "UmgXZAl4l6XDdRh4eHX904up1YaW8uH9X1aGMsuGfbOIQLYAvjLwEoJ7S1ovDobCBAizjpK3SUzlytWXIa8T3FVqpTewWKBb"
    "Q5iGcqfa++gfsMbksW6RgP/6pDsm9HlQmkUMVtPntmto9wrvhGnI0yyWtBtTH3fKlGGOOKqI9/eg7PU+SRtg4cLnJIay7YDr"
    "pNAGZgCeCq0lC41mrOjnUoVt/8E3lwTT0YWYlWQjj1PL0U1w4Z51xGpK4j+Yl5kJJgPD24F+GFRFFIassuC7Z9GBqD3U4oJ+"
    "qo3i9KGWc2J4KvAN6CaKd/0b+ki/d2NwJTE13undVukLSUTxolNujzWBHEuN3gtdPzxxv/UKDNnHxr7uy5WWp70+FsBj4fQO"
    "VAkL7jbYEU97Vh17DLkrwnB3DoaafXcSD09utOpje72nx+yu0bEyZqgIZYNmrTfaVNj4oAdBz4Bn3ZpAyFiCjWdpveiTh73H"
    "kL8iDKvzMBRf5jSaY1hdPYa7Ewynb2LYuiIMmfMwPJlhse/OwZC5dgz17gmGuzcxbF8Rhux5GJ7GPuI5GLJXj6F1jKH2NoY3"
    "V4Qhdx6GJ/lhWzkHQ+7qMTy1h903Mfx2RRjyioxp/rohhqdF+No5GPJXj+FOyGn6t4FPc3tFGLbOk0P/BEPjHAxb147hsNvY"
    "p+lcEYbt8zB8pWC/OYbtq8fQaurTvFy49PMwFDfnYTg5wdA/B8OtdpVzpvuxpmVZNP6NZKmieSE6N6r0tEkIdIA/SLRrneRq"
    "2CvK1Yjb83A8LfCPzsPRuXYcxRMcjfdwvKJ8jXheviY9zdecKY/ZteOonODovIfjFeVsxPNyNqeLAnpnyiNz7ThqJzj67+F4"
    "RXkbkTkr1kiVr+RPt/rV20djgnMJfJ5HHKP3cLyi3I14Xu4m1b6SQ93qV28fnXP8nCvK34jn5W9S4yt51K1+9fbRP8fPuaIc"
    "jsifh6PzlVzqdS7DOsIxOsfPuaI8jnheHif1v5JP3Q6v3j5OzvFzriiXI56Xy0mjr+RUr3PJ1hGO2QmO7/k53BXlc5Tz8jnp"
    "5Ct51d3V53PSZvmceBH8Xb7cAeof3hKSlhOyfl4Qnxb9ig/bVh1uLcjhPOIIgw+r3eWEpbW1J+U2W61RtTsdPsxcZ7nNfB67"
    "7RzgLCIYawxEj+Hhfio8kkq59XEX09MdZQ9Xlsxj67UMm9Kk8jWDYcrjK62kue8juopkFXj6HLtA9KHq6e8gn5LdS/E5WMBg"
    "jph5x6i0jpHiHWY7+sjRqpGj9kA7kSi97UDfv4cc2mHmEAeTfHJXymPsesyfCJky9PlPx+4Ifk4rAqlooJXHSaXH6jDGOuO7"
    "UUdj8N8jx9+MbCKP7ESE/+KoYp7xFfEuAHxP1+YNe/Pds/iJb4gfTkD7LMcWc5WbRVm0ehl4+8ESLWttmoNYgxXDfWfiwFjR"
    "AmK8EwLsEma0E7zAo7ul0upUtAKrstncmMw43xKF8kpXGMD3CrslS+VzXxENdJZDLsqjJ/F+4J/LyPcx1vd7PlOAXvy3bbM9"
    "rWK7Brddwjj8ObLuboO8Q+DaoYXNsP2a7N91RixyTLBII1b803DpsgKTyi8JSScJUceG9tBq+NnI1mWvYmWtx7TNlGmZ9H/v"
    "tnNQuStHebak3uGRjkipfnA+2gU8BzoF3R3yjeytGk5ZC0NfxhZbVyF/yHdEJdSiAn+l2NOOaVznOlIS9JUJBn0RTsWJ5dLl"
    "KOqO3ofrNUZg6WW2iA92x33gMf4X0VEWtpnKQF/UVZKexN0NnYl8Z2Hch7qqaroUB+dSCZ5X+62dbl8ux3mXLw+vX6U9dOgO"
    "6Dla0DEG3qzoru9h3kqUUffvNDzQb/PFJljEP3MxgTmL6cLPUZSTGYhJEh4U+ryy9I4/WVDQGqbahwsK6ObPMSftsHjZwwmA"
    "BVrgbpweSpDHnPF0EAGG/v0o2M3Hfsr1AoP9ZvTduDopCH+/Xc8LF9ZRjtNhT9kd3eeYRcQLdBEDs/fEhSTumwngXtLroEZz"
    "OikRgsiBqpg+BzVtEJPN9GEx8A6CxTNdXirKgkg38FbEzgKihTVda4Qprx6psDZ4+qcRTAdUcAzjJS0PxuLAdWLXrxbz0EmS"
    "j13jJ369RlVgP42/sMb1IR+UT7MZfAe8EENN06BeuEIPesA8BM/lo/s8na2n5fiPxXg9HW9+8O7tJwBCJ8DG0lNAagF9bSfs"
    "HHGBi0BB3NXLPA82n9vvT3H3MlQ93UBLa2R/9m2B7zvs4QJ78ZdD1tBDy1gmGwCbGXBsMZZRNjxcIQSCBEBxyhNQ0IbJj/Jp"
    "yDq2QOHlDl3zywUePZ2jXsVfpwJeOVnmYVyiJ2VDn3uP4X1OWtZ72njKa0z/jSqlWE7WuMdaJpKQiXTnK0rpsR+DnKTRbr/i"
    "y8hQ33JaNyjTBVtEQ1OULKDhmki1LaczHKZKbRQcSR2ZIjUszHrA1QK/HjBoSA2JiUzFZowbJ4MmOshGd4fvRa7ptGm7EVUc"
    "j/xKd7HR0pfrwqnxQ5LuGEh1gDZVSFtazYV6IlOnUSSqSE0H3imeXGefrhMd2Q4rOCS7eQcneE/HMhlpaKFCctKipFWbMcis"
    "X8v49tDwr+v4KIPx6dGxwZJNjKfvBiNptD0GUp5wH1jPK8lAocyn0fiPPBgvqpdBFWjV5bAAbb3c3GRUOYDjDw61JzARI6Sg"
    "8cnA7dBGHAnal5ULBFHAKCsYlNmD5i81W2y94n2c7mYJnofBfnTUAx2EkKNtYwCg5IcpiwEESuPn5Yxg9fySeiw/rATRbU+x"
    "m0EQlNDjeCzAcg6WFzyTVrM2nS515MF7O1Z6YuDpm5DXCxiP2rICXhCAAB0XrveWE5zT8mPwKl3n+wjtg2R1Fz+3BYIpFYIp"
    "1RGZaDZfRbKZN1OQwpRu6a+nDwkKUImgKAqtn2gBkQY20oWYIf2hS5LAEVuOCN8JVsJ+HDiMxDm2KmsS8cZ9HIwdiUNOLIek"
    "8G031gNH4i0Hq5gVvutyHKAKLfxUvY/qpZ3EDdjC0zzcCxBeuCTaxpleoLyE+yTuItc3zP0/8t7T65P/Rf1xtxaySd/gog7d"
    "IeaQ9w8VZLqaZa9k+4mwC+ghYKJOqATW8RU9RAJ83SgTliFv0kPS2idxzZdjM9ftsIqc1IfoIKYzVLrGdkBNS3dDfeFEscQX"
    "If3LgjGtiQ/9HbTv4koX2/aoFQl2wrw+NIluD0MPT3NJqfTBNfKUSdRXi3H+vANGjSJ3xSjuPkZR+QKK6v8XKJLp8pWZt09v"
    "UfQlD6X8HrrSZuCaJCbMxOFoSELoJmL1JifwzgTXHCUkSl9gI27yEtEXG4pFTRCtt0B6Uy5lUsHoq3RC18rAzezSDbwwCeXO"
    "hqJcpyUf2z1t1+86nmh+iO2zenuh0qEbJdQhFp0U3jJhVTw/nwkfPo/AUseuWvm8Wvh0RyCIzR9d2QPcSno4Is1nhbT9fW11"
    "4t7+DqHhbdA3maiv3Qx2ndfp7joseECsP+08tzF9bst+spxwlJvpwYVxX6iG09v1GzTX/uP91un7fvJCEkvYxhAC1x7Ww8Fw"
    "B1tCTXxXrQ+YjD7myadwUAGJPJQj6G8R7nNWD1tuHUggd40SGHmIRDPSo0eUYW5/pFN9jCZHJ2HBbwWPLuhDXOGaR1ue+l69"
    "LQr78niuj7dFqTnnzQnYPddZLk2WFLqB7ujuaxx2t8ANwDk7OqH0NG6rtzif7q1YSzyCYJo33pAgfPfx82gVgQ2KOH0XuPUk"
    "1W2NMujdYf6M2aA+GoseyfcGdtNNI+mJa8lX1gd9fG6LU9tMenws7c887pubqJpD8P46zQH3dP/p+35y+Yi45zu+ToLtj4o9"
    "2KhOoUel8oihR6hSP4LazDCPaeaPDzxzXp9mBZoh6us0mQKxtZRFT7EYM4H2HGhrocadtuFB0p981Foq+WuUSiPf0n2oWLh/"
    "7bvGBN5RQs9fk0DuCxJY/UsC/yWB70qgrC5DDuwkjE/ISRmVIIj0mE9LW+sapc2knt7MtKHHO1oeGO0tOOe7W/ZoduXJA42+"
    "4IGa//JA/+WBvuuB4j0/Vm/w49neZz6evls5dt52wxeqwDDSW9buk0TPllxsO2zkOJxVYVZ3tlu7h6Ya8Y+2IH7Ysb31MnH9"
    "PG0+fMvcuai4ppTM0Z51RPLGfQFrBM10ZwNCiBJUZbzOE93g4l0ksxjJJatzahk6y3XAO0yUbzcW117EWbEDpbjVuXYZsuY6"
    "mol8wKN1nG85lyTfMUM0+K7G+Ubv5mUS5J2NLiZcnBHJYuimp+b32HUWQR6vRw9nt88X8XjxxzKZFsU4vpqZDRG0BC3Y7mqM"
    "Ts9olWHgd0IFUr4BnyR7ZcPGk3NcRa6RX8SrGZVgvWdc0QLs4ww9YqO25uqFMcNpiNSlzxEhyNqi4yW6w0hrP1XYUCR9NCtS"
    "SyyWfqUPAfC+5iZYy5ONn7Moguthv1DNirCWEy81WW8bqY5dYDSD21pjYAYXxUNgYE9326PAURPEaBtNbIuml2hIXrKPGWDK"
    "NEUyL+c/a8tkI0fJ/gTpZE33eb5Vfx+RycdbJQ97Dcq5+8I85M31D9nBc7andTLdtQnkDhPuWHhm8sOOJQi5zkLpx2DyjIll"
    "UVNV15rmUd4pHxxFcA/YEoQleTRHD+P/zjQYKWth44oNdiMwqfV0VkfJaXpBnw9y+J3OYR/00QQTH4ErEzzWSxzv1ArvwHSl"
    "7Ar4g4wsdYppnWy3/T2So+lnhGtQke+DyhQMJNkBW9w7eSwYmTSzHdR1EFEMRlqA5uRjpi3iKjFNpKpIxF2EYnksx4HJJZXP"
    "JJYuY9VgUGF5xAzFogB6A4fr7GxR28QgNHa/EMYi+922hSGSsspmzIWedW7iihhBSgQHoXtTUiWUxZYmJ/cOVzI2rRZAAjIz"
    "bCNbshDBSywRD82EqSv6W4wmOyNPcOi0Fy6JA7qLqw/CHbnibtw3p6FNeJ9N7se5qaBUzTRuwtY1BTL2daszA0XQw5Vpm3my"
    "xg4pXE/Sgizb2dycNVh1EYkdFEpF4srsPbgape6RLJzdLfCGuYfgYBDMhAHi2I2eg1L2JDbi1USf4coW43ZUxbbmmTtsm6wP"
    "VirONrt73m+ZospHrCCNZX1q9YkeZmV72C+G45m2dmwhsyVja5PE02zy3YX+aDOTA4WW6ZzP2ExS6N3SCXuIxfktBxZ8pzO3"
    "QClam/1JKyag8F081XalEab+YsDP2wOgaTiSaTlm10Cob8zimZXps4hhRcc2DdNRJYdus+4lJsrw3GdJn64yskRlg52kbbiJ"
    "GjjswiI6hrb2Al4ajL2YseWsFTOsY3nF0JScnT0rwJp3vkdVYqCesXYcJBusuHEybAWcqTos2tgga0h0tjZrbA2iolBsI8A0"
    "cKVYBln2NC/JXHnTxizxrLwITBaXbqrOQYeUcV+fogrBKCTy2NUqJ5WyMDcYjJKNzmFFs8pcF/Uu5jojE/gtkEhiyUQNnbLQ"
    "+2QY5LcLxy0DizWXFok9GMPCzdlN7OorN8V5yJT9wL3lHG67iVy0jlxpG83UgTZDMMZ6C7AdacBTvq2ztsyABxe3h0Annilr"
    "w4tTWzRbNkr6417y3ZqBm56xN34VG2BAFKe6ayPJ38YyBoMEcpnqQ41zqnvGnOt9ZAQVIn7e4myuvdWn5U3ci9kBH7Vwtr0Z"
    "IsGnh5sNwbXXrZKL08kap9EaMJVANnnHwdBnXTVYaQ1tEDSxI45FyTLdREcOtlxokwGekMknPBaT+VCOVYch34EHUOgUbcwL"
    "A3CdK1vSmLj2Dk1p7LA3ji3BmGmMDV6Wzgqi1i2hL2oXxnAIOgC5WWKb7nbgVELLJuYChBqhrHCAh1zE+ttAKjzQ/6kr+Swm"
    "pG/mBDw+dQljnoXAbz6KN1Gu9jUPPF9Gbflce6jJpu+mOrHkDYQ+egt4eXXPSDPXKcVAJJ7JTZjAKQrQzXpAMs6Ry3uT1Rc6"
    "0t2wLxDXZYPIVVdWqpIwxb0A+C3kpVHACwnowq3FsdvIxu24r27v+bjyMxhrcetpM4MPbHAzZk4rzhVuwMe6Jer8UDLlcV/P"
    "QaelEWBh2/ponBLRSQXGkZwtllVfy9orH/hAS8kN7kG4y0UMdrbfQRb80AZPc3bHxR6udM7h4zQxrH7WGgD/Dz2cgyznEWDp"
    "9DSQ1QZ6l9bBZSoCV6qF2aIf9PXUkhQGZ6RnukQdI2lp5SQFXobQXtWMSmA/pXehP0hyWEdC4AXoSEOqi/JtBg6SG0GfzVQi"
    "bk/tgoyVNp1WZ4vVp/Qu8BvYemK5BEcwZpatjoIU9Zy83NgsAl6RfOBRsKEMO3bNVdQtZ5/Su8BvMPYi6L7KEcG34lQFeHxl"
    "8VlrnLVvol3HBN7TUE8aulK0HbpF8Cm9C3TuWWGlT5frcZqBM3671oj4WDZw6NeUgwdHcjGOxtOi/CMK/h5fT1nVw7Qq+JvY"
    "JZv40Q8Sj9rzogj3xfLBqkFNJp1q4VAR9Y3S56QcO5ct9IY+LGmg9HL3eOhL7pT0+nNt5vNv76VIgr5Zhr3P+52Rh+iyzGzg"
    "CXR9CeO76pIux4Q23O7f3aIHIGRju3UbuOxM6es7v2Iqs6umgWvchHJnFr6Bv0IPIOgbHY0xpgaM5369CRghwKz+DHTq72nr"
    "Nuq1HToNFuyEdsg7idKDGITeY2e8IsNYpPXaJgFwTaPHz+CH0thC6dHvTFuHIA94o6CpP/BP65W8o5TRuykraSnT0lJWMHZ3"
    "rUHP2Iy6Hbi2WUfQvwGnrnE/+x1+m8cyuxztff99n+h6jtexLcAPA94B37+uZXz2mx9TjiEXQ+yyxzHkKH8f8dF7dadFmG/h"
    "z2mW5pLVJAJvQd/HDwXK1JEzizYWEwM2kgD2eQg+z9xEaAaf4TsS6v+ZLrj1dyk3c922svqziNyt5CBs6T21dHrJzVBUTbMf"
    "C2DHTZOR5mC7dLoOy9k/27XAf9IdtAuYYoafS5Oex++gGLxcBMvkj5+9sdyIbmroP2xu+Hh2xsv5HeU0j7FrkscAkw5wTMor"
    "30QOQvDnxeOPGzhW4yLZLV7i8yPX8riAR9AnO2BrFssxiY9KjB9nA2KC6dKv7ifOROsXBMLldjS9wDLVRqmFR3p7c6tZT+mF"
    "G+wJ8zGIc13BZ4s/KsUgPJS114c9RA8l+I5dy0SGOTr3VK/SDx7aV5+EBfgz8G4Ou5tJnem26LN0+YMzCXlKr3VWv3xP2FAX"
    "4GE5xppWzQKPP6YTnt7x2KaBJzKDGcjU9Etpisbvbahu70HdSk6ebcbi9juwDc0D8pYTtSGWLAw7McB9BglLljFb2IaHTS3z"
    "N+C+gqtWtOE7Mhm8ckmiY4YtIHxTzYzMHHnOgFvt6W451bKCngL+z1W2HlwHOv9cZevB9f9F/UGhpKJhHWYwndq18071wbN5"
    "fNC/F9oKwqyrNW2uTOo55t4228/RH8zq5mBLXjsFT3psozCNXXOGPeNpadTLfP+7m8i/tcz7SQ4bL/P+SG+/XOb9TOMql3mb"
    "c7hnAfq3Xo84mAoajDNdU5fSmch6drIP76Ezkl2BzusThVaKdYUFdtHmIRUMthFC/WP7zf9M+30G/zhBn66IcV6ul7Q/nNF/"
    "xpY5m392l+CfBjz8k309cw0hxIquTIpzUm/c/XiYH/AY7TuzP+hwua9W/m86XR3Mpn+PlyUwz//7r9/+npIxZaOgmBMyf3AL"
    "4a5svNvMF/GS3vXbvy/H49lv/1k/PCXhfEufGC3m6Tgql3/e1Y8+pRfW4/iOvvw3juFu/mDZPxjOZm7/Ylt/MQymd62W40VN"
    "kkyjMW3Si1ZwzVthjWflu6RZ5i+Ga06af4c0/Prvf5NgMhnHXxkMlv+rxTRvUeu1Fn2aPG8z3/5qtxuQPwoUzuMIXD/6Tita"
    "NtOBJjRvxeU4omWz7F/8GaT5c8b/w563a1loQv5oT6JGPZfqJ94hfmOz3/7iziB+uWEH0oB4uznpJsP+YYe/0dFuxGfPRTzv"
    "k1Rm9MPbFG9t0DaN2OtFLrbRMJv7p5bvNKFjs1yzTr9cZnuhNrAMFfBWE7hfFsS8D0AD4qzN3jQegJONC76EPrs3N00oP5d0"
    "nG1rPuJ6lrfZhlx/sHSpEfIf9b9FrUtzytzlKLfPo8xfAOyb80i2LkDyW2OSp0cAf43ubWN7fbhTUCNg7xZRAhTf7/RtM5V6"
    "uAnmC+L1xVquXmtGj159T6l0qN/ANG8F90+1oqFuP1gh/D72Ktz4NkWOtRn+DIrc1ylyjSkeTjU0YjabPvBuZ5sO79FZx5fQ"
    "YGC2Qbb5M2hfUHsyjUXs6GzZrykVliqVc4i2Ltfh2lCfQ7t9Odp84wjk6PDJrw12i3L2OUS/fc45+dhOQ/h7TjtuLzfwEIO0"
    "zqLduYjJZtvnEH04Wu0iHb6ljvA5tC/oCnZorHkObe7rg82BHjuvw/zFOkwN5Xkdbv0jEsZxZ+pytn2BgefP1OXszeUGvnWm"
    "Lme/XY52+0xdzt5eYLBvztTlbOdyHf52pv7mLqfOuNvm+nsenuMWdsl0PKPZ0ygff+SwvPQOgdhL6k202SNZmczD8fveSnPC"
    "/CUdleZkm0S34H2vx+T99EFjgu2L5g4ak725TOKgMb1vl8rAUreTa0r1Dafrkz4fT12ghpQ7F5fa1hnUL+l8tc+he3lldXMO"
    "ee6ieH87hzR/8Z7fnkO+dVGPtznd9qW7Db7vGeRvLgk4TZs0J/3t4j3nziF/uXiSO0evsRdXbNw5iu0tN+yTgJ+j27iL6zbu"
    "Pd32n//9PzY0ekk="
)
# END DEMO MAIL


# =============================================================================
# 17. Command line
# =============================================================================
# `python jmapd.py --seed demo`: parse, build, serve, print where and who, wait
# for Ctrl-C. No logic here beyond wiring.

EXAMPLES = """examples:
  python jmapd.py --seed demo                 alice/alice and bob/bob on :8080
  python jmapd.py --port 0 --seed empty       a free port, standard mailboxes only
  python jmapd.py --seed ~/Mail/export.mbox   your own mail in alice's Inbox
  python jmapd.py --seed generated:100000 --db big.sqlite   a large mailbox, built once
  python jmapd.py --db mail.sqlite            keep everything across restarts
  python jmapd.py --user carol:secret         add a login to the seed
  python jmapd.py --limit maxObjectsInGet=5   tiny limits prove a client batches
  python jmapd.py --trace                     print every request and response
  python jmapd.py --allow-http-push           push to http://127.0.0.1:PORT/ receivers
  python jmapd.py --port 0 --ready-file url.txt   for a test harness: url.txt gets the URL
  python jmapd.py --no-control                no /_jmapd/ control API (faults, reset, ...)
  python jmapd.py --quirks cyrus              behave like Cyrus IMAP where it deviates
  python jmapd.py --pedantic                  refuse what the RFCs do not allow a client
"""


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jmapd", description="A JMAP server (RFC 8620, RFC 8621) for development "
        "and testing.", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one")
    parser.add_argument("--db", default=":memory:", metavar="FILE",
                        help="sqlite file to persist to (default: in memory)")
    parser.add_argument("--seed", default="demo", metavar="NAME|PATH",
                        help="demo (default), empty, generated:N, or a path: a JSON user "
                        "file, a folder of .eml files (with or without manifest.json), an mbox")
    parser.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD",
                        help="add a login (repeatable); its token is token-NAME")
    parser.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                        help="override a limit, e.g. maxObjectsInGet=5 (repeatable)")
    parser.add_argument("--quota-octets", type=int, metavar="N",
                        help="each account's mail quota in octets (RFC 9425; default 10 GiB)")
    parser.add_argument("--quota-count", type=int, metavar="N",
                        help="each account's mail quota in messages (default 1000000)")
    parser.add_argument("--cors-origin", default="*", metavar="ORIGIN",
                        help="Access-Control-Allow-Origin value (default *)")
    parser.add_argument("--deterministic", action="store_true",
                        help="fixed clock (2026-01-01T09:00:00Z) and sequential ids")
    parser.add_argument("--allow-http-push", action="store_true",
                        help="accept http:// PushSubscription urls on loopback receivers "
                        "(127.0.0.0/8, ::1, localhost); dev only: RFC 8620 §7.2 says https")
    parser.add_argument("--push-ca", metavar="FILE",
                        help="PEM file of extra CAs trusted for https push receivers")
    parser.add_argument("--trace", action="store_true",
                        help="pretty-print every request and response (and outbox mail) to stderr")
    parser.add_argument("--relay", metavar="HOST:PORT",
                        help="forward mail for recipients outside this server over SMTP "
                        "(default: keep it in the outbox)")
    parser.add_argument("--no-control", dest="control", action="store_false",
                        help="turn off the unauthenticated /_jmapd/ control API (deliver, "
                        "faults, clock, reset, ...): on by default for a dev server")
    parser.add_argument("--quirks", metavar="NAME[,NAME]",
                        help="imitate a real server's documented deviations: a profile "
                        f"({', '.join(QUIRK_PROFILES)}) or single quirks (README lists them)")
    parser.add_argument("--pedantic", action="store_true",
                        help="refuse request details the RFCs do not allow a client "
                        "(by default jmapd tolerates them and --trace warns)")
    parser.add_argument("--ready-file", metavar="PATH",
                        help="once serving, write the server URL (one line) to PATH")
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--version", action="version", version=f"jmapd {__version__}")
    return parser


def parse_limits(specs: list[str]) -> dict[str, int]:
    limits = {}
    for spec in specs:
        name, _, value = spec.partition("=")
        if name not in DEFAULT_LIMITS and name not in SERVER_LIMITS:
            raise ValueError(f"unknown limit {name!r}; known: "
                             + ", ".join([*DEFAULT_LIMITS, *SERVER_LIMITS]))
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"--limit {name}: the value must be a positive integer")
        limits[name] = int(value)
    return limits


def describe_server(server: JmapServer) -> str:
    lines = [f"jmapd {__version__} serving {server.url}",
             f"  session: {server.session_url}"]
    for index, user in enumerate(server.users):
        label = "  users:   " if index == 0 else "           "
        lines.append(f"{label}{user.name} (password {user.password}, token {user.token}, "
                     f"account {user.account_id})")
    if server.users:
        first = server.users[0]
        lines.append(f"  try:     curl -sL -u {first.name}:{first.password} {server.session_url}")
    if server.core.allow_http_push:
        lines.append("  push:    http:// urls allowed for loopback receivers (dev only)")
    if server.core.quirks.names:
        lines.append("  quirks:  " + ",".join(sorted(server.core.quirks.names)))
    if server.core.pedantic:
        lines.append("  lint:    --pedantic: what the RFCs do not allow a client is refused")
    if server.httpd.control:
        lines.append(f"  control: {server.url}{CONTROL_PREFIX} (no credentials; --no-control "
                     "turns it off)")
    lines.append("Ctrl-C stops the server.")
    return "\n".join(lines)


def write_ready_file(path: str, url: str) -> None:
    """The URL, written whole: a harness polling for the file never reads half of it."""
    partial = f"{path}.{os.getpid()}.tmp"
    with open(partial, "w", encoding="utf-8") as file:
        file.write(url + "\n")
    os.replace(partial, path)


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # stop as cleanly as on Ctrl-C


def main(argv: list[str] | None = None) -> int:
    """The jmapd command: returns the exit code."""
    options = build_arg_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
    logging.basicConfig(level=options.log_level.upper(), format="jmapd %(levelname)s %(message)s")
    try:
        limits = parse_limits(options.limit)
        for name, value in (("mailQuotaOctets", options.quota_octets),
                            ("mailQuotaCount", options.quota_count)):
            if value is not None:
                limits[name] = value
        clock, ids = (FixedClock(), SequentialIds()) if options.deterministic else (None, None)
        server = serve(options.seed, host=options.host, port=options.port, db=options.db,
                       users=options.user, limits=limits, clock=clock, ids=ids,
                       cors_origin=options.cors_origin, trace=options.trace,
                       relay=options.relay, allow_http_push=options.allow_http_push,
                       push_ca=options.push_ca, control=options.control,
                       quirks=options.quirks, pedantic=options.pedantic)
    except (ValueError, OSError, sqlite3.Error) as error:
        print(f"jmapd: {error}", file=sys.stderr)
        return 1
    try:
        print(describe_server(server), flush=True)
        if options.ready_file:
            try:
                write_ready_file(options.ready_file, server.url)
            except OSError as error:
                print(f"jmapd: --ready-file: {error}", file=sys.stderr)
                return 1
        while server.thread.is_alive():
            server.thread.join(0.5)
    except KeyboardInterrupt:
        print("\njmapd: stopping", file=sys.stderr)
    finally:
        server.stop()
    return 0


# =============================================================================
# 18. Test support
# =============================================================================
# Client: a small stdlib JMAP client for tests and scripts (session discovery,
# calls, upload, download, an EventSource reader). Then the pytest plugin: the
# jmap_server and jmap_client fixtures and the jmapd marker, loaded by the
# pytest11 entry point or by `pytest_plugins = ["jmapd"]`. Each jmap_server is a
# fresh in-memory copy of a template seeded once per distinct seed, users and
# clock (ServerTemplates): a test pays for a sqlite backup and a bind, not a seed.

# --- 18.1 The Client (RFC 8620 §2, §3, §6, §7.3) --------------------------------

class CallError(Exception):
    """A JMAP request or method call failed.

    `type` is the error type ("invalidArguments", or for a request-level error the URN,
    e.g. "urn:ietf:params:jmap:error:limit"), `description` its text, `method` the
    method's name (None when the whole request failed), `error` the error object or
    problem details as received, `status` the HTTP status.
    """

    def __init__(self, type: str | None, description: str | None = None, *,
                 method: str | None = None, error: dict | None = None,
                 status: int = 200) -> None:
        where = f"{method} failed" if method else f"the request failed with HTTP {status}"
        super().__init__(f"{where}: {type}" + (f": {description}" if description else ""))
        self.type, self.description, self.method = type, description, method
        self.error, self.status = error or {}, status


@dataclasses.dataclass(frozen=True)
class Event:
    """One text/event-stream event: `type` ("state", "ping"), `id`, and `data` (JSON)."""
    type: str
    id: str | None
    data: Any


def _expand_url(template: str, **values: Any) -> str:
    """RFC 6570 level 1, as RFC 8620 §2 uses it: each {name} percent-encoded."""
    return re.sub(r"\{(\w+)\}",
                  lambda m: urllib.parse.quote(str(values[m[1]]), safe=""), template)


def _raise_for_status(status: int, body: bytes) -> None:
    """A request-level error (RFC 8620 §3.6.1 problem details) as CallError."""
    if status < 400:
        return
    try:
        problem = json.loads(body)
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        problem = {"detail": body.decode("utf-8", "replace")[:500]}
    raise CallError(problem.get("type", "about:blank"), problem.get("detail"),
                    error=problem, status=status)


class Client:
    """A minimal JMAP client over HTTP, standard library only, for tests and scripts.

        client = jmapd.Client(server.url, "alice")
        client.call("Mailbox/get", {"accountId": client.account_id})  # response arguments

    url is the server's origin or a session URL (/.well-known/jmap redirects are
    followed). Authentication is HTTP Basic (the password defaults to the user name, as
    in the demo seed) or, with token=, Bearer. A method error raises CallError; /set's
    notCreated and the like are results, not errors, and are returned.
    """

    def __init__(self, url: str, user: str | None = None, password: str | None = None, *,
                 token: str | None = None, timeout: float = 10.0) -> None:
        path = urllib.parse.urlsplit(url).path
        self.url = url.rstrip("/") + WELL_KNOWN_PATH if path in ("", "/") else url
        if token is not None:
            self.authorization = "Bearer " + token
        else:
            credentials = f"{user}:{user if password is None else password}"
            self.authorization = "Basic " + base64.b64encode(credentials.encode()).decode()
        self.timeout = timeout
        self._session: dict | None = None
        self._connections: dict[tuple, http.client.HTTPConnection] = {}
        self._lock = threading.Lock()

    # -- HTTP --

    def send(self, method: str, url: str, body: bytes | None = None,
             headers: dict | None = None) -> tuple[int, Any, bytes]:
        """One authenticated HTTP exchange on a kept-alive connection: (status, headers, body)."""
        parts = urllib.parse.urlsplit(url)
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        sent_headers = {"Authorization": self.authorization, **(headers or {})}
        key = (parts.scheme, parts.netloc)
        with self._lock:
            reused = key in self._connections
            try:
                return self._exchange(key, method, target, body, sent_headers)
            except (ConnectionError, http.client.BadStatusLine):
                self._drop_connection(key)
                if not reused:
                    raise
            except BaseException:  # e.g. a timeout: a half-read answer must not be reused
                self._drop_connection(key)
                raise
            # the server had closed an idle keep-alive connection: once more, on a new one
            try:
                return self._exchange(key, method, target, body, sent_headers)
            except BaseException:
                self._drop_connection(key)
                raise

    def _drop_connection(self, key: tuple) -> None:
        connection = self._connections.pop(key, None)
        if connection is not None:
            connection.close()

    def _exchange(self, key: tuple, method: str, target: str, body: bytes | None,
                  headers: dict) -> tuple[int, Any, bytes]:
        if key not in self._connections:
            kind = http.client.HTTPSConnection if key[0] == "https" else http.client.HTTPConnection
            self._connections[key] = kind(key[1], timeout=self.timeout)
        connection = self._connections[key]
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read()

    def close(self) -> None:
        """Close the kept-alive connections."""
        with self._lock:
            for connection in self._connections.values():
                connection.close()
            self._connections.clear()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- the session (RFC 8620 §2) --

    @property
    def session(self) -> dict:
        """The Session object, fetched at first use (refresh_session() fetches it again)."""
        return self._session if self._session is not None else self.refresh_session()

    def refresh_session(self) -> dict:
        url = self.url
        for _ in range(5):
            status, headers, body = self.send("GET", url)
            if status not in (301, 302, 303, 307, 308) or not headers.get("Location"):
                break
            url = urllib.parse.urljoin(url, headers["Location"])  # RFC 8620 §2.2
        _raise_for_status(status, body)
        self._session = json.loads(body)
        return self._session

    @property
    def account_id(self) -> str | None:
        """The primary mail account (RFC 8621 §1.3.1), else the first account."""
        primary = self.session.get("primaryAccounts", {})
        return primary.get(URN_MAIL) or primary.get(URN_CORE) or next(
            iter(self.session.get("accounts", {})), None)

    # -- requests (RFC 8620 §3) --

    def request(self, calls: Iterable[list], using: Iterable[str] | None = None,
                created_ids: dict | None = None) -> dict:
        """POST one Request; calls are [name, args] or [name, args, callId]. Returns the
        whole Response: method errors stay in it; a request-level error raises CallError.
        `using` defaults to every capability the session lists."""
        method_calls = [list(c) if len(c) == 3 else [c[0], c[1], f"c{i}"]
                        for i, c in enumerate(calls)]
        body = {"using": list(self.session["capabilities"] if using is None else using),
                "methodCalls": method_calls}
        if created_ids is not None:
            body["createdIds"] = created_ids
        status, _, data = self.send("POST", self.session["apiUrl"], json.dumps(body).encode(),
                                    {"Content-Type": "application/json"})
        _raise_for_status(status, data)
        return json.loads(data)

    def call(self, method: str, args: dict | None = None,
             using: Iterable[str] | None = None) -> dict:
        """One method call: its response arguments; CallError if it answered "error"."""
        response = self.request([[method, {} if args is None else args, "c0"]], using)
        name, result, _ = response["methodResponses"][0]
        if name == "error":
            raise CallError(result.get("type"), result.get("description"), method=method,
                            error=result)
        return result

    # -- binary data (RFC 8620 §6) --

    def upload(self, data: bytes, type: str = "application/octet-stream",
               account_id: str | None = None) -> dict:
        """Upload data: {"accountId", "blobId", "type", "size"}."""
        url = _expand_url(self.session["uploadUrl"], accountId=account_id or self.account_id)
        status, _, body = self.send("POST", url, data, {"Content-Type": type})
        _raise_for_status(status, body)
        return json.loads(body)

    def download(self, blob_id: str, name: str = "blob",
                 type: str = "application/octet-stream",
                 account_id: str | None = None) -> bytes:
        """The blob's octets."""
        url = _expand_url(self.session["downloadUrl"], accountId=account_id or self.account_id,
                          blobId=blob_id, name=name, type=type)
        status, _, body = self.send("GET", url)
        _raise_for_status(status, body)
        return body

    # -- push (RFC 8620 §7.3) --

    def events(self, types: str | Iterable[str] = "*", closeafter: str = "no", ping: int = 0,
               timeout: float = 5.0, last_event_id: str | None = None) -> "EventSource":
        """Open the event stream (connected on return: later changes will be seen)."""
        url = _expand_url(self.session["eventSourceUrl"], closeafter=closeafter, ping=ping,
                          types=types if isinstance(types, str) else ",".join(types))
        headers = {"Authorization": self.authorization, "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        return EventSource(url, headers, timeout)


class EventSource:
    """A reader of one text/event-stream response (RFC 8620 §7.3, the HTML SSE format).

    Iterate it for Events until the server ends the stream, or call next_event() or
    next_state_change(). Waiting longer than `timeout` seconds for an event raises
    TimeoutError, and the stream stays usable. Use it as a context manager, or close().
    """

    def __init__(self, url: str, headers: dict, timeout: float = 5.0) -> None:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.timeout = timeout
        self._buffer = b""
        self.sock = socket.create_connection((parts.hostname, port), timeout)
        if parts.scheme == "https":
            self.sock = ssl.create_default_context().wrap_socket(
                self.sock, server_hostname=parts.hostname)
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}",
                 *(f"{name}: {value}" for name, value in headers.items())]
        try:
            self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            self._read_head(time.monotonic() + timeout)
        except BaseException:
            self.sock.close()
            raise

    def _read_head(self, deadline: float) -> None:
        while b"\r\n\r\n" not in self._buffer:
            if not self._receive(deadline):
                raise ConnectionError("the event stream closed before its headers")
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in
                        (line.partition(":") for line in header_lines)}
        if self.status != 200:
            length = int(self.headers.get("content-length", 0))
            while len(self._buffer) < length and self._receive(deadline):
                pass
            _raise_for_status(self.status, self._buffer[:length])
            raise CallError(None, f"HTTP {self.status}", status=self.status)

    def _receive(self, deadline: float) -> bool:
        """More bytes into the buffer; False at the end of the stream."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no event on the EventSource in time")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("no event on the EventSource in time") from None
        self._buffer += chunk
        return bool(chunk)

    def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event, or None once the server has closed the stream."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            self._buffer = self._buffer.replace(b"\r\n", b"\n")
            if b"\n\n" in self._buffer:
                block, self._buffer = self._buffer.split(b"\n\n", 1)
                event = _parse_sse_block(block.decode("utf-8", "replace"))
                if event is not None:
                    return event
            elif not self._receive(deadline):
                return None

    def next_state_change(self, timeout: float | None = None) -> dict:
        """The data of the next "state" event (a StateChange, RFC 8620 §7.1); pings are
        skipped. TimeoutError if none comes in time, ConnectionError if the stream ends."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            event = self.next_event(max(deadline - time.monotonic(), 0.001))
            if event is None:
                raise ConnectionError("the event stream ended without a state event")
            if event.type == "state":
                return event.data

    def __iter__(self) -> Iterator[Event]:
        while (event := self.next_event()) is not None:
            yield event

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "EventSource":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _parse_sse_block(block: str) -> Event | None:
    """One event from its lines (HTML "event stream interpretation"); None for comments."""
    fields: dict[str, list[str]] = {}
    for line in block.split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
    if "data" not in fields:
        return None
    text = "\n".join(fields["data"])
    try:
        data = json.loads(text)
    except ValueError:
        data = text
    event_id = fields["id"][-1] if "id" in fields else None
    return Event(fields.get("event", ["message"])[-1], event_id, data)


# --- 18.2 Fresh servers from templates ---------------------------------------

PLUGIN_OPTIONS = {  # the jmapd marker's keywords and jmapd_options' keys, with defaults
    "seed": "demo",          # as --seed: "demo", "empty", "generated:N", a path; None: nobody
    "users": (),             # extra logins: "carol" (password carol) or "carol:secret"
    "fixed_clock": None,     # a UTCDate: the clock stands there until advanced
    "limits": {},            # overrides of DEFAULT_LIMITS and SERVER_LIMITS
    "deterministic": False,  # sequential ids (and a fixed clock at 2026-01-01T09:00:00Z)
    "quirks": None,          # as --quirks: "cyrus", "no-query-changes,...", or a list
    "pedantic": False,       # as --pedantic: refuse what the RFCs do not allow a client
}


def plugin_options(*layers: dict) -> dict:
    """PLUGIN_OPTIONS overlaid by each layer in turn; an unknown key is a ValueError."""
    options = dict(PLUGIN_OPTIONS)
    for layer in layers:
        unknown = sorted(set(layer) - set(PLUGIN_OPTIONS))
        if unknown:
            raise ValueError(f"unknown jmapd option {unknown[0]!r}; the options are "
                             + ", ".join(PLUGIN_OPTIONS))
        options.update(layer)
    users = options["users"]
    options["users"] = (users,) if isinstance(users, str) else tuple(users or ())
    options["limits"] = dict(options["limits"] or {})
    return options


def _plugin_clock_and_ids(options: dict) -> tuple[Any, Any]:
    """A new clock and id source for one core (a test's clock.advance stays its own)."""
    if options["fixed_clock"]:
        clock = FixedClock(options["fixed_clock"])
    else:
        clock = FixedClock() if options["deterministic"] else SystemClock()
    return clock, SequentialIds() if options["deterministic"] else RandomIds()


class JmapTestServer(JmapServer):
    """The jmap_server fixture's server: a JmapServer that also hands out Clients."""

    def __init__(self, core: JmapCore, **kwargs: Any) -> None:
        super().__init__(core, **kwargs)
        self.clients: list[Client] = []

    def client(self, user: str | None = None, password: str | None = None,
               **options: Any) -> Client:
        """A Client logged in as user: default alice, else the first user there is."""
        names = [u.name for u in self.users]
        name = user or ("alice" if "alice" in names else names[0] if names else None)
        if name is None:
            raise ValueError("this server has no users: give the seed or users option")
        if password is None and name in names:
            password = self.user(name).password
        client = Client(self.session_url, name, password, **options)
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        super().stop()


class ServerTemplates:
    """Seeded cores kept for copying, one per distinct seed, users and clock: the
    plugin's session-wide cache, usable without pytest:

        templates = jmapd.ServerTemplates()
        with templates.server(seed="empty", users=["carol"]) as server: ...
    """

    def __init__(self) -> None:
        self._templates: dict[tuple, JmapCore] = {}
        self._lock = threading.Lock()

    def server(self, **options: Any) -> JmapTestServer:
        """A fresh server on a free port: an in-memory copy of these options' template."""
        options = plugin_options(options)
        template = self.template(options)
        clock, ids = _plugin_clock_and_ids(options)
        core = JmapCore(clock=clock, ids=ids, limits=options["limits"], copy_of=template)
        try:
            core.controls.set_quirks(options["quirks"])
            core.controls.set_pedantic(options["pedantic"])
            return JmapTestServer(core)
        except BaseException:
            core.close()
            raise

    def template(self, options: dict) -> JmapCore:
        """The seeded core for options, built at the first request for them."""
        key = (options["seed"], options["users"], options["fixed_clock"],
               bool(options["deterministic"]))
        with self._lock:
            if key not in self._templates:
                clock, ids = _plugin_clock_and_ids(options)
                template = _seeded_core(options["seed"], ":memory:", clock, ids, None)
                for spec in options["users"]:
                    name, _, password = spec.partition(":")
                    if not template.store.user(name):
                        template.add_user(name, password or name)
                self._templates[key] = template
            return self._templates[key]

    def close(self) -> None:
        with self._lock:
            for template in self._templates.values():
                template.close()
            self._templates.clear()


def marked_options(node: Any, defaults: dict) -> dict:
    """A test's options: defaults, then its jmapd markers (the closest one wins)."""
    layers = [defaults]
    for marker in reversed(list(node.iter_markers("jmapd"))):
        if marker.args:
            raise ValueError("the jmapd marker takes keyword arguments only, e.g. "
                             "@pytest.mark.jmapd(seed='empty')")
        layers.append(marker.kwargs)
    return plugin_options(*layers)


# --- 18.3 The pytest plugin ---------------------------------------------------

try:
    import pytest
except ImportError:  # jmapd stays stdlib-only: the fixtures exist only under pytest
    pytest = None

if pytest is not None:
    def pytest_configure(config: Any) -> None:
        config.addinivalue_line(
            "markers", "jmapd(seed='demo', users=(), fixed_clock=None, limits={}, "
            "deterministic=False, quirks=None, pedantic=False): options of this test's "
            "jmap_server (jmapd plugin)")

    @pytest.fixture(scope="session")
    def jmapd_templates() -> Iterator[ServerTemplates]:
        """The session's seeded templates: each fresh jmap_server is a copy of one."""
        templates = ServerTemplates()
        yield templates
        templates.close()

    @pytest.fixture
    def jmapd_options() -> dict:
        """Options for every jmap_server in its scope; override it to configure a suite."""
        return {}

    @pytest.fixture
    def jmap_server(request: Any, jmapd_options: dict,
                    jmapd_templates: ServerTemplates) -> Iterator[JmapTestServer]:
        """A fresh, isolated jmapd on a free port, configured by the jmapd marker."""
        try:
            server, problem = jmapd_templates.server(
                **marked_options(request.node, jmapd_options)), None
        except (ValueError, OSError) as error:  # a bad option: its message is the report
            server, problem = None, f"jmap_server: {error}"
        if problem:
            pytest.fail(problem, pytrace=False)
        yield server
        server.stop()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
        """A failed test that used jmap_server shows the server's last requests (the
        request log of section 15) under the failure, as "jmapd requests"."""
        outcome = yield
        report = outcome.get_result()
        server = getattr(item, "funcargs", {}).get("jmap_server")
        if report.failed and server is not None and report.when == "call":
            report.sections.append(("jmapd requests", server.requests.format(last=20)))

    @pytest.fixture
    def jmap_client(jmap_server: JmapTestServer) -> Client:
        """A Client of jmap_server, logged in as alice (jmap_server.client("bob") for bob)."""
        return jmap_server.client()


if __name__ == "__main__":
    sys.exit(main())
