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
    /// How a seal ended.
    enum SealOutcome {
        case sealed
        /// The key's use limit was reached; nothing was written.
        case exhausted
        /// OpenSSL failed.
        case failed
    }

    private let encryptors: CipherContextPool
    private let decryptors: CipherContextPool

    /// Prepares `secret`, which must be 32 bytes.
    public convenience init(_ secret: SymmetricSecret) throws(EnvelopeError) {
        try self.init(secret, firstNonceCounter: 0)
    }

    init(_ secret: SymmetricSecret, firstNonceCounter: UInt64) throws(EnvelopeError) {
        guard secret.count == 32 else { throw .invalidArgument("AES-256 keys are 32 bytes, got \(secret.count)") }
        encryptors = CipherContextPool(secret: secret, encrypting: true, firstUse: firstNonceCounter)
        decryptors = CipherContextPool(secret: secret, encrypting: false)
    }

    public var description: String { "AESGCMKey(redacted)" }

    /// The next nonce counter value ``seal(limit:noncePrefix:nonce:aad:plaintext:ciphertext:tag:)`` will use.
    var nonceCounter: UInt64 { encryptors.uses }

    /// Encrypts `plaintext` to `ciphertext` (same length) and writes the tag.
    ///
    /// The nonce is `noncePrefix` followed by this key's next counter value
    /// (below `limit`), written to `nonce`; `aad` is called after that, since
    /// the nonce is part of the header and so of the AAD.
    func seal(
        limit: UInt64, noncePrefix: UInt32, nonce: UnsafeMutableRawPointer,
        aad: (_ use: (UnsafeRawBufferPointer) -> Bool) -> Bool,
        plaintext: UnsafeRawBufferPointer, ciphertext: UnsafeMutableRawPointer, tag: UnsafeMutableRawPointer
    ) -> SealOutcome {
        let outcome = encryptors.withContext(numberedBelow: limit) { ctx, counter in
            nonce.storeBytes(of: noncePrefix.bigEndian, toByteOffset: 0, as: UInt32.self)
            nonce.storeBytes(of: counter.bigEndian, toByteOffset: 4, as: UInt64.self)
            var length: Int32 = 0
            guard EVP_EncryptInit_ex(ctx, nil, nil, nil, nonce.assumingMemoryBound(to: UInt8.self)) == 1,
                  aad({ Self.update(ctx, aad: $0, encrypting: true) }),
                  Self.transform(ctx, plaintext, into: ciphertext, encrypting: true),
                  EVP_EncryptFinal_ex(ctx, ciphertext.assumingMemoryBound(to: UInt8.self) + plaintext.count, &length) == 1
            else { return false }
            return Self.tag(ctx, tag, get: true)
        }
        switch outcome {
        case nil: return .exhausted
        case true?: return .sealed
        case false?: return .failed
        }
    }

    /// Decrypts and authenticates. On false (authentication or OpenSSL
    /// failure) the `plaintext` region has been wiped.
    func open(
        nonce: UnsafeRawPointer, aad: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer, tag: UnsafeRawPointer, plaintext: UnsafeMutableRawPointer
    ) -> Bool {
        let ok = decryptors.withContext { ctx in
            var length: Int32 = 0
            // Setting the tag only reads through this pointer despite the mutable type.
            return EVP_DecryptInit_ex(ctx, nil, nil, nil, nonce.assumingMemoryBound(to: UInt8.self)) == 1
                && Self.update(ctx, aad: aad, encrypting: false)
                && Self.transform(ctx, ciphertext, into: plaintext, encrypting: false)
                && Self.tag(ctx, UnsafeMutableRawPointer(mutating: tag), get: false)
                && EVP_DecryptFinal_ex(
                    ctx, plaintext.assumingMemoryBound(to: UInt8.self) + ciphertext.count, &length) == 1
        }
        if !ok, ciphertext.count > 0 {
            OPENSSL_cleanse(plaintext, ciphertext.count)
        }
        return ok
    }

    /// Gets or sets the tag through the parameter API: in OpenSSL 3 the
    /// `EVP_CIPHER_CTX_ctrl` route translates to these parameters anyway, at
    /// extra cost per record.
    @inline(__always)
    private static func tag(_ ctx: OpaquePointer, _ tag: UnsafeMutableRawPointer, get: Bool) -> Bool {
        var params = (
            OSSL_PARAM_construct_octet_string(Self.tagParameterName, tag, Envelope.tagByteCount),
            OSSL_PARAM_construct_end())
        return withUnsafeMutablePointer(to: &params) { tuple in
            tuple.withMemoryRebound(to: OSSL_PARAM.self, capacity: 2) { list in
                get ? EVP_CIPHER_CTX_get_params(ctx, list) == 1 : EVP_CIPHER_CTX_set_params(ctx, list) == 1
            }
        }
    }

    /// OSSL_CIPHER_PARAM_AEAD_TAG. The parameter keeps the pointer, so it must
    /// be static, NUL-terminated storage, which a StaticString literal is.
    private static var tagParameterName: UnsafePointer<CChar> {
        UnsafeRawPointer(("tag" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self)
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

/// OpenSSL cipher contexts keyed once with one key, lent out one caller at a
/// time, and a count of the uses handed out (the encryption side's nonce
/// counter), kept under the same lock so a record costs one lock round trip
/// to borrow and one to return.
final class CipherContextPool: Sendable {
    /// Contexts kept for reuse; more than this many concurrent users is not
    /// expected (one per event loop), and extras are simply freed.
    private static let retained = 16

    private struct State: @unchecked Sendable {
        // @unchecked: the pointers are only touched under the box's lock, and a
        // borrowed context belongs to exactly one caller until it is returned.
        var idle: [OpaquePointer] = []
        var uses: UInt64
    }

    private let secret: SymmetricSecret
    private let encrypting: Bool
    private let state: NIOLockedValueBox<State>

    init(secret: SymmetricSecret, encrypting: Bool, firstUse: UInt64 = 0) {
        self.secret = secret
        self.encrypting = encrypting
        state = NIOLockedValueBox(State(uses: firstUse))
    }

    deinit {
        // EVP_CIPHER_CTX_free cleanses the expanded key schedule.
        state.withLockedValue { state in
            for ctx in state.idle { EVP_CIPHER_CTX_free(ctx) }
            state.idle = []
        }
    }

    /// Uses handed out so far (including the starting value).
    var uses: UInt64 { state.withLockedValue { $0.uses } }

    /// Runs `body` with an exclusively borrowed context; false if none could be made.
    @inline(__always)
    func withContext(_ body: (OpaquePointer) -> Bool) -> Bool {
        let borrowed = state.withLockedValue { $0.idle.popLast() }
        return run(borrowed, body)
    }

    /// Like ``withContext(_:)``, also numbering this use: `body` gets the use
    /// number, which is below `limit`. Returns nil, without running `body`,
    /// once `limit` uses have been handed out.
    @inline(__always)
    func withContext(numberedBelow limit: UInt64, _ body: (OpaquePointer, UInt64) -> Bool) -> Bool? {
        let (borrowed, use) = state.withLockedValue { state -> (OpaquePointer??, UInt64) in
            guard state.uses < limit else { return (nil, 0) }
            defer { state.uses += 1 }
            return (.some(state.idle.popLast()), state.uses)
        }
        guard let borrowed else { return nil }
        return run(borrowed) { body($0, use) }
    }

    @inline(__always)
    private func run(_ borrowed: OpaquePointer?, _ body: (OpaquePointer) -> Bool) -> Bool {
        guard let ctx = borrowed ?? makeContext() else { return false }
        let ok = body(ctx)
        let kept = state.withLockedValue { state -> Bool in
            guard state.idle.count < Self.retained else { return false }
            state.idle.append(ctx)
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
