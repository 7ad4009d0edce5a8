import Foundation
import Logging
import NIOCore
import NIOPosix
import VeilConfig
import VeilKMS
import VeilProxy
import VeilWire

/// The seed's three-department scenario, end to end on one machine: an owner service
/// produces department events to one topic; finance and sales consumers read the same
/// topic through their own sidecars and each sees only its own department in plaintext.
public struct DemoScenario {
    public static let topic = "department-events"
    public static let departments = ["finance", "sales"]

    public var workDirectory: String
    public var recordsPerDepartment: Int
    public var keyStore: DemoKeyStore
    public var logger: Logger
    /// Builds a sidecar's KMS backends from its configuration, as `veil run` does.
    public var makeKMS: @Sendable (VeilConfiguration) throws -> any KeyManagementService

    public init(
        workDirectory: String, recordsPerDepartment: Int = 12, keyStore: DemoKeyStore = .local, logger: Logger,
        makeKMS: @escaping @Sendable (VeilConfiguration) throws -> any KeyManagementService
    ) {
        self.workDirectory = workDirectory
        self.recordsPerDepartment = recordsPerDepartment
        self.keyStore = keyStore
        self.logger = logger
        self.makeKMS = makeKMS
    }

    /// One sidecar of the demo, running in this process.
    public struct Sidecar {
        public var role: String
        public var server: ProxyServer
        public var port: Int
        public var filter: RecordEncryption
        public var kms: CountingKMS
    }

    /// Everything the demo started, so `--serve` can keep it up and the caller can stop it.
    public struct Running {
        public var broker: TansuBroker
        public var sidecars: [Sidecar]
        public var configPaths: [String: String]
        /// Set when the keys are in AWS KMS.
        public var aws: AWSDemoAccounts?
        /// The moto_server the demo started, if it started one.
        public var moto: MotoServer?

        public func stop() async {
            for s in sidecars { await s.server.stop() }
            broker.stop()
            moto?.stop()
        }
    }

    /// The outcome of a run: what each party saw, and whether isolation held.
    public struct Report {
        public var lines: [String]
        public var violations: [String]
    }

    // MARK: setup

    public func start() async throws -> Running {
        try FileManager.default.createDirectory(atPath: workDirectory, withIntermediateDirectories: true)
        let brokerPort = try freeLoopbackPort()
        let broker = try await TansuBroker(port: brokerPort, logPath: workDirectory + "/tansu.log")
        var moto: MotoServer?
        do {
            var aws: AWSDemoAccounts?
            switch keyStore {
            case .local:
                try makeKeyrings()
            case .aws(let endpoint, let region):
                if endpoint == nil { moto = try MotoServer(logPath: workDirectory + "/moto.log") }
                let accounts = try await AWSDemoAccounts.provision(
                    endpoint: endpoint ?? moto!.endpoint, region: region, directory: workDirectory + "/aws")
                // The sidecars run in this process and read their profiles the way `veil run`
                // would, from the shared credentials file the environment names.
                setenv("AWS_SHARED_CREDENTIALS_FILE", accounts.credentialsFile, 1)
                aws = accounts
            }
            var sidecars: [Sidecar] = []
            var paths: [String: String] = [:]
            for role in ["owner", "finance", "sales"] {
                // The listener and its four broker ports, all free together.
                let listen = try freeLoopbackPortBlock(count: 5)
                let yaml = sidecarYAML(role: role, listen: listen, brokerPort: brokerPort, aws: aws)
                let path = "\(workDirectory)/\(role).yaml"
                try yaml.write(toFile: path, atomically: true, encoding: .utf8)
                paths[role] = path
                sidecars.append(try await startSidecar(role: role, yaml: yaml, port: listen))
            }
            return Running(broker: broker, sidecars: sidecars, configPaths: paths, aws: aws, moto: moto)
        } catch {
            broker.stop()
            moto?.stop()
            throw error
        }
    }

    private func keyringPath(_ identity: String, _ domain: String) -> String {
        "\(workDirectory)/keys/\(identity)-\(domain).keyring"
    }

    /// Each domain creates its key in its own keyring; governance grants the owner both.
    private func makeKeyrings() throws {
        try FileManager.default.createDirectory(atPath: workDirectory + "/keys", withIntermediateDirectories: true)
        for domain in Self.departments {
            let domainKeyring = keyringPath(domain, domain)
            if !FileManager.default.fileExists(atPath: domainKeyring) {
                try KeyringFile.create(at: domainKeyring, identity: domain)
                try KeyringFile.createKey("department-key", in: domainKeyring)
            }
            let ownerKeyring = keyringPath("owner", domain)
            if !FileManager.default.fileExists(atPath: ownerKeyring) {
                try KeyringFile.create(at: ownerKeyring, identity: "owner")
            }
            _ = try KeyringFile.grant("department-key", from: domainKeyring, to: ownerKeyring)
        }
    }

    func sidecarYAML(role: String, listen: Int, brokerPort: Int, aws: AWSDemoAccounts? = nil) -> String {
        // A department's key: a name in its keyring, or its key ARN in its AWS account.
        func key(_ department: String) -> String {
            "\"\(department)/\(aws?.keyArns[department] ?? "department-key")\""
        }
        func kms(_ department: String) -> String {
            guard let aws else { return "{ type: local, keyring: \(keyringPath(role, department)) }" }
            let profile = AWSDemoAccounts.profile(role: role, department: department)
            return "{ type: aws-kms, region: \(aws.region), endpoint: \"\(aws.endpoint)\", profile: \(profile) }"
        }
        var yaml = """
        # veil demo: the \(role) sidecar
        identity: \(role)
        listen: 127.0.0.1:\(listen)
        upstream: { bootstrap: [127.0.0.1:\(brokerPort)] }
        broker_ports: { first: \(listen + 1), count: 4 }

        """
        if role == "owner" {
            yaml += """
            kms:
              finance: \(kms("finance"))
              sales: \(kms("sales"))
            grants:
              encrypt: [\(key("finance")), \(key("sales"))]
            topics:
              - match: \(Self.topic)
                encrypt:
                  key_from: { json: department }
                  keys: { finance: \(key("finance")), sales: \(key("sales")) }
                  on_unmatched: reject

            """
        } else {
            yaml += """
            kms:
              \(role): \(kms(role))
            grants:
              decrypt: [\(key(role))]
            topics:
              - match: \(Self.topic)
                on_denied: drop
                require_encrypted: true

            """
        }
        return yaml
    }

    private func startSidecar(role: String, yaml: String, port: Int) async throws -> Sidecar {
        let configuration = try VeilConfiguration.parse(yaml: yaml)
        let kms = CountingKMS(try makeKMS(configuration))
        var logger = self.logger
        logger[metadataKey: "sidecar"] = "\(role)"
        let filter = try RecordEncryption(configuration: configuration, kms: kms, logger: logger)
        let settings = ProxySettings(
            listen: configuration.listen, upstreamBootstrap: configuration.upstream.bootstrap,
            advertisedHost: configuration.advertisedHost, brokerPorts: configuration.brokerPorts.ports)
        let server = ProxyServer(settings: settings, group: MultiThreadedEventLoopGroup.singleton, logger: logger,
                                 filters: ExchangeFilters(records: filter))
        try await server.start()
        return Sidecar(role: role, server: server, port: port, filter: filter, kms: kms)
    }

    // MARK: the scenario

    /// The record value the owner produces for `department` number `index`.
    static func value(department: String, index: Int) -> String {
        // Every fourth record is larger than the seed's 4 KB KMS limit.
        let padding = index % 4 == 3 ? String(repeating: "~", count: 6_000) : ""
        return #"{"department": "\#(department)", "data": "\#(department)-secret-\#(index): sensitive and personal information only \#(department) may read\#(padding)"}"#
    }

    /// The department's partition: fixed per department, so order is kept per department.
    static func partition(of department: String) -> Int32 {
        Int32(departments.firstIndex(of: department) ?? 0)
    }

    public func run(_ running: Running) async throws -> Report {
        let group = MultiThreadedEventLoopGroup.singleton
        let owner = running.sidecars.first { $0.role == "owner" }!
        let producer = try await MiniKafkaClient.connect(host: "127.0.0.1", port: owner.port, group: group)
        try await producer.createTopic(Self.topic, partitions: 3)
        var produced: [String: [String]] = [:]
        for department in Self.departments {
            var records: [Record] = []
            for i in 0..<recordsPerDepartment {
                let text = Self.value(department: department, index: i)
                produced[department, default: []].append(text)
                records.append(Record(timestampDelta: 0, offsetDelta: Int32(i), key: ByteBuffer(string: department),
                                      value: ByteBuffer(string: text)))
            }
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            var batch = RecordBatch(lastOffsetDelta: Int32(records.count - 1), baseTimestamp: now, maxTimestamp: now, records: records)
            batch.compression = .zstd
            _ = try await producer.produce(topic: Self.topic, partition: Self.partition(of: department), batch: batch)
        }
        await producer.close()

        func readAll(port: Int) async throws -> [Int32: [ByteBuffer?]] {
            let client = try await MiniKafkaClient.connect(host: "127.0.0.1", port: port, group: group)
            var out: [Int32: [ByteBuffer?]] = [:]
            for p in Int32(0)..<3 {
                out[p] = try await client.fetchAll(topic: Self.topic, partition: p).map(\.record.value)
            }
            await client.close()
            return out
        }
        var seen: [String: [Int32: [ByteBuffer?]]] = [:]
        for s in running.sidecars where s.role != "owner" { seen[s.role] = try await readAll(port: s.port) }
        seen["broker"] = try await readAll(port: running.broker.port)
        let rawBroker = try await rawRecordBytes(port: running.broker.port)
        var report = verify(produced: produced, seen: seen, rawBroker: rawBroker, running: running)
        if let aws = running.aws { try await checkKMSBoundary(aws, into: &report) }
        return report
    }

    /// Shows that AWS KMS, not only Veil's grants, keeps each department's data keys: every
    /// other department's consumer credentials ask KMS to decrypt one and must be refused.
    private func checkKMSBoundary(_ aws: AWSDemoAccounts, into report: inout Report) async throws {
        report.lines.append("")
        for department in Self.departments {
            let account = AWSDemoAccounts.accountIds[department] ?? "?"
            report.lines.append("\(department) key: \(aws.keyArns[department] ?? "?") (account \(account), KMS \(aws.endpoint))")
        }
        for outcome in try await aws.crossDepartmentRefusals() {
            if let refusal = outcome.refusal {
                report.lines.append("the \(outcome.consumer) sidecar's credentials asking KMS to decrypt a \(outcome.owner) data key: refused, \(refusal.message)")
            } else {
                report.violations.append("KMS decrypted a \(outcome.owner) data key for \(outcome.consumer)'s credentials")
            }
        }
    }

    /// All record values as stored, for a byte-level plaintext scan.
    private func rawRecordBytes(port: Int) async throws -> [UInt8] {
        let client = try await MiniKafkaClient.connect(host: "127.0.0.1", port: port, group: MultiThreadedEventLoopGroup.singleton)
        var bytes: [UInt8] = []
        for p in Int32(0)..<3 {
            for entry in try await client.fetchAll(topic: Self.topic, partition: p) {
                if let v = entry.record.value { bytes += v.readableBytesView }
            }
        }
        await client.close()
        return bytes
    }

    func verify(produced: [String: [String]], seen: [String: [Int32: [ByteBuffer?]]], rawBroker: [UInt8], running: Running) -> Report {
        var violations: [String] = []
        var lines: [String] = []
        func short(_ value: ByteBuffer?) -> String {
            guard let value else { return "(nothing)" }
            let bytes = Array(value.readableBytesView)
            if bytes.starts(with: [0xC1, 0x56, 0x45, 0x4C]) {
                let hex = bytes.dropFirst(bytes.count - 6).map { String($0, radix: 16).leftPadded(2) }.joined()
                return "envelope, \(bytes.count) bytes, ...\(hex)"
            }
            let s = String(decoding: bytes, as: UTF8.self)
            return s.count > 58 ? String(s.prefix(55)) + "..." : s
        }
        for department in Self.departments {
            let partition = Self.partition(of: department)
            lines.append("")
            lines.append("partition \(partition): \(department) events (\(produced[department]!.count) records)")
            let width = 62
            func pad(_ s: String) -> String { s.count >= width ? s : s + String(repeating: " ", count: width - s.count) }
            lines.append("  " + pad("finance consumer sees") + pad("sales consumer sees") + "broker stores")
            let rows = produced[department]!.count
            let f = seen["finance"]?[partition] ?? []
            let s = seen["sales"]?[partition] ?? []
            let b = seen["broker"]?[partition] ?? []
            for i in 0..<rows {
                let fv = i < f.count ? f[i] : nil
                let sv = i < s.count ? s[i] : nil
                let bv = i < b.count ? b[i] : nil
                lines.append("  " + pad(short(fv)) + pad(short(sv)) + short(bv))
            }
        }
        for consumer in ["finance", "sales"] {
            let got = (0..<Int32(3)).flatMap { seen[consumer]?[$0] ?? [] }.compactMap { $0.map { String(decoding: $0.readableBytesView, as: UTF8.self) } }
            let expected = produced[consumer] ?? []
            if got != expected {
                let missing = expected.filter { !got.contains($0) }.count
                let foreign = got.filter { !expected.contains($0) }
                violations.append("\(consumer): expected exactly its \(expected.count) records, got \(got.count) (\(missing) missing, \(foreign.count) not granted)")
            }
            for other in Self.departments where other != consumer {
                if got.contains(where: { produced[other]!.contains($0) }) {
                    violations.append("\(consumer) received \(other) plaintext it has no grant for")
                }
            }
        }
        // Every produced value carries these markers, so one pass over the stored bytes
        // per marker finds any plaintext that reached the broker.
        let markers = Self.departments.map { "\($0)-secret-" } + ["sensitive and personal information"]
        for marker in markers where contains(rawBroker, Array(marker.utf8)) {
            violations.append("plaintext found on the broker: '\(marker)'")
        }
        lines.append("")
        for s in running.sidecars {
            let c = s.kms.counts
            let n = s.filter.counters.summary
            lines.append("\(s.role) sidecar: KMS calls generate=\(c.generateDataKey) unwrap=\(c.unwrap); records encrypted=\(n["encrypted"]!) decrypted=\(n["decrypted"]!) withheld=\(n["denied"]!)")
        }
        return Report(lines: lines, violations: violations)
    }

    private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return false }
        return haystack.firstRange(of: needle) != nil
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
