import COpenSSL

/// The hash functions SASL mechanisms are defined over.
public enum SaslDigest: String, Sendable, CaseIterable {
    case sha256 = "SHA-256"
    case sha512 = "SHA-512"

    var evp: OpaquePointer { self == .sha256 ? EVP_sha256() : EVP_sha512() }

    /// Output length in bytes.
    public var byteCount: Int { self == .sha256 ? 32 : 64 }

    /// `H(data)`.
    public func hash(_ data: some Collection<UInt8>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: byteCount)
        var length: UInt32 = 0
        let input = Array(data)
        // EVP_Digest only fails on allocation failure; a wrong digest would break auth loudly anyway.
        let ok = input.withUnsafeBytes { EVP_Digest($0.baseAddress, $0.count, &out, &length, evp, nil) }
        precondition(ok == 1, "EVP_Digest failed")
        return out
    }

    /// `HMAC(key, data)`.
    public func hmac(key: some Collection<UInt8>, _ data: some Collection<UInt8>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: byteCount)
        var length: UInt32 = 0
        let k = Array(key), d = Array(data)
        let result = k.withUnsafeBytes { kp in
            d.withUnsafeBytes { dp in
                HMAC(evp, kp.baseAddress, Int32(kp.count), dp.baseAddress?.assumingMemoryBound(to: UInt8.self), dp.count, &out, &length)
            }
        }
        precondition(result != nil, "HMAC failed")
        return out
    }

    /// PBKDF2 with HMAC over this digest, which SCRAM calls `Hi()`.
    public func pbkdf2(password: some Collection<UInt8>, salt: some Collection<UInt8>, iterations: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: byteCount)
        let p = Array(password), s = Array(salt)
        let ok = p.withUnsafeBytes { pp in
            s.withUnsafeBytes { sp in
                PKCS5_PBKDF2_HMAC(
                    pp.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(pp.count),
                    sp.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(sp.count),
                    Int32(iterations), evp, Int32(byteCount), &out)
            }
        }
        precondition(ok == 1, "PKCS5_PBKDF2_HMAC failed")
        return out
    }
}

/// Cryptographically random bytes from libcrypto.
public func saslRandomBytes(_ count: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    precondition(RAND_bytes(&out, Int32(count)) == 1, "RAND_bytes failed")
    return out
}

/// Compares secrets without an early exit, so timing reveals nothing about where they differ.
public func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for i in a.indices { diff |= a[i] ^ b[i] }
    return diff == 0
}

/// Lower-case hex, as SigV4 writes hashes and signatures.
func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
}
