import VeilConfig

/// Applications × data classes: who may encrypt or decrypt which class, through which key and
/// KMS, and until when. The model behind `veil policy matrix`'s HTML page and table.
public struct GrantMatrix {
    /// One grant as shown in a cell.
    public struct Entry: Sendable, Hashable {
        public enum State: String, Sendable { case active, expiring, expired }
        public var purpose: Catalog.Purpose
        public var key: String
        public var kms: String
        public var expires: UTCTimestamp?
        public var approvedBy: String
        public var state: State
    }

    public let applications: [String]
    public let dataClasses: [String]
    /// `cells[application][dataClass]`: the grants on that class's key, encrypt first.
    public let cells: [String: [String: [Entry]]]
    public let now: UTCTimestamp
    public let warnWithin: Int64

    public init(_ catalog: Catalog, now: UTCTimestamp = .now(), warnWithin: Int64 = 7 * 86_400) {
        self.now = now
        self.warnWithin = warnWithin
        applications = catalog.applicationNames
        dataClasses = catalog.dataClassNames
        var cells: [String: [String: [Entry]]] = [:]
        for application in applications {
            for className in dataClasses {
                let dataClass = catalog.dataClasses[className]!
                let kms = catalog.domains[dataClass.domain]?.kms.summary ?? "unknown domain \(dataClass.domain)"
                let entries = catalog.grants(of: application)
                    .filter { $0.domain == dataClass.domain && $0.key == dataClass.key }
                    .map { grant -> Entry in
                        var state = Entry.State.active
                        if let expires = grant.expires {
                            if expires <= now { state = .expired } else if expires.secondsSinceEpoch - now.secondsSinceEpoch <= warnWithin { state = .expiring }
                        }
                        return Entry(purpose: grant.purpose, key: grant.keyName, kms: kms, expires: grant.expires, approvedBy: grant.approvedBy, state: state)
                    }
                    .sorted { ($0.purpose.rawValue, $0.expires?.secondsSinceEpoch ?? .max) < ($1.purpose.rawValue, $1.expires?.secondsSinceEpoch ?? .max) }
                cells[application, default: [:]][className] = entries
            }
        }
        self.cells = cells
    }

    /// Every expiring or expired grant, soonest first.
    public var attention: [(application: String, dataClass: String, entry: Entry)] {
        var out: [(String, String, Entry)] = []
        for application in applications {
            for dataClass in dataClasses {
                for entry in cells[application]?[dataClass] ?? [] where entry.state != .active { out.append((application, dataClass, entry)) }
            }
        }
        return out.sorted { ($0.2.expires?.secondsSinceEpoch ?? 0) < ($1.2.expires?.secondsSinceEpoch ?? 0) }
    }

    /// A fixed-width table for terminals: `E`/`D` per purpose, `!` expiring, `x` expired.
    public func table() -> String {
        func cell(_ entries: [Entry]) -> String {
            guard !entries.isEmpty else { return "-" }
            return entries.map { entry in
                let mark = entry.purpose == .encrypt ? "E" : "D"
                switch entry.state {
                case .active: return entry.expires.map { "\(mark) until \($0)" } ?? mark
                case .expiring: return "\(mark)! until \(entry.expires!)"
                case .expired: return "\(mark)x expired \(entry.expires!)"
                }
            }.joined(separator: ", ")
        }
        let header = ["application"] + dataClasses
        var rows = [header]
        for application in applications { rows.append([application] + dataClasses.map { cell(cells[application]?[$0] ?? []) }) }
        var widths = header.map { _ in 0 }
        for row in rows { for (i, text) in row.enumerated() { widths[i] = max(widths[i], text.count) } }
        func line(_ row: [String]) -> String {
            row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: " | ")
                .trimmingTrailingSpaces()
        }
        var out = [line(rows[0]), widths.map { String(repeating: "-", count: $0) }.joined(separator: "-+-")]
        out += rows.dropFirst().map(line)
        out.append("")
        out.append("E encrypt, D decrypt, ! expires within \(warnWithin / 86_400) days, x expired (as of \(now))")
        return out.joined(separator: "\n") + "\n"
    }
}

extension String {
    fileprivate func trimmingTrailingSpaces() -> String {
        var s = self
        while s.hasSuffix(" ") { s.removeLast() }
        return s
    }

    fileprivate func padding(toLength length: Int, withPad pad: String, startingAt: Int) -> String {
        count >= length ? self : self + String(repeating: pad, count: length - count)
    }
}
