import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Suspends until SIGINT or SIGTERM arrives, or runs a handler when one does.
enum SignalWaiter {
    /// Runs `handler` on the first SIGINT or SIGTERM, from a dispatch queue.
    static func onTermination(_ handler: @escaping @Sendable () -> Void) {
        SignalSources.installHandler(handler)
    }

    /// Every arrival of one of `signals`, in order, for as long as the stream is iterated.
    static func stream(_ signals: [Int32]) -> AsyncStream<Int32> {
        AsyncStream { continuation in
            let queue = DispatchQueue(label: "veil.signals.stream")
            var sources: [DispatchSourceSignal] = []
            for sig in signals {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
                source.setEventHandler { continuation.yield(sig) }
                source.resume()
                sources.append(source)
            }
            let kept = SourceList(sources)
            continuation.onTermination = { _ in kept.cancel() }
        }
    }
}

/// Keeps signal sources alive until the stream that owns them ends.
private final class SourceList: @unchecked Sendable {
    private let sources: [DispatchSourceSignal]
    init(_ sources: [DispatchSourceSignal]) { self.sources = sources }
    func cancel() { for s in sources { s.cancel() } }
}

/// Keeps the dispatch signal sources of ``SignalWaiter/onTermination(_:)`` alive.
private enum SignalSources {
    /// Kept for the life of the process; touched only while installing.
    nonisolated(unsafe) private static var handlerSources: [DispatchSourceSignal] = []

    static func installHandler(_ handler: @escaping @Sendable () -> Void) {
        let queue = DispatchQueue(label: "veil.signals.handler")
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            source.setEventHandler(handler: handler)
            source.resume()
            handlerSources.append(source)
        }
    }
}
