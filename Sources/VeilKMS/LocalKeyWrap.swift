import COpenSSL

/// The byte format in which ``LocalKeyring`` wraps a DEK under a KEK.
///
/// ```
/// wrapped = 0x01 || nonce (12) || AES-256-GCM(KEK, nonce, DEK, AAD) (32) || tag (16)   = 61 bytes
/// AAD     = 0x01 || u8 len(kms) || kms || u16be len(keyId) || keyId
/// ```
/// The AAD binds the key reference, so a DEK wrapped for one reference does
/// not unwrap under another even if two ids share a KEK. See docs/FORMAT.md.
///
/// After `veil keys rotate`, DEKs are wrapped under a later version of the key in
/// format 2, which names the version so every holder finds the right KEK:
/// ```
/// wrapped = 0x02 || u32be version || nonce (12) || AES-256-GCM(KEK_v, nonce, DEK, AAD) (32) || tag (16)   = 65 bytes
/// AAD     = 0x02 || u32be version || u8 len(kms) || kms || u16be len(keyId) || keyId
/// ```
/// Version 1 keeps format 1, so keyrings that were never rotated write what they always did.
public enum LocalKeyWrap {
    /// Format version, first byte of every wrapped DEK.
    public static let version: UInt8 = 0x01
    /// Length of a wrapped 256-bit DEK.
    public static let wrappedByteCount = 1 + AES256GCM.nonceByteCount + 32 + AES256GCM.tagByteCount

    /// Format byte of DEKs wrapped under a rotated (version 2 or later) key.
    public static let versionedFormat: UInt8 = 0x02

    /// The KEK version a wrapped DEK needs: 1 for format 1, the stored version for format 2;
    /// `nil` if the bytes are in neither format.
    public static func kekVersion(of wrapped: [UInt8]) -> UInt32? {
        if wrapped.count == wrappedByteCount, wrapped[0] == version { return 1 }
        guard wrapped.count == wrappedByteCount + 4, wrapped[0] == versionedFormat else { return nil }
        let v = wrapped[1..<5].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return v >= 2 ? v : nil
    }

    private static func prefix(kekVersion: UInt32) -> [UInt8] {
        guard kekVersion > 1 else { return [version] }
        return [versionedFormat] + (0..<4).map { UInt8(truncatingIfNeeded: kekVersion >> (24 - 8 * $0)) }
    }

    /// The associated data for wrapping under `reference`.
    static func associatedData(for reference: KeyReference, kekVersion: UInt32 = 1) -> [UInt8] {
        var aad: [UInt8] = prefix(kekVersion: kekVersion)
        let kms = Array(reference.kms.utf8)
        let keyId = Array(reference.keyId.utf8)
        aad.append(UInt8(kms.count))
        aad += kms
        aad.append(UInt8(truncatingIfNeeded: keyId.count >> 8))
        aad.append(UInt8(truncatingIfNeeded: keyId.count))
        aad += keyId
        return aad
    }

    /// Wraps `dek` under version `kekVersion` of the key, `kek`, for `reference` with a fresh random nonce.
    static func wrap(_ dek: SymmetricSecret, under kek: SymmetricSecret, kekVersion: UInt32 = 1, for reference: KeyReference)
        throws(KMSError) -> [UInt8]
    {
        let nonce: [UInt8]
        do {
            nonce = try SecureRandom.bytes(count: AES256GCM.nonceByteCount)
        } catch {
            throw KMSError(.unavailable, reference, "random number generator failed")
        }
        return try wrap(dek, under: kek, kekVersion: kekVersion, for: reference, nonce: nonce)
    }

    /// Wraps with a caller-chosen nonce. Only for reproducible test vectors:
    /// reusing a nonce under one KEK breaks GCM.
    @_spi(TestVectors)
    public static func wrap(
        _ dek: SymmetricSecret, under kek: SymmetricSecret, kekVersion: UInt32 = 1, for reference: KeyReference, nonce: [UInt8]
    ) throws(KMSError) -> [UInt8] {
        guard dek.count == 32, kek.count == AES256GCM.keyByteCount, nonce.count == AES256GCM.nonceByteCount else {
            throw KMSError(.invalidCiphertext, reference, "data key, key-encryption key or nonce has the wrong length")
        }
        let aad = associatedData(for: reference, kekVersion: kekVersion)
        let sealed = kek.withUnsafeBytes { kekBytes in
            dek.withUnsafeBytes { dekBytes in
                AES256GCM.seal(key: kekBytes, nonce: nonce, aad: aad, plaintext: dekBytes)
            }
        }
        guard let sealed else { throw KMSError(.unavailable, reference, "OpenSSL failed to wrap the data key") }
        return prefix(kekVersion: kekVersion) + nonce + sealed
    }

    /// Recovers the DEK; `invalidCiphertext` if the bytes are malformed or fail
    /// authentication under `kek` for `reference`.
    public static func unwrap(_ wrapped: [UInt8], under kek: SymmetricSecret, for reference: KeyReference)
        throws(KMSError) -> SymmetricSecret
    {
        guard let kekVersion = kekVersion(of: wrapped) else {
            throw KMSError(
                .invalidCiphertext, reference,
                "wrapped data key is not in the local keyring format (\(wrapped.count) bytes)")
        }
        let aad = associatedData(for: reference, kekVersion: kekVersion)
        let body = wrapped.count - wrappedByteCount + 1
        var dek = [UInt8](repeating: 0, count: 32)
        defer { dek.withUnsafeMutableBytes { wipe($0) } }
        let ok = wrapped.withUnsafeBytes { raw in
            kek.withUnsafeBytes { kekBytes in
                dek.withUnsafeMutableBytes { out in
                    AES256GCM.open(
                        key: kekBytes, nonce: UnsafeRawBufferPointer(rebasing: raw[body..<body + 12]), aad: aad,
                        sealed: UnsafeRawBufferPointer(rebasing: raw[(body + 12)...]), into: out)
                }
            }
        }
        guard ok else {
            throw KMSError(
                .invalidCiphertext, reference,
                "wrapped data key failed authentication: it was wrapped under a different key-encryption key, or altered")
        }
        return dek.withUnsafeBytes { SymmetricSecret(copying: $0) }
    }
}

/// Overwrites secret bytes in a way the optimizer keeps.
func wipe(_ buffer: UnsafeMutableRawBufferPointer) {
    if let base = buffer.baseAddress { OPENSSL_cleanse(base, buffer.count) }
}
