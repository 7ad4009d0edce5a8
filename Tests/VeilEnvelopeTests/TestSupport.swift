import Foundation
import NIOCore
@_spi(TestVectors) import VeilEnvelope
@_spi(TestVectors) import VeilKMS

/// A clock tests move by hand, for rotation and cache expiry.
final class ManualClock: @unchecked Sendable {
    // @unchecked: `now` is only touched under `lock`.
    private let lock = NSLock()
    private var now = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func read() -> NIODeadline { lock.withLock { now } }
    func advance(_ amount: TimeAmount) { lock.withLock { now = now + amount } }

    var function: @Sendable () -> NIODeadline { { self.read() } }
}

/// A KMS that waits before answering, so concurrent callers overlap.
struct SlowKMS: KeyManagementService {
    let base: any KeyManagementService
    var delay: Duration = .milliseconds(100)

    func generateDataKey(for reference: KeyReference) async throws(KMSError) -> DataKey {
        try? await Task.sleep(for: delay)
        return try await base.generateDataKey(for: reference)
    }

    func unwrap(_ wrapped: [UInt8], for reference: KeyReference) async throws(KMSError) -> SymmetricSecret {
        try? await Task.sleep(for: delay)
        return try await base.unwrap(wrapped, for: reference)
    }
}

/// A KMS that is always down.
struct UnavailableKMS: KeyManagementService {
    func generateDataKey(for reference: KeyReference) async throws(KMSError) -> DataKey {
        throw KMSError(.unavailable, reference, "down for the test")
    }

    func unwrap(_ wrapped: [UInt8], for reference: KeyReference) async throws(KMSError) -> SymmetricSecret {
        throw KMSError(.unavailable, reference, "down for the test")
    }
}

func reference(_ text: String) -> KeyReference { KeyReference(text)! }

func randomSecret() -> SymmetricSecret { try! SymmetricSecret(randomByteCount: 32) }

/// A keyring holding fresh random KEKs under `ids`.
func keyring(_ identity: String, _ ids: [String]) -> LocalKeyring {
    LocalKeyring(identity: identity, keys: Dictionary(uniqueKeysWithValues: ids.map { ($0, randomSecret()) }))
}

func activeKey(_ kms: any KeyManagementService, _ ref: KeyReference) async throws -> ActiveDataKey {
    try ActiveDataKey(try await kms.generateDataKey(for: ref), createdAt: .now())
}

func seal(
    _ plaintext: [UInt8], key: ActiveDataKey, topic: String? = "department-events",
    fieldPath: String = Envelope.wholeValue
) throws -> ByteBuffer {
    var buffer = ByteBuffer()
    try plaintext.withUnsafeBytes { bytes in
        try EnvelopeEncryptor().seal(plaintext: bytes, key: key, topic: topic, fieldPath: fieldPath, into: &buffer)
    }
    return buffer
}

func open(
    _ envelope: ByteBuffer, key: AESGCMKey, topic: String = "department-events",
    fieldPath: String = Envelope.wholeValue
) throws(EnvelopeError) -> [UInt8] {
    guard let header = try EnvelopeHeader.parse(envelope) else { throw .malformed("test: not an envelope") }
    var output = ByteBuffer()
    try EnvelopeDecryptor().open(envelope, header: header, key: key, topic: topic, fieldPath: fieldPath, into: &output)
    return Array(output.readableBytesView)
}

func decryptionKey(_ active: ActiveDataKey, kms: any KeyManagementService) async throws -> AESGCMKey {
    try AESGCMKey(try await kms.unwrap(active.wrappedDataKey, for: active.reference))
}

func hexBytes(_ text: String) -> [UInt8] {
    let digits = Array(text.filter { !$0.isWhitespace })
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
}

func hex(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

/// The 12 nonce bytes of an envelope: the last header bytes.
func nonce(of envelope: ByteBuffer) throws -> [UInt8] {
    let header = try EnvelopeHeader.parse(envelope)!
    return envelope.getBytes(at: envelope.readerIndex + header.byteCount - 12, length: 12)!
}
