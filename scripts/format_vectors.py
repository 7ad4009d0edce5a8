#!/usr/bin/env python3
"""Independent check of the docs/FORMAT.md test vectors.

Builds the keyring wrap and the envelopes from the inputs in FORMAT.md with
Python's `cryptography` AESGCM (not Veil's code) and compares them with the
hex written in docs/FORMAT.md. Exit status 0 means every vector matches.

    python3 scripts/format_vectors.py            # check
    python3 scripts/format_vectors.py --print    # print the vectors
"""
import re
import struct
import sys
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEK = bytes(range(0x00, 0x20))
DEK = bytes(range(0x20, 0x40))
KMS, KEY_ID = "local", "department-key"
WRAP_NONCE = bytes(range(0xA0, 0xAC))
NONCE_PREFIX = 0xC0FFEE00
# One DEK instance sealing two records: counters 42 and 43.
NONCE_COUNTER = 42
TOPIC = "department-events"
WHOLE_PLAINTEXT = b'{"department": "finance", "data": "q3 forecast"}'
FIELD_PLAINTEXT = b'"q3 forecast"'
FIELD_PATH = "data"

MAGIC = bytes([0xC1, 0x56, 0x45, 0x4C])


def u16(n):
    return struct.pack(">H", n)


def wrap():
    kms, key_id = KMS.encode(), KEY_ID.encode()
    aad = bytes([1, len(kms)]) + kms + u16(len(key_id)) + key_id
    return bytes([1]) + WRAP_NONCE + AESGCM(KEK).encrypt(WRAP_NONCE, DEK, aad)


def envelope(plaintext, field_path, topic, counter):
    kms, key_id, wrapped = KMS.encode(), KEY_ID.encode(), wrap()
    nonce = struct.pack(">IQ", NONCE_PREFIX, counter)
    flags = 1 if topic is not None else 0
    header = (MAGIC + bytes([1, flags, len(kms)]) + kms + u16(len(key_id)) + key_id
              + u16(len(wrapped)) + wrapped + nonce)
    aad = header + u16(len(field_path.encode())) + field_path.encode()
    if topic is not None:
        aad += u16(len(topic.encode())) + topic.encode()
    return header + AESGCM(DEK).encrypt(nonce, plaintext, aad)


def vectors():
    return {
        "wrapped-dek": wrap().hex(),
        "envelope-whole-value": envelope(WHOLE_PLAINTEXT, "", TOPIC, NONCE_COUNTER).hex(),
        "envelope-field-unbound": envelope(FIELD_PLAINTEXT, FIELD_PATH, None, NONCE_COUNTER + 1).hex(),
    }


def documented():
    text = (Path(__file__).resolve().parent.parent / "docs" / "FORMAT.md").read_text()
    found = {}
    for name in vectors():
        match = re.search(r"^" + re.escape(name) + r":\s*\n((?:[0-9a-f]+\n)+)", text, re.M)
        found[name] = "".join(match.group(1).split()) if match else None
    return found


if __name__ == "__main__":
    computed = vectors()
    if "--print" in sys.argv:
        for name, value in computed.items():
            print(f"{name}:")
            for i in range(0, len(value), 64):
                print(value[i:i + 64])
        sys.exit(0)
    ok = True
    for name, value in documented().items():
        match = value == computed[name]
        ok &= match
        print(f"{name}: {'matches' if match else 'MISMATCH'}")
    sys.exit(0 if ok else 1)
