import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A real `moto_server` (PyPI `moto[server]`) on a loopback port: the AWS KMS and STS APIs
/// with SigV4 and per-account key stores, in one Python process owned by whoever started it
/// and stopped by pid. `veil demo --kms aws` runs its KMS on one; the AWS KMS tests use it
/// as the real API they are checked against.
public final class MotoServer: @unchecked Sendable {
    public let port: Int
    public let logPath: String
    private var process: Process?
    private var paused = false

    public var endpoint: String { "http://127.0.0.1:\(port)" }

    /// Runs moto from Python with a thread that exits when the parent is gone, so a crashed
    /// demo or test run cannot leave a server behind.
    private static let launcher = """
        import os, signal, sys, threading, time
        # The parent's threads block some signals and a spawned child inherits that mask;
        # without this, SIGTERM would never reach the server.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        parent = os.getppid()
        def watch():
            while True:
                if os.getppid() != parent:
                    os._exit(0)
                time.sleep(0.5)
        threading.Thread(target=watch, daemon=True).start()
        import moto.server
        # moto's own SIGTERM handler exits through SystemExit, which then waits for keep-alive
        # request threads; exit at once instead, like a killed KMS endpoint.
        moto.server.signal_handler = lambda signum, frame: os._exit(0)
        moto.server.main(["-H", "127.0.0.1", "-p", sys.argv[1]])
        """

    /// Starts moto on `port` (a free one if nil) and waits until it accepts connections.
    public init(port: Int? = nil, logPath: String? = nil) throws {
        self.port = try port ?? freeLoopbackPort()
        self.logPath = logPath ?? (NSTemporaryDirectory() + "veil-moto-\(UUID().uuidString).log")
        try start()
    }

    deinit { stop() }

    /// Starts (or, after ``stop()``, restarts) the server on the same port.
    public func start() throws {
        precondition(process == nil, "moto already running")
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        child.arguments = ["python3", "-c", Self.launcher, String(port)]
        child.standardOutput = log
        child.standardError = log
        child.standardInput = FileHandle.nullDevice
        do {
            try child.run()
        } catch {
            throw Unavailable("could not run python3 to start moto_server: \(error)", log: "")
        }
        process = child
        ChildProcesses.shared.add(child.processIdentifier)
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline {
            if !child.isRunning {
                process = nil
                ChildProcesses.shared.remove(child.processIdentifier)
                throw Unavailable(
                    "moto_server exited with status \(child.terminationStatus) before accepting connections "
                        + "(install it with `pip install 'moto[server]'`)", log: logTail())
            }
            if canConnectToLoopback(port: port) { return }
            usleep(100_000)
        }
        stop()
        throw Unavailable("moto_server did not accept connections on port \(port) within 90 s", log: logTail())
    }

    /// Ends the server by its pid (SIGTERM, then SIGKILL if it lingers) and waits for it.
    public func stop() {
        guard let child = process else { return }
        process = nil
        let pid = child.processIdentifier
        defer { ChildProcesses.shared.remove(pid) }
        if paused {
            kill(pid, SIGCONT)
            paused = false
        }
        guard child.isRunning else { return }
        kill(pid, SIGTERM)
        // The pid cannot have been reused while the child is unreaped, so SIGKILL is safe.
        let watchdog = DispatchWorkItem { if child.isRunning { kill(pid, SIGKILL) } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 5, execute: watchdog)
        child.waitUntilExit()
        watchdog.cancel()
    }

    /// Freezes the server (SIGSTOP): the kernel still accepts connections but nothing answers,
    /// which is what a hung KMS endpoint looks like to a client.
    public func pause() {
        guard let child = process else { return }
        kill(child.processIdentifier, SIGSTOP)
        paused = true
    }

    /// Undoes ``pause()``.
    public func resume() {
        guard let child = process, paused else { return }
        kill(child.processIdentifier, SIGCONT)
        paused = false
    }

    /// The end of moto's own output, for error messages.
    public func logTail() -> String {
        guard let data = FileManager.default.contents(atPath: logPath) else { return "" }
        return String(decoding: data.suffix(4000), as: UTF8.self)
    }

    /// moto_server could not be started.
    public struct Unavailable: Error, CustomStringConvertible {
        public let reason: String
        public let log: String

        init(_ reason: String, log: String) {
            self.reason = reason
            self.log = log
        }

        public var description: String { "moto_server unavailable: \(reason)\n--- moto output ---\n\(log)" }
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port` right now.
public func canConnectToLoopback(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
}
