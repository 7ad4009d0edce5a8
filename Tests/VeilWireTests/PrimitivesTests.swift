import NIOCore
import Testing
@testable import VeilWire
import VeilTestSupport

@Suite("Primitives: varints")
struct VarintTests {
    // Vectors from the protobuf encoding spec and Kafka's ByteUtilsTest.
    static let unsignedVectors: [(UInt32, String)] = [
        (0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"), (16383, "ff7f"), (16384, "808001"),
        (2_097_151, "ffff7f"), (2_097_152, "80808001"), (268_435_455, "ffffff7f"), (268_435_456, "8080808001"),
        (UInt32(Int32.max), "ffffffff07"), (UInt32.max, "ffffffff0f"),
    ]

    @Test func unsignedVarintVectors() throws {
        for (value, encoding) in Self.unsignedVectors {
            var b = ByteBuffer()
            let n = b.writeUnsignedVarint(UInt64(value))
            #expect(hex(b) == encoding, "encode \(value)")
            #expect(n == encoding.count / 2)
            #expect(unsignedVarintSize(UInt64(value)) == n)
            var r = reader(hexBuf(encoding), flexible: true)
            #expect(try r.unsignedVarint() == value, "decode \(encoding)")
            #expect(r.buffer.readableBytes == 0)
        }
    }

    static let zigzag32: [(Int32, String)] = [
        (0, "00"), (-1, "01"), (1, "02"), (-2, "03"), (2, "04"), (-64, "7f"), (64, "8001"),
        (Int32.max, "feffffff0f"), (Int32.min, "ffffffff0f"), (Int32.max - 1, "fcffffff0f"), (Int32.min + 1, "fdffffff0f"),
    ]

    @Test func zigzagVarintVectors() throws {
        for (value, encoding) in Self.zigzag32 {
            var b = ByteBuffer()
            b.writeVarint(Int64(value))
            #expect(hex(b) == encoding, "encode \(value)")
            #expect(varintSize(Int64(value)) == encoding.count / 2)
            var r = hexBuf(encoding)
            #expect(try r.readVarint32("v") == value, "decode \(encoding)")
            var rr = reader(hexBuf(encoding), flexible: false)
            #expect(try rr.varint() == value)
        }
    }

    static let zigzag64: [(Int64, String)] = [
        (0, "00"), (-1, "01"), (1, "02"), (Int64(Int32.max), "feffffff0f"), (Int64(Int32.min), "ffffffff0f"),
        (Int64(Int32.max) + 1, "8080808010"), (Int64(Int32.min) - 1, "8180808010"),
        (Int64.max, "feffffffffffffffff01"), (Int64.min, "ffffffffffffffffff01"),
        (Int64.max - 1, "fcffffffffffffffff01"), (Int64.min + 1, "fdffffffffffffffff01"),
    ]

    @Test func zigzagVarlongVectors() throws {
        for (value, encoding) in Self.zigzag64 {
            var b = ByteBuffer()
            b.writeVarint(value)
            #expect(hex(b) == encoding, "encode \(value)")
            #expect(varintSize(value) == encoding.count / 2)
            var r = hexBuf(encoding)
            #expect(try r.readVarint64("v") == value, "decode \(encoding)")
            var rr = reader(hexBuf(encoding), flexible: false)
            #expect(try rr.varlong() == value)
        }
    }

    @Test func varlongRoundTripsAcrossTheRange() throws {
        var rng = SplitMix64(seed: 1)
        var values: [Int64] = [0, 1, -1, .max, .min]
        for shift in 0..<64 {
            values.append(1 << shift)
            values.append(0 &- (1 << shift))
            values.append((1 << shift) &- 1)
        }
        for _ in 0..<2000 { values.append(Int64(bitPattern: rng.next()) >> Int64.random(in: 0...63, using: &rng)) }
        for v in values {
            var b = ByteBuffer()
            let n = b.writeVarint(v)
            #expect(n == varintSize(v))
            #expect(try b.readVarint64("v") == v)
            #expect(b.readableBytes == 0)
        }
    }

    @Test func varintRoundTripsAcrossTheRange() throws {
        var rng = SplitMix64(seed: 2)
        for _ in 0..<2000 {
            let v = Int32(truncatingIfNeeded: rng.next()) >> Int32.random(in: 0...31, using: &rng)
            var b = ByteBuffer()
            b.writeVarint(Int64(v))
            #expect(try b.readVarint32("v") == v)
            var u = ByteBuffer()
            u.writeUnsignedVarint(UInt64(UInt32(bitPattern: v)))
            var r = reader(u, flexible: true)
            #expect(try r.unsignedVarint() == UInt32(bitPattern: v))
        }
    }

    @Test(arguments: [
        "ffffffff10",  // fifth byte sets bit 32
        "ffffffff1f",
        "ffffffff8f01",  // continuation after the fifth byte
        "ffffffffffffffffff",  // nine continuation bytes
        "80808080808080808080808001",
    ])
    func overlong32BitVarintsAreRejected(_ encoding: String) {
        var b = hexBuf(encoding)
        #expect(wireError { try b.readVarint32("record length") } == .varintTooLong(what: "record length"))
        var r = reader(hexBuf(encoding), flexible: true)
        #expect(wireError { try r.unsignedVarint("n") }?.label == "varintTooLong")
    }

    @Test(arguments: [
        "ffffffffffffffffff02",  // tenth byte sets bit 64
        "ffffffffffffffffff7f",
        "ffffffffffffffffff8101",  // continuation after the tenth byte
        "8080808080808080808080808001",
    ])
    func overlong64BitVarintsAreRejected(_ encoding: String) {
        var b = hexBuf(encoding)
        #expect(wireError { try b.readVarint64("timestamp delta") } == .varintTooLong(what: "timestamp delta"))
    }

    @Test func truncatedVarintsAreTyped() {
        for encoding in ["", "80", "ffff", "ffffffff"] {
            var b = hexBuf(encoding)
            #expect(wireError { try b.readVarint32("x") }?.label == "truncated")
            var c = hexBuf(encoding)
            #expect(wireError { try c.readVarint64("x") }?.label == "truncated")
        }
    }

    @Test func nonMinimalButInRangeVarintsDecode() throws {
        // Kafka writers never produce these, but readers accept them (as Java's does).
        var b = hexBuf("8000")
        #expect(try b.readVarint32("x") == 0)
        var c = hexBuf("ffffffff0f")
        #expect(try c.readVarint32("x") == Int32.min)
    }
}

@Suite("Primitives: fixed-width, strings, bytes, arrays, UUID")
struct FieldTests {
    @Test func fixedWidthIntegersAreBigEndian() throws {
        let b = written(flexible: false) { w in
            w.int8(-2)
            w.int16(0x0102)
            w.int32(-2)
            w.int64(0x0102_0304_0506_0708)
            w.uint32(0xDEAD_BEEF)
            w.bool(true)
            w.bool(false)
        }
        #expect(hex(b) == "fe" + "0102" + "fffffffe" + "0102030405060708" + "deadbeef" + "01" + "00")
        var r = reader(b, flexible: false)
        #expect(try r.int8() == -2)
        #expect(try r.int16() == 0x0102)
        #expect(try r.int32() == -2)
        #expect(try r.int64() == 0x0102_0304_0506_0708)
        #expect(try r.uint32() == 0xDEAD_BEEF)
        #expect(try r.bool() == true)
        #expect(try r.bool() == false)
        #expect(wireError { try r.int8("trailing int8") } == .truncated(what: "trailing int8", needed: 1, available: 0))
    }

    @Test func truncatedFixedWidthReportsWhatIsMissing() {
        var r = reader(hexBuf("0001"), flexible: false)
        #expect(wireError { try r.int32("throttle time") } == .truncated(what: "throttle time", needed: 4, available: 2))
    }

    @Test func classicStrings() throws {
        let b = written(flexible: false) { w in
            w.string("abc")
            w.nullableString(nil)
            w.string("")
            w.string("é€")
        }
        #expect(hex(b) == "0003616263" + "ffff" + "0000" + "0005c3a9e282ac")
        var r = reader(b, flexible: false)
        #expect(try r.string() == "abc")
        #expect(try r.nullableString() == nil)
        #expect(try r.nullableString() == "")
        #expect(try r.string() == "é€")
        #expect(r.buffer.readableBytes == 0)
    }

    @Test func compactStrings() throws {
        let b = written(flexible: true) { w in
            w.string("abc")
            w.nullableString(nil)
            w.string("")
        }
        #expect(hex(b) == "04616263" + "00" + "01")
        var r = reader(b, flexible: true)
        #expect(try r.string() == "abc")
        #expect(try r.nullableString() == nil)
        #expect(try r.string() == "")
    }

    @Test func compactStringLongerThan127BytesUsesTwoByteLength() throws {
        let s = String(repeating: "x", count: 200)
        let b = written(flexible: true) { $0.string(s) }
        #expect(hex(b.getSlice(at: 0, length: 2)!) == "c901")
        var r = reader(b, flexible: true)
        #expect(try r.string() == s)
    }

    @Test func nullWhereNotNullableIsMalformed() {
        var classic = reader(hexBuf("ffff"), flexible: false)
        #expect(wireError { try classic.string("topic") }?.label == "malformed")
        var compact = reader(hexBuf("00"), flexible: true)
        #expect(wireError { try compact.string("topic") }?.label == "malformed")
        var bytes = reader(hexBuf("ffffffff"), flexible: false)
        #expect(wireError { try bytes.bytes("auth") }?.label == "malformed")
    }

    @Test func negativeClassicLengthsOtherThanNullAreInvalid() {
        var s = reader(hexBuf("fffe"), flexible: false)
        #expect(wireError { try s.nullableString("client id") } == .invalidLength(what: "client id", length: -2))
        var b = reader(hexBuf("80000000"), flexible: false)
        #expect(wireError { try b.nullableBytes("records") } == .invalidLength(what: "records", length: Int(Int32.min)))
    }

    @Test func stringLongerThanTheBufferIsTruncatedNotAllocated() {
        var classic = reader(hexBuf("7fff 6162"), flexible: false)
        #expect(wireError { try classic.string("s") } == .truncated(what: "s", needed: 32767, available: 2))
        // A compact length of 2^32-2 bytes.
        var compact = reader(hexBuf("ffffffff0f 61"), flexible: true)
        #expect(wireError { try compact.string("s") }?.label == "truncated")
        var bytes = reader(hexBuf("7fffffff 00"), flexible: false)
        #expect(wireError { try bytes.bytes("b") } == .truncated(what: "b", needed: Int(Int32.max), available: 1))
    }

    @Test func invalidUTF8IsRejectedNotRepaired() {
        // Repairing would change the bytes (and their length) on re-encoding.
        var classic = reader(hexBuf("0002 c328"), flexible: false)
        #expect(wireError { try classic.string("client id") }?.label == "malformed")
        var compact = reader(hexBuf("02 ff"), flexible: true)
        #expect(wireError { try compact.nullableString("host") }?.label == "malformed")
    }

    @Test func classicAndCompactBytes() throws {
        let payload = buf([0, 1, 2, 0xFF])
        let classic = written(flexible: false) { w in
            w.bytes(payload)
            w.nullableBytes(nil)
            w.bytes(ByteBuffer())
        }
        #expect(hex(classic) == "00000004000102ff" + "ffffffff" + "00000000")
        var r = reader(classic, flexible: false)
        #expect(try r.bytes() == payload)
        #expect(try r.nullableBytes() == nil)
        #expect(try r.nullableBytes() == ByteBuffer())

        let compact = written(flexible: true) { w in
            w.bytes(payload)
            w.nullableBytes(nil)
            w.bytes(ByteBuffer())
        }
        #expect(hex(compact) == "05000102ff" + "00" + "01")
        var c = reader(compact, flexible: true)
        #expect(try c.bytes() == payload)
        #expect(try c.nullableBytes() == nil)
        #expect(try c.bytes() == ByteBuffer())
    }

    @Test func classicArrays() throws {
        let b = written(flexible: false) { w in
            w.array([Int32(1), 2, 3]) { $0.int32($1) }
            w.nullableArray(nil as [Int32]?) { $0.int32($1) }
            w.array([String]()) { $0.string($1) }
        }
        #expect(hex(b) == "00000003 00000001 00000002 00000003 ffffffff 00000000".replacingOccurrences(of: " ", with: ""))
        var r = reader(b, flexible: false)
        #expect(try r.array { try $0.int32() } == [1, 2, 3])
        #expect(try r.nullableArray { try $0.int32() } == nil)
        #expect(try r.nullableArray { try $0.string() } == [])
    }

    @Test func compactArrays() throws {
        let b = written(flexible: true) { w in
            w.array(["a", "bc"]) { $0.string($1) }
            w.nullableArray(nil as [String]?) { $0.string($1) }
            w.array([Int32]()) { $0.int32($1) }
        }
        #expect(hex(b) == "03 0261 036263 00 01".replacingOccurrences(of: " ", with: ""))
        var r = reader(b, flexible: true)
        #expect(try r.array { try $0.string() } == ["a", "bc"])
        #expect(try r.nullableArray { try $0.string() } == nil)
        #expect(try r.array { try $0.int32() } == [])
    }

    @Test(arguments: [
        ("7fffffff 00000001", false),  // 2^31-1 elements announced, 4 bytes present
        ("00100000 00000001", false),
        ("ffffffff0f 01", true),  // compact: 2^32-2 elements
        ("8080808008 01", true),
    ])
    func absurdArrayLengthsThrowBeforeAllocating(_ encoding: String, _ flexible: Bool) {
        var r = reader(hexBuf(encoding), flexible: flexible)
        var calls = 0
        let kind = wireError {
            try r.array("topics") { r -> Int32 in
                calls += 1
                return try r.int32()
            }
        }
        #expect(kind?.label == "invalidLength")
        #expect(calls == 0)
    }

    @Test func negativeArrayLengthIsInvalid() {
        var r = reader(hexBuf("fffffffe"), flexible: false)
        #expect(wireError { try r.array("partitions") { try $0.int32() } } == .invalidLength(what: "partitions", length: -2))
    }

    @Test func arrayWhoseElementsRunOutIsTruncated() {
        // Three int32 elements announced, only five bytes present.
        var r = reader(hexBuf("00000003 00000001 00"), flexible: false)
        #expect(wireError { try r.array("replicas") { try $0.int32("replica") } }?.label == "truncated")
    }

    @Test func uuidRoundTripAndText() throws {
        let id = KafkaUUID(high: 0x01A2_2D6E_2E07_7A13, low: 0x806E_EDFF_1C9A_CE7D)
        let b = written(flexible: true) { $0.uuid(id) }
        #expect(hex(b) == "01a22d6e2e077a13806eedff1c9ace7d")
        var r = reader(b, flexible: true)
        #expect(try r.uuid() == id)
        #expect(id.description == "01a22d6e-2e07-7a13-806e-edff1c9ace7d")
        #expect(KafkaUUID.zero.description == "00000000-0000-0000-0000-000000000000")
        var short = reader(hexBuf("0102"), flexible: true)
        #expect(wireError { try short.uuid("topic id") }?.label == "truncated")
    }

    @Test func expectEndReportsTrailingBytes() {
        let r = reader(hexBuf("0000"), flexible: false)
        #expect(wireError { try r.expectEnd("body") } == .trailingBytes(what: "body", count: 2))
    }
}

@Suite("Primitives: tagged fields")
struct TaggedFieldTests {
    @Test func emptySectionIsOneZeroByte() throws {
        let b = written(flexible: true) { $0.taggedFields(TaggedFields()) }
        #expect(hex(b) == "00")
        var r = reader(b, flexible: true)
        #expect(try r.taggedFields().isEmpty)
    }

    @Test func nonFlexibleVersionsHaveNoSection() throws {
        let b = written(flexible: false) { $0.taggedFields(tags([(0, [1])])) }
        #expect(b.readableBytes == 0)
        var r = reader(hexBuf("05"), flexible: false)
        #expect(try r.taggedFields().isEmpty)
        #expect(r.buffer.readableBytes == 1)
    }

    @Test func unknownTagsRoundTripByteExact() throws {
        let long = [UInt8](repeating: 0xAB, count: 130)
        let encoding = "04" + "00" + "02cafe" + "05" + "00" + "7f" + "8201" + hex(long) + "ac02" + "01ff"
        var r = reader(hexBuf(encoding), flexible: true)
        let fields = try r.taggedFields()
        #expect(r.buffer.readableBytes == 0)
        #expect(fields.fields.map(\.tag) == [0, 5, 127, 300])
        #expect(fields[0] == buf([0xCA, 0xFE]))
        #expect(fields[5] == ByteBuffer())
        #expect(fields[127]?.readableBytes == 130)
        #expect(fields[300] == buf([0xFF]))
        #expect(fields[1] == nil)
        let again = written(flexible: true) { $0.taggedFields(fields) }
        #expect(hex(again) == encoding)
    }

    @Test(arguments: [
        "02 05 00 01 00",  // tag 5 then tag 1
        "02 01 00 01 00",  // tag 1 twice
        "03 00 00 02 00 01 00",
    ])
    func outOfOrderOrDuplicateTagsAreRejected(_ encoding: String) {
        var r = reader(hexBuf(encoding), flexible: true)
        #expect(wireError { try r.taggedFields() }?.label == "malformed")
    }

    @Test func absurdTagCountThrows() {
        var r = reader(hexBuf("ffffffff0f 00 00"), flexible: true)
        #expect(wireError { try r.taggedFields() } == .invalidLength(what: "tagged field count", length: Int(UInt32.max)))
    }

    @Test func tagPayloadBeyondTheBufferIsTruncated() {
        var r = reader(hexBuf("01 00 05 0102"), flexible: true)
        #expect(wireError { try r.taggedFields() } == .truncated(what: "tagged field 0", needed: 5, available: 2))
    }

    @Test func setKeepsAscendingOrderAndReplaces() {
        var t = tags([(1, [1]), (7, [7])])
        t.set(3, buf([3]))
        t.set(0, buf([0]))
        t.set(9, buf([9]))
        t.set(7, buf([0x77]))
        #expect(t.fields.map(\.tag) == [0, 1, 3, 7, 9])
        #expect(t[7] == buf([0x77]))
        #expect(t.take(3) == buf([3]))
        #expect(t.take(3) == nil)
        #expect(t.fields.map(\.tag) == [0, 1, 7, 9])
    }
}
