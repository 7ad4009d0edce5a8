import COpenSSL

/// Secret key bytes (a DEK or a KEK) held outside Swift's copyable arrays.
///
/// The bytes live in one heap allocation that is wiped when the last reference
/// goes away, and they are never part of `description`, so logging or
/// interpolating a secret cannot leak it.
public final class SymmetricSecret: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    // Immutable after init; only read through `withUnsafeBytes`. That is why the
    // raw pointer may be shared across threads.
    private nonisolated(unsafe) let storage: UnsafeMutableRawBufferPointer

    /// Copies `bytes` into wiped-on-release storage. The caller still owns
    /// (and should wipe) the source it passed.
    public init(copying bytes: some Collection<UInt8>) {
        let byteCount = bytes.count
        storage = .allocate(byteCount: max(byteCount, 1), alignment: 16)
        UnsafeMutableRawBufferPointer(rebasing: storage[0..<byteCount]).copyBytes(from: bytes)
        count = byteCount
    }

    /// Draws `byteCount` bytes from the OpenSSL CSPRNG.
    public init(randomByteCount byteCount: Int) throws(SecureRandomError) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(byteCount, 1), alignment: 16)
        do {
            try SecureRandom.fill(UnsafeMutableRawBufferPointer(rebasing: buffer[0..<byteCount]))
        } catch {
            // Not yet owned by self, so deinit will not run for it: release here.
            OPENSSL_cleanse(buffer.baseAddress, buffer.count)
            buffer.deallocate()
            throw error
        }
        storage = buffer
        count = byteCount
    }

    deinit {
        OPENSSL_cleanse(storage.baseAddress, storage.count)
        storage.deallocate()
    }

    /// Number of secret bytes.
    public let count: Int

    /// Lends the secret bytes; do not let them escape the closure.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(rebasing: storage[0..<count]))
    }

    public var description: String { "SymmetricSecret(\(count) bytes, redacted)" }
    public var debugDescription: String { description }
}
