import ArgumentParser
import Foundation
import VeilConfig
import VeilKMS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `veil check`: validates a configuration file and the keyrings it names, without starting the proxy.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a configuration file and the keyrings it uses.",
        discussion: """
            Exits 0 when the configuration is valid (warnings included), 2 when it is not. \
            Relative keyring paths are resolved against the working directory, as `veil run` does.
            """)

    @Option(name: .long, help: "The sidecar's YAML configuration file.")
    var config: String

    func run() throws {
        let configuration: VeilConfiguration
        do {
            configuration = try Self.load(self.config)
        } catch {
            // FILE:LINE: KEY: PROBLEM, the form editors and CI annotations jump to.
            Console.error("error: \(self.config)\(error.location): \(error.message)")
            Console.error("\(self.config) is invalid")
            throw ExitCode(2)
        }
        let check = ConfigurationCheck(configuration)
        for line in check.summary(file: self.config) { Console.out(line) }
        for finding in check.findings { Console.error("\(finding.severity.rawValue): \(finding.path): \(finding.message)") }
        let errors = check.findings.filter { $0.severity == .error }.count
        let warnings = check.findings.count - errors
        let warningCount = "\(warnings) warning\(warnings == 1 ? "" : "s")"
        if errors > 0 {
            Console.error("\(self.config) is invalid: \(errors) error\(errors == 1 ? "" : "s"), \(warningCount)")
            throw ExitCode(2)
        }
        Console.out("\(self.config) is valid (\(warningCount))")
    }

    /// Why a file did not parse: the line (`:N`, empty when unknown) and the key path and problem.
    struct LoadFailure: Error {
        let location: String
        let message: String
    }

    static func load(_ path: String) throws(LoadFailure) -> VeilConfiguration {
        let data: [UInt8]
        do {
            data = try BoundedFile.contents(of: path, limit: LoadedConfiguration.fileLimit)
        } catch {
            let message: String
            switch error {
            case .system(_, ENOENT): message = "no such file; pass the sidecar's configuration as --config FILE"
            case .system(_, EACCES): message = "cannot read the file; check its permissions"
            default: message = "cannot read the file: \(error.reason)"
            }
            throw LoadFailure(location: "", message: message)
        }
        do {
            return try VeilConfiguration.parse(yaml: String(decoding: data, as: UTF8.self), environment: ProcessInfo.processInfo.environment)
        } catch {
            let message = error.path.isEmpty ? error.problem : "\(error.path): \(error.problem)"
            throw LoadFailure(location: error.line.map { ":\($0)" } ?? "", message: message)
        }
    }
}

/// What `veil check` found beyond parsing: whether every local keyring loads, and whether the
/// keys that grants and topic policies name are in them.
///
/// Parsing already proved that every key reference names a configured KMS; this is the part
/// only the keyring files can answer, which `veil run` would otherwise discover at the first
/// produce or fetch that needs the key.
struct ConfigurationCheck {
    enum Severity: String {
        case error
        case warning
    }

    struct Finding {
        let severity: Severity
        /// The configuration key path the finding is about, e.g. `grants.decrypt`.
        let path: String
        let message: String
    }

    /// What a loaded keyring holds, by KMS name; never the material.
    struct Keyring {
        let path: String
        let identity: String
        let keyIds: Set<String>
    }

    let configuration: VeilConfiguration
    private(set) var keyrings: [String: Keyring] = [:]
    private(set) var findings: [Finding] = []

    /// Grants lapsing within this many seconds are reported, so a renewal is not missed.
    static let expiryNotice: Int64 = 7 * 86_400

    init(_ configuration: VeilConfiguration, now: UTCTimestamp = .now()) {
        self.configuration = configuration
        for name in configuration.kms.keys.sorted() { self.load(kms: name) }
        self.checkGrants(configuration.grants.encrypt, path: "grants.encrypt", use: "encrypt")
        self.checkGrants(configuration.grants.decrypt, path: "grants.decrypt", use: "decrypt")
        self.checkExpiries(configuration.grants.encryptExpiry, path: "grants.encrypt", use: "encryption", now: now)
        self.checkExpiries(configuration.grants.decryptExpiry, path: "grants.decrypt", use: "decryption", now: now)
        for (index, topic) in configuration.topics.enumerated() {
            self.checkTopic(topic, path: "topics[\(index)]")
        }
    }

    private mutating func load(kms name: String) {
        guard let backend = self.configuration.kms[name]?.backend else { return }
        switch backend {
        case .local(let path):
            do {
                let keyring = try LocalKeyring(contentsOf: path)
                self.keyrings[name] = Keyring(path: path, identity: keyring.identity, keyIds: Set(keyring.keyIds))
            } catch {
                let failure = CommandFailure(error, base: FileManager.default.currentDirectoryPath)
                self.findings.append(Finding(severity: .error, path: "kms.\(name).keyring", message: failure.message))
            }
        case .awsKMS:
            // An AWS key is checked by the KMS itself at the first data key; nothing to load here.
            break
        }
    }

    private mutating func checkGrants(_ keys: Set<KeyReference>, path: String, use: String) {
        for key in keys.sorted(by: { $0.description < $1.description }) {
            guard let missing = self.missing(key) else { continue }
            self.findings.append(
                Finding(
                    severity: .error, path: path,
                    message: "key \(key) is granted but \(missing), so Veil could not \(use) with it. "
                        + self.fix(for: key)))
        }
    }

    // A lapsed grant is not a broken file (the sidecar runs and refuses that key), so these are
    // warnings; they exist because nothing else tells the operator before records are refused.
    private mutating func checkExpiries(
        _ expiries: [KeyReference: UTCTimestamp], path: String, use: String, now: UTCTimestamp
    ) {
        for key in expiries.keys.sorted(by: { $0.description < $1.description }) {
            let until = expiries[key]!
            let remaining = until.secondsSinceEpoch - now.secondsSinceEpoch
            if remaining <= 0 {
                self.findings.append(
                    Finding(
                        severity: .warning, path: path,
                        message: "the grant for \(key) expired at \(until); it allows no \(use) until it is renewed"))
            } else if remaining <= Self.expiryNotice {
                self.findings.append(
                    Finding(
                        severity: .warning, path: path,
                        message: "the grant for \(key) expires at \(until), in \(Self.duration(remaining)); "
                            + "\(use) under it stops then unless it is renewed"))
            }
        }
    }

    private static func duration(_ seconds: Int64) -> String {
        if seconds >= 86_400 { return "\(seconds / 86_400) d \(seconds % 86_400 / 3600) h" }
        if seconds >= 3600 { return "\(seconds / 3600) h \(seconds % 3600 / 60) min" }
        return "\(seconds / 60) min \(seconds % 60) s"
    }

    private mutating func checkTopic(_ topic: TopicPolicy, path: String) {
        guard let encrypt = topic.encrypt else { return }
        var uses: [(path: String, key: KeyReference)] = []
        if case .fixed(let key) = encrypt.keySource { uses.append(("\(path).encrypt.key_from.fixed", key)) }
        for selector in encrypt.keys.keys.sorted() {
            uses.append(("\(path).encrypt.keys.\(selector)", encrypt.keys[selector]!))
        }
        if let key = encrypt.defaultKey { uses.append(("\(path).encrypt.default_key", key)) }
        for (n, rule) in (encrypt.fieldRules ?? []).enumerated() {
            for key in rule.choice.allKeys.sorted(by: { $0.description < $1.description }) {
                uses.append(("\(path).encrypt.fields[\(n)]", key))
            }
        }
        for (n, rule) in encrypt.headerRules.enumerated() {
            for key in rule.choice.allKeys.sorted(by: { $0.description < $1.description }) {
                uses.append(("\(path).encrypt.headers[\(n)]", key))
            }
        }
        if let key = encrypt.recordKey { uses.append(("\(path).encrypt.record_key", key)) }
        var seen = Set<String>()
        uses = uses.filter { seen.insert("\($0.path) \($0.key)").inserted }
        for use in uses {
            // A granted key's presence in its keyring is checked (as an error) under grants.encrypt.
            guard !self.configuration.grants.allowsEncryption(with: use.key) else { continue }
            var message =
                "key \(use.key) is not in grants.encrypt, so records selected for it are refused on produce; "
                + "that is fine if this sidecar only consumes topic \(topic.match)"
            if let missing = self.missing(use.key) { message += "; besides, \(missing)" }
            self.findings.append(Finding(severity: .warning, path: use.path, message: message))
        }
    }

    /// Why `key` is unusable, or `nil` when its keyring holds it. A keyring that failed to load
    /// was already reported, so it yields no second finding.
    private func missing(_ key: KeyReference) -> String? {
        guard let keyring = self.keyrings[key.kms], !keyring.keyIds.contains(key.keyId) else { return nil }
        let held = keyring.keyIds.isEmpty ? "no keys" : "only " + keyring.keyIds.sorted().joined(separator: ", ")
        return "keyring \(keyring.path) of kms.\(key.kms) (identity '\(keyring.identity)') has no key '\(key.keyId)'; it holds \(held)"
    }

    private func fix(for key: KeyReference) -> String {
        let path = self.keyrings[key.kms]?.path ?? "KEYRING"
        return "Fix: grant it with `veil keys grant --from OWNER_KEYRING --to \(path) --key \(key.keyId)`, "
            + "or create it with `veil keys create --keyring \(path) --key \(key.keyId)`"
    }

    /// The configuration as an operator would want to confirm it, one fact per line.
    func summary(file: String) -> [String] {
        let c = self.configuration
        var lines = ["config: \(file)"]
        lines.append("identity: \(c.identity)")
        lines.append("listen: \(c.listen) (advertised host \(c.advertisedHost))")
        lines.append(
            "upstream: \(c.upstream.bootstrap.map(\.description).joined(separator: ", "))"
                + (c.upstream.tls.map { " (TLS: \($0.summary))" } ?? " (no TLS)"))
        if let sasl = c.upstream.sasl { lines.append("upstream SASL: \(sasl.summary)") }
        if let tls = c.listenerTLS {
            lines.append("listener TLS: \(tls.certFile)" + (tls.clientCAFile.map { ", client certificates from \($0)" } ?? ""))
        }
        if let gateway = c.gateway {
            lines.append("gateway: identities \(gateway.identities.keys.sorted().joined(separator: ", "))"
                + (gateway.usersFile.map { "; users file \($0)" } ?? ""))
        }
        let ports = c.brokerPorts
        lines.append("broker ports: \(ports.ports.lowerBound)-\(ports.ports.upperBound) (\(ports.count))")
        lines.append("max frame: \(c.maxFrameBytes) bytes")
        lines.append("kms:" + (c.kms.isEmpty ? " none" : ""))
        for name in c.kms.keys.sorted() {
            switch c.kms[name]!.backend {
            case .local(let path):
                let state = self.keyrings[name].map { keyring in
                    let count = keyring.keyIds.count
                    return "identity '\(keyring.identity)', \(count) key\(count == 1 ? "" : "s")"
                } ?? "not loaded"
                lines.append("  \(name): local keyring \(path) (\(state))")
            case .awsKMS(let region, let endpoint, let profile):
                lines.append("  \(name): AWS KMS \(region)\(endpoint.map { " at \($0)" } ?? "")\(profile.map { ", profile \($0)" } ?? "")")
            }
        }
        func list(_ keys: Set<KeyReference>, _ expiry: [KeyReference: UTCTimestamp]) -> String {
            guard !keys.isEmpty else { return "none" }
            return keys.sorted(by: { $0.description < $1.description })
                .map { key in expiry[key].map { "\(key) (until \($0))" } ?? key.description }
                .joined(separator: ", ")
        }
        lines.append("grants:")
        lines.append("  encrypt: \(list(c.grants.encrypt, c.grants.encryptExpiry))")
        lines.append("  decrypt: \(list(c.grants.decrypt, c.grants.decryptExpiry))")
        lines.append(
            "dek: rotate after \(c.dek.maxEncryptions) encryptions or \(c.dek.maxAgeSeconds) s; "
                + "\(c.dek.decryptCacheEntries) unwrapped keys cached")
        lines.append("topics:" + (c.topics.isEmpty ? " none (every topic passes through unchanged)" : ""))
        for (index, topic) in c.topics.enumerated() {
            lines.append("  [\(index)] \(topic.match): \(Self.describe(topic))")
        }
        return lines
    }

    private static func describe(_ topic: TopicPolicy) -> String {
        var parts: [String] = []
        if let encrypt = topic.encrypt {
            func describe(_ choice: KeyChoice) -> String {
                let source: String
                switch choice.source {
                case .json(let field): source = "JSON field '\(field)'"
                case .header(let name): source = "header '\(name)'"
                case .recordKey: source = "the record key"
                case .fixed(let key): return "fixed \(key)"
                }
                var details = choice.keys.keys.sorted().map { "\($0) -> \(choice.keys[$0]!)" }
                if let key = choice.defaultKey { details.append("default -> \(key)") }
                details.append("unmatched: \(encrypt.onUnmatched.rawValue)")
                return source + " (\(details.joined(separator: "; ")))"
            }
            let topicChoice = encrypt.keySource.map { source in
                try? KeyChoice(source: source, keys: encrypt.keys, defaultKey: encrypt.defaultKey)
            } ?? nil
            if let rules = encrypt.fieldRules {
                let fields = rules.map { rule in "\(rule.path) with key from \(describe(rule.choice))" }
                parts.append(
                    "encrypt fields \(fields.joined(separator: ", ")); non-JSON values: \(encrypt.onInvalidJSON.rawValue)"
                        + (encrypt.bindTopic ? "" : ", topic not bound"))
            } else if let topicChoice {
                parts.append(
                    "encrypt whole value with key from \(describe(topicChoice))" + (encrypt.bindTopic ? "" : ", topic not bound"))
            }
            for rule in encrypt.headerRules {
                parts.append("encrypt header '\(rule.name)' with key from \(describe(rule.choice))")
            }
            if let key = encrypt.recordKey {
                parts.append("encrypt record keys deterministically (equal keys stay equal) with a key derived from \(key)")
            }
        } else {
            parts.append("no encryption on produce")
        }
        parts.append(
            "on denied: \(topic.onDenied.rawValue)"
                + (topic.onDenied == .redact ? " with \(topic.redactPlaceholder)" : ""))
        parts.append(topic.requireEncrypted ? "plaintext records refused" : "plaintext records allowed")
        parts.append(
            "denied fields: \(topic.onDeniedField.rawValue)"
                + (topic.onDeniedField == .redact ? " with \(topic.fieldPlaceholder)" : ""))
        return parts.joined(separator: "; ")
    }
}
