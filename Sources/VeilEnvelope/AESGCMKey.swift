import COpenSSL
import NIOConcurrencyHelpers
import VeilKMS

/// An AES-256-GCM data key ready for per-record use.
///
/// Key setup is the dominant cost for small records, so the key is expanded
/// once into OpenSSL cipher contexts that are reused; each record only resets
/// the IV. Contexts are not thread-safe, so each is lent to one caller at a
/// time from a small pool: concurrent event loops never share a context and
/// never wait for each other's crypto.
public final class AESGCMKey: Sendable, CustomStringConvertible {
    private let encryptors: CipherContextPool
    private let decryptors: CipherContextPool

    /// Prepares `secret`, which must be 32 bytes.
    public init(_ secret: SymmetricSecret) throws(EnvelopeError) {
        guard secret.count == 32 else { throw .invalidArgument("AES-256 keys are 32 bytes, got \(secret.count)") }
        encryptors = CipherContextPool(secret: secret, encrypting: true)
        decryptors = CipherContextPool(secret: secret, encrypting: false)
    }

    public var description: String { "AESGCMKey(redacted)" }

    /// Encrypts `plaintext` to `ciphertext` (same length) and writes the tag.
    /// The AAD is `aad1 || aad2`. Returns false only if OpenSSL fails.
    func seal(
        nonce: UnsafeRawPointer, aad1: UnsafeRawBufferPointer, aad2: UnsafeRawBufferPointer,
        plaintext: UnsafeRawBufferPointer, ciphertext: UnsafeMutableRawPointer, tag: UnsafeMutableRawPointer
    ) -> Bool {
        encryptors.withContext { ctx in
            var length: Int32 = 0
            guard EVP_EncryptInit_ex(ctx, nil, nil, nil, nonce.assumingMemoryBound(to: UInt8.self)) == 1,
                  Self.update(ctx, aad: aad1, encrypting: true), Self.update(ctx, aad: aad2, encrypting: true),
                  Self.transform(ctx, plaintext, into: ciphertext, encrypting: true),
                  EVP_EncryptFinal_ex(ctx, ciphertext.assumingMemoryBound(to: UInt8.self) + plaintext.count, &length) == 1,
                  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, Int32(Envelope.tagByteCount), tag) == 1
            else { return false }
            return true
        }
    }

    /// Decrypts and authenticates. On false (authentication or OpenSSL
    /// failure) the `plaintext` region has been wiped.
    func open(
        nonce: UnsafeRawPointer, aad1: UnsafeRawBufferPointer, aad2: UnsafeRawBufferPointer,
        ciphertext: UnsafeRawBufferPointer, tag: UnsafeRawPointer, plaintext: UnsafeMutableRawPointer
    ) -> Bool {
        let ok = decryptors.withContext { ctx in
            var length: Int32 = 0
            // SET_TAG only reads through this pointer despite the mutable signature.
            let tagPointer = UnsafeMutableRawPointer(mutating: tag)
            return EVP_DecryptInit_ex(ctx, nil, nil, nil, nonce.assumingMemoryBound(to: UInt8.self)) == 1
                && Self.update(ctx, aad: aad1, encrypting: false) && Self.update(ctx, aad: aad2, encrypting: false)
                && Self.transform(ctx, ciphertext, into: plaintext, encrypting: false)
                && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, Int32(Envelope.tagByteCount), tagPointer) == 1
                && EVP_DecryptFinal_ex(
                    ctx, plaintext.assumingMemoryBound(to: UInt8.self) + ciphertext.count, &length) == 1
        }
        if !ok, ciphertext.count > 0 {
            OPENSSL_cleanse(plaintext, ciphertext.count)
        }
        return ok
    }

    // OpenSSL lengths are Int32, so very large inputs go through in chunks.
    private static let chunk = 1 << 30

    private static func update(_ ctx: OpaquePointer, aad: UnsafeRawBufferPointer, encrypting: Bool) -> Bool {
        guard let base = aad.baseAddress, aad.count > 0 else { return true }
        var offset = 0
        var length: Int32 = 0
        while offset < aad.count {
            let n = min(chunk, aad.count - offset)
            let input = (base + offset).assumingMemoryBound(to: UInt8.self)
            let rc = encrypting
                ? EVP_EncryptUpdate(ctx, nil, &length, input, Int32(n))
                : EVP_DecryptUpdate(ctx, nil, &length, input, Int32(n))
            guard rc == 1 else { return false }
            offset += n
        }
        return true
    }

    private static func transform(
        _ ctx: OpaquePointer, _ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer, encrypting: Bool
    ) -> Bool {
        guard let base = input.baseAddress, input.count > 0 else { return true }
        var offset = 0
        var length: Int32 = 0
        while offset < input.count {
            let n = min(chunk, input.count - offset)
            let source = (base + offset).assumingMemoryBound(to: UInt8.self)
            let target = (output + offset).assumingMemoryBound(to: UInt8.self)
            let rc = encrypting
                ? EVP_EncryptUpdate(ctx, target, &length, source, Int32(n))
                : EVP_DecryptUpdate(ctx, target, &length, source, Int32(n))
            // GCM is a stream mode: every input byte comes out at once.
            guard rc == 1, Int(length) == n else { return false }
            offset += n
        }
        return true
    }
}

/// OpenSSL cipher contexts keyed once with one key, lent out one caller at a time.
///
/// `@unchecked Sendable`: the context stack is only touched under `lock`, and a
/// borrowed context belongs to exactly one caller until it is returned.
final class CipherContextPool: @unchecked Sendable {
    /// Contexts kept for reuse; more than this many concurrent users is not
    /// expected (one per event loop), and extras are simply freed.
    private static let retained = 16

    private let secret: SymmetricSecret
    private let encrypting: Bool
    private let lock = NIOLock()
    private var idle: [OpaquePointer] = []

    init(secret: SymmetricSecret, encrypting: Bool) {
        self.secret = secret
        self.encrypting = encrypting
    }

    deinit {
        // EVP_CIPHER_CTX_free cleanses the expanded key schedule.
        for ctx in idle { EVP_CIPHER_CTX_free(ctx) }
    }

    /// Runs `body` with an exclusively borrowed context; false if none could be made.
    @inline(__always)
    func withContext(_ body: (OpaquePointer) -> Bool) -> Bool {
        let borrowed = lock.withLock { idle.popLast() }
        guard let ctx = borrowed ?? makeContext() else { return false }
        let ok = body(ctx)
        let kept = lock.withLock { () -> Bool in
            guard idle.count < Self.retained else { return false }
            idle.append(ctx)
            return true
        }
        if !kept { EVP_CIPHER_CTX_free(ctx) }
        return ok
    }

    private func makeContext() -> OpaquePointer? {
        guard let ctx = EVP_CIPHER_CTX_new() else { return nil }
        let ok = secret.withUnsafeBytes { key in
            let keyBytes = key.baseAddress!.assumingMemoryBound(to: UInt8.self)
            return encrypting
                ? EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nil, keyBytes, nil) == 1
                : EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nil, keyBytes, nil) == 1
        }
        guard ok else {
            EVP_CIPHER_CTX_free(ctx)
            return nil
        }
        return ctx
    }
}
