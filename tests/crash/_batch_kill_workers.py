"""Victims for tests/crash/test_batch_kill.py: batch writers that are SIGKILLed.

A victim logs with one os.write per line to a file only it writes:
    R                  the store is open
    B group op tag     just before a batch (op "set" or "del") on a group of keys
    A                  just after that batch returned
"""
import os
import random

import mmkv

GROUPS = {
    "small": [b"s-%03d" % i for i in range(64)] + [b"s-round"],
    "big": [b"b-%02d" % i for i in range(24)],
}
VALUE_LEN = {"small": 64, "big": 16384}


def value(group, tag):
    return (tag * (VALUE_LEN[group] // len(tag) + 1))[:VALUE_LEN[group]]


def batch_victim(path, seed, log_path):
    rng = random.Random(seed)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with mmkv.open(path, "c") as d:
        os.write(fd, b"R\n")
        for i in range(1 << 30):
            group = rng.choice(sorted(GROUPS))
            op = "del" if rng.random() < 0.25 else "set"
            tag = b"%d.%d" % (seed, i)
            os.write(fd, b"B %s %s %s\n" % (group.encode(), op.encode(), tag))
            if op == "set":
                d.set_many([(k, value(group, tag)) for k in GROUPS[group]])
            else:
                d.delete_many(GROUPS[group])
            os.write(fd, b"A\n")
