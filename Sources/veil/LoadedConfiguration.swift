import Foundation
import Logging
import VeilConfig
import VeilKMS
import VeilProxy

/// The configuration file and flags, turned into what the proxy runs with.
struct LoadedConfiguration {
    var configuration: VeilConfiguration
    var settings: ProxySettings
    var filters: ExchangeFilters
    /// Present when topic policies are configured: for the counts logged at shutdown.
    var encryption: (filter: RecordEncryption, kms: CountingKMS)?

    static func load(path: String?, listen: String?, upstream: String?, logger: Logger) throws -> LoadedConfiguration {
        var configuration: VeilConfiguration
        if let path {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ConfigurationError(path: path, problem: "cannot read the file")
            }
            configuration = try VeilConfiguration.parse(yaml: String(decoding: data, as: UTF8.self))
        } else {
            guard let upstream else {
                throw ConfigurationError(path: "--config", problem: "give a configuration file, or at least --upstream HOST:PORT")
            }
            configuration = try VeilConfiguration(identity: "veil", upstream: UpstreamConfiguration(bootstrap: [HostPort(parsing: upstream)]))
        }
        configuration = try configuration.overriding(
            listen: try listen.map { try HostPort(parsing: $0) },
            upstream: try upstream.map { [try HostPort(parsing: $0)] })
        let settings = ProxySettings(
            listen: configuration.listen, upstreamBootstrap: configuration.upstream.bootstrap,
            advertisedHost: configuration.advertisedHost, brokerPorts: configuration.brokerPorts.ports,
            maxFrameBytes: configuration.maxFrameBytes)
        var filters = ExchangeFilters.passThrough
        var encryption: (RecordEncryption, CountingKMS)?
        if !configuration.topics.isEmpty {
            let kms = CountingKMS(try KMSSet.registry(for: configuration, logger: logger))
            let filter = try RecordEncryption(configuration: configuration, kms: kms, logger: logger)
            filters = ExchangeFilters(records: filter)
            encryption = (filter, kms)
        }
        return LoadedConfiguration(configuration: configuration, settings: settings, filters: filters, encryption: encryption)
    }
}
