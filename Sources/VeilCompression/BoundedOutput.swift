import NIOCore

/// The destination of a decompression: a `ByteBuffer` that never grows past the caller's limit.
///
/// Codecs write straight into the buffer's spare capacity. Capacity grows geometrically from an
/// estimate, so a size field in a hostile header can at most influence the first reservation, and
/// that estimate is capped by both the limit and a multiple of the input size.
struct BoundedOutput {
    private(set) var buffer: ByteBuffer
    let limit: Int
    let codec: CompressionCodec

    /// - Parameters:
    ///   - inputBytes: the compressed size, used to guess the first reservation.
    ///   - sizeHint: a decompressed size announced by the input itself; trusted only as a guess.
    init(codec: CompressionCodec, limit: Int, inputBytes: Int, sizeHint: Int? = nil, allocator: ByteBufferAllocator) {
        self.codec = codec
        self.limit = max(0, limit)
        // Kafka batches typically shrink 2-10x; a hint lets well-formed frames allocate once, but a
        // hint beyond 32x the input is more likely a lie than a real ratio, so it is clipped there.
        let plausible = inputBytes.multipliedReportingOverflow(by: 32).partialValue &+ 64 * 1024
        let guess = min(sizeHint ?? inputBytes &* 4, plausible)
        self.buffer = allocator.buffer(capacity: min(self.limit, max(guess, 4096)))
    }

    var written: Int { self.buffer.readableBytes }
    var remaining: Int { self.limit - self.written }

    var limitExceeded: CompressionError {
        CompressionError(codec: self.codec, kind: .outputLimitExceeded(limit: self.limit))
    }

    /// Offers `body` a non-empty region to decompress into; `body` returns how many bytes it wrote.
    ///
    /// Once the limit is reached, `body` gets a one-byte scratch region instead: a streaming
    /// decoder may still need a call to consume a trailer, but if it produces even one more byte the
    /// output is over the limit. This finds bombs without ever allocating past the limit.
    mutating func step(_ body: (UnsafeMutableRawBufferPointer) throws -> Int) throws {
        let remaining = self.remaining
        guard remaining > 0 else {
            var scratch: UInt8 = 0
            let produced = try withUnsafeMutableBytes(of: &scratch) { try body($0) }
            if produced > 0 { throw self.limitExceeded }
            return
        }
        // Doubling keeps the total copying linear however far the first guess was off.
        let growth = self.buffer.writableBytes > 0 ? 0 : min(remaining, max(self.written, 4096))
        try self.buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: growth) { region in
            try body(UnsafeMutableRawBufferPointer(rebasing: region.prefix(remaining)))
        }
    }

    /// Reserves exactly `count` more bytes for a decoder that knows its output size up front.
    ///
    /// The caller has already checked `count <= remaining`.
    mutating func write(count: Int, _ body: (UnsafeMutableRawBufferPointer) throws -> Int) throws {
        precondition(count <= self.remaining, "caller must check the output budget")
        guard count > 0 else { return }
        try self.buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { region in
            try body(UnsafeMutableRawBufferPointer(rebasing: region.prefix(count)))
        }
    }

    /// Ensures room for `count` more bytes in one allocation, when the total is known in advance.
    mutating func reserve(_ count: Int) {
        self.buffer.reserveCapacity(minimumWritableBytes: min(count, self.remaining))
    }
}
