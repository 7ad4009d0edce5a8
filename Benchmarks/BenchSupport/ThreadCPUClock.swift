#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Timing for Veil's microbenchmarks: the calling thread's CPU time, best of five rounds.
///
/// The work measured runs synchronously on the calling thread, so its CPU clock measures
/// it exactly, and the best round is the one other processes on a shared machine
/// disturbed least.
public enum ThreadCPUClock {
    /// CPU seconds the calling thread has used.
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Runs `body` three times to warm up, then in five rounds over about `seconds`;
    /// returns the best round's CPU seconds per call.
    public static func bestSecondsPerCall(over seconds: Double, _ body: () -> Void) -> Double {
        for _ in 0..<3 { body() }
        var best = Double.infinity
        for _ in 0..<5 {
            var calls = 0
            let start = now()
            var elapsed = 0.0
            repeat {
                body()
                calls += 1
                elapsed = now() - start
            } while elapsed < seconds / 5
            best = min(best, elapsed / Double(calls))
        }
        return best
    }
}
