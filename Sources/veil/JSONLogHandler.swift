import Foundation
import Logging
import VeilJSON

/// Writes each log event to standard error as one JSON object per line
/// (`time`, `level`, `logger`, `message`, then the metadata's keys), for log shippers.
///
/// Messages and metadata are whatever the code logged: Veil never logs key material or
/// record payloads, so neither can appear here.
struct JSONLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info
    let label: String

    init(label: String) { self.label = label }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields: [(String, String)] = [
            ("time", Self.timestamp()), ("level", event.level.rawValue), ("logger", label), ("message", "\(event.message)"),
        ]
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        for key in merged.keys.sorted() where !["time", "level", "logger", "message"].contains(key) {
            fields.append((key, "\(merged[key]!)"))
        }
        var line = "{"
        for (i, (key, value)) in fields.enumerated() {
            if i > 0 { line += "," }
            line += JSONString.literal(key.utf8) + ":" + JSONString.literal(value.utf8)
        }
        line += "}\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    private static func timestamp() -> String {
        Date().ISO8601Format(.iso8601.time(includingFractionalSeconds: true))
    }
}
