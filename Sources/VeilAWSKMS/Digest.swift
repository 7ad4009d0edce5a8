import COpenSSL

/// SHA-256 and HMAC-SHA256 from the system libcrypto, the two primitives SigV4 needs.
///
/// Signing happens once per KMS call, so one-shot calls are plenty; no context is kept.
enum Digest {
    static let byteCount = 32

    static func sha256(_ data: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: byteCount)
        data.withUnsafeBytes { input in
            var length: UInt32 = 0
            // EVP_Digest only fails on allocation failure; there is nothing sensible to sign then.
            let ok = EVP_Digest(input.baseAddress, input.count, &output, &length, EVP_sha256(), nil)
            precondition(ok == 1 && length == UInt32(byteCount), "libcrypto SHA-256 failed")
        }
        return output
    }

    static func hmacSHA256(key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        // SigV4 keys are never empty ("AWS4" + secret, then 32-byte HMACs).
        precondition(!key.isEmpty, "HMAC key must not be empty")
        var output = [UInt8](repeating: 0, count: byteCount)
        key.withUnsafeBytes { keyBytes in
            data.withUnsafeBytes { input in
                var length: UInt32 = 0
                let result = HMAC(
                    EVP_sha256(), keyBytes.baseAddress, Int32(keyBytes.count),
                    input.baseAddress?.assumingMemoryBound(to: UInt8.self), input.count, &output, &length)
                precondition(result != nil && length == UInt32(byteCount), "libcrypto HMAC-SHA256 failed")
            }
        }
        return output
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text = [UInt8]()
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
