#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads the small files Veil is configured with (configuration, keyrings, users and password
/// files, signatures) without ever blocking on what is at the path, and within a size limit.
///
/// A FIFO or device put where such a file was expected would otherwise block `open` or `read`
/// until a writer appears: start-up would hang, and on SIGHUP the signal loop with it (so
/// SIGTERM too). Opening with O_NONBLOCK and checking the descriptor's type refuses them instead.
package enum BoundedFile {
    /// Why a file could not be read, without the path (callers name the file their own way).
    package enum Failure: Error, Sendable, Equatable {
        case system(operation: String, errno: Int32)
        /// Directory, FIFO, socket, device: `kind` says which.
        case notRegularFile(kind: String)
        case tooLarge(limit: Int)
        case permissionsTooOpen(mode: UInt32)

        /// For people: "open failed: No such file or directory", "it is a FIFO, not a regular file".
        package var reason: String {
            switch self {
            case .system(let operation, let errno): "\(operation) failed: \(SystemError.message(errno))"
            case .notRegularFile(let kind): "it is \(kind), not a regular file"
            case .tooLarge(let limit): "larger than \(limit) bytes"
            case .permissionsTooOpen(let mode): "mode 0\(String(mode & 0o777, radix: 8)) lets group or others access it"
            }
        }
    }

    /// The file's bytes. With `privateOnly`, a file that group or others may access is refused,
    /// and the read buffer is wiped afterwards (the contents are secret).
    package static func contents(of path: String, limit: Int, privateOnly: Bool = false) throws(Failure) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw .system(operation: "open", errno: errno) }
        defer { close(fd) }
        // fstat the descriptor we read from, so the checked file is the read file.
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .system(operation: "fstat", errno: errno) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw .notRegularFile(kind: kind(info.st_mode)) }
        if privateOnly, info.st_mode & 0o077 != 0 { throw .permissionsTooOpen(mode: UInt32(info.st_mode)) }
        guard info.st_size <= limit else { throw .tooLarge(limit: limit) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        defer { if privateOnly { chunk.withUnsafeMutableBytes { wipe($0) } } }
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .system(operation: "read", errno: errno)
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
            guard bytes.count <= limit else { throw .tooLarge(limit: limit) }
        }
        return bytes
    }

    private static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO"
        case S_IFSOCK: "a socket"
        case S_IFCHR, S_IFBLK: "a device"
        default: "not a regular file"
        }
    }
}
