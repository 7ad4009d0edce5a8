import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A real `moto_server` (PyPI `moto[server]`) on a loopback port: the AWS KMS and STS JSON/query
/// APIs with SigV4, in one Python process that this test owns and stops by pid.
///
/// If it cannot start, ``start()`` throws with the reason and moto's own output, so the test
/// fails loudly instead of skipping: these tests are the evidence that the backend works
/// against the real API.
final class MotoServer {
    let port: Int
    let logPath: String
    private var process: Process?
    private var paused = false

    var endpoint: String { "http://127.0.0.1:\(port)" }

    /// Runs moto in-process from Python, with a thread that exits when the test process (its
    /// parent) is gone, so a crashed test run cannot leave a server behind.
    private static let launcher = """
        import os, signal, sys, threading, time
        # The test process's threads block some signals and a spawned child inherits that mask;
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
    init(port: Int? = nil) throws {
        self.port = try port ?? freeLoopbackPort()
        logPath = FileManager.default.temporaryDirectory.appendingPathComponent("veil-moto-\(UUID().uuidString).log").path
        try start()
    }

    deinit { stop() }

    func start() throws {
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
            throw MotoUnavailable("could not run python3 to start moto_server: \(error)", log: "")
        }
        process = child
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline {
            if !child.isRunning {
                process = nil
                throw MotoUnavailable(
                    "moto_server exited with status \(child.terminationStatus) before accepting connections "
                        + "(is PyPI 'moto[server]' installed for python3?)", log: logTail())
            }
            if canConnect(port: port) { return }
            usleep(100_000)
        }
        stop()
        throw MotoUnavailable("moto_server did not accept connections on port \(port) within 90 s", log: logTail())
    }

    /// Ends the server by its pid (SIGTERM, then SIGKILL if it lingers) and waits for it.
    func stop() {
        guard let child = process else { return }
        process = nil
        let pid = child.processIdentifier
        if paused {
            kill(pid, SIGCONT)
            paused = false
        }
        guard child.isRunning else { return }
        kill(pid, SIGTERM)
        // If it ignores SIGTERM, SIGKILL it; the pid cannot have been reused while unreaped.
        let watchdog = DispatchWorkItem { if child.isRunning { kill(pid, SIGKILL) } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 5, execute: watchdog)
        child.waitUntilExit()
        watchdog.cancel()
    }

    /// Freezes the server (SIGSTOP): connections are still accepted by the kernel but never
    /// answered, which is what a hung KMS endpoint looks like to a client.
    func pause() {
        guard let child = process else { return }
        kill(child.processIdentifier, SIGSTOP)
        paused = true
    }

    func resume() {
        guard let child = process, paused else { return }
        kill(child.processIdentifier, SIGCONT)
        paused = false
    }

    func logTail() -> String {
        guard let data = FileManager.default.contents(atPath: logPath) else { return "" }
        return String(decoding: data.suffix(4000), as: UTF8.self)
    }
}

/// moto_server could not be started; the test fails with this.
struct MotoUnavailable: Error, CustomStringConvertible {
    let reason: String
    let log: String

    init(_ reason: String, log: String) {
        self.reason = reason
        self.log = log
    }

    var description: String { "moto_server unavailable, so the AWS KMS tests cannot run: \(reason)\n--- moto output ---\n\(log)" }
}

/// A port the kernel just handed out on 127.0.0.1 (bound and released, so a small race remains).
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EMFILE) }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
            bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else { throw POSIXError(.EADDRINUSE) }
    return Int(UInt16(bigEndian: address.sin_port))
}

func canConnect(port: Int) -> Bool {
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
