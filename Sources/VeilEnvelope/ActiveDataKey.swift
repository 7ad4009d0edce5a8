import NIOCore
import VeilKMS

/// When the encryption side retires a data key and asks the KMS for a new one.
public struct DataKeyRotationPolicy: Sendable, Equatable {
    /// Largest allowed `maxEncryptions`. Keeps any overshoot by concurrent
    /// sealers far below ``ActiveDataKey/hardEncryptionLimit``.
    public static let maximumEncryptionsLimit: UInt64 = 1 << 31

    /// Retire a key after this many records.
    public let maxEncryptions: UInt64
    /// Retire a key this long after it was generated.
    public let maxAge: TimeAmount

    /// One million records or one hour, whichever comes first.
    public static let `default` = DataKeyRotationPolicy(maxEncryptions: 1_000_000, maxAge: .seconds(3600))!

    /// Returns nil unless `maxEncryptions` is in 1...2^31 and `maxAge` is positive.
    public init?(
        maxEncryptions: UInt64 = Self.default.maxEncryptions, maxAge: TimeAmount = Self.default.maxAge
    ) {
        guard (1...Self.maximumEncryptionsLimit).contains(maxEncryptions), maxAge > .zero else { return nil }
        self.maxEncryptions = maxEncryptions
        self.maxAge = maxAge
    }
}

/// A data key in use on the encryption side: the DEK ready for AES-GCM, its
/// wrapped form and reference (copied into every envelope), and the nonce
/// sequence that guarantees no nonce repeats under it.
///
/// Nonces are a random 32-bit prefix, fixed for this instance, followed by a
/// 64-bit counter. The counter alone makes nonces unique under the DEK; the
/// prefix adds a margin should the same DEK ever be loaded twice.
public final class ActiveDataKey: Sendable, CustomStringConvertible {
    /// Sealing stops here whatever the policy says (2^32 invocations).
    public static let hardEncryptionLimit: UInt64 = 1 << 32

    /// The key-encryption key that wrapped this DEK.
    public let reference: KeyReference
    /// The DEK as wrapped by the KMS.
    public let wrappedDataKey: [UInt8]
    /// When the KMS produced this key, on the clock the cache uses.
    public let createdAt: NIODeadline

    /// The DEK's cipher contexts; its encryption counter is the nonce counter.
    let cipher: AESGCMKey
    /// Header bytes from the KMS-name length through the wrapped DEK, encoded once.
    let keySection: [UInt8]
    let noncePrefix: UInt32

    /// Prepares `dataKey` for sealing with a fresh random nonce prefix.
    public convenience init(_ dataKey: DataKey, createdAt: NIODeadline) throws(EnvelopeError) {
        let prefix: [UInt8]
        do {
            prefix = try SecureRandom.bytes(count: 4)
        } catch {
            throw .cryptoFailure("random number generator failed")
        }
        let value = prefix.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        try self.init(dataKey, createdAt: createdAt, noncePrefix: value, firstCounter: 0)
    }

    /// Fixes the nonce sequence. Only for reproducible test vectors: two
    /// instances of one DEK with the same prefix would repeat nonces.
    @_spi(TestVectors)
    public init(_ dataKey: DataKey, createdAt: NIODeadline, noncePrefix: UInt32, firstCounter: UInt64)
        throws(EnvelopeError)
    {
        guard (1...Envelope.maximumWrappedKeyLength).contains(dataKey.wrapped.count) else {
            throw .invalidArgument("wrapped data key must be 1 to \(Envelope.maximumWrappedKeyLength) bytes")
        }
        cipher = try AESGCMKey(dataKey.plaintext, firstNonceCounter: firstCounter)
        reference = dataKey.reference
        wrappedDataKey = dataKey.wrapped
        self.createdAt = createdAt
        self.noncePrefix = noncePrefix
        keySection = Self.encodeKeySection(dataKey.reference, wrapped: dataKey.wrapped)
    }

    public var description: String {
        "ActiveDataKey(\(reference), \(encryptionCount) encryptions, material redacted)"
    }

    /// Nonces handed out so far, counting from the first counter value (0
    /// outside test vectors): the records sealed under this key.
    public var encryptionCount: UInt64 { cipher.nonceCounter }

    /// Whether the policy still allows new records under this key at `now`.
    public func isUsable(at now: NIODeadline, policy: DataKeyRotationPolicy) -> Bool {
        encryptionCount < policy.maxEncryptions && now - createdAt < policy.maxAge
    }

    static func encodeKeySection(_ reference: KeyReference, wrapped: [UInt8]) -> [UInt8] {
        let kms = Array(reference.kms.utf8)
        let keyId = Array(reference.keyId.utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(5 + kms.count + keyId.count + wrapped.count)
        bytes.append(UInt8(kms.count))
        bytes += kms
        bytes.append(UInt8(truncatingIfNeeded: keyId.count >> 8))
        bytes.append(UInt8(truncatingIfNeeded: keyId.count))
        bytes += keyId
        bytes.append(UInt8(truncatingIfNeeded: wrapped.count >> 8))
        bytes.append(UInt8(truncatingIfNeeded: wrapped.count))
        bytes += wrapped
        return bytes
    }
}

