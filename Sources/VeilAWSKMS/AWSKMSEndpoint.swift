import Foundation

/// Where KMS requests go and what `Host` they are signed for.
struct AWSKMSEndpoint: Sendable, Equatable {
    /// The URL requests are POSTed to (always path `/`).
    let url: String
    /// The `Host` header value: host, plus the port when it is not the scheme's default.
    let host: String

    /// The public endpoint for `region`, or `custom` (a VPC endpoint, a test server), which must
    /// be an http or https URL with at most a `/` path.
    init(region: String, custom: String?) throws(AWSKMSConfigurationError) {
        guard Self.isValidRegion(region) else {
            throw AWSKMSConfigurationError("region '\(region)' is not an AWS region name (like us-east-1)")
        }
        guard let custom else {
            let domain = region.hasPrefix("cn-") ? "amazonaws.com.cn" : "amazonaws.com"
            host = "kms.\(region).\(domain)"
            url = "https://\(host)/"
            return
        }
        guard let parsed = URL(string: custom), let scheme = parsed.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let hostName = parsed.host, !hostName.isEmpty
        else {
            throw AWSKMSConfigurationError("endpoint '\(custom)' is not an http:// or https:// URL with a host")
        }
        guard parsed.path.isEmpty || parsed.path == "/", parsed.query == nil, parsed.user == nil else {
            throw AWSKMSConfigurationError("endpoint '\(custom)' must be scheme://host[:port] with no path, query or user")
        }
        let bracketed = hostName.contains(":") && !hostName.hasPrefix("[") ? "[\(hostName)]" : hostName
        let defaultPort = scheme == "https" ? 443 : 80
        let authority = parsed.port.map { $0 == defaultPort ? bracketed : "\(bracketed):\($0)" } ?? bracketed
        host = authority
        url = "\(scheme)://\(authority)/"
    }

    /// Region names are lower-case words and digits joined by `-`; anything else is a typo, and
    /// would end up in the host name and the signature scope.
    static func isValidRegion(_ region: String) -> Bool {
        !region.isEmpty && region.count <= 64 && !region.hasPrefix("-") && !region.hasSuffix("-")
            && region.utf8.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == UInt8(ascii: "-") }
    }
}

/// An ``AWSKMS`` could not be built from its settings.
public struct AWSKMSConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong.
    public let message: String

    init(_ message: String) {
        self.message = message
    }

    public var description: String { "AWS KMS configuration: \(message)" }
}
