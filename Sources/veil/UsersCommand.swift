import ArgumentParser
import Foundation
import VeilConfig
import VeilSASL

/// `veil users`: the gateway's users file, which holds salted SCRAM secrets only.
struct Users: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the gateway's users file (salted SCRAM secrets, never passwords).",
        subcommands: [AddUser.self])
}

/// `veil users add`: adds or replaces a user, with secrets for both SCRAM digests.
struct AddUser: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Add or replace a user. The password is read from standard input (one line) or --password-env.",
        discussion: "The file is written with mode 0600. PLAIN logins are checked against the same secrets.")

    @Option(name: .long, help: "The users file (created if missing).")
    var file: String

    @Option(name: .long, help: "The user name clients log in with.")
    var user: String

    @Option(name: .long, help: "The gateway identity the user acts as (default: the user name).")
    var identity: String?

    @Option(name: .long, help: "Read the password from this environment variable instead of standard input.")
    var passwordEnv: String?

    @Option(name: .long, help: "PBKDF2 iterations (at least 4096).")
    var iterations: Int = 8192

    func run() throws {
        guard iterations >= ScramCredential.minimumIterations else {
            throw ValidationError("--iterations must be at least \(ScramCredential.minimumIterations)")
        }
        let password: String
        if let name = passwordEnv {
            guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
                Console.error("error: environment variable \(name) is not set")
                throw ExitCode.failure
            }
            password = value
        } else {
            guard let line = readLine(strippingNewline: true), !line.isEmpty else {
                Console.error("error: no password on standard input")
                throw ExitCode.failure
            }
            password = line
        }
        var users: [String: GatewayUsers.User] = [:]
        if let data = FileManager.default.contents(atPath: file) {
            do {
                users = try GatewayUsers.parse(yaml: String(decoding: data, as: UTF8.self)).users
            } catch {
                Console.error("error: \(file): \(error)")
                throw ExitCode.failure
            }
        }
        let credentials = Dictionary(uniqueKeysWithValues: SaslDigest.allCases.map {
            ($0, ScramCredential(digest: $0, password: password, iterations: iterations))
        })
        let replaced = users[user] != nil
        users[user] = GatewayUsers.User(name: user, identity: identity ?? user, credentials: credentials)
        let text = GatewayUsers(users: users).yaml()
        let ok = FileManager.default.createFile(
            atPath: file + ".tmp", contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
        guard ok, rename(file + ".tmp", file) == 0 else {
            Console.error("error: cannot write \(file)")
            throw ExitCode.failure
        }
        Console.out("\(replaced ? "replaced" : "added") user '\(user)' (identity '\(identity ?? user)') in \(file)")
    }
}
