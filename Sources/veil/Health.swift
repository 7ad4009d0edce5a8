import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOHTTP1
import VeilConfig

/// `veil health`: asks a running sidecar's admin endpoint whether it is alive (or ready),
/// for a container HEALTHCHECK. Exits 0 when it answers 200, 1 otherwise.
struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Query a running sidecar's /healthz (or /readyz); exit 0 if it answers 200.")

    @Option(name: .long, help: "Admin endpoint HOST:PORT (default: the config file's admin.listen, else 127.0.0.1:9644).")
    var admin: String?

    @Option(name: .long, help: "The sidecar's configuration file, to find admin.listen.")
    var config: String?

    @Flag(name: .long, help: "Query /readyz (config loaded, keys and upstream reachable) instead of /healthz.")
    var ready = false

    @Option(name: .long, help: "Seconds to wait for the answer.")
    var timeout: Int = 3

    func run() async throws {
        let address: HostPort
        if let admin {
            address = try HostPort(parsing: admin)
        } else if let config {
            guard let listen = try LoadedConfiguration.parse(path: config).operations.adminListen else {
                Console.error("the admin endpoint is off in \(config) (admin.enabled: false)")
                throw ExitCode(1)
            }
            address = listen
        } else {
            address = OperationsConfiguration.defaultAdminListen
        }
        // A wildcard listener is reached on loopback.
        let host = ["0.0.0.0", "::"].contains(address.host) ? "127.0.0.1" : (address.host.contains(":") ? "[\(address.host)]" : address.host)
        let url = "http://\(host):\(address.port)/\(ready ? "readyz" : "healthz")"
        do {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(Int64(timeout)))
            let body = try await response.body.collect(upTo: 64 * 1024)
            let text = String(buffer: body).trimmingCharacters(in: .whitespacesAndNewlines)
            guard response.status == .ok else {
                Console.error("\(url): \(response.status.code) \(text)")
                throw ExitCode(1)
            }
            Console.out("\(url): \(text)")
        } catch let exit as ExitCode {
            throw exit
        } catch {
            Console.error("\(url): \(error)")
            throw ExitCode(1)
        }
    }
}
