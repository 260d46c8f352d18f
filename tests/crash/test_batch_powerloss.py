"""Power loss during batches: a recovery scan keeps a batch whole or drops it whole.

API.md, "Batches": set_many and delete_many are each one write: "after any crash all of it
or none of it is there".  tools/crashsim.py runs batches as single operations, so a crash
image that recovered to part of a batch matches no prefix of the history and fails.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import crashsim  # noqa: E402

pytestmark = pytest.mark.crash


def test_powerloss_images_with_batches_recover_whole_batches_only():
    """Every crash image recovers to a prefix of whole operations, batches included."""
    checked, failures = crashsim.run(1000, seed=11)
    assert checked == 1000
    assert failures == []


def test_powerloss_negative_control_scan_without_batch_rule_is_caught(monkeypatch):
    """With the scan's whole-batch rule switched off, partial batches survive recovery and
    the same checks report them: the test above would catch a broken rule."""
    monkeypatch.setenv("MMKV_TEST_SCAN_NO_BATCH", "1")
    checked, failures = crashsim.run(1000, seed=11)
    assert checked == 1000
    assert len(failures) > 5
