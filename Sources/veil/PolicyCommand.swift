import ArgumentParser
import Foundation
import VeilConfig
import VeilGovernance

/// `veil policy`: governance's catalog turned into checks, sidecar configs, AWS policies,
/// signatures and a review page.
struct Policy: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a governance catalog and render what enforces it.",
        discussion: """
            The catalog (YAML; docs/GOVERNANCE.md) records domains and their keys, data classes, applications, \
            grants and topic policies. Commands exit 0 on success, 2 when the catalog or a signature is invalid, \
            1 when a file cannot be read or written.
            """,
        subcommands: [PolicyCheck.self, PolicyRender.self, PolicyIAM.self, PolicyMatrix.self, PolicyKeygen.self, PolicySign.self, PolicyVerify.self])
}

/// Loading the catalog the same way in every subcommand.
enum CatalogFile {
    static func load(_ path: String) throws -> Catalog {
        guard let data = FileManager.default.contents(atPath: path) else {
            Console.error("error: cannot read the catalog \(path)")
            throw ExitCode.failure
        }
        do {
            return try Catalog.parse(yaml: String(decoding: data, as: UTF8.self))
        } catch {
            Console.error("error: \(path): \(error)")
            throw ExitCode(2)
        }
    }

    /// `--now` lets reviews and tests ask "as of when"; default the clock.
    static func time(_ text: String?) throws -> UTCTimestamp {
        guard let text else { return .now() }
        guard let time = UTCTimestamp(parsing: text) else { throw ValidationError("--now must be a UTC time such as 2026-11-30T21:00:00Z") }
        return time
    }

    static func write(_ text: String, to path: String) throws {
        do {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            Console.error("error: cannot write \(path): \(error.localizedDescription)")
            throw ExitCode.failure
        }
    }
}

/// `veil policy check`: dangling references, keys a domain doesn't own, data classes nobody
/// may read, expired grants.
struct PolicyCheck: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check", abstract: "Check a catalog for inconsistencies and expired grants.")

    @Argument(help: "The catalog file.") var catalog: String
    @Option(help: "Judge expiry as of this UTC time (default: now).") var now: String?
    @Option(help: "Warn about grants expiring within this many days.") var warnDays: Int = 7

    func run() throws {
        let parsed = try CatalogFile.load(catalog)
        let findings = CatalogCheck(parsed, now: try CatalogFile.time(now), warnWithin: Int64(warnDays) * 86_400).findings()
        for finding in findings { Console.error(finding.description) }
        let errors = findings.filter { $0.severity == .error }.count
        Console.out(
            "\(catalog): \(parsed.domains.count) domains, \(parsed.dataClasses.count) data classes, \(parsed.applications.count) applications, "
                + "\(parsed.grants.count) grants, \(parsed.topics.count) topic policies")
        if errors > 0 {
            Console.out("\(catalog) is invalid (\(errors) errors, \(findings.count - errors) warnings)")
            throw ExitCode(2)
        }
        Console.out("\(catalog) is valid (\(findings.count) warnings)")
    }
}

/// `veil policy render`: one application's sidecar configuration (and keyrings).
struct PolicyRender: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "render", abstract: "Write an application's sidecar configuration from the catalog.")

    @Argument(help: "The catalog file.") var catalog: String
    @Option(help: "The application.") var app: String
    @Option(help: "Write the configuration here (default: standard output).") var out: String?
    @Option(help: "Write the application's own keyrings for local-KMS domains into this directory, holding only its granted keys.")
    var keyringDir: String?
    @Option(help: "Render as of this UTC time (default: now).") var now: String?

    func run() throws {
        let parsed = try CatalogFile.load(catalog)
        let rendered: SidecarRenderer.Rendered
        do {
            rendered = try SidecarRenderer(parsed, now: try CatalogFile.time(now)).render(application: app, keyringDirectory: keyringDir, source: catalog)
            // What was rendered must be what a sidecar accepts; a failure here is a renderer bug.
            _ = try VeilConfiguration.parse(yaml: rendered.yaml)
            try KeyringWriter.write(rendered.keyrings)
        } catch {
            Console.error("error: \(error)")
            throw ExitCode(2)
        }
        if let out {
            try CatalogFile.write(rendered.yaml, to: out)
            Console.error("wrote \(out) for application \(app)")
        } else {
            print(rendered.yaml, terminator: "")
        }
        for keyring in rendered.keyrings {
            Console.error("wrote keyring \(keyring.destination) (identity '\(keyring.identity)', keys: \(keyring.keyIds.joined(separator: ", ")))")
        }
    }
}

/// `veil policy iam`: IAM identity policies and KMS key policies for the AWS-domain grants.
struct PolicyIAM: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "iam", abstract: "Write the IAM and KMS key policies that enforce the catalog's grants in AWS.")

    @Argument(help: "The catalog file.") var catalog: String
    @Option(help: "Write iam/APP.json and kms/DOMAIN.KEY.json here (default: one JSON object on standard output).") var outDir: String?
    @Option(help: "As of this UTC time (default: now); expired grants are left out.") var now: String?

    func run() throws {
        let parsed = try CatalogFile.load(catalog)
        let (documents, missing, localOnly) = IAMPolicies(parsed, now: try CatalogFile.time(now)).documents()
        for name in missing { Console.error("warning: application \(name) has grants on AWS KMS keys but no aws_principal; no policy written for it") }
        for grant in localOnly { Console.error("note: \(grant.path): \(grant.keyName) is in a local keyring; enforced by keyrings, not IAM") }
        if let outDir {
            for document in documents {
                let path = (outDir as NSString).appendingPathComponent(document.fileName)
                try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try CatalogFile.write(document.json, to: path)
                Console.out(path)
            }
            return
        }
        func group(_ kind: IAMPolicies.Document.Kind) -> String {
            documents.filter { $0.kind == kind }.map { "\"\($0.name)\": " + $0.json.trimmingCharacters(in: .newlines) }.joined(separator: ",\n")
        }
        print("{\n\"identity_policies\": {\n\(group(.identityPolicy))\n},\n\"key_policies\": {\n\(group(.keyPolicy))\n}\n}")
    }
}

/// `veil policy matrix`: applications × data classes as HTML or a terminal table.
struct PolicyMatrix: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "matrix", abstract: "Show who may encrypt or decrypt which data class.")

    enum Format: String, ExpressibleByArgument { case table, html }

    @Argument(help: "The catalog file.") var catalog: String
    @Option(help: "Write a self-contained HTML page here.") var html: String?
    @Option(help: "table (default without --html) or html (to standard output).") var format: Format?
    @Option(help: "Highlight grants expiring within this many days.") var warnDays: Int = 7
    @Option(help: "As of this UTC time (default: now).") var now: String?

    func run() throws {
        let parsed = try CatalogFile.load(catalog)
        let matrix = GrantMatrix(parsed, now: try CatalogFile.time(now), warnWithin: Int64(warnDays) * 86_400)
        let page = MatrixPage.html(matrix, catalog: parsed, title: "Veil grants: \((catalog as NSString).lastPathComponent)")
        if let html {
            try CatalogFile.write(page, to: html)
            Console.error("wrote \(html)")
        }
        switch format ?? (html == nil ? .table : nil) {
        case .table: print(matrix.table(), terminator: "")
        case .html: print(page, terminator: "")
        case nil: break
        }
    }
}

/// `veil policy keygen`: the governance signing key pair.
struct PolicyKeygen: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "keygen", abstract: "Create a governance Ed25519 key pair.")

    @Option(help: "The private key file to create (mode 0600; never overwritten).") var privateKey: String
    @Option(help: "The public key file, which sidecars are given.") var publicKey: String

    func run() throws {
        do {
            try GovernanceSignature.generateKeyPair(privateKeyPath: privateKey, publicKeyPath: publicKey)
        } catch {
            Console.error("error: \(error)")
            throw ExitCode.failure
        }
        let key = try GovernanceSignature.loadPublicKey(publicKey)
        Console.out("created governance key \(GovernanceSignature.fingerprint(key)): private \(privateKey) (mode 0600), public \(publicKey)")
    }
}

/// `veil policy sign`: writes FILE.sig.
struct PolicySign: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sign", abstract: "Sign a rendered configuration with the governance key (writes FILE.sig).")

    @Argument(help: "The file to sign.") var file: String
    @Option(help: "The governance private key.") var key: String

    func run() throws {
        guard let data = FileManager.default.contents(atPath: file) else {
            Console.error("error: cannot read \(file)")
            throw ExitCode.failure
        }
        do {
            let signature = try GovernanceSignature.sign(Array(data), privateKeyPath: key)
            try CatalogFile.write(signature, to: GovernanceSignature.signaturePath(for: file))
        } catch let error as SignatureError {
            Console.error("error: \(error)")
            throw ExitCode.failure
        }
        Console.out("signed \(file): \(GovernanceSignature.signaturePath(for: file))")
    }
}

/// `veil policy verify`: checks FILE against FILE.sig and a trusted public key.
struct PolicyVerify: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify", abstract: "Verify a signed configuration against the governance public key.")

    @Argument(help: "The signed file.") var file: String
    @Option(help: "The governance public key.") var key: String

    func run() throws {
        do {
            try SignedConfiguration.verify(file, trustedKeyPath: key)
        } catch {
            Console.error("error: \(error)")
            throw ExitCode(2)
        }
        Console.out("\(file): signature valid (governance key \(GovernanceSignature.fingerprint(try GovernanceSignature.loadPublicKey(key))))")
    }
}

/// The check `veil run --governance-key` and `veil policy verify` share.
enum SignedConfiguration {
    static func verify(_ path: String, trustedKeyPath: String) throws(SignatureError) {
        let trusted = try GovernanceSignature.loadPublicKey(trustedKeyPath)
        guard let data = FileManager.default.contents(atPath: path) else { throw .io("cannot read \(path)") }
        let signature = FileManager.default.contents(atPath: GovernanceSignature.signaturePath(for: path)).map { String(decoding: $0, as: UTF8.self) }
        try GovernanceSignature.verify(Array(data), path: path, signature: signature, trustedKey: trusted)
    }
}
