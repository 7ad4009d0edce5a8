import COpenSSL

/// One-shot AES-256-GCM for cold paths (wrapping a DEK once per data key).
///
/// It builds a fresh cipher context per call, which is fine at KMS call rates;
/// per-record encryption lives in VeilEnvelope and reuses contexts.
enum AES256GCM {
    static let keyByteCount = 32
    static let nonceByteCount = 12
    static let tagByteCount = 16

    /// Returns ciphertext followed by the 16-byte tag, or nil if OpenSSL fails.
    static func seal(
        key: UnsafeRawBufferPointer, nonce: [UInt8], aad: [UInt8], plaintext: UnsafeRawBufferPointer
    ) -> [UInt8]? {
        precondition(key.count == keyByteCount && nonce.count == nonceByteCount)
        guard let ctx = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(ctx) }
        var output = [UInt8](repeating: 0, count: plaintext.count + tagByteCount)
        let ok = output.withUnsafeMutableBytes { out -> Bool in
            let outBase = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
            var length: Int32 = 0
            guard EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nil, u8(key), nonce) == 1,
                  aad.isEmpty || EVP_EncryptUpdate(ctx, nil, &length, aad, Int32(aad.count)) == 1,
                  plaintext.isEmpty
                    || EVP_EncryptUpdate(ctx, outBase, &length, u8(plaintext), Int32(plaintext.count)) == 1,
                  EVP_EncryptFinal_ex(ctx, outBase + plaintext.count, &length) == 1,
                  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, Int32(tagByteCount), outBase + plaintext.count) == 1
            else { return false }
            return true
        }
        return ok ? output : nil
    }

    /// Authenticates and decrypts `sealed` (ciphertext followed by tag) into
    /// `output`, which must hold `sealed.count - 16` bytes. On failure the
    /// output is wiped and false is returned.
    static func open(
        key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, aad: [UInt8],
        sealed: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer
    ) -> Bool {
        precondition(key.count == keyByteCount && nonce.count == nonceByteCount)
        guard sealed.count >= tagByteCount else { return false }
        let textCount = sealed.count - tagByteCount
        precondition(output.count == textCount)
        guard let ctx = EVP_CIPHER_CTX_new() else { return false }
        defer { EVP_CIPHER_CTX_free(ctx) }
        // GCM's tag argument is declared mutable but only read when setting it.
        var tag = Array(sealed[textCount...])
        var length: Int32 = 0
        let outBase = output.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nil, u8(key), u8(nonce)) == 1
            && (aad.isEmpty || EVP_DecryptUpdate(ctx, nil, &length, aad, Int32(aad.count)) == 1)
            && (textCount == 0 || EVP_DecryptUpdate(ctx, outBase, &length, u8(sealed), Int32(textCount)) == 1)
            && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, Int32(tagByteCount), &tag) == 1
            && EVP_DecryptFinal_ex(ctx, outBase.map { $0 + textCount }, &length) == 1
        if !ok, output.count > 0 {
            OPENSSL_cleanse(output.baseAddress, output.count)
        }
        return ok
    }

    private static func u8(_ buffer: UnsafeRawBufferPointer) -> UnsafePointer<UInt8>? {
        buffer.baseAddress?.assumingMemoryBound(to: UInt8.self)
    }
}
