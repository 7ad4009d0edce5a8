import Foundation
import NIOCore
import Testing
@_spi(TestVectors) import VeilEnvelope
import VeilJSON
@_spi(TestVectors) import VeilKMS

@testable import VeilProxy

/// The encrypted-field vector of docs/FORMAT.md: the DEK, wrapped DEK and nonce sequence of the
/// envelope vectors there, record id 00 01 … 0f, field `data` of the seed's record. Computed
/// independently with Python's `cryptography` (AESGCM) and base64.
@Suite struct FieldFormatVectorTests {
    static let wrappedDEK = "01a0a1a2a3a4a5a6a7a8a9aaabc6395e0e61ee24984a4cadf82b57eef1409d6b23a682745ba4371cbd43964b3ef5aaa88914313c0fa06e14d74bc5c09b"
    static let record = #"{"department": "finance", "data": "veil:1:wVZFTAEBBWxvY2FsAA5kZXBhcnRtZW50LWtleQA9AaChoqOkpaanqKmqq8Y5Xg5h7iSYSkyt-CtX7vFAnWsjpoJ0W6Q3HL1Dlks-9aqoiRQxPA-gbhTXS8XAm8D_7gAAAAAAAAAALPNsmbkfr2wHQrdoiD5E5VNs99XjlSk56hyC-EUg"}"#

    static func bytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            out.append(UInt8(hex[i..<j], radix: 16)!)
            i = j
        }
        return out
    }

    @Test func sealingTheFieldGivesTheDocumentedRecord() throws {
        let dataKey = DataKey(
            reference: KeyReference("local/department-key")!, plaintext: SymmetricSecret(copying: Array(0x20..<0x40) as [UInt8]),
            wrapped: Self.bytes(Self.wrappedDEK))
        let key = try ActiveDataKey(dataKey, createdAt: .now(), noncePrefix: 0xC0FF_EE00, firstCounter: 44)
        let plain = Array(#"{"department": "finance", "data": "q3 forecast"}"#.utf8)
        let range = 34..<47  // "q3 forecast", quotes included
        #expect(String(decoding: plain[range], as: UTF8.self) == #""q3 forecast""#)
        let location = Array(0..<16) as [UInt8] + Array(#"$["data"]"#.utf8)
        var envelope = ByteBuffer()
        try plain.withUnsafeBytes { raw in
            try location.withUnsafeBytes { path in
                try EnvelopeEncryptor().seal(
                    plaintext: UnsafeRawBufferPointer(rebasing: raw[range]), key: key, topic: "department-events",
                    fieldPathBytes: path, into: &envelope)
            }
        }
        var out = ByteBuffer()
        out.writeBytes(plain[..<range.lowerBound])
        PartwiseEncryption.writeToken(envelope, to: &out)
        out.writeBytes(plain[range.upperBound...])
        #expect(String(buffer: out) == Self.record)
    }

    @Test func formatDocumentCarriesTheRecord() throws {
        let docs = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/FORMAT.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let start = try #require(lines.firstIndex { $0 == "record-with-encrypted-field:" })
        #expect(lines[start + 1] == Self.record)
    }
}
