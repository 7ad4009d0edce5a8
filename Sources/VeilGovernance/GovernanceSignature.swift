import VeilKMS

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Signing of rendered sidecar configurations by the governance key (Ed25519), and the check a
/// sidecar makes before it trusts one.
///
/// Files, one line each (formats in docs/FORMAT.md):
/// - private key, mode 0600: `veil-governance-key ed25519-private BASE64(32-byte seed)`
/// - public key: `veil-governance-key ed25519-public BASE64(32 bytes)`
/// - signature, beside the signed file as `FILE.sig`: `veil-signature ed25519 BASE64(public key) BASE64(64 bytes)`
///
/// The signature covers the file's bytes exactly, so any edit, even whitespace, breaks it.
public enum GovernanceSignature {
    static let privateTag = "veil-governance-key ed25519-private "
    static let publicTag = "veil-governance-key ed25519-public "
    static let signatureTag = "veil-signature ed25519 "

    /// Where the signature of `path` lives.
    public static func signaturePath(for path: String) -> String { path + ".sig" }

    /// Creates a new key pair; refuses to overwrite an existing private key.
    public static func generateKeyPair(privateKeyPath: String, publicKeyPath: String) throws(SignatureError) {
        var seed: [UInt8]
        do {
            seed = try SymmetricSecret(randomByteCount: 32).withUnsafeBytes { Array($0) }
        } catch {
            throw .io("the random number generator failed")
        }
        defer { for i in seed.indices { seed[i] = 0 } }
        guard let publicKey = Ed25519.publicKey(ofSeed: seed) else { throw .io("cannot derive the Ed25519 public key") }
        do {
            try SecureFile.writeAtomically(Array((privateTag + Data(seed).base64EncodedString() + "\n").utf8), to: privateKeyPath, exclusive: true)
        } catch {
            throw .io("cannot write the private key: \(error)")
        }
        guard FileManager.default.createFile(atPath: publicKeyPath, contents: Data((publicTag + Data(publicKey).base64EncodedString() + "\n").utf8)) else {
            throw .io("cannot write the public key \(publicKeyPath)")
        }
    }

    /// Reads a public key file.
    public static func loadPublicKey(_ path: String) throws(SignatureError) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else { throw .io("cannot read the governance public key \(path)") }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.hasPrefix(publicTag), let key = Data(base64Encoded: String(text.dropFirst(publicTag.count))), key.count == 32 else {
            throw .io("\(path) is not a governance public key (expected a line starting '\(publicTag)')")
        }
        return Array(key)
    }

    /// The signature line for `message` under the private key in `privateKeyPath`.
    public static func sign(_ message: [UInt8], privateKeyPath: String) throws(SignatureError) -> String {
        var bytes: [UInt8]
        do {
            bytes = try SecureFile.readPrivate(privateKeyPath)
        } catch {
            throw .io("cannot read the governance private key: \(error)")
        }
        defer { for i in bytes.indices { bytes[i] = 0 } }
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.hasPrefix(privateTag), var seed = Data(base64Encoded: String(text.dropFirst(privateTag.count))).map(Array.init), seed.count == 32 else {
            throw .io("\(privateKeyPath) is not a governance private key")
        }
        defer { for i in seed.indices { seed[i] = 0 } }
        guard let publicKey = Ed25519.publicKey(ofSeed: seed), let signature = Ed25519.sign(message, seed: seed) else {
            throw .io("Ed25519 signing failed")
        }
        return signatureTag + Data(publicKey).base64EncodedString() + " " + Data(signature).base64EncodedString() + "\n"
    }

    /// Checks `message` (the bytes of `path`) against its signature line under `trustedKey`.
    /// Throws with the reason a sidecar should give for refusing the file.
    public static func verify(_ message: [UInt8], path: String, signature: String?, trustedKey: [UInt8]) throws(SignatureError) {
        guard let signature else { throw .unsigned(path: path) }
        let parts = signature.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ")
        guard parts.count == 4, "\(parts[0]) \(parts[1]) " == signatureTag,
            let signer = Data(base64Encoded: String(parts[2])), signer.count == 32,
            let value = Data(base64Encoded: String(parts[3])), value.count == 64
        else { throw .malformed(path: signaturePath(for: path)) }
        guard Array(signer) == trustedKey else {
            throw .untrustedSigner(path: path, signer: fingerprint(Array(signer)), trusted: fingerprint(trustedKey))
        }
        guard Ed25519.verify(Array(value), of: message, publicKey: trustedKey) else { throw .altered(path: path) }
    }

    /// A short name for a public key in messages: its first 8 bytes in hex.
    public static func fingerprint(_ key: [UInt8]) -> String {
        key.prefix(8).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

/// Why a signature could not be made or a signed file is not trusted.
public enum SignatureError: Error, CustomStringConvertible, Equatable {
    case io(String)
    case unsigned(path: String)
    case malformed(path: String)
    case untrustedSigner(path: String, signer: String, trusted: String)
    case altered(path: String)

    public var description: String {
        switch self {
        case .io(let message): message
        case .unsigned(let path):
            "\(path) is not signed: \(GovernanceSignature.signaturePath(for: path)) does not exist; sign it with `veil policy sign`"
        case .malformed(let path): "\(path) is not a Veil signature file"
        case .untrustedSigner(let path, let signer, let trusted):
            "\(path) is signed by key \(signer), not by the trusted governance key \(trusted)"
        case .altered(let path): "the signature does not match \(path): the file was changed after it was signed"
        }
    }
}
