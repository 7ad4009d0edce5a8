import ArgumentParser
import Logging
import NIOCore
import NIOPosix
import VeilProxy

/// `veil run`: serve as a sidecar until SIGINT or SIGTERM.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the sidecar proxy.")

    @Option(name: .long, help: "The sidecar's YAML configuration file.")
    var config: String?

    @Option(name: .long, help: "Bootstrap listen address HOST:PORT (overrides the file).")
    var listen: String?

    @Option(name: .long, help: "Upstream bootstrap broker HOST:PORT (overrides the file).")
    var upstream: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        bootstrapLogging(level)
        let logger = Logger(label: "veil")
        let loaded: LoadedConfiguration
        do {
            loaded = try LoadedConfiguration.load(path: config, listen: listen, upstream: upstream, logger: logger)
        } catch {
            logger.critical("invalid configuration: \(error)")
            throw ExitCode(2)
        }
        AllocatorTuning.keepBuffersMapped()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        for line in loaded.securitySummary { logger.info("\(line)") }
        let server = ProxyServer(
            settings: loaded.settings, group: group, logger: logger, filters: loaded.filters, security: loaded.security,
            listenerTLS: loaded.listenerTLS, gateway: loaded.gateway)
        do {
            try await server.start()
        } catch {
            logger.critical("cannot listen on \(loaded.settings.listen): \(error)")
            throw ExitCode(1)
        }
        await SignalWaiter.waitForTermination()
        if let (filter, kms) = loaded.encryption {
            let records = filter.counters.summary.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            logger.info("records: \(records); KMS calls: generate=\(kms.counts.generateDataKey) unwrap=\(kms.counts.unwrap)")
        }
        logger.info("shutting down")
        await server.stop()
        try await group.shutdownGracefully()
    }
}
