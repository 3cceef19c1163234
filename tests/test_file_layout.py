"""The single file keeps its own rules (STYLE §3.1-3.2, DEVELOPERS: stdlib only)."""

import ast
import pathlib
import re
import sys

import jmapd

SOURCE = pathlib.Path(jmapd.__file__).read_text(encoding="utf-8")
TESTS = pathlib.Path(__file__).parent


def test_table_of_contents_matches_the_banners():
    """The docstring's map lists exactly the numbered section banners, in order."""
    banners = re.findall(r"^# (\d+)\. (.+)$", SOURCE, re.M)
    doc_map = re.findall(r"^\s+(\d+)\. (.+)$", jmapd.__doc__.split("Map")[1].split("Rules")[0],
                         re.M)
    assert doc_map[0] == ("0", "Head")  # the head is this docstring: no banner
    assert [(n, t.strip()) for n, t in banners] == [(n, t.strip()) for n, t in doc_map[1:]]
    assert [int(n) for n, _ in banners] == sorted(int(n) for n, _ in banners)


def test_runtime_imports_are_standard_library_only():
    """jmapd.py imports nothing outside the standard library."""
    tree = ast.parse(SOURCE)
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    assert imported - set(sys.stdlib_module_names) - {"pytest"} == set()


def test_no_function_is_longer_than_sixty_lines():
    """STYLE §3.7: nothing over 60 lines."""
    tree = ast.parse(SOURCE)
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > 60]
    assert long == []


def test_every_public_name_has_a_docstring():
    """STYLE §3.6: anything in __all__ has a docstring."""
    assert [name for name in jmapd.__all__ if not getattr(jmapd, name).__doc__] == []


def test_every_method_and_error_type_is_mentioned_in_some_test():
    """Each registered method and each error type string appears in the test suite."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in TESTS.rglob("test_*.py")
                     if p.name != "test_file_layout.py")
    names = [*jmapd.METHODS, *jmapd.REQUEST_ERRORS, *jmapd.METHOD_ERRORS, *jmapd.SET_ERRORS]
    untested = [n for n in names if f'"{n}"' not in text and f"'{n}'" not in text]
    # RFC 8620 §3.6.2 errors jmapd never raises: the server is never unavailable or
    # partly failed, and no method is forbidden to an owner yet (sharing will).
    assert set(untested) <= {"serverUnavailable", "serverPartialFail", "overQuota",
                             "tooLarge", "rateLimit", "singleton", "alreadyExists",
                             "tooManyKeywords", "tooManyMailboxes"}  # jmapd sets no such limits


def test_error_tables_cite_their_rfc_section():
    """STYLE §3.5: each error type string names its source."""
    for table in (jmapd.REQUEST_ERRORS, jmapd.METHOD_ERRORS, jmapd.SET_ERRORS):
        assert all(re.match(r"RFC \d+ §", source) for source in table.values())
