import Foundation
import VeilKMS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A failure a command reports to the operator before exiting non-zero: what went wrong, with
/// the file involved and the fix, already phrased for a terminal.
struct CommandFailure: Error, CustomStringConvertible {
    let message: String

    init(_ message: String) { self.message = message }

    var description: String { self.message }
}

/// Where command output goes. Diagnostics go to standard error so scripts can pipe the
/// regular output (key lists, summaries) without them.
enum Console {
    static func out(_ line: String) {
        print(line)
    }

    static func error(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

extension CommandFailure {
    /// Turns a keyring error into a message with the fix, as far as the CLI can tell what it is.
    ///
    /// `KeyringError` already names the file and never contains key material; this adds the
    /// command that repairs the situation, which VeilKMS cannot know about.
    ///
    /// `base` is the working directory a relative keyring path was resolved against, worth
    /// naming when the file is missing because a sidecar may run from another directory.
    init(_ error: KeyringError, base: String? = nil) {
        switch error {
        case .io(let path, "open", ENOENT):
            let resolved = base.map { path.hasPrefix("/") ? "" : " (resolved against the working directory \($0))" } ?? ""
            self.init(
                "keyring \(path)\(resolved) does not exist. "
                    + "Fix: create it with `veil keys create --keyring \(path) --key KEY_ID`, or correct the path")
        case .io(let path, "open", EACCES):
            self.init(
                "cannot read keyring \(path): permission denied. Fix: run veil as the user that owns the keyring")
        case .io(let temporary, "create", let code) where code == ENOENT || code == EACCES:
            // The failing path is the temporary file beside the keyring; its directory is what to fix.
            let directory = (temporary as NSString).deletingLastPathComponent
            let shown = directory.isEmpty ? "." : directory
            self.init(
                code == ENOENT
                    ? "cannot write a keyring in \(shown): the directory does not exist. Fix: mkdir -p \(shown)"
                    : "cannot write a keyring in \(shown): permission denied. Fix: run veil as a user that may write there")
        case .malformed:
            self.init("\(error). Fix: restore the file from a backup; docs/FORMAT.md describes the format")
        case .keyExists(let keyId, let path):
            self.init(
                "\(error); refusing to replace it, since records encrypted under the old key would become unreadable. "
                    + "Fix: choose another --key than '\(keyId)' (`veil keys list --keyring \(path)` shows the ids in use)")
        case .keyConflict(let keyId, _):
            self.init(
                "\(error): the two keys share the id '\(keyId)' but not their material, so neither could read "
                    + "the other's records. Fix: grant into a keyring for another identity, or use distinct key ids")
        default:
            self.init(error.description)
        }
    }
}
