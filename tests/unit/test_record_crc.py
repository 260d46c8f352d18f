"""Record checksums are CRC32C (Castagnoli) of the record after its CRC field, whatever
path computes them: small values with one crc32 chain, values of 12 KiB and more with three
interleaved lanes combined (native/format.c).  Each record written by the store is checked
here against an independent, bytewise CRC32C, at lengths around the three-lane threshold
and the lane boundaries; a checksum from a wrong combination would differ."""
import random
import struct

import pytest

import mmkv

RECORD_HEADER = 40          # struct fmt_record; the CRC is its first 4 bytes
LANE = 4096


def _table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)
    return table


TABLE = _table()


def crc32c(data):
    c = 0xFFFFFFFF
    for byte in data:
        c = (c >> 8) ^ TABLE[(c ^ byte) & 0xFF]
    return c ^ 0xFFFFFFFF


@pytest.mark.parametrize("vlen", [0, 100, 3 * LANE - 48, 3 * LANE - 47, 3 * LANE, 3 * LANE + 9,
                                  6 * LANE - 47, 6 * LANE + 1000, 100_003])
def test_record_crc_is_crc32c_of_the_record_at_every_length(store_path, vlen):
    """The stored checksum equals CRC32C of bytes [4, end) of the record, and the value
    reads back (the read path verifies the same checksum)."""
    value = random.Random(vlen).randbytes(vlen)
    key = b"crc-key-%d" % vlen
    with mmkv.open(store_path, "n") as d:
        d[key] = value
    data = store_path.read_bytes()
    at = data.index(key + value) if vlen else data.rindex(key)
    start = at - RECORD_HEADER
    (stored,) = struct.unpack_from("<I", data, start)
    assert stored == crc32c(data[start + 4:at + len(key) + vlen])
    with mmkv.open(store_path, "r") as d:
        assert d[key] == value
