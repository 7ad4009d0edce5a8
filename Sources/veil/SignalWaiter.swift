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

    static func waitForTermination() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let box = SignalSources(continuation)
            box.install()
        }
    }
}

/// Keeps the dispatch signal sources alive and resumes the waiter exactly once.
private final class SignalSources: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private var continuation: CheckedContinuation<Void, Never>?
    private let queue = DispatchQueue(label: "veil.signals")

    init(_ continuation: CheckedContinuation<Void, Never>) { self.continuation = continuation }

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

    func install() {
        queue.sync {
            for sig in [SIGINT, SIGTERM] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
                source.setEventHandler { [self] in
                    continuation?.resume()
                    continuation = nil
                    for s in sources { s.cancel() }
                }
                source.resume()
                sources.append(source)
            }
        }
    }
}
