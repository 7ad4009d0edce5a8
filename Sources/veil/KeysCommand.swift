import ArgumentParser
import Foundation
import VeilKMS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `veil keys`: administer local keyring files (one per identity) without ever showing key material.
struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, grant and list keys in local keyring files.",
        discussion: """
            A keyring file holds the key-encryption keys granted to one identity. Files are written \
            with mode 0600 and refused when group or others can read them. Key material is never printed.
            """,
        subcommands: [CreateKey.self, GrantKey.self, ListKeys.self, RotateKey.self, DestroyKey.self])
}

/// `veil keys create`: a new random 256-bit key in a keyring, creating the keyring if needed.
struct CreateKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a new 256-bit key in a keyring (creating the keyring file if missing).")

    @Option(name: .long, help: "The keyring file.")
    var keyring: String

    @Option(name: .customLong("key"), help: "The id of the new key, as used after the '/' in KMS/KEY_ID.")
    var keyId: String

    @Option(name: .long, help: "The identity of a new keyring (default: the file name without extension).")
    var identity: String?

    func run() throws {
        try KeyringCommands.reporting {
            try KeyringCommands.validateKeyId(self.keyId)
            let (_, owner) = try KeyringCommands.changing(self.keyring, identity: self.identity) { () throws(KeyringError) in
                try KeyringFile.createKey(self.keyId, in: self.keyring)
            }
            Console.out("created key '\(self.keyId)' (AES-256) in keyring \(self.keyring) of identity '\(owner)'")
        }
    }
}

/// `veil keys grant`: copy a key into another identity's keyring, which is what grants it.
struct GrantKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grant",
        abstract: "Copy a key from one keyring into another (creating the destination keyring if missing).")

    @Option(name: .long, help: "The keyring that holds the key.")
    var from: String

    @Option(name: .long, help: "The keyring of the identity being granted the key.")
    var to: String

    @Option(name: .customLong("key"), help: "The id of the key to grant.")
    var keyId: String

    @Option(name: .long, help: "The identity of a new destination keyring (default: its file name without extension).")
    var identity: String?

    func run() throws {
        try KeyringCommands.reporting {
            try KeyringCommands.validateKeyId(self.keyId)
            if KeyringCommands.sameFile(self.from, self.to) {
                throw CommandFailure(
                    "--from and --to are the same keyring (\(self.to)); nothing to grant. "
                        + "Fix: name the keyring of the identity that should receive the key as --to")
            }
            // Check the source first, so a typo in the key id does not leave an empty destination behind.
            let source = try KeyringCommands.contents(of: self.from)
            guard source.keyIds.contains(self.keyId) else {
                let held = source.keyIds.isEmpty ? "none" : source.keyIds.joined(separator: ", ")
                throw CommandFailure(
                    "keyring \(self.from) has no key '\(self.keyId)' (it holds: \(held)). "
                        + "Fix: create it with `veil keys create --keyring \(self.from) --key \(self.keyId)`, "
                        + "or name a key it holds")
            }
            let (changed, recipient) = try KeyringCommands.changing(self.to, identity: self.identity) { () throws(KeyringError) in
                try KeyringFile.grant(self.keyId, from: self.from, to: self.to)
            }
            if changed {
                Console.out(
                    "granted key '\(self.keyId)' of keyring \(self.from) (identity '\(source.identity)') "
                        + "to identity '\(recipient)' in keyring \(self.to)")
            } else {
                Console.out("keyring \(self.to) (identity '\(recipient)') already holds key '\(self.keyId)'; nothing changed")
            }
        }
    }
}

/// `veil keys list`: who a keyring belongs to and which key ids it holds.
struct ListKeys: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "Show a keyring's identity and key ids (never key material).")

    @Option(name: .long, help: "The keyring file.")
    var keyring: String

    func run() throws {
        do {
            let contents = try KeyringCommands.contents(of: self.keyring)
            Console.out("keyring: \(self.keyring)")
            Console.out("identity: \(contents.identity)")
            Console.out("keys: \(contents.keyIds.count)")
            let versions = (try? KeyringFile.versions(keyring)) ?? [:]
            for keyId in contents.keyIds {
                let latest = versions[keyId]?.last ?? 1
                Console.out(latest > 1 ? "  \(keyId) (version \(latest))" : "  \(keyId)")
            }
        } catch {
            Console.error("error: \(error)")
            throw ExitCode.failure
        }
    }
}

/// `veil keys rotate`: a new version of a key; records sealed from then on use it, older
/// records stay readable through the older versions kept beside it.
struct RotateKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate",
        abstract: "Add a new version of a key: new records use it, older records stay readable.",
        discussion: """
            Then grant the key again to every keyring that holds it (`veil keys grant`, or \
            `veil policy render --keyring-dir`), which copies the new version, and restart the sidecars: \
            they load keyrings at start-up.
            """)

    @Option(name: .long, help: "The keyring that owns the key.")
    var keyring: String

    @Option(name: .customLong("key"), help: "The id of the key to rotate.")
    var keyId: String

    func run() throws {
        do {
            let version = try KeyringFile.rotateKey(keyId, in: keyring)
            Console.out("rotated key '\(keyId)' in keyring \(keyring): new data keys are wrapped under version \(version); "
                        + (version == 2 ? "version 1 stays" : "versions 1-\(version - 1) stay") + " for older records")
        } catch {
            Console.error("error: \(CommandFailure(error))")
            throw ExitCode.failure
        }
    }
}

/// `veil keys destroy`: crypto-shredding. Removes a key from every keyring named, so the
/// records encrypted under it can no longer be decrypted by any identity that loads them.
struct DestroyKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "destroy",
        abstract: "Destroy a key in every keyring given (crypto-shredding: its records become unreadable).",
        discussion: """
            Name every keyring that holds the key (the domain's and each application's); a keyring \
            without it is reported and left alone. Sidecars load keyrings at start-up and keep unwrapped \
            data keys in memory: restart them for the destruction to reach them. Backups of keyring \
            files still hold the key; destroy those too.
            """)

    @Option(name: .long, help: "A keyring that may hold the key (repeat for each).")
    var keyring: [String]

    @Option(name: .customLong("key"), help: "The id of the key to destroy.")
    var keyId: String

    @Option(name: .long, help: "The key id again, to confirm that its records are to become unreadable.")
    var confirm: String

    func run() throws {
        guard confirm == keyId else {
            Console.error("error: --confirm must repeat the key id '\(keyId)': destroying a key makes its records unreadable for good")
            throw ExitCode.failure
        }
        guard !keyring.isEmpty else {
            Console.error("error: name at least one --keyring")
            throw ExitCode.failure
        }
        var destroyed = 0
        for path in keyring {
            do {
                if try KeyringFile.destroyKey(keyId, in: path) {
                    destroyed += 1
                    Console.out("destroyed key '\(keyId)' in keyring \(path)")
                } else {
                    Console.out("keyring \(path) does not hold key '\(keyId)'; unchanged")
                }
            } catch {
                Console.error("error: \(CommandFailure(error))")
                throw ExitCode.failure
            }
        }
        Console.out("key '\(keyId)' destroyed in \(destroyed) of \(keyring.count) keyrings")
    }
}

/// The steps the `keys` subcommands share, with errors already turned into operator messages.
enum KeyringCommands {
    static func contents(of path: String) throws(CommandFailure) -> (identity: String, keyIds: [String]) {
        do {
            return try KeyringFile.list(path)
        } catch {
            throw CommandFailure(error)
        }
    }

    static func identity(of path: String) throws(CommandFailure) -> String {
        try self.contents(of: path).identity
    }

    /// Makes sure a keyring exists at `path`. Returns the identity of a keyring it created, or
    /// `nil` when one was already there; an existing keyring must belong to `identity` if given.
    static func openOrCreate(_ path: String, identity: String?) throws(CommandFailure) -> String? {
        if FileManager.default.fileExists(atPath: path) {
            let existing = try self.identity(of: path)
            if let identity, identity != existing {
                throw CommandFailure(
                    "keyring \(path) belongs to identity '\(existing)', not '\(identity)'. "
                        + "Fix: drop --identity, or name the keyring file of identity '\(identity)'")
            }
            return nil
        }
        let owner = identity ?? self.defaultIdentity(for: path)
        guard !owner.isEmpty, !owner.contains(where: { $0.isNewline }) else {
            throw CommandFailure("cannot derive an identity from the file name \(path). Fix: pass --identity NAME")
        }
        do {
            try KeyringFile.create(at: path, identity: owner)
        } catch .alreadyExists {
            // Someone created it between our check and our write; use theirs, as if it had been there.
            return nil
        } catch {
            throw CommandFailure(error)
        }
        return owner
    }

    /// Removes a keyring this command just created if it is still empty, so a failed command
    /// leaves the file system as it found it.
    /// Runs `change` on the keyring at `path`, creating the keyring first if it is missing.
    /// Returns what `change` returned and the keyring's identity.
    static func changing<T>(_ path: String, identity: String?, _ change: () throws(KeyringError) -> T) throws(CommandFailure) -> (T, String) {
        let created = try self.openOrCreate(path, identity: identity)
        let result: T
        do {
            result = try change()
        } catch {
            // An empty keyring left behind by a failed first key would only confuse the next attempt.
            if let created { try? self.removeIfEmpty(path, identity: created) }
            throw CommandFailure(error)
        }
        let owner = try self.identity(of: path)
        if created != nil { Console.out("created keyring \(path) for identity '\(owner)' (mode 0600)") }
        return (result, owner)
    }

    /// Runs a subcommand's body, printing a failure as `error: …` and exiting 1.
    static func reporting(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let failure as CommandFailure {
            Console.error("error: \(failure)")
            throw ExitCode.failure
        }
    }

    static func removeIfEmpty(_ path: String, identity: String) throws {
        let contents = try KeyringFile.list(path)
        if contents.identity == identity && contents.keyIds.isEmpty { try FileManager.default.removeItem(atPath: path) }
    }

    /// `keys/finance.keyring` belongs to `finance`: one file per identity, named after it.
    static func defaultIdentity(for path: String) -> String {
        let name = (path as NSString).lastPathComponent
        let stem = (name as NSString).deletingPathExtension
        return stem.isEmpty ? name : stem
    }

    /// Refuses ids that the keyring would accept but configuration could never reference.
    static func validateKeyId(_ keyId: String) throws(CommandFailure) {
        // Configuration rejects whitespace inside KMS/KEY_ID references, so such a key would be unusable.
        if keyId.contains(where: \.isWhitespace) {
            throw CommandFailure(
                "invalid key id '\(keyId)': key ids may not contain whitespace, since configuration could not refer to them")
        }
        guard KeyReference(kms: "kms", keyId: keyId) != nil else {
            throw CommandFailure(KeyringError.invalidKeyId(keyId))
        }
    }

    /// Whether two paths name the same existing file (also through links or `./` spellings).
    static func sameFile(_ a: String, _ b: String) -> Bool {
        var first = stat()
        var second = stat()
        guard stat(a, &first) == 0, stat(b, &second) == 0 else { return false }
        return first.st_dev == second.st_dev && first.st_ino == second.st_ino
    }
}
