import VeilWire

/// Decides, from the fixed first eight bytes of a request, whether Veil can parse it at all.
///
/// The header's layout depends on the API key and version, so a key Kafka does not define,
/// or a version outside what Veil decodes for an API it rewrites or filters, cannot even be
/// read reliably: the request is refused before its header is parsed, with a reason that names
/// the key and version rather than whatever field the guessed layout happened to break on.
/// Kafka brokers close the connection for such requests too; ApiVersions is the exception,
/// answered with UNSUPPORTED_VERSION so the client can retry.
enum RequestScreen {
    static func refusal(apiKey: ApiKey, version: Int16) -> WireError? {
        guard apiKey.isKnown else { return WireError(.unknownApiKey(apiKey.rawValue)) }
        if apiKey == .apiVersions { return nil }
        let unsupported = WireError(.unsupportedVersion(apiKey: apiKey.rawValue, version: version))
        if version < 0 { return unsupported }
        if let decoded = ApiVersionsPolicy.decoded[apiKey], !decoded.contains(version) { return unsupported }
        return nil
    }
}
