#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads and writes small secret files: refuses to read a file that group or
/// others can access, and writes atomically (temporary file, fsync, rename)
/// with mode 0600 so a crash never leaves a half-written or exposed keyring.
package enum SecureFile {
    /// Keyrings are tiny; anything larger is not a keyring.
    static let maximumSize = 16 << 20

    package static func readPrivate(_ path: String) throws(KeyringError) -> [UInt8] {
        do {
            return try BoundedFile.contents(of: path, limit: maximumSize, privateOnly: true)
        } catch {
            switch error {
            case .system(let operation, let errno): throw .io(path: path, operation: operation, errno: errno)
            case .notRegularFile: throw .notRegularFile(path: path)
            case .tooLarge: throw .malformed(path: path, reason: error.reason)
            case .permissionsTooOpen(let mode): throw .permissionsTooOpen(path: path, mode: mode)
            }
        }
    }

    /// Replaces (or, with `exclusive`, creates) `path` atomically with mode 0600.
    package static func writeAtomically(_ bytes: [UInt8], to path: String, exclusive: Bool) throws(KeyringError) {
        let (directory, name) = split(path)
        let suffix = (try? SecureRandom.bytes(count: 6))?.map { String($0, radix: 16) }.joined() ?? "\(getpid())"
        let temporary = "\(directory)/.\(name).tmp-\(suffix)"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(path: temporary, operation: "create", errno: errno) }
        var committed = false
        defer { if !committed { unlink(temporary) } }
        try fill(fd, with: bytes, path: temporary)
        if exclusive {
            // link(2) fails if the target exists: creation that never clobbers.
            guard link(temporary, path) == 0 else {
                if errno == EEXIST { throw .alreadyExists(path: path) }
                throw .io(path: path, operation: "link", errno: errno)
            }
        } else {
            guard rename(temporary, path) == 0 else { throw .io(path: path, operation: "rename", errno: errno) }
            committed = true
        }
        syncDirectory(directory)
    }

    /// Writes, syncs and closes the temporary file.
    private static func fill(_ fd: Int32, with bytes: [UInt8], path: String) throws(KeyringError) {
        defer { close(fd) }
        // The umask can only remove bits, but be explicit anyway.
        guard fchmod(fd, 0o600) == 0 else { throw .io(path: path, operation: "fchmod", errno: errno) }
        try writeAll(fd, bytes, path: path)
        guard fsync(fd) == 0 else { throw .io(path: path, operation: "fsync", errno: errno) }
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(KeyringError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "write", errno: errno)
            }
            offset += n
        }
    }

    /// Makes the rename durable; failure here is not worth failing the write for.
    private static func syncDirectory(_ directory: String) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            _ = fsync(fd)
            close(fd)
        }
    }

    private static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }
}
