import VeilWire

/// Decides which API versions Veil advertises: the intersection of the upstream's
/// ranges with what Veil can decode, for every API Veil rewrites or filters.
public enum ApiVersionsPolicy {
    /// APIs Veil decodes, and the versions it can read and write.
    public static let decoded: [ApiKey: ClosedRange<Int16>] = [
        .produce: ProduceRequest.versions,
        .fetch: FetchRequest.versions,
        .metadata: MetadataResponse.versions,
        .apiVersions: ApiVersionsResponse.versions,
        .findCoordinator: FindCoordinatorResponse.versions,
        .describeCluster: DescribeClusterResponse.versions,
        .saslHandshake: SaslHandshakeRequest.versions,
        .saslAuthenticate: SaslAuthenticateRequest.versions,
    ]

    /// Intersects the upstream's answer with Veil's ranges. APIs Veil forwards opaquely
    /// keep the upstream's range; an API with an empty intersection is dropped.
    /// - Parameter caps: further per-API limits (e.g. versions without topic names
    ///   while topic policies need names).
    public static func intersect(_ upstream: [ApiVersionsResponse.ApiVersion], caps: [ApiKey: Int16] = [:]) -> [ApiVersionsResponse.ApiVersion] {
        upstream.compactMap { entry in
            let key = ApiKey(rawValue: entry.apiKey)
            var v = entry
            if let ours = decoded[key] {
                // Produce keeps the upstream's minimum (v0 on every Kafka): librdkafka
                // decides whether the broker supports compression from it.
                v.minVersion = max(entry.minVersion, ours.lowerBound)
                v.maxVersion = min(entry.maxVersion, ours.upperBound)
            }
            if let cap = caps[key] { v.maxVersion = min(v.maxVersion, cap) }
            return v.minVersion <= v.maxVersion ? v : nil
        }
    }
}

extension ApiVersionsPolicy {
    /// Gateway mode: clients authenticate to Veil, so SASL is offered whatever the broker
    /// says: SaslHandshake v1 only (v0 is followed by unframed tokens) and SaslAuthenticate.
    public static func offeringSasl(_ keys: [ApiVersionsResponse.ApiVersion]) -> [ApiVersionsResponse.ApiVersion] {
        var out = keys.filter { $0.apiKey != ApiKey.saslHandshake.rawValue && $0.apiKey != ApiKey.saslAuthenticate.rawValue }
        out.append(.init(apiKey: ApiKey.saslHandshake.rawValue, minVersion: 1, maxVersion: 1))
        out.append(.init(apiKey: ApiKey.saslAuthenticate.rawValue, minVersion: 0, maxVersion: SaslAuthenticateRequest.versions.upperBound))
        return out.sorted { $0.apiKey < $1.apiKey }
    }
}
