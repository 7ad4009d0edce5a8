#!/usr/bin/env python3
"""Writes the seed corpora of the records, envelope, json and config fuzz targets
(Fuzz/corpus/<target>/); the wire target's seeds come from make_corpus.py.

Each seed follows its harness's input layout (see the comment at the top of each
Fuzz/*Fuzz.swift). Run from anywhere: python3 Fuzz/make_seeds.py
"""
import gzip
import hashlib
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))
from wire_craft import compress, record, records_of  # noqa: E402

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def write(target, data):
    out = os.path.join(ROOT, "Fuzz", "corpus", target)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def records_seeds():
    sets = [
        (1, records_of([b"hello"])),
        (3, records_of([b'{"department": "finance", "amount": 12}', b"", b"x" * 300])),
        (2, record(0, b"key", b"value", ((b"h", b"v"), (b"n", None))) + record(1, None, None)),
    ]
    for i, codec in enumerate(CODECS):
        for count, recs in sets:
            write("records", bytes([i, count]) + recs)  # mode 0: compressed by the harness
            if codec != "none":
                write("records", bytes([i | 8, count]) + compress(codec, recs))  # mode 1: as sent


def envelope_seeds():
    from enc_support import seal_envelope

    kek = bytes(range(32))
    for topic in (None, "orders"):
        for text in (b"", b"secret", b'{"card": "4111"}' * 4):
            write("envelope", b"\x00" + seal_envelope(kek, "fuzz", "k", topic, text))
    for mode in (1, 2):
        for flip in (0, 5, 40, 0xFFFF):
            write("envelope", bytes([mode]) + struct.pack(">HBB", flip, 3, 1) + b"plaintext value")


def json_seeds():
    token = "veil:1:" + "wVFTAQEEZnV6egABawABAQ" + "A" * 40
    docs = [
        '{"card": {"number": "%s", "holder": "A"}, "items": [{"sku": "%s"}, {"sku": 1}]}' % (token, token),
        '["%s", "%s", 3, null, true]' % (token, token),
        '{"a": {"b": {"c": "%s"}}, "tags": ["%s"], "n": -1.5e3}' % (token, token),
        '\ufeff {"x": "plain", "y": "veil:1:"}',
        '{"esc": "veil:1:\\u0041", "k\\"ey": "%s"}' % token,
    ]
    for d in docs:
        for mask in (0x00, 0x01, 0xFF, 0x5A):
            write("json", bytes([mask]) + d.encode())


def config_seeds():
    cdir = os.path.join(ROOT, "config")
    for name in sorted(os.listdir(cdir)):
        if name.endswith((".yaml", ".yml")):
            write("config", open(os.path.join(cdir, name), "rb").read())
    write("config", b"identity: x\nupstream: {bootstrap: [127.0.0.1:9092]}\nmax_frame_bytes: 4096\n")
    write("config", b"identity: x\nlisten: 127.0.0.1:1\nupstream: {bootstrap: ['[::1]:9092']}\n"
                    b"topics:\n  - match: {prefix: a-}\n    encrypt: {key_from: {fixed: k/k}, fields: [card.number, 'items[*].sku']}\n")


if __name__ == "__main__":
    records_seeds()
    envelope_seeds()
    json_seeds()
    config_seeds()
