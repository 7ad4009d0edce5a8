import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Suspends until SIGINT or SIGTERM arrives.
enum SignalWaiter {
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
