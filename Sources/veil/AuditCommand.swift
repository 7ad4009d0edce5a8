import ArgumentParser
import Foundation

/// `veil audit FILE`: a summary of a sidecar's decrypt audit trail: who first read what, and
/// every denial grouped by identity, topic and reason.
struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarise a decrypt audit trail (the JSON lines `veil run --audit-log` writes).")

    @Argument(help: "The audit trail file.") var file: String

    private struct Line: Decodable {
        var time: String
        var event: String
        var identity: String
        var topic: String
        var partition: Int
        var first_offset: Int64
        var last_offset: Int64
        var records: Int
        var key: String?
        var reason: String?
    }

    func run() throws {
        guard let data = FileManager.default.contents(atPath: file) else {
            Console.error("error: cannot read \(file)")
            throw ExitCode.failure
        }
        var lines: [Line] = []
        for (n, text) in String(decoding: data, as: UTF8.self).split(separator: "\n").enumerated() {
            do {
                lines.append(try JSONDecoder().decode(Line.self, from: Data(text.utf8)))
            } catch {
                Console.error("error: \(file):\(n + 1): not an audit trail line")
                throw ExitCode(2)
            }
        }
        let firsts = lines.filter { $0.event == "first_decrypt" }
        let denials = lines.filter { $0.event == "denied" }
        Console.out("audit trail: \(file)")
        Console.out("lines: \(lines.count)" + (lines.isEmpty ? "" : " (\(lines.first!.time) to \(lines.last!.time))"))
        Console.out("first decrypts: \(firsts.count)")
        for line in firsts.sorted(by: { ($0.identity, $0.topic, $0.key ?? "") < ($1.identity, $1.topic, $1.key ?? "") }) {
            Console.out("  \(line.time) \(line.identity) read \(line.topic) under \(line.key ?? "?") (partition \(line.partition), offset \(line.first_offset))")
        }
        Console.out("denied records: \(denials.reduce(0) { $0 + $1.records }) in \(denials.count) runs")
        struct Group: Hashable { var identity: String, topic: String, reason: String }
        var groups: [Group: (records: Int, first: String, last: String, partitions: Set<Int>)] = [:]
        for line in denials {
            let group = Group(identity: line.identity, topic: line.topic, reason: line.reason ?? "unknown")
            var entry = groups[group] ?? (0, line.time, line.time, [])
            entry.records += line.records
            entry.last = line.time
            entry.partitions.insert(line.partition)
            groups[group] = entry
        }
        for (group, entry) in groups.sorted(by: { ($0.key.identity, $0.key.topic, $0.key.reason) < ($1.key.identity, $1.key.topic, $1.key.reason) }) {
            Console.out(
                "  \(group.identity) \(group.topic): \(entry.records) records, partitions \(entry.partitions.sorted().map(String.init).joined(separator: ",")), "
                    + "\(entry.first) to \(entry.last): \(group.reason)")
        }
    }
}
