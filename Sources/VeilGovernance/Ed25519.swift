import COpenSSL

/// Ed25519 through OpenSSL's libcrypto, which Veil already links for AES-GCM; this keeps
/// signing free of a second crypto library.
enum Ed25519 {
    static let keyLength = 32
    static let signatureLength = 64

    /// The public key of a 32-byte private seed.
    static func publicKey(ofSeed seed: [UInt8]) -> [UInt8]? {
        guard let key = privateKey(seed) else { return nil }
        defer { EVP_PKEY_free(key) }
        var out = [UInt8](repeating: 0, count: keyLength)
        var length = keyLength
        guard EVP_PKEY_get_raw_public_key(key, &out, &length) == 1, length == keyLength else { return nil }
        return out
    }

    static func sign(_ message: [UInt8], seed: [UInt8]) -> [UInt8]? {
        guard let key = privateKey(seed), let context = EVP_MD_CTX_new() else { return nil }
        defer {
            EVP_MD_CTX_free(context)
            EVP_PKEY_free(key)
        }
        var signature = [UInt8](repeating: 0, count: signatureLength)
        var length = signatureLength
        guard EVP_DigestSignInit(context, nil, nil, nil, key) == 1,
            EVP_DigestSign(context, &signature, &length, message, message.count) == 1, length == signatureLength
        else { return nil }
        return signature
    }

    static func verify(_ signature: [UInt8], of message: [UInt8], publicKey: [UInt8]) -> Bool {
        guard signature.count == signatureLength, publicKey.count == keyLength,
            let key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, publicKey, keyLength)
        else { return false }
        guard let context = EVP_MD_CTX_new() else {
            EVP_PKEY_free(key)
            return false
        }
        defer {
            EVP_MD_CTX_free(context)
            EVP_PKEY_free(key)
        }
        return EVP_DigestVerifyInit(context, nil, nil, nil, key) == 1
            && EVP_DigestVerify(context, signature, signatureLength, message, message.count) == 1
    }

    private static func privateKey(_ seed: [UInt8]) -> OpaquePointer? {
        guard seed.count == keyLength else { return nil }
        return EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, seed, keyLength)
    }
}
