import CSnappy
import NIOCore

/// Snappy as Kafka clients write it: xerial framing (Java) or a single raw block (librdkafka).
///
/// Xerial framing is `\x82SNAPPY\x00`, a big-endian int32 version, an int32 compatible version,
/// then repeated `[int32 big-endian length][raw snappy block]`. Neither form has a checksum.
enum SnappyCodec {
    static let xerialMagic: [UInt8] = [0x82, 0x53, 0x4E, 0x41, 0x50, 0x50, 0x59, 0x00]
    static let xerialHeaderSize = 16
    /// The block size Java's `SnappyOutputStream` uses, so our framing looks like what Kafka's
    /// own producers emit.
    static let xerialBlockSize = 32 * 1024

    /// The most a raw block can expand: a 3-byte copy yields at most 64 bytes (21.3x). Declared
    /// lengths beyond this cannot be honest, so they are rejected before anything is allocated.
    private static let maximumExpansion = 32

    // MARK: compression

    static func compress(_ input: UnsafeRawBufferPointer, into output: inout ByteBuffer) throws {
        let blockCount = (input.count + xerialBlockSize - 1) / xerialBlockSize
        var bound = xerialHeaderSize + blockCount * 4
        if blockCount > 0 {
            let lastBlock = input.count - (blockCount - 1) * xerialBlockSize
            bound += (blockCount - 1) * snappy_max_compressed_length(xerialBlockSize)
            bound += snappy_max_compressed_length(lastBlock)
        }
        try output.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { region in
            let out = region.baseAddress!
            var written = 0
            for byte in xerialMagic {
                out.storeBytes(of: byte, toByteOffset: written, as: UInt8.self)
                written += 1
            }
            storeBigEndian(1, at: out + written)  // version
            storeBigEndian(1, at: out + written + 4)  // compatible version
            written += 8
            var offset = 0
            while offset < input.count {
                let length = min(xerialBlockSize, input.count - offset)
                var compressedLength = region.count - written - 4
                let status = snappy_compress(
                    (input.baseAddress! + offset).assumingMemoryBound(to: CChar.self), length,
                    (out + written + 4).assumingMemoryBound(to: CChar.self), &compressedLength)
                guard status == SNAPPY_OK else {
                    throw CompressionError.library(.snappy, "snappy_compress failed (\(status.rawValue))")
                }
                storeBigEndian(UInt32(compressedLength), at: out + written)
                written += 4 + compressedLength
                offset += length
            }
            return written
        }
    }

    // MARK: decompression

    static func decompress(_ input: UnsafeRawBufferPointer, into output: inout BoundedOutput) throws {
        if self.hasXerialMagic(input) {
            try self.decompressXerial(input, into: &output)
        } else {
            let length = try self.declaredLength(of: input, output: output)
            output.reserve(length)
            try self.decompressBlock(input, declaredLength: length, into: &output)
        }
    }

    static func hasXerialMagic(_ input: UnsafeRawBufferPointer) -> Bool {
        input.count >= xerialMagic.count && input.prefix(xerialMagic.count).elementsEqual(xerialMagic)
    }

    private static func decompressXerial(_ input: UnsafeRawBufferPointer, into output: inout BoundedOutput) throws {
        guard input.count >= xerialHeaderSize else {
            throw CompressionError.corrupt(
                .snappy, "truncated xerial header: \(input.count) bytes, need \(xerialHeaderSize)")
        }
        // First pass: validate the chunk structure and sum the declared sizes, so the output is
        // allocated once and a bomb is refused before any block is decoded.
        var total = 0
        try self.forEachXerialBlock(input) { block in
            total += try self.declaredLength(of: block, output: output)
            if total > output.remaining { throw output.limitExceeded }
        }
        output.reserve(total)
        try self.forEachXerialBlock(input) { block in
            let length = try self.declaredLength(of: block, output: output)
            try self.decompressBlock(block, declaredLength: length, into: &output)
        }
    }

    private static func forEachXerialBlock(
        _ input: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        var offset = xerialHeaderSize
        while offset < input.count {
            guard input.count - offset >= 4 else {
                throw CompressionError.corrupt(.snappy, "truncated xerial chunk length at offset \(offset)")
            }
            let length = Int(Int32(bitPattern: loadBigEndian(input.baseAddress! + offset)))
            offset += 4
            guard length >= 0 else {
                throw CompressionError.corrupt(.snappy, "negative xerial chunk length \(length) at offset \(offset - 4)")
            }
            guard length <= input.count - offset else {
                throw CompressionError.corrupt(
                    .snappy,
                    "truncated xerial chunk: declares \(length) bytes, \(input.count - offset) remain")
            }
            // An empty chunk carries no block; skipping it matches how it was (not) produced.
            if length > 0 {
                try body(UnsafeRawBufferPointer(rebasing: input[offset..<offset + length]))
            }
            offset += length
        }
    }

    /// Reads a raw block's uncompressed length, refusing lengths the block cannot honestly encode
    /// and lengths over the output budget.
    private static func declaredLength(of block: UnsafeRawBufferPointer, output: BoundedOutput) throws -> Int {
        guard let base = block.baseAddress, block.count > 0 else {
            throw CompressionError.corrupt(.snappy, "empty input (a raw snappy block is at least 1 byte)")
        }
        var length = 0
        guard snappy_uncompressed_length(base.assumingMemoryBound(to: CChar.self), block.count, &length) == SNAPPY_OK
        else {
            throw CompressionError.corrupt(.snappy, "invalid block header (uncompressed length varint)")
        }
        guard length / maximumExpansion <= block.count else {
            throw CompressionError.corrupt(
                .snappy, "block of \(block.count) bytes declares \(length) uncompressed bytes, more than snappy can encode")
        }
        guard length <= output.remaining else { throw output.limitExceeded }
        return length
    }

    private static func decompressBlock(
        _ block: UnsafeRawBufferPointer, declaredLength: Int, into output: inout BoundedOutput
    ) throws {
        try output.write(count: declaredLength) { region in
            var length = region.count
            let status = snappy_uncompress(
                block.baseAddress!.assumingMemoryBound(to: CChar.self), block.count,
                region.baseAddress!.assumingMemoryBound(to: CChar.self), &length)
            guard status == SNAPPY_OK, length == declaredLength else {
                throw CompressionError.corrupt(.snappy, "invalid raw snappy block (\(block.count) bytes)")
            }
            return length
        }
        if declaredLength == 0 {
            // write(count:) skips empty blocks, but the block must still be well formed.
            guard snappy_validate_compressed_buffer(block.baseAddress!.assumingMemoryBound(to: CChar.self), block.count)
                == SNAPPY_OK
            else {
                throw CompressionError.corrupt(.snappy, "invalid raw snappy block (\(block.count) bytes)")
            }
        }
    }
}

@inline(__always)
func storeBigEndian(_ value: UInt32, at pointer: UnsafeMutableRawPointer) {
    pointer.storeBytes(of: value.bigEndian, as: UInt32.self)
}

@inline(__always)
func loadBigEndian(_ pointer: UnsafeRawPointer) -> UInt32 {
    UInt32(bigEndian: pointer.loadUnaligned(as: UInt32.self))
}
