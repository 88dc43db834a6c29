#!/usr/bin/python3
"""paramd/errors.py against include/paramd/paramd.h: the Python client's
table of error codes must be PARAMD_ERROR_MAP exactly (code, name and
default message), so the two cannot drift apart again; and the codes with
an exception class of their own raise it."""

import os
import re
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
from paramd import errors  # noqa: E402
import paramd  # noqa: E402

HEADER = os.path.join(ROOT, "include", "paramd", "paramd.h")
_STRING = r'"((?:[^"\\]|\\.)*)"'
_ENTRY = re.compile(r"XX\(\s*(\w+)\s*,\s*(-?\d+)\s*,\s*" + _STRING + r"\s*,\s*" + _STRING + r"\s*\)")


def header_error_map():
    """{code: (name, message)} of PARAMD_ERROR_MAP, and how many XX( entries
    the macro has (to catch an entry the pattern failed to read)."""
    with open(HEADER, encoding="utf-8") as handle:
        text = handle.read()
    start = text.index("#define PARAMD_ERROR_MAP")
    # The macro ends at the first line that does not continue with a backslash.
    end = start
    while True:
        newline = text.index("\n", end)
        if text[newline - 1] != "\\":
            break
        end = newline + 1
    macro = text[start:newline]
    entries = {}
    for match in _ENTRY.finditer(macro):
        code = int(match.group(2))
        if code in entries:
            raise AssertionError("code %d twice in PARAMD_ERROR_MAP" % code)
        unescape = lambda s: s.replace('\\"', '"').replace("\\\\", "\\")  # noqa: E731
        entries[code] = (unescape(match.group(3)), unescape(match.group(4)))
    return entries, macro.count("XX(")


class ErrorTableTests(unittest.TestCase):

    def test_mirrors_the_header(self):
        entries, count = header_error_map()
        self.assertEqual(len(entries), count, "an XX( entry of PARAMD_ERROR_MAP was not parsed")
        self.assertGreaterEqual(count, 31)
        self.assertEqual({code: e for code, e in entries.items() if code != 0},
                         {code: e for code, e in errors.ERRORS.items() if code != 0})
        for code, (name, _) in entries.items():
            if code != 0:
                self.assertEqual(errors.error_name(code), name)
                self.assertEqual(errors.CODES[name], code)

    def test_exception_classes(self):
        expected = {"unauthorized": paramd.Unauthorized, "forbidden": paramd.Forbidden,
                    "overloaded": paramd.Overloaded, "model_not_found": paramd.ModelNotFound,
                    "model_exists": paramd.ModelExists, "timeout": paramd.Timeout,
                    "connect_failed": paramd.ConnectFailed,
                    "connection_error": paramd.ConnectionFailed}
        for name, cls in expected.items():
            failure = errors.make_error(errors.CODES[name], "a message")
            self.assertIs(type(failure), cls, name)
            self.assertIsInstance(failure, paramd.ParamdError)
            self.assertEqual((failure.name, failure.message), (name, "a message"))
        self.assertIs(type(errors.make_error(errors.CODES["bad_json"], "m")), paramd.ParamdError)


if __name__ == "__main__":
    unittest.main()
