import Logging
import NIOCore
import VeilConfig
import VeilDemo
import VeilWire

/// Opens the per-broker listeners as soon as Veil starts, by asking its own bootstrap listener
/// for the cluster's brokers (Metadata v1 for no topics), as a client's first request would.
///
/// Broker listeners are otherwise bound only when a Metadata response passes through Veil.
/// After a restart, clients that learnt the broker ports before it (librdkafka keeps them and
/// need not ask the bootstrap address again for minutes) got "connection refused" on every
/// reconnect, so a consumer stalled although Veil was up. Skipped when the listener needs TLS
/// or gateway authentication, which this plain request cannot give; there a client's own
/// Metadata request opens them, as before.
enum BrokerListenerWarmUp {
    /// Retries until the upstream answers once (it may be down when Veil starts); the task is
    /// cancelled at shutdown.
    static func start(bootstrap: HostPort, group: EventLoopGroup, logger: Logger) -> Task<Void, Never> {
        Task {
            var reported = false
            while !Task.isCancelled {
                do {
                    try await askForBrokers(bootstrap, group: group)
                    return
                } catch {
                    if !reported {
                        logger.info("broker listeners not opened at start (upstream not answering: \(error)); retrying every 2 s")
                        reported = true
                    }
                }
                try? await Task.sleep(for: .seconds(2))
            }
        }
    }

    private static func askForBrokers(_ bootstrap: HostPort, group: EventLoopGroup) async throws {
        let client = try await MiniKafkaClient.connect(host: bootstrap.host, port: bootstrap.port, group: group)
        // An upstream that accepts but never answers must not hold the attempt open.
        let watchdog = Task {
            try await Task.sleep(for: .seconds(10))
            await client.close()
        }
        defer { watchdog.cancel() }
        defer { Task { await client.close() } }
        _ = try await client.send(MetadataRequest(topics: [], allowAutoTopicCreation: false), version: 1)
    }
}
