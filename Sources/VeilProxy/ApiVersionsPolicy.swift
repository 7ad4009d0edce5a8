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
