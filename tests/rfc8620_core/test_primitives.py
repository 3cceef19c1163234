"""RFC 8620 §1.2-1.4 (Id, Int, UnsignedInt, Date, UTCDate), §3.7 with RFC 6901
(JSON Pointer and JMAP's "*"), and §5.3 (PatchObject), tested through jmapd's
validators `jmapd.<Type>.accepts`, `jmapd.split_pointer`, `jmapd.evaluate_pointer`
and `jmapd.apply_patch`.
"""

import pytest

import jmapd

MAX = 2**53 - 1


# --- §1.2 Id -------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "A", "a", "0", "-", "_", "M1", "abc-_XYZ09", "a" * 255,
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
])
def test_id_accepts_1_to_255_url_safe_base64_characters(value):
    """§1.2: an Id is 1-255 octets of A-Za-z0-9, "-" and "_"."""
    assert jmapd.Id.accepts(value) is True


@pytest.mark.parametrize("value", [
    "", "a" * 256, "a b", "a=", "a+b", "a/b", "a.b", "a:b", "a#b", "#a", "a\n", "\na",
    "é", "ａ", "٣", "a\x00", 5, 0, 1.5, True, None, ["a"], {"a": 1},
])
def test_id_rejects_empty_long_padded_non_alphabet_and_non_strings(value):
    """§1.2: empty, over 255 octets, "=" padding, any other character, or not a String
    is not an Id."""
    assert jmapd.Id.accepts(value) is False


# --- §1.3 Int and UnsignedInt ------------------------------------------------------

@pytest.mark.parametrize("value", [0, 1, -1, 42, MAX, -MAX])
def test_int_accepts_the_safe_integer_range(value):
    """§1.3: an Int is an integer with -2^53+1 <= value <= 2^53-1."""
    assert jmapd.Int.accepts(value) is True


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**64, -(2**64), True, False, 1.5, -0.5,
                                   "1", "0", None, [1], {"v": 1}])
def test_int_rejects_values_outside_the_range_booleans_fractions_and_strings(value):
    """§1.3: 2^53, -2^53, a boolean, a fraction or a numeric string is not an Int."""
    assert jmapd.Int.accepts(value) is False


@pytest.mark.parametrize("value", [0, 1, 500, MAX])
def test_unsigned_int_accepts_zero_to_2_pow_53_minus_1(value):
    """§1.3: an UnsignedInt is an Int with 0 <= value <= 2^53-1."""
    assert jmapd.UnsignedInt.accepts(value) is True


@pytest.mark.parametrize("value", [-1, -MAX, 2**53, True, False, 0.5, "0", "1", None])
def test_unsigned_int_rejects_negatives_too_large_booleans_and_strings(value):
    """§1.3: a negative number, 2^53, a boolean or a string is not an UnsignedInt."""
    assert jmapd.UnsignedInt.accepts(value) is False


# --- §1.4 Date and UTCDate ----------------------------------------------------

@pytest.mark.parametrize("value", [
    "2014-10-30T06:12:00Z",
    "2014-10-30T06:12:00.123Z",
    "2014-10-30T06:12:00.5Z",
    "2000-02-29T00:00:00Z",
    "1999-12-31T23:59:59Z",
])
def test_utc_date_accepts_rfc3339_in_utc_with_optional_nonzero_fraction(value):
    """§1.4: a UTCDate is an RFC 3339 date-time whose time-offset is "Z"."""
    assert jmapd.UTCDate.accepts(value) is True


@pytest.mark.parametrize("value", [
    "2014-10-30T06:12:00.000Z",       # zero secfrac MUST be omitted
    "2014-10-30T06:12:00.0Z",
    "2014-10-30T06:12:00.Z",          # a "." without digits
    "2014-10-30t06:12:00Z",           # letters MUST be upper-case
    "2014-10-30T06:12:00z",
    "2014-10-30 06:12:00Z",           # the ABNF requires "T"; a space is only a note
    "2014-10-30T14:12:00+08:00",      # a Date, but not in UTC
    "2014-10-30T06:12:00+00:00",
    "2014-10-30T06:12:00",            # no offset at all
    "2014-10-30T06:12Z",              # no seconds
    "2014-10-30",
    "14-10-30T06:12:00Z",
    "2014-13-01T00:00:00Z",           # month 13
    "2014-10-32T00:00:00Z",           # day 32
    "2014-02-30T00:00:00Z",
    "2013-02-29T00:00:00Z",           # not a leap year
    "2014-10-30T24:00:00Z",
    "2014-10-30T06:60:00Z",
    " 2014-10-30T06:12:00Z",
    "2014-10-30T06:12:00Z\n",
    "",
    1414649520, None, True,
])
def test_utc_date_rejects_zero_fractions_lowercase_offsets_and_impossible_dates(value):
    """§1.4: zero time-secfrac, lower-case letters, a non-"Z" offset, a missing part or
    an impossible calendar date is not a UTCDate."""
    assert jmapd.UTCDate.accepts(value) is False


def test_utc_date_accepts_a_nonzero_fraction_with_a_trailing_zero():
    """§1.4: only a *zero* time-secfrac must be omitted; ".50" is a valid non-zero one."""
    assert jmapd.UTCDate.accepts("2014-10-30T06:12:00.50Z") is True
    assert jmapd.Date.accepts("2014-10-30T06:12:00.50+01:00") is True


def test_utc_date_accepts_a_leap_second():
    """§1.4: a Date is an RFC 3339 date-time, and RFC 3339 §5.8 lists
    "1990-12-31T23:59:60Z" as a valid one (a leap second)."""
    assert jmapd.UTCDate.accepts("1990-12-31T23:59:60Z") is True
    assert jmapd.Date.accepts("1990-12-31T15:59:60-08:00") is True


def test_dates_refuse_non_ascii_digits():
    """§1.4: RFC 3339 DIGIT is ASCII 0-9 only; Arabic-Indic digits are not a date-time."""
    assert jmapd.UTCDate.accepts("٢٠١٤-10-30T06:12:00Z") is False
    assert jmapd.Date.accepts("٢٠١٤-10-30T06:12:00Z") is False


@pytest.mark.parametrize("value", [
    "2014-10-30T14:12:00+08:00",
    "2014-10-30T06:12:00Z",
    "2014-10-30T01:12:00-05:00",
    "2014-10-30T11:42:00+05:30",
    "2014-10-30T06:12:00-00:00",
    "2014-10-30T06:12:00.25+08:00",
])
def test_date_accepts_rfc3339_with_z_or_a_numeric_offset(value):
    """§1.4: a Date is an RFC 3339 date-time with "Z" or a +hh:mm/-hh:mm offset."""
    assert jmapd.Date.accepts(value) is True


@pytest.mark.parametrize("value", [
    "2014-10-30T14:12:00+0800",
    "2014-10-30T14:12:00+08",
    "2014-10-30T14:12:00 +08:00",
    "2014-10-30T14:12:00.000+08:00",
    "2014-10-30t14:12:00+08:00",
    "2014-10-30T14:12:00",
    "2014-02-30T14:12:00+08:00",
    "2014-10-30T14:12:00z",
    None, 0,
])
def test_date_rejects_malformed_offsets_zero_fractions_and_lowercase(value):
    """§1.4: a short or colon-less offset, a zero fraction, lower-case letters, no offset
    or an impossible date is not a Date."""
    assert jmapd.Date.accepts(value) is False


@pytest.mark.parametrize("value", ["2014-10-30T14:12:00+24:00", "2014-10-30T14:12:00+08:60",
                                   "2014-10-30T14:12:00-99:99"])
def test_date_rejects_an_offset_hour_over_23_or_minute_over_59(value):
    """§1.4: RFC 3339 time-numoffset is time-hour (00-23) ":" time-minute (00-59)."""
    assert jmapd.Date.accepts(value) is False


# --- §3.7 / RFC 6901 JSON Pointer: split_pointer ----------------------------------

@pytest.mark.parametrize("pointer, tokens", [
    ("", []),
    ("/", [""]),
    ("//", ["", ""]),
    ("/ids", ["ids"]),
    ("/list/0/id", ["list", "0", "id"]),
    ("/list/*/id", ["list", "*", "id"]),
    ("/a~1b", ["a/b"]),
    ("/m~0n", ["m~n"]),
    ("/~01", ["~1"]),      # ~0 then 1: unescape ~1 first, then ~0 (RFC 6901 §4)
    ("/~10", ["/0"]),
    ("/~0~1/~1~0", ["~/", "/~"]),
])
def test_split_pointer_unescapes_tilde_one_before_tilde_zero(pointer, tokens):
    """§3.7 (RFC 6901 §3-4): "/"-separated tokens, "~1" -> "/" then "~0" -> "~"."""
    assert jmapd.split_pointer(pointer) == tokens


@pytest.mark.parametrize("pointer", ["ids", "list/0", "*", "~1"])
def test_split_pointer_refuses_a_non_empty_pointer_without_leading_slash(pointer):
    """§3.7 (RFC 6901 §3): a non-empty JSON Pointer starts with "/"."""
    with pytest.raises(ValueError):
        jmapd.split_pointer(pointer)


@pytest.mark.parametrize("pointer", ["/a~2", "/a~", "/~", "/x/~a"])
def test_split_pointer_refuses_a_tilde_not_followed_by_0_or_1(pointer):
    """§3.7 (RFC 6901 §3, §7): escaped = "~" ("0" / "1"); anything else is invalid
    pointer syntax, an error condition."""
    with pytest.raises(ValueError):
        jmapd.split_pointer(pointer)


# --- §3.7 / RFC 6901 JSON Pointer: evaluate_pointer --------------------------------

RFC6901_DOC = {"foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3, "g|h": 4,
               "i\\j": 5, "k\"l": 6, " ": 7, "m~n": 8}


@pytest.mark.parametrize("pointer, expected", [
    ("", RFC6901_DOC),
    ("/foo", ["bar", "baz"]),
    ("/foo/0", "bar"),
    ("/foo/1", "baz"),
    ("/", 0),
    ("/a~1b", 1),
    ("/c%d", 2),
    ("/e^f", 3),
    ("/g|h", 4),
    ("/i\\j", 5),
    ("/k\"l", 6),
    ("/ ", 7),
    ("/m~0n", 8),
])
def test_evaluate_pointer_gives_the_rfc6901_section5_results(pointer, expected):
    """§3.7 (RFC 6901 §5): every example pointer evaluates to the listed value."""
    assert jmapd.evaluate_pointer(RFC6901_DOC, jmapd.split_pointer(pointer)) == expected


@pytest.mark.parametrize("pointer", [
    "/foo/2",      # past the end
    "/foo/-",      # "-" names the element after the last: it never exists
    "/foo/01",     # leading zero
    "/foo/-1",
    "/foo/+1",
    "/foo/ 1",
    "/foo/1.0",
    "/foo/x",
    "/nope",
    "/foo/0/x",    # into a string
    "/a~1b/x",     # into a number
    "/a/b",        # "a/b" is one member, not a path
    "/foo/*/x",    # "*" maps, but the strings have no "x"
])
def test_evaluate_pointer_fails_on_missing_members_bad_indexes_and_scalars(pointer):
    """§3.7 (RFC 6901 §4, §7): a nonexistent value, a non-canonical array index or a
    step into a scalar is an error (KeyError)."""
    with pytest.raises(KeyError):
        jmapd.evaluate_pointer(RFC6901_DOC, jmapd.split_pointer(pointer))


def test_evaluate_pointer_reads_a_numeric_token_as_a_member_name_on_objects():
    """§3.7 (RFC 6901 §4): on an object a token is a member name, even "0"."""
    assert jmapd.evaluate_pointer({"0": "zero", "10": "ten"}, ["0"]) == "zero"
    assert jmapd.evaluate_pointer({"0": "zero", "10": "ten"}, ["10"]) == "ten"
    with pytest.raises(KeyError):
        jmapd.evaluate_pointer({"0": "zero"}, ["00"])


def test_evaluate_pointer_star_maps_the_rest_of_the_path_over_an_array():
    """§3.7: "*" on an array applies the remaining tokens to every item, in order."""
    doc = {"list": [{"id": "M3"}, {"id": "M1"}, {"id": "M2"}]}
    assert jmapd.evaluate_pointer(doc, ["list", "*", "id"]) == ["M3", "M1", "M2"]


def test_evaluate_pointer_star_flattens_array_results_into_one_array():
    """§3.7: if applying the rest to an item gives an array, its items are added to the
    output rather than the array itself."""
    doc = {"list": [{"x": [1, 2]}, {"x": [3]}, {"x": []}, {"x": [4]}]}
    assert jmapd.evaluate_pointer(doc, ["list", "*", "x"]) == [1, 2, 3, 4]


def test_evaluate_pointer_star_flattens_exactly_one_level():
    """§3.7: flattening turns an array of arrays into one array; deeper arrays stay."""
    doc = {"list": [{"x": [[1], [2, 3]]}, {"x": [[4]]}]}
    assert jmapd.evaluate_pointer(doc, ["list", "*", "x"]) == [[1], [2, 3], [4]]


def test_evaluate_pointer_star_as_last_token_flattens_item_arrays():
    """§3.7: "/list/*" over arrays of arrays yields their items; scalars are kept."""
    assert jmapd.evaluate_pointer({"list": [[1, 2], [3], 4]}, ["list", "*"]) == [1, 2, 3, 4]
    assert jmapd.evaluate_pointer({"ids": ["a", "b"]}, ["ids", "*"]) == ["a", "b"]


def test_evaluate_pointer_star_mixes_scalar_and_array_results():
    """§3.7: array results are spliced in and scalar results appended, order kept."""
    doc = {"list": [{"x": "a"}, {"x": ["b", "c"]}, {"x": None}]}
    assert jmapd.evaluate_pointer(doc, ["list", "*", "x"]) == ["a", "b", "c", None]


def test_evaluate_pointer_star_over_an_empty_array_is_an_empty_array():
    """§3.7: mapping over no items gives a new, empty array."""
    assert jmapd.evaluate_pointer({"list": []}, ["list", "*", "id"]) == []


def test_evaluate_pointer_nested_stars_map_and_flatten_at_each_level():
    """§3.7: two "*" tokens map twice; each level's array results are flattened."""
    doc = {"threads": [{"emails": [{"id": "e1"}, {"id": "e2"}]}, {"emails": [{"id": "e3"}]}]}
    assert jmapd.evaluate_pointer(doc, ["threads", "*", "emails", "*", "id"]) == ["e1", "e2", "e3"]


def test_evaluate_pointer_star_fails_if_any_item_lacks_the_rest_of_the_path():
    """§3.7 (RFC 6901 §7): one item without the member makes the whole evaluation fail."""
    with pytest.raises(KeyError):
        jmapd.evaluate_pointer({"list": [{"id": "a"}, {"name": "b"}]}, ["list", "*", "id"])


def test_evaluate_pointer_star_is_an_ordinary_member_name_on_objects():
    """§3.7: "*" is special only on arrays; on an object it names the member "*"."""
    assert jmapd.evaluate_pointer({"*": {"x": 1}}, ["*", "x"]) == 1
    with pytest.raises(KeyError):
        jmapd.evaluate_pointer({"a": 1}, ["*"])
    with pytest.raises(KeyError):
        jmapd.evaluate_pointer({"a": "text"}, ["a", "*"])


# --- §5.3 PatchObject: apply_patch -------------------------------------------------

def test_apply_patch_sets_nested_values_and_resets_top_level_nulls_to_defaults():
    """§5.3: a path's value is set; null at the top level resets to the default."""
    record = {"name": "Inbox", "sortOrder": 5, "role": "inbox", "k": {"a": True}}
    patched = jmapd.apply_patch(record, {"k/b": True, "sortOrder": None, "name": "Box"},
                                {"sortOrder": 0, "role": None})
    assert patched == {"name": "Box", "sortOrder": 0, "role": "inbox",
                       "k": {"a": True, "b": True}}


def test_apply_patch_null_without_a_default_removes_the_property():
    """§5.3: null resets a property; with no default declared the key is removed."""
    assert jmapd.apply_patch({"a": {"b": 1}, "c": 2}, {"a/b": 5, "c": None}, {}) == {"a": {"b": 5}}


def test_apply_patch_null_on_a_nested_path_removes_that_key():
    """§5.3: a null value on a deeper path removes the map entry (e.g. a keyword)."""
    record = {"keywords": {"$seen": True, "$flagged": True}}
    assert jmapd.apply_patch(record, {"keywords/$seen": None}, {}) == {
        "keywords": {"$flagged": True}}


def test_apply_patch_adds_a_missing_last_part_when_its_parent_exists():
    """§5.3: only the parts before the last must exist; the last may be new."""
    assert jmapd.apply_patch({"k": {}}, {"k/new": 1}, {}) == {"k": {"new": 1}}
    assert jmapd.apply_patch({}, {"top": [1, 2]}, {}) == {"top": [1, 2]}


def test_apply_patch_unescapes_tilde_sequences_in_paths():
    """§5.3: paths are JSON Pointers, so "~1" is "/" and "~0" is "~" inside a name."""
    record = {"k": {"a/b": 1, "m~n": 2, "x": 3}}
    patched = jmapd.apply_patch(record, {"k/a~1b": 10, "k/m~0n": None}, {})
    assert patched == {"k": {"a/b": 10, "x": 3}}


def test_apply_patch_replaces_an_array_in_its_entirety():
    """§5.3: an array is replaced whole by giving the array's own path."""
    assert jmapd.apply_patch({"list": [1, 2, 3]}, {"list": [9]}, {}) == {"list": [9]}


def test_apply_patch_treats_prefix_as_whole_tokens_not_characters():
    """§5.3: "k/a" and "k/ab" (or "a" and "a~1b") are not prefixes of each other."""
    record = {"k": {"a": 1, "ab": 2}, "a": {"b": 0}, "a/b": 0}
    patched = jmapd.apply_patch(record, {"k/a": 10, "k/ab": 20, "a": {"z": 1}, "a~1b": 5}, {})
    assert patched == {"k": {"a": 10, "ab": 20}, "a": {"z": 1}, "a/b": 5}


def test_apply_patch_leaves_the_record_and_the_defaults_untouched():
    """§5.3: patching yields a new record; neither input is changed or aliased."""
    record = {"k": {"a": 1}, "list": [1]}
    defaults = {"list": []}
    patched = jmapd.apply_patch(record, {"k/b": 2, "list": None}, defaults)
    patched["k"]["c"] = 3
    patched["list"].append("x")
    assert record == {"k": {"a": 1}, "list": [1]}
    assert defaults == {"list": []}


def test_apply_patch_with_an_empty_patch_returns_an_equal_copy():
    """§5.3: a PatchObject with no paths changes nothing."""
    record = {"name": "x", "k": {"a": [1]}}
    patched = jmapd.apply_patch(record, {}, {})
    assert patched == record
    assert patched is not record and patched["k"] is not record["k"]


@pytest.mark.parametrize("record, patch", [
    ({"list": [1, 2]}, {"list/0": 5}),                      # inside an array
    ({"list": [{"x": 1}]}, {"list/0/x": 2}),                # through an array
    ({"list": [1]}, {"list/-": 2}),                         # appending is inside too
    ({"k": {}}, {"missing/x": 1}),                          # parent missing
    ({"k": {}}, {"k/missing/x": 1}),                        # grandparent part missing
    ({"name": "Inbox"}, {"name/x": 1}),                     # parent is a string
    ({"n": 5}, {"n/x": 1}),                                 # parent is a number
    ({"k": None}, {"k/x": 1}),                              # parent is null
    ({"k": {"a": 1}}, {"k": {"a": 2}, "k/a": 3}),           # "k" prefixes "k/a"
    ({"k": {"a": {"b": 1}}}, {"k/a": {}, "k/a/b": 2}),      # "k/a" prefixes "k/a/b"
    ({"k": {"a": 1}}, {"/k": 1}),                           # MUST NOT start with "/"
    ({"k": {"a": 1}}, {"": 1}),                             # the empty path
])
def test_apply_patch_rejects_arrays_missing_parents_prefixes_and_slashes(record, patch):
    """§5.3: pointing inside an array, a missing parent, one path prefixing another or
    a leading "/" is an invalidPatch SetError."""
    with pytest.raises(jmapd.SetError) as caught:
        jmapd.apply_patch(record, patch, {})
    assert caught.value.type == "invalidPatch"
    assert caught.value.to_json()["type"] == "invalidPatch"


def test_apply_patch_rejects_prefix_paths_whatever_their_order():
    """§5.3: "alerts/1/offset" and "alerts" conflict however the patch lists them."""
    record = {"alerts": {"1": {"offset": 0}}}
    for patch in ({"alerts/1/offset": 5, "alerts": {}}, {"alerts": {}, "alerts/1/offset": 5}):
        with pytest.raises(jmapd.SetError) as caught:
            jmapd.apply_patch(record, patch, {})
        assert caught.value.type == "invalidPatch"
