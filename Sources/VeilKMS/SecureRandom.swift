import COpenSSL

/// The CSPRNG failed; nothing that depends on fresh randomness may proceed.
public struct SecureRandomError: Error, CustomStringConvertible {
    public var description: String { "the system random number generator (RAND_bytes) failed" }
}

/// Cryptographically secure random bytes from OpenSSL's `RAND_bytes`.
public enum SecureRandom {
    /// Fills `buffer` with random bytes.
    public static func fill(_ buffer: UnsafeMutableRawBufferPointer) throws(SecureRandomError) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        var offset = 0
        // RAND_bytes takes an Int32 length; loop so any buffer size works.
        while offset < buffer.count {
            let chunk = min(buffer.count - offset, Int(Int32.max))
            guard RAND_bytes(base.advanced(by: offset).assumingMemoryBound(to: UInt8.self), Int32(chunk)) == 1 else {
                throw SecureRandomError()
            }
            offset += chunk
        }
    }

    /// Returns `count` random bytes.
    public static func bytes(count: Int) throws(SecureRandomError) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        let filled = result.withUnsafeMutableBytes { (try? fill($0)) != nil }
        guard filled else { throw SecureRandomError() }
        return result
    }
}
