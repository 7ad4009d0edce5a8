/// Why a keyring file could not be loaded or changed. Messages name paths and
/// key ids, never key material, and say how to fix the problem where they can.
public enum KeyringError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file is readable or writable by group or others.
    case permissionsTooOpen(path: String, mode: UInt32)
    /// The path exists but is not a regular file.
    case notRegularFile(path: String)
    /// A system call failed.
    case io(path: String, operation: String, errno: Int32)
    /// The file is not a valid keyring document.
    case malformed(path: String, reason: String)
    /// `create` refused to overwrite an existing file.
    case alreadyExists(path: String)
    /// The keyring already has a key with this id.
    case keyExists(keyId: String, path: String)
    /// The keyring has no key with this id.
    case keyNotInKeyring(keyId: String, path: String)
    /// Granting would replace a different key that has the same id.
    case keyConflict(keyId: String, path: String)
    /// The key id is empty, too long, or contains control characters.
    case invalidKeyId(String)

    public var description: String {
        switch self {
        case .permissionsTooOpen(let path, let mode):
            let octal = String(mode & 0o777, radix: 8)
            return "keyring \(path) has mode 0\(octal), so group or others can access it; refusing to use it. "
                + "Fix: chmod 600 \(path)"
        case .notRegularFile(let path):
            return "keyring \(path) is not a regular file"
        case .io(let path, let operation, let errno):
            return "keyring \(path): \(operation) failed: \(SystemError.message(errno))"
        case .malformed(let path, let reason):
            return "keyring \(path) is malformed: \(reason)"
        case .alreadyExists(let path):
            return "keyring \(path) already exists; refusing to overwrite it"
        case .keyExists(let keyId, let path):
            return "keyring \(path) already has a key '\(keyId)'"
        case .keyNotInKeyring(let keyId, let path):
            return "keyring \(path) has no key '\(keyId)'"
        case .keyConflict(let keyId, let path):
            return "keyring \(path) already has a different key named '\(keyId)'; refusing to replace it"
        case .invalidKeyId(let keyId):
            return "invalid key id '\(keyId)': it must be 1 to \(KeyReference.maximumKeyIdLength) bytes "
                + "of printable characters"
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

enum SystemError {
    static func message(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return "\(String(cString: text)) (errno \(code))"
    }
}
