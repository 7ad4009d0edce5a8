import ArgumentParser
import CoreMetrics
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Prometheus
import VeilAdmin
import VeilConfig
import VeilGovernance
import VeilProxy

#if canImport(Glibc)
import Glibc
#endif

/// `veil run`: serve as a sidecar until SIGTERM or SIGINT; SIGHUP reloads keyrings and policies.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the sidecar proxy.",
        discussion: """
            SIGTERM or SIGINT: stop accepting, let in-flight requests finish, exit within shutdown.deadline_seconds. \
            SIGHUP: reload the configuration's keyrings, grants and topic policies without dropping connections; \
            a configuration that does not load is rejected and the running one kept.
            """)

    @Option(name: .long, help: "The sidecar's YAML configuration file.")
    var config: String?

    @Option(name: .long, help: "Bootstrap listen address HOST:PORT (overrides the file).")
    var listen: String?

    @Option(name: .long, help: "Upstream bootstrap broker HOST:PORT (overrides the file).")
    var upstream: String?

    @Option(name: .long, help: "Require the configuration to be signed by this governance public key (FILE.sig beside it); refuse it otherwise, also on reload.")
    var governanceKey: String?

    @Option(name: .long, help: "Append the decrypt audit trail (first decrypts and denials, JSON lines) to this file.")
    var auditLog: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical (overrides the file).")
    var logLevel: String?

    @Option(name: .long, help: "Admin endpoint HOST:PORT, or 'off' (overrides the file; default 127.0.0.1:9644).")
    var admin: String?

    func run() async throws {
        // Logging settings come from the file, so it is parsed once before logging starts;
        // its errors are reported after, by the full load.
        let operations = config.flatMap { try? LoadedConfiguration.parse(path: $0).operations } ?? OperationsConfiguration()
        guard let level = Logger.Level(rawValue: logLevel ?? operations.logLevel) else {
            throw ValidationError("--log-level must be one of \(OperationsConfiguration.logLevels.joined(separator: ", "))")
        }
        bootstrapLogging(level, format: operations.logFormat)
        let logger = Logger(label: "veil")
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        let audit: AuditTrail?
        do {
            audit = try auditLog.map { try AuditTrail(path: $0) }
        } catch {
            logger.critical("invalid configuration: --audit-log: \(error)")
            throw ExitCode(2)
        }
        let loaded: LoadedConfiguration
        do {
            loaded = try LoadedConfiguration.load(
                path: config, listen: listen, upstream: upstream, logger: logger, trustedKey: governanceKey, audit: audit)
        } catch {
            logger.critical("invalid configuration: \(error)")
            throw ExitCode(2)
        }
        AllocatorTuning.keepBuffersMapped()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        for line in loaded.securitySummary { logger.info("\(line)") }
        // AWS_MSK_IAM signs each upstream login with the chain's credentials: have them before
        // the first client connects, and keep them fresh after.
        var mskRefresh: Task<Void, Never>?
        if let msk = loaded.mskIAMCredentials {
            do {
                try await msk.refresh()
            } catch {
                logger.critical("invalid configuration: upstream.sasl: AWS_MSK_IAM: \(error)")
                throw ExitCode(2)
            }
            mskRefresh = msk.keepFresh()
        }
        defer { mskRefresh?.cancel() }
        if let governanceKey, let config { logger.info("configuration \(config) verified: signed by the governance key in \(governanceKey)") }
        if let audit { logger.info("decrypt audit trail: \(audit.path)") }
        Gauge(label: "veil_info", dimensions: [
            ("identity", loaded.gateway == nil ? loaded.configuration.identity : "per-connection"),
            ("identity_source", loaded.gateway == nil ? "config_file" : "gateway_authentication"),
        ]).record(1)
        let server = ProxyServer(
            settings: loaded.settings, group: group, logger: logger, filters: loaded.filters, security: loaded.security,
            listenerTLS: loaded.listenerTLS, gateway: loaded.gateway)
        let current = CurrentConfiguration(loaded)
        let readiness = Readiness()
        readiness.add(Self.kmsReachable(current))
        readiness.add(Readiness.upstreamReachable({ current.loaded.settings.upstreamBootstrap }))
        let adminServer = try await startAdmin(registry: registry, readiness: readiness, group: group, logger: logger,
                                               configured: loaded.configuration.operations)
        let bootstrap: HostPort
        do {
            bootstrap = try await server.start()
        } catch {
            logger.critical("cannot listen on \(loaded.settings.listen): \(error)")
            throw ExitCode(1)
        }
        let warmUp = loaded.listenerTLS == nil && loaded.gateway == nil
            ? BrokerListenerWarmUp.start(bootstrap: bootstrap, group: group, logger: logger) : nil
        defer { warmUp?.cancel() }

        for await signal in SignalWaiter.stream([SIGTERM, SIGINT, SIGHUP]) {
            if signal == SIGHUP {
                reload(server: server, current: current, logger: logger)
                continue
            }
            break
        }
        readiness.markStopping()
        let latest = current.loaded
        if let (filter, kms) = latest.encryption {
            let counts = filter.counters.summary.merging(audit?.summary ?? [:]) { first, _ in first }
            let records = counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            logger.info("records: \(records); KMS calls: generate=\(kms.counts.generateDataKey) unwrap=\(kms.counts.unwrap)")
        }
        let deadline = latest.configuration.operations.shutdownDeadlineSeconds
        logger.info("shutting down: no new connections; in-flight requests get up to \(deadline) s")
        let cut = await server.shutdown(deadline: .seconds(deadline))
        if cut > 0 { logger.warning("shutdown deadline reached: closed \(cut) connection(s) with requests in flight") }
        await adminServer?.stop()
        logger.info("stopped")
        try await group.shutdownGracefully()
    }

    /// Starts the admin endpoint. A default address that is taken is skipped with a
    /// warning (several sidecars on one host); a configured one that is taken is fatal.
    private func startAdmin(registry: PrometheusCollectorRegistry, readiness: Readiness, group: EventLoopGroup, logger: Logger,
                            configured: OperationsConfiguration) async throws -> AdminServer? {
        var address = configured.adminListen
        var explicit = configured.adminListenConfigured
        if let admin {
            explicit = true
            address = admin == "off" ? nil : try HostPort(parsing: admin)
        }
        guard let address else {
            logger.info("admin endpoint off")
            return nil
        }
        let server = AdminServer(registry: registry, readiness: readiness, group: group, logger: logger)
        do {
            try await server.start(address)
            return server
        } catch where !explicit {
            logger.warning("admin endpoint not started: cannot listen on default \(address): \(error); set admin.listen")
            return nil
        } catch {
            logger.critical("cannot listen on admin address \(address): \(error)")
            throw ExitCode(1)
        }
    }

    /// SIGHUP: loads the file again and swaps in its filters. Anything that fails to load
    /// keeps the running configuration; settings that need new listeners or upstream
    /// sessions are reported as needing a restart.
    private func reload(server: ProxyServer, current: CurrentConfiguration, logger: Logger) {
        guard let config else {
            logger.warning("SIGHUP ignored: no configuration file to reload (started with flags only)")
            return
        }
        let outcome: String
        defer { Counter(label: "veil_config_reloads_total", dimensions: [("outcome", outcome)]).increment() }
        let next: LoadedConfiguration
        do {
            // The same checks as at start: an unsigned or altered file is refused here too.
            next = try LoadedConfiguration.load(
                path: config, listen: listen, upstream: upstream, logger: logger, trustedKey: governanceKey, audit: current.loaded.audit)
            try server.replacePolicies(filters: next.filters, gateway: next.gateway)
        } catch {
            outcome = "rejected"
            logger.error("reload rejected, the running configuration stays in force: \(config): \(error)")
            return
        }
        let before = current.loaded
        current.replace(next)
        outcome = "applied"
        var restartOnly: [String] = []
        if before.configuration.listen != next.configuration.listen { restartOnly.append("listen") }
        if before.configuration.upstream != next.configuration.upstream { restartOnly.append("upstream") }
        if before.configuration.listenerTLS != next.configuration.listenerTLS { restartOnly.append("listener") }
        if before.configuration.operations != next.configuration.operations { restartOnly.append("admin/logging/shutdown") }
        logger.info("reloaded \(config): keyrings, grants and topic policies now in force for open and new connections")
        if !restartOnly.isEmpty {
            logger.warning("reload: changes to \(restartOnly.joined(separator: ", ")) take effect only after a restart")
        }
    }

    /// Ready unless a KMS the filters use failed as unavailable on its latest call.
    private static func kmsReachable(_ current: CurrentConfiguration) -> Readiness.Check {
        { loop in
            let outages = current.loaded.kms?.unavailable ?? [:]
            return loop.makeSucceededFuture(outages.sorted { $0.key < $1.key }.map { "KMS \($0.key) unavailable: \($0.value)" })
        }
    }
}

/// The configuration in force, replaced by each successful reload.
final class CurrentConfiguration: Sendable {
    private let box: NIOLockedValueBox<LoadedConfiguration>
    init(_ loaded: LoadedConfiguration) { box = NIOLockedValueBox(loaded) }
    var loaded: LoadedConfiguration { box.withLockedValue { $0 } }
    func replace(_ next: LoadedConfiguration) { box.withLockedValue { $0 = next } }
}
