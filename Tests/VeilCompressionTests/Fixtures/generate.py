#!/usr/bin/env python3
"""Regenerates the compression interop vectors with the codecs real Kafka clients use.

Run from this directory: python3 generate.py
Needs: pip install python-snappy lz4 zstandard kafka-python
The payload is deterministic, so rerunning only changes files if a library changes its output;
the Swift tests check decompression against payload.txt, not byte-exact compressed output.
"""
import gzip

import kafka.codec
import lz4.frame
import snappy
import zstandard


def payload() -> bytes:
    # JSON lines like the department scenario, with LCG noise so the codecs have real work;
    # about 90 KB, which spans several xerial chunks (32 KiB) and LZ4 blocks (64 KiB).
    state = 12345
    lines = []
    for i in range(1400):
        state = (state * 1103515245 + 12345) % 2**31
        department = ("finance", "sales", "ops")[i % 3]
        lines.append('{"department": "%s", "seq": %d, "data": "%08x-%s"}\n'
                     % (department, i, state, "x" * (i % 17)))
    return "".join(lines).encode()


def main() -> None:
    data = payload()
    half = len(data) // 2
    cctx = zstandard.ZstdCompressor(level=3)
    stream = cctx.compressobj()  # streaming: no content size in the frame header, like zstd-jni
    vectors = {
        "payload.txt": data,
        "payload.gz": gzip.compress(data, mtime=0),
        "payload.multi.gz": gzip.compress(data[:half], mtime=0) + gzip.compress(data[half:], mtime=0),
        "payload.xerial.snappy": kafka.codec.snappy_encode(data, xerial_compatible=True),
        "payload.raw.snappy": snappy.compress(data),
        "payload.kafka.lz4": kafka.codec.lz4_encode(data),
        "payload.linked-checksums.lz4": lz4.frame.compress(
            data, block_linked=True, content_checksum=True, block_checksum=True, store_size=True),
        "payload.zst": cctx.compress(data),
        "payload.stream.zst": stream.compress(data) + stream.flush(),
        "payload.multi.zst": cctx.compress(data[:half]) + cctx.compress(data[half:]),
    }
    assert zstandard.get_frame_parameters(vectors["payload.stream.zst"]).content_size == zstandard.CONTENTSIZE_UNKNOWN
    for name, blob in vectors.items():
        with open(name, "wb") as f:
            f.write(blob)
        print(f"{name}: {len(blob)} bytes")


if __name__ == "__main__":
    main()
