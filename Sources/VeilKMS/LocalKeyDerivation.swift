import COpenSSL

/// How ``LocalKeyring`` derives deterministic keys from a KEK: HKDF-SHA256 (RFC 5869).
///
/// ```
/// salt = "veil derived key v1"
/// info = u8 len(kms) || kms || u16be len(keyId) || keyId || context
/// OKM  = HKDF-SHA256(IKM = KEK, salt, info, L = byteCount)
/// ```
/// The info binds the key reference, so two ids that share a KEK still derive different
/// keys, and the context separates uses. HMAC-SHA256 is a different primitive from the
/// AES-GCM the KEK wraps DEKs with, and HKDF's extract step treats the KEK only as a PRF key,
/// so using the KEK for both leaks nothing from one use to the other.
public enum LocalKeyDerivation {
    /// The fixed HKDF salt.
    public static let salt: [UInt8] = Array("veil derived key v1".utf8)

    /// Derives `byteCount` (1–8160) bytes from `kek` for `reference` and `context`.
    public static func derive(from kek: SymmetricSecret, for reference: KeyReference, context: [UInt8], byteCount: Int)
        throws(KMSError) -> SymmetricSecret
    {
        guard (1...255 * 32).contains(byteCount) else {
            throw KMSError(.invalidCiphertext, reference, "cannot derive \(byteCount) bytes with HKDF-SHA256")
        }
        var info: [UInt8] = []
        let kms = Array(reference.kms.utf8)
        let keyId = Array(reference.keyId.utf8)
        info.append(UInt8(kms.count))
        info += kms
        info.append(UInt8(truncatingIfNeeded: keyId.count >> 8))
        info.append(UInt8(truncatingIfNeeded: keyId.count))
        info += keyId
        info += context
        let okm = kek.withUnsafeBytes { ikm in hkdf(ikm: ikm, salt: salt, info: info, byteCount: byteCount) }
        guard var okm else { throw KMSError(.unavailable, reference, "OpenSSL failed to derive a key") }
        defer { okm.withUnsafeMutableBytes { wipe($0) } }
        return okm.withUnsafeBytes { SymmetricSecret(copying: $0) }
    }

    /// RFC 5869 HKDF with SHA-256; nil if OpenSSL fails. Exposed for its RFC test vectors.
    public static func hkdf(ikm: UnsafeRawBufferPointer, salt: [UInt8], info: [UInt8], byteCount: Int) -> [UInt8]? {
        var prk = [UInt8](repeating: 0, count: 32)
        defer { prk.withUnsafeMutableBytes { wipe($0) } }
        // RFC 5869: an absent salt is HashLen zeros.
        let saltBytes = salt.isEmpty ? [UInt8](repeating: 0, count: 32) : salt
        guard hmac(key: saltBytes, data: ikm, into: &prk) else { return nil }
        var okm: [UInt8] = []
        okm.reserveCapacity(byteCount + 32)
        var block: [UInt8] = []
        var counter: UInt8 = 1
        while okm.count < byteCount {
            var input = block + info + [counter]
            var next = [UInt8](repeating: 0, count: 32)
            let ok = input.withUnsafeBytes { data in hmac(key: prk, data: data, into: &next) }
            input.withUnsafeMutableBytes { wipe($0) }
            guard ok else { return nil }
            okm += next
            block.withUnsafeMutableBytes { wipe($0) }
            block = next
            counter &+= 1
        }
        block.withUnsafeMutableBytes { wipe($0) }
        let extra = okm.count - byteCount
        if extra > 0 {
            okm.withUnsafeMutableBytes { wipe(UnsafeMutableRawBufferPointer(rebasing: $0[byteCount...])) }
            okm.removeLast(extra)
        }
        return okm
    }

    private static func hmac(key: [UInt8], data: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Bool {
        var length: UInt32 = 0
        let result = key.withUnsafeBytes { k in
            out.withUnsafeMutableBytes { o in
                HMAC(
                    EVP_sha256(), k.baseAddress, Int32(k.count), data.baseAddress?.assumingMemoryBound(to: UInt8.self),
                    data.count, o.baseAddress!.assumingMemoryBound(to: UInt8.self), &length)
            }
        }
        return result != nil && length == 32
    }
}
