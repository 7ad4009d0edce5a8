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
        // O_NONBLOCK: opening a FIFO put where the keyring was would otherwise block until a
        // writer appears, hanging start-up or, on SIGHUP, the signal loop (so SIGTERM too).
        // The fstat below then refuses it; reads of a regular file ignore the flag.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw .io(path: path, operation: "open", errno: errno) }
        defer { close(fd) }
        // fstat the descriptor we read from, so the checked file is the read file.
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .io(path: path, operation: "fstat", errno: errno) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw .notRegularFile(path: path) }
        guard info.st_mode & 0o077 == 0 else { throw .permissionsTooOpen(path: path, mode: UInt32(info.st_mode)) }
        guard info.st_size <= maximumSize else {
            throw .malformed(path: path, reason: "larger than \(maximumSize) bytes")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "read", errno: errno)
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
            guard bytes.count <= maximumSize else {
                throw .malformed(path: path, reason: "larger than \(maximumSize) bytes")
            }
        }
        chunk.withUnsafeMutableBytes { wipe($0) }
        return bytes
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
