/// A `HOST:PORT` endpoint, as written in config files and CLI flags.
///
/// IPv6 literals must be bracketed (`[::1]:9092`) so the port separator is unambiguous;
/// ``host`` holds them without brackets.
public struct HostPort: Hashable, Sendable, CustomStringConvertible {
    /// A hostname or IP literal, without brackets.
    public let host: String
    /// The TCP port, 0...65535 (0 asks the OS for an ephemeral port when listening).
    public let port: Int

    /// Creates an endpoint from already-validated parts.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` or `[ipv6]:port`.
    public init(parsing text: String) throws(ConfigurationError) {
        let problem = "expected HOST:PORT, got '\(text)'"
        guard let colon = text.lastIndex(of: ":") else { throw ConfigurationError(path: "", problem: problem) }
        var host = Substring(text[..<colon])
        let portText = text[text.index(after: colon)...]
        if host.hasPrefix("[") {
            guard host.hasSuffix("]"), host.count > 2 else { throw ConfigurationError(path: "", problem: problem) }
            host = host.dropFirst().dropLast()
        } else if host.contains(":") {
            throw ConfigurationError(path: "", problem: "IPv6 hosts must be bracketed, as in [::1]:9092; got '\(text)'")
        }
        guard !host.isEmpty, !host.contains(where: \.isWhitespace) else {
            throw ConfigurationError(path: "", problem: problem)
        }
        guard let port = Int(portText), (0...65_535).contains(port), portText.allSatisfy(\.isASCII) else {
            throw ConfigurationError(path: "", problem: "port must be a number from 0 to 65535, got '\(portText)'")
        }
        self.host = String(host)
        self.port = port
    }

    public var description: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }

    /// Whether the host is a wildcard bind address, which cannot be advertised to clients.
    var isWildcard: Bool { self.host == "0.0.0.0" || self.host == "::" }

    /// Whether the host is this machine's loopback interface.
    var isLoopback: Bool { self.host == "localhost" || self.host == "::1" || self.host.hasPrefix("127.") }
}
