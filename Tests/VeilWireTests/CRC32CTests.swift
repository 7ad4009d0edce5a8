import CVeilCRC32C
import NIOCore
import Testing
@testable import VeilWire
import VeilTestSupport

/// Bit-at-a-time CRC-32C (reflected polynomial 0x82F63B78): slow, obviously right, and
/// independent of the C implementations under test.
func referenceCRC32C(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
    }
    return ~crc
}

@Suite("CRC-32C")
struct CRC32CTests {
    /// RFC 3720 (iSCSI) appendix B.4 gives these CRCs as wire bytes, least significant
    /// first (e.g. "aa 36 91 8a" for 32 zeros); the values below are those bytes reversed.
    static let iscsiReadPDU: [UInt8] = hexBytes("""
        01 c0 00 00 00 00 00 00 00 00 00 00 00 00 00 00
        14 00 00 00 00 00 04 00 00 00 00 14 00 00 00 18
        28 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00
        """)

    static let vectors: [(String, [UInt8], UInt32)] = [
        ("empty", [], 0x0000_0000),
        ("a", Array("a".utf8), 0xC1D0_4330),
        ("123456789", Array("123456789".utf8), 0xE306_9283),
        ("32 zeros (RFC 3720)", [UInt8](repeating: 0, count: 32), 0x8A91_36AA),
        ("32 x 0xff (RFC 3720)", [UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
        ("0x00...0x1f (RFC 3720)", (0..<32).map { UInt8($0) }, 0x46DD_794E),
        ("0x1f...0x00 (RFC 3720)", (0..<32).reversed().map { UInt8($0) }, 0x113F_DB5C),
        ("iSCSI read PDU (RFC 3720)", iscsiReadPDU, 0xD996_3A56),
    ]

    @Test func knownVectorsOnEveryPath() {
        for (name, bytes, expected) in Self.vectors {
            #expect(referenceCRC32C(bytes) == expected, "reference: \(name)")
            bytes.withUnsafeBytes { raw in
                #expect(CRC32C.checksum(raw) == expected, "dispatch: \(name)")
                #expect(CRC32C.portableChecksum(raw) == expected, "portable: \(name)")
                #expect(CRC32C.hardwareChecksum(raw) == expected, "hardware: \(name)")
            }
            #expect(CRC32C.checksum(buf(bytes).readableBytesView) == expected, "ByteBufferView: \(name)")
        }
    }

    @Test func hardwareIsUsedOnThisMachine() {
        // The machine this was written on is an AMD EPYC with SSE4.2; on a CPU without it
        // the dispatch falls back to the portable path, which the other tests cover.
        #if arch(x86_64)
        #expect(CRC32C.usesHardware)
        #endif
    }

    @Test func hardwareAndPortableAgreeOnRandomDataOfEveryLengthAndAlignment() {
        var rng = SplitMix64(seed: 0xC4C3_2C)
        let pool = randomBytes(70_000, using: &rng)
        var lengths = Array(0...300)
        lengths += [511, 512, 513, 1023, 1024, 1025, 4095, 4096, 4097, 65535, 65536, 65537]
        // Around the hardware path's interleaved stretches of 3 × 4096 bytes.
        lengths += [12287, 12288, 12289, 12296, 24575, 24576, 24577, 36864 + 7]
        pool.withUnsafeBytes { all in
            for length in lengths {
                for offset in 0..<16 where offset + length <= all.count {
                    let slice = UnsafeRawBufferPointer(rebasing: all[offset..<(offset + length)])
                    let portable = CRC32C.portableChecksum(slice)
                    #expect(CRC32C.hardwareChecksum(slice) == portable, "length \(length) offset \(offset)")
                    #expect(CRC32C.checksum(slice) == portable)
                    if length <= 1025 && offset < 2 {
                        #expect(referenceCRC32C(Array(slice)) == portable, "reference, length \(length)")
                    }
                }
            }
        }
    }

    @Test func checksumsChainAcrossCalls() {
        // The C entry points take a running CRC, so a batch can be checksummed in pieces.
        var rng = SplitMix64(seed: 9)
        let bytes = randomBytes(1000, using: &rng)
        let whole = referenceCRC32C(bytes)
        bytes.withUnsafeBytes { raw in
            for split in [0, 1, 7, 8, 9, 500, 999, 1000] {
                let a = UnsafeRawBufferPointer(rebasing: raw[0..<split])
                let b = UnsafeRawBufferPointer(rebasing: raw[split...])
                let p = veil_crc32c_portable(veil_crc32c_portable(0, a.baseAddress, a.count), b.baseAddress, b.count)
                let d = veil_crc32c(veil_crc32c(0, a.baseAddress, a.count), b.baseAddress, b.count)
                #expect(p == whole, "portable split \(split)")
                #expect(d == whole, "dispatch split \(split)")
            }
        }
    }

    @Test func byteBufferViewOfASliceUsesOnlyItsBytes() {
        var b = ByteBuffer(bytes: [0xFF, 0xFF] + Array("123456789".utf8) + [0xFF])
        b.moveReaderIndex(forwardBy: 2)
        let slice = b.getSlice(at: 2, length: 9)!
        #expect(CRC32C.checksum(slice.readableBytesView) == 0xE306_9283)
    }
}
