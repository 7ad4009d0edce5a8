import VeilProxy

/// The configuration file and flags, turned into what the proxy runs with.
struct LoadedConfiguration {
    var settings: ProxySettings
    var filters: ExchangeFilters

    struct Invalid: Error, CustomStringConvertible {
        var description: String
    }

    static func load(path: String?, listen: String?, upstream: String?) throws -> LoadedConfiguration {
        // Interim: flags only, until the YAML configuration module lands.
        guard let listenText = listen ?? (path == nil ? "127.0.0.1:9092" : nil), let listenAddress = HostPort(parsing: listenText) else {
            throw Invalid(description: "--listen must be HOST:PORT")
        }
        guard let upstreamText = upstream, let upstreamAddress = HostPort(parsing: upstreamText) else {
            throw Invalid(description: "--upstream must be HOST:PORT")
        }
        let first = listenAddress.port + 1
        let settings = ProxySettings(listen: listenAddress, upstreamBootstrap: [upstreamAddress], brokerPorts: first...(first + 63))
        return LoadedConfiguration(settings: settings, filters: .passThrough)
    }
}
