"""Power loss: crash images built from page versions since the last sync (tools/crashsim.py).

API.md: "After an operating-system crash or power loss, every write made before the last
sync() returned is there, and no torn record is ever visible."
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import crashsim  # noqa: E402

pytestmark = pytest.mark.crash


def test_powerloss_2000_crash_images_recover_a_prefix_with_every_synced_write():
    """Every image recovers to a prefix of the history at least as long as the synced one."""
    checked, failures = crashsim.run(2000, seed=20261125)
    assert checked == 2000
    assert failures == []


def test_powerloss_negative_control_recovery_without_crc_is_caught(monkeypatch):
    """With the recovery scan's CRC check switched off, torn records get through, and the
    same checks report them: the test above would catch a broken recovery."""
    monkeypatch.setenv("MMKV_TEST_SCAN_NO_CRC", "1")
    checked, failures = crashsim.run(300, seed=7)
    assert checked == 300
    assert len(failures) > 10


def test_powerloss_reboot_with_clean_close_needs_no_scan_and_keeps_everything(tmp_path, monkeypatch):
    """A store closed cleanly is whole after a reboot, with nothing lost."""
    import mmkv
    path = tmp_path / "s.mmkv"
    with mmkv.open(path, "n") as d:
        for i in range(500):
            d[b"k%d" % i] = b"v%d" % i
    monkeypatch.setenv("MMKV_TEST_BOOT_ID", "00112233445566778899aabbccddeeff")
    with mmkv.open(path) as d:
        assert len(d) == 500
        assert d[b"k499"] == b"v499"
        assert d.stats()["epoch"] == 1      # no recovery scan ran
        d._check()


def test_powerloss_reboot_after_crash_scans_the_log_and_keeps_synced_writes(tmp_path, monkeypatch):
    """A store left dirty by a killed process is rescanned after a reboot (new epoch)."""
    import mmkv
    path = tmp_path / "s.mmkv"
    d = mmkv.open(path, "n")
    for i in range(300):
        d[b"k%d" % i] = b"v%d" % i
    d.sync()
    image = path.read_bytes()          # what a power loss right now could leave
    d.close()
    path.write_bytes(image)
    monkeypatch.setenv("MMKV_TEST_BOOT_ID", "ffeeddccbbaa99887766554433221100")
    with mmkv.open(path) as d:
        assert d.stats()["epoch"] == 2
        assert {k: d[k] for k in d} == {b"k%d" % i: b"v%d" % i for i in range(300)}
        d._check()


def test_powerloss_lost_synced_data_is_corrupt_error(tmp_path, monkeypatch):
    """A log shorter than what sync() promised is CorruptError, not silent loss."""
    import mmkv
    path = tmp_path / "s.mmkv"
    d = mmkv.open(path, "n")
    for i in range(300):
        d[b"k%d" % i] = b"x" * 100
    d.sync()
    tail = d.stats()["tail"]
    image = bytearray(path.read_bytes())
    d.close()
    image[tail - 1000:tail] = bytes(1000)     # synced records destroyed
    path.write_bytes(bytes(image))
    monkeypatch.setenv("MMKV_TEST_BOOT_ID", "0123456789abcdef0123456789abcdef")
    with pytest.raises(mmkv.CorruptError):
        mmkv.open(path)


def test_powerloss_durable_store_keeps_every_returned_write(tmp_path, monkeypatch):
    """durable=True: each write is on disk when it returns, so an image taken after any
    write recovers to exactly the writes made so far (the lagging synced_tail never makes
    recovery refuse it)."""
    import random

    import mmkv
    path = tmp_path / "s.mmkv"
    rng = random.Random(5)
    d = mmkv.open(path, "n", durable=True, initial_capacity=16)
    model = {}
    images = []
    for i in range(120):
        key = b"k%d" % rng.randrange(30)
        if key in model and rng.random() < 0.3:
            del d[key]
            del model[key]
        else:
            model[key] = bytes([i % 256]) * rng.randrange(0, 3000)
            d[key] = model[key]
        if i % 10 == 9:
            images.append((path.read_bytes(), dict(model)))
    d.close()
    for n, (image, expected) in enumerate(images):
        path.write_bytes(image)
        monkeypatch.setenv("MMKV_TEST_BOOT_ID", "%032x" % (n + 1))
        with mmkv.open(path) as r:
            assert {k: r[k] for k in r} == expected
            r._check()
