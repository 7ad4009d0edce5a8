import NIOCore
import Testing
@testable import VeilWire

@Suite("Frames")
struct FrameTests {
    @Test func defaultLimitIs100MiB() {
        #expect(FrameParser.defaultMaxFrameBytes == 100 * 1024 * 1024)
        #expect(FrameParser().maxFrameBytes == 100 * 1024 * 1024)
    }

    @Test func exactFrameIsReturnedAndConsumed() throws {
        var b = hexBuf("00000003 616263")
        let frame = try FrameParser().next(from: &b)
        #expect(frame == str("abc"))
        #expect(b.readableBytes == 0)
        #expect(try FrameParser().next(from: &b) == nil)
    }

    @Test func backToBackFramesThenAPartialOne() throws {
        var b = hexBuf("00000001 aa 00000000 00000002 bbcc 00000004 dd")
        let parser = FrameParser()
        #expect(try parser.next(from: &b) == buf([0xAA]))
        #expect(try parser.next(from: &b) == ByteBuffer())
        #expect(try parser.next(from: &b) == buf([0xBB, 0xCC]))
        #expect(try parser.next(from: &b) == nil)
        // The partial frame is left in place, prefix included, for the next read.
        #expect(hex(b) == "00000004dd")
        b.writeBytes([0xEE, 0xFF, 0x00])
        #expect(try parser.next(from: &b) == buf([0xDD, 0xEE, 0xFF, 0x00]))
        #expect(b.readableBytes == 0)
    }

    @Test(arguments: [0, 1, 2, 3])
    func partialSizePrefixReturnsNil(_ count: Int) throws {
        var b = buf(Array([0x00, 0x00, 0x00, 0x05].prefix(count)))
        #expect(try FrameParser().next(from: &b) == nil)
        #expect(b.readableBytes == count)
    }

    @Test func partialBodyReturnsNilWithoutConsuming() throws {
        var b = hexBuf("00000010 0102030405")
        #expect(try FrameParser().next(from: &b) == nil)
        #expect(b.readableBytes == 9)
        #expect(b.readerIndex == 0)
    }

    @Test(arguments: [Int32(-1), -2, Int32.min, -100])
    func negativeSizeIsATypedError(_ size: Int32) {
        var b = ByteBuffer()
        b.writeInteger(size)
        #expect(wireError { try FrameParser().next(from: &b) } == .negativeFrameSize(size))
        #expect(b.readerIndex == 0)
    }

    @Test func sizeAboveTheLimitNamesTheSize() {
        var b = hexBuf("000003e9 00")  // 1001
        let parser = FrameParser(maxFrameBytes: 1000)
        #expect(wireError { try parser.next(from: &b) } == .frameTooLarge(size: 1001, limit: 1000))
        do {
            _ = try parser.next(from: &b)
        } catch {
            #expect("\(error)".contains("1001"))
            #expect("\(error)".contains("1000"))
        }
    }

    @Test func sizeAtTheLimitIsAccepted() throws {
        var b = ByteBuffer()
        b.writeInteger(Int32(8))
        b.writeBytes([UInt8](repeating: 7, count: 8))
        #expect(try FrameParser(maxFrameBytes: 8).next(from: &b)?.readableBytes == 8)
    }

    @Test func hugeSizeUnderTheDefaultLimitIsRejectedWithoutAllocating() {
        // 2 GiB - 1 announced, nothing behind it: a typed error, not an allocation.
        var b = hexBuf("7fffffff 00")
        #expect(wireError { try FrameParser().next(from: &b) } == .frameTooLarge(size: Int(Int32.max), limit: 100 * 1024 * 1024))
        var justOver = ByteBuffer()
        justOver.writeInteger(Int32(100 * 1024 * 1024 + 1))
        #expect(wireError { try FrameParser().next(from: &justOver) }?.label == "frameTooLarge")
        var atLimit = ByteBuffer()
        atLimit.writeInteger(Int32(100 * 1024 * 1024))
        #expect(wireError { try FrameParser().next(from: &atLimit) } == nil)
    }

    // A TLS record: content type 0x16 (handshake), version 0x03 0x0N, a length, then the
    // ClientHello. Read as a Kafka size prefix that is 0x16030N.. = ~369 MB.
    static let clientHellos = [
        "16 03 01 02 00 01 0001fc 0303",  // TLS 1.2/1.3 ClientHello record (version 3.1 on the record layer)
        "16 03 01 00 f8 01 0000f4 0303",
        "16 03 03 00 7a 01",
        "16 03 00 00 2f 01",  // SSL 3.0
        "16 03 01",  // not even 4 bytes yet
    ]

    @Test(arguments: clientHellos)
    func tlsClientHelloIsRecognised(_ hello: String) throws {
        var b = hexBuf(hello)
        let bytes = b.bytes
        if bytes.count < 4 {
            #expect(try FrameParser().next(from: &b) == nil)
            return
        }
        let size = Int(UInt32(bytes[0]) << 24 | UInt32(bytes[1]) << 16 | UInt32(bytes[2]) << 8 | UInt32(bytes[3]))
        #expect(wireError { try FrameParser().next(from: &b) } == .tlsOnPlaintextPort(size: size))
        do {
            _ = try FrameParser().next(from: &b)
        } catch {
            #expect("\(error)".contains("TLS"))
            #expect("\(error)".contains("\(size)"))
        }
    }

    @Test func sizeThatOnlyResemblesTLSButFitsTheLimitIsAFrame() throws {
        // With a limit above 0x16030100 the same prefix is a legal (if large) size.
        var b = hexBuf("16030100")
        #expect(try FrameParser(maxFrameBytes: Int(Int32.max)).next(from: &b) == nil)
    }

    @Test func validateStandsAlone() {
        let p = FrameParser(maxFrameBytes: 10)
        #expect(wireError { try p.validate(size: 10) } == nil)
        #expect(wireError { try p.validate(size: 0) } == nil)
        #expect(wireError { try p.validate(size: 11) } == .frameTooLarge(size: 11, limit: 10))
        #expect(wireError { try p.validate(size: -5) } == .negativeFrameSize(-5))
        #expect(wireError { try p.validate(size: 0x1603_0200) } == .tlsOnPlaintextPort(size: 0x1603_0200))
    }

    @Test func writeThenParse() throws {
        var out = ByteBuffer()
        FrameParser.write(str("hello"), to: &out)
        FrameParser.write(ByteBuffer(), to: &out)
        #expect(hex(out) == "00000005" + hex(str("hello")) + "00000000")
        #expect(try FrameParser().next(from: &out) == str("hello"))
        #expect(try FrameParser().next(from: &out) == ByteBuffer())
    }

    @Test func frameReturnedIsASliceNotAffectedByLaterWrites() throws {
        var b = hexBuf("00000002 0102")
        let frame = try #require(try FrameParser().next(from: &b))
        b.writeBytes([9, 9, 9])
        #expect(frame.bytes == [1, 2])
    }
}
