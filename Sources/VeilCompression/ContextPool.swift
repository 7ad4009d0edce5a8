import Synchronization

/// A small free list of native codec contexts.
///
/// Creating a zstd or zlib context allocates and initialises hundreds of kilobytes of tables;
/// doing that per record batch would dominate the cost of small batches. Contexts are checked out
/// exclusively, so each is used by one thread at a time, and the pool keeps at most `maxIdle`
/// of them so memory stays bounded after a burst of concurrency.
final class ContextPool<Context: AnyObject & Sendable>: Sendable {
    private let idle = Mutex<[Context]>([])
    private let maxIdle: Int
    private let make: @Sendable () throws -> Context

    init(maxIdle: Int = 8, make: @escaping @Sendable () throws -> Context) {
        self.maxIdle = maxIdle
        self.make = make
    }

    /// Runs `body` with a context nobody else holds, returning the context to the pool afterwards.
    ///
    /// Contexts go back to the pool even when `body` throws: every user resets its context before
    /// use, so a context left mid-stream by corrupt input is still reusable.
    @discardableResult
    func withContext<Result>(_ body: (Context) throws -> Result) throws -> Result {
        let context = try self.idle.withLock { $0.popLast() } ?? self.make()
        defer {
            self.idle.withLock { contexts in
                if contexts.count < self.maxIdle { contexts.append(context) }
            }
        }
        return try body(context)
    }
}
