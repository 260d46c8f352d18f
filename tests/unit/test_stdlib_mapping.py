"""The standard library's own mapping and dbm tests, run against mmkv through adapters.

API.md "The store is a mapping": "`Store` is a `collections.abc.MutableMapping` and behaves
like `dict`"; "Where this page is silent, behave as a Python user would expect from `dict`
and from the standard library's `dbm` modules"; "`shelve.Shelf(mmkv.open(path))` works as a
persistent dict of Python objects".

CPython's `test.mapping_tests.BasicTestMappingProtocol` (the protocol checks shared by dict
and UserDict), `test.test_dbm.AnyDBMTestCase` (what every dbm module passes) and
`test.test_shelve`'s shelf-over-a-mapping checks are imported from the interpreter's `test`
package and run unchanged, with keys and values as bytes (values must be bytes: API.md).
One adaptation, a documented difference: `dbm.open`'s default flag is "r", `mmkv.open`'s is
"c" (API.md "Opening"), so the missing-file check names "r".  `TestMappingProtocol` is not
run: it builds the mapping from a dict (`type2test({...})`), tests `fromkeys` and `copy`, and
subclasses the type; a store is opened on a path, not constructed.
"""
import os
import pickle
import tempfile
import types
import unittest

import mmkv
from test import mapping_tests, test_dbm, test_shelve


class _Stores:
    """Fresh stores in a directory of the test's own, closed and removed after the test."""

    def _store_dir(self):
        if not hasattr(self, "_dir"):
            tmp = tempfile.TemporaryDirectory()
            self.addCleanup(tmp.cleanup)
            self._dir, self._n = tmp.name, 0
        self._n += 1
        return os.path.join(self._dir, f"s{self._n}.mmkv")


class StoreBasicMappingProtocol(_Stores, mapping_tests.BasicTestMappingProtocol):
    """A new store passes the mapping protocol checks of dict and UserDict."""

    def _reference(self):
        return {b"1": b"2", b"key1": b"value1", b"key2": b"(1, 2, 3)", b"": b""}

    def _empty_mapping(self):
        d = mmkv.open(self._store_dir(), "n")
        self.addCleanup(d.close)
        return d


# test_dbm calls dbm.open and dbm.error: here they are mmkv's
_dbm = types.ModuleType("dbm")
_dbm.open = mmkv.open
_dbm.error = (mmkv.error, OSError)
_dbm._defaultmod = mmkv
test_dbm.dbm = _dbm


class StoreAnyDBM(test_dbm.AnyDBMTestCase, unittest.TestCase):
    """A store passes what every dbm module passes (flags, keys(), get, setdefault, the empty
    value, bytes and os.PathLike paths, `with`)."""

    module = mmkv

    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(tmp.name)              # test_dbm's file names are relative
        super().setUp()

    def test_anydbm_not_existing(self):
        """API.md: "A missing store with "r" or "w": an exception that is an instance of both
        mmkv.error and FileNotFoundError" (mmkv.open's default flag is "c", not "r")."""
        for flag in ("r", "w"):
            with self.assertRaises(mmkv.error) as caught:
                mmkv.open(test_dbm._fname, flag)
            self.assertIsInstance(caught.exception, FileNotFoundError)


class _ShelfOverStore(_Stores, test_shelve.TestShelveBase):
    def _empty_mapping(self):
        shelf = mmkv.open_shelf(self._store_dir(), "n", **self._args)
        self.addCleanup(shelf.close)
        return shelf


# A shelf over a store passes the shelve tests' mapping checks, at every pickle protocol,
# with and without writeback.
for _protocol in range(pickle.HIGHEST_PROTOCOL + 1):
    for _writeback in (False, True):
        _name = f"StoreShelfProtocol{_protocol}{'Writeback' if _writeback else ''}"
        globals()[_name] = type(_name, (_ShelfOverStore, mapping_tests.BasicTestMappingProtocol),
                                {"_args": {"protocol": _protocol, "writeback": _writeback}})
