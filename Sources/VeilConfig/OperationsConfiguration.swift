/// How the sidecar is operated rather than what it does to records: its admin endpoint,
/// log output and shutdown deadline (`admin:`, `logging:` and `shutdown:` in the file).
public struct OperationsConfiguration: Sendable, Hashable {
    /// Log output formats.
    public enum LogFormat: String, Sendable, Hashable {
        /// One human-readable line per event.
        case text
        /// One JSON object per line, for log shippers (CloudWatch, Fluent Bit).
        case json
    }

    /// The admin HTTP endpoint's address; `nil` turns it off.
    public let adminListen: HostPort?
    /// Whether ``adminListen`` was written in the file: a default address that is taken is
    /// skipped with a warning, a configured one that is taken stops start-up.
    public let adminListenConfigured: Bool
    /// A swift-log level name: trace, debug, info, notice, warning, error or critical.
    public let logLevel: String
    public let logFormat: LogFormat
    /// Seconds that in-flight requests get to finish after SIGTERM before connections are closed.
    public let shutdownDeadlineSeconds: Int

    /// The admin endpoint's default address (loopback only: it is for the task's own health
    /// check and a metrics scraper in the same network namespace).
    public static let defaultAdminListen = HostPort(host: "127.0.0.1", port: 9644)
    /// Log levels, as swift-log names them.
    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
    /// The default deadline, below ECS's default 30 s stop timeout so Veil finishes before SIGKILL.
    public static let defaultShutdownDeadlineSeconds = 25

    /// Creates settings; the defaults are what an absent section means.
    public init(adminListen: HostPort? = Self.defaultAdminListen, adminListenConfigured: Bool = false, logLevel: String = "info",
                logFormat: LogFormat = .text, shutdownDeadlineSeconds: Int = Self.defaultShutdownDeadlineSeconds) {
        self.adminListen = adminListen
        self.adminListenConfigured = adminListenConfigured
        self.logLevel = logLevel
        self.logFormat = logFormat
        self.shutdownDeadlineSeconds = shutdownDeadlineSeconds
    }
}

extension OperationsConfiguration {
    init(admin: ConfigNode?, logging: ConfigNode?, shutdown: ConfigNode?) throws(ConfigurationError) {
        var adminListen: HostPort? = Self.defaultAdminListen
        var configured = false
        if let admin {
            let fields = try admin.mapping(allowed: ["listen", "enabled"])
            if let node = fields["listen"] {
                let text = try node.nonEmptyString()
                adminListen = try node.located { () throws(ConfigurationError) in try HostPort(parsing: text) }
                configured = true
            }
            if let node = fields["enabled"], try !node.bool() {
                if configured { throw node.error("admin.listen is set but enabled is false: remove one of them") }
                adminListen = nil
            }
        }
        var level = "info"
        var format = LogFormat.text
        if let logging {
            let fields = try logging.mapping(allowed: ["level", "format"])
            if let node = fields["level"] {
                let text = try node.string()
                guard Self.logLevels.contains(text) else {
                    throw node.error("expected one of \(Self.logLevels.joined(separator: ", ")), got '\(text)'")
                }
                level = text
            }
            if let node = fields["format"] { format = try node.choice(["text": LogFormat.text, "json": .json]) }
        }
        var deadline = Self.defaultShutdownDeadlineSeconds
        if let shutdown {
            let fields = try shutdown.mapping(allowed: ["deadline_seconds"])
            if let node = fields["deadline_seconds"] { deadline = try node.int(in: 0...3600) }
        }
        self.init(adminListen: adminListen, adminListenConfigured: configured, logLevel: level, logFormat: format,
                  shutdownDeadlineSeconds: deadline)
    }
}
