import COpenSSL
import NIOConcurrencyHelpers
import NIOCore
import VeilKMS

/// Constants of the deterministic envelope (version 1), which encrypts record keys so that
/// equal plaintext keys give equal ciphertexts (compaction and per-key ordering keep working).
/// The layout is documented byte for byte in docs/FORMAT.md:
///
/// ```
/// magic C1 56 4B 59 | version 01 | flags | u8 K | kms (K) | u16 I | key id (I) | SIV (16) | ciphertext (n)
/// ```
/// AES-256-SIV (RFC 5297) under a key the KMS derives from the named key; the header through the
/// key id is the header, and the AAD (one S2V component) is the header, then the field path
/// `key` and, when flag bit 0 is set, the topic, length-prefixed as in ``Envelope``.
public enum DeterministicEnvelope {
    /// First four bytes: 0xC1 (never in UTF-8) then "VKY"; differs from ``Envelope/magic``.
    public static let magic: [UInt8] = [0xC1, 0x56, 0x4B, 0x59]
    /// The format version this build writes and reads.
    public static let version: UInt8 = 1
    /// The field path bound into the AAD of every record key.
    public static let recordKeyPath = "key"
    /// Length of the synthetic IV (the SIV tag).
    public static let tagByteCount = 16
    /// What the KMS is asked to derive the SIV key for.
    public static let derivationContext: [UInt8] = Array("veil record key AES-256-SIV v1".utf8)
    /// AES-256-SIV takes two 256-bit keys.
    public static let keyByteCount = 64

    static let magicValue: UInt32 = 0xC156_4B59
}

/// The parsed header of a deterministic envelope.
public struct DeterministicHeader: Sendable, Equatable {
    /// The key the SIV key is derived from.
    public let reference: KeyReference
    /// Whether the topic name is part of the AAD.
    public let isTopicBound: Bool
    /// Bytes from the magic through the key id.
    public let byteCount: Int
    /// Length of the ciphertext, equal to the plaintext's.
    public let ciphertextByteCount: Int

    /// Parses the readable bytes of `bytes`: nil if they do not start with the magic;
    /// throws for bytes that start with it but are not a well-formed envelope.
    public static func parse(_ bytes: ByteBuffer) throws(EnvelopeError) -> DeterministicHeader? {
        let result = bytes.withUnsafeReadableBytes { raw in
            Result { () throws(EnvelopeError) in try parse(raw) }
        }
        return try result.get()
    }

    /// Parses raw bytes (see ``parse(_:)-swift.type.method``).
    public static func parse(_ raw: UnsafeRawBufferPointer) throws(EnvelopeError) -> DeterministicHeader? {
        guard raw.count >= 4, UInt32(bigEndian: raw.loadUnaligned(as: UInt32.self)) == DeterministicEnvelope.magicValue else {
            return nil
        }
        guard raw.count >= 7 else { throw .malformed("truncated deterministic header") }
        guard raw[4] == DeterministicEnvelope.version else { throw .unsupportedVersion(raw[4]) }
        let flags = raw[5]
        guard flags & ~Envelope.topicBoundFlag == 0 else { throw .malformed("unknown flag bits") }
        let kmsCount = Int(raw[6])
        guard kmsCount >= 1, raw.count >= 7 + kmsCount + 2 else { throw .malformed("truncated deterministic header") }
        let keyIdCount = Int(raw[7 + kmsCount]) << 8 | Int(raw[8 + kmsCount])
        let headerCount = 9 + kmsCount + keyIdCount
        guard (1...KeyReference.maximumKeyIdLength).contains(keyIdCount), raw.count >= headerCount + DeterministicEnvelope.tagByteCount
        else { throw .malformed("truncated deterministic envelope") }
        guard let kms = String(validating: UnsafeRawBufferPointer(rebasing: raw[7..<(7 + kmsCount)]), as: UTF8.self),
              let keyId = String(validating: UnsafeRawBufferPointer(rebasing: raw[(9 + kmsCount)..<headerCount]), as: UTF8.self),
              let reference = KeyReference(kms: kms, keyId: keyId)
        else { throw .malformed("key reference is not valid UTF-8 or not a valid reference") }
        return DeterministicHeader(
            reference: reference, isTopicBound: flags & Envelope.topicBoundFlag != 0, byteCount: headerCount,
            ciphertextByteCount: raw.count - headerCount - DeterministicEnvelope.tagByteCount)
    }
}

/// An AES-256-SIV key derived from a KMS key, sealing and opening deterministic envelopes.
///
/// Deterministic encryption reveals which plaintexts are equal (under one key and, if bound,
/// one topic), and their lengths; it reveals nothing else. That is the point for record keys,
/// and the reason it is used for nothing else.
public final class DeterministicKey: Sendable, CustomStringConvertible {
    /// The KMS key it was derived from.
    public let reference: KeyReference
    private let secret: SymmetricSecret
    private let header: [UInt8]
    private let idle = NIOLockedValueBox<[ContextBox]>([])

    // A cipher context lent to one caller at a time; freed with its box.
    private final class ContextBox: @unchecked Sendable {
        let ctx: OpaquePointer
        init?() {
            guard let ctx = EVP_CIPHER_CTX_new() else { return nil }
            self.ctx = ctx
        }
        deinit { EVP_CIPHER_CTX_free(ctx) }
    }

    /// Wraps a derived 64-byte secret for `reference`.
    public init(_ secret: SymmetricSecret, reference: KeyReference) throws(EnvelopeError) {
        guard secret.count == DeterministicEnvelope.keyByteCount else {
            throw .invalidArgument("AES-256-SIV keys are 64 bytes, got \(secret.count)")
        }
        guard SIVCipher.shared.cipher != nil else { throw .cryptoFailure("this OpenSSL has no AES-256-SIV") }
        self.secret = secret
        self.reference = reference
        let kms = Array(reference.kms.utf8)
        let keyId = Array(reference.keyId.utf8)
        header = DeterministicEnvelope.magic + [DeterministicEnvelope.version, 0, UInt8(kms.count)] + kms
            + [UInt8(truncatingIfNeeded: keyId.count >> 8), UInt8(truncatingIfNeeded: keyId.count)] + keyId
    }

    public var description: String { "DeterministicKey(\(reference), material redacted)" }

    /// Bytes the envelope of `plaintextCount` bytes takes.
    public func sealedByteCount(plaintextCount: Int) -> Int {
        header.count + DeterministicEnvelope.tagByteCount + plaintextCount
    }

    /// Appends the deterministic envelope of `plaintext` (at least one byte) to `buffer`.
    public func seal(_ plaintext: UnsafeRawBufferPointer, topic: String?, into buffer: inout ByteBuffer) throws(EnvelopeError) {
        guard plaintext.count > 0 else { throw .invalidArgument("AES-SIV in OpenSSL needs at least one byte of plaintext") }
        try AssociatedData.validate(fieldPath: DeterministicEnvelope.recordKeyPath, topic: topic)
        let headerCount = header.count
        let total = sealedByteCount(plaintextCount: plaintext.count)
        var ok = false
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { out in
            let base = out.baseAddress!
            header.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: headerCount) }
            if topic != nil { base.storeBytes(of: Envelope.topicBoundFlag, toByteOffset: 5, as: UInt8.self) }
            let headerBytes = UnsafeRawBufferPointer(start: base, count: headerCount)
            ok = withContext { ctx in
                AssociatedData.withBytes(header: headerBytes, fieldPath: DeterministicEnvelope.recordKeyPath, topic: topic) { aad in
                    self.run(ctx, encrypting: true, aad: aad, input: plaintext,
                             output: base + headerCount + DeterministicEnvelope.tagByteCount, tag: base + headerCount)
                }
            }
            return ok ? total : 0
        }
        guard ok else { throw .cryptoFailure("OpenSSL failed to encrypt with AES-SIV") }
    }

    /// Appends the plaintext of `envelope` (its readable bytes, parsed into `header`) to
    /// `output`; throws ``EnvelopeError/authenticationFailed`` if anything does not match.
    public func open(_ envelope: ByteBuffer, header parsed: DeterministicHeader, topic: String, into output: inout ByteBuffer)
        throws(EnvelopeError)
    {
        guard parsed.reference == reference,
              envelope.readableBytes == parsed.byteCount + DeterministicEnvelope.tagByteCount + parsed.ciphertextByteCount
        else { throw .invalidArgument("header does not describe this envelope") }
        guard parsed.ciphertextByteCount > 0 else { throw .authenticationFailed }
        let boundTopic: String? = parsed.isTopicBound ? topic : nil
        try AssociatedData.validate(fieldPath: DeterministicEnvelope.recordKeyPath, topic: boundTopic)
        let count = parsed.ciphertextByteCount
        let opened = envelope.withUnsafeReadableBytes { env -> Bool in
            let base = env.baseAddress!
            var ok = false
            output.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { out in
                let headerBytes = UnsafeRawBufferPointer(start: base, count: parsed.byteCount)
                ok = withContext { ctx in
                    AssociatedData.withBytes(header: headerBytes, fieldPath: DeterministicEnvelope.recordKeyPath, topic: boundTopic) { aad in
                        self.run(ctx, encrypting: false, aad: aad,
                                 input: UnsafeRawBufferPointer(start: base + parsed.byteCount + DeterministicEnvelope.tagByteCount, count: count),
                                 output: out.baseAddress!, tag: UnsafeMutableRawPointer(mutating: base + parsed.byteCount))
                    }
                }
                if !ok { OPENSSL_cleanse(out.baseAddress!, count) }
                return ok ? count : 0
            }
            return ok
        }
        guard opened else { throw .authenticationFailed }
    }

    /// One SIV operation. The context is keyed afresh each time: OpenSSL documents no way to
    /// restart an SIV computation under the same key, and record keys are small and rare
    /// enough that key setup does not matter.
    private func run(_ ctx: OpaquePointer, encrypting: Bool, aad: UnsafeRawBufferPointer, input: UnsafeRawBufferPointer,
                     output: UnsafeMutableRawPointer, tag: UnsafeMutableRawPointer) -> Bool {
        guard let cipher = SIVCipher.shared.cipher else { return false }
        let keyed = secret.withUnsafeBytes { key in
            EVP_CipherInit_ex2(ctx, cipher, key.baseAddress!.assumingMemoryBound(to: UInt8.self), nil, encrypting ? 1 : 0, nil) == 1
        }
        guard keyed else { return false }
        var length: Int32 = 0
        if !encrypting {
            guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, Int32(DeterministicEnvelope.tagByteCount), tag) == 1 else { return false }
        }
        guard EVP_CipherUpdate(ctx, nil, &length, aad.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(aad.count)) == 1,
              EVP_CipherUpdate(ctx, output.assumingMemoryBound(to: UInt8.self), &length,
                               input.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(input.count)) == 1,
              Int(length) == input.count,
              EVP_CipherFinal_ex(ctx, output.assumingMemoryBound(to: UInt8.self) + input.count, &length) == 1
        else { return false }
        if encrypting {
            return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, Int32(DeterministicEnvelope.tagByteCount), tag) == 1
        }
        return true
    }

    private func withContext(_ body: (OpaquePointer) -> Bool) -> Bool {
        guard let box = idle.withLockedValue({ $0.popLast() }) ?? ContextBox() else { return false }
        let ok = body(box.ctx)
        idle.withLockedValue { if $0.count < 8 { $0.append(box) } }
        return ok
    }
}

/// The AES-256-SIV implementation, fetched from the default provider once.
private final class SIVCipher: Sendable {
    static let shared = SIVCipher()
    // Fetched once and never freed; OpenSSL cipher objects are safe to share between threads.
    nonisolated(unsafe) let cipher: OpaquePointer?
    private init() { cipher = EVP_CIPHER_fetch(nil, "AES-256-SIV", nil) }
}
