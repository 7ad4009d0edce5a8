import Logging
import VeilConfig

/// Sends logs to standard error at `level`, as text or one JSON object per line; every
/// subcommand logs the same way.
func bootstrapLogging(_ level: Logger.Level, format: OperationsConfiguration.LogFormat = .text) {
    LoggingSystem.bootstrap { label in
        switch format {
        case .text:
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        case .json:
            var handler = JSONLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
