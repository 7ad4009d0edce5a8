import Foundation
import NIOCore
import Testing
import VeilJSON

@testable import VeilProxy
import VeilTestSupport

/// A generated JSON document, kept as a tree so tests can pick paths in it, and rendered with
/// random whitespace and number spellings (which Veil must not normalise).
indirect enum Node {
    case object([(String, Node)])
    case array([Node])
    case leaf(String)

    func render(_ ws: inout SplitMix64, nulling: Set<[Step]> = [], at path: [Step] = []) -> String {
        if nulling.contains(path) { return "null" }
        func space() -> String { ["", " ", "\n  ", "\t", ""][Int.random(in: 0..<5, using: &ws)] }
        switch self {
        case .leaf(let text): return text
        case .object(let members):
            let inner = members.map { name, node in
                space() + JSONString.literal(Array(name.utf8)) + space() + ":" + space()
                    + node.render(&ws, nulling: nulling, at: path + [.member(name)]) + space()
            }
            return "{" + inner.joined(separator: ",") + (members.isEmpty ? space() : "") + "}"
        case .array(let elements):
            let inner = elements.enumerated().map { i, node in space() + node.render(&ws, nulling: nulling, at: path + [.index(i)]) + space() }
            return "[" + inner.joined(separator: ",") + "]"
        }
    }

    enum Step: Hashable {
        case member(String)
        case index(Int)
    }

    /// Every value below the root, by path.
    func paths(_ prefix: [Step] = []) -> [[Step]] {
        switch self {
        case .leaf: return []
        case .object(let members): return members.flatMap { name, node in [prefix + [.member(name)]] + node.paths(prefix + [.member(name)]) }
        case .array(let elements): return elements.enumerated().flatMap { i, node in [prefix + [.index(i)]] + node.paths(prefix + [.index(i)]) }
        }
    }

    static func generate(_ rng: inout SplitMix64, depth: Int = 0) -> Node {
        let numbers = ["0", "-0", "1", "-17", "3.25", "1e2", "1E+2", "-2.5e-3", "123456789012345678901234567890", "0.1000"]
        let strings = [#""""#, #""plain""#, #""with \"quotes\" and \\ back""#, #""line\nbreak\ttab""#, #""\u00e9t\u00e9""#,
                       "\"caf\u{E9} \u{1F600}\"", #""/slash\/""#, #""veil:1:not-really""#]
        let names = ["a", "b", "id", "x y", "dot.name", "caf\u{E9}", "n1", "items"]
        let roll = Int.random(in: 0..<10, using: &rng)
        if depth >= 4 || roll < 4 {
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: return .leaf(numbers.randomElement(using: &rng)!)
            case 1: return .leaf(strings.randomElement(using: &rng)!)
            case 2: return .leaf(Bool.random(using: &rng) ? "true" : "false")
            default: return .leaf("null")
            }
        }
        if roll < 7 {
            let count = Int.random(in: 0...4, using: &rng)
            let chosen = names.shuffled(using: &rng).prefix(count)
            return .object(chosen.map { ($0, generate(&rng, depth: depth + 1)) })
        }
        return .array((0..<Int.random(in: 0...4, using: &rng)).map { _ in generate(&rng, depth: depth + 1) })
    }
}

extension [Node.Step] {
    /// The policy syntax for this concrete path, quoted for YAML.
    var policyPath: String {
        var out = ""
        for (i, step) in enumerated() {
            switch step {
            case .member(let name) where name.allSatisfy({ $0.isLetter || $0.isNumber }):
                out += (i == 0 ? "" : ".") + name
            case .member(let name): out += "[" + JSONString.literal([UInt8](name.utf8)) + "]"
            case .index(let n): out += "[\(n)]"
            }
        }
        return "'" + out.replacingOccurrences(of: "'", with: "''") + "'"
    }

    func overlaps(_ other: [Node.Step]) -> Bool { zip(self, other).allSatisfy { $0 == $1 } }
}

@Suite struct FieldFidelityTests {
    /// For generated documents and paths: the authorized reader receives exactly the produced
    /// bytes (so the same types and values), the stored document is valid JSON with a string
    /// at every encrypted place, and a denied reader sees the document with nulls there.
    @Test func generatedDocumentsRoundTrip() async throws {
        var rng = SplitMix64(seed: 2026)
        var tested = 0
        var encryptedKinds = Set<String>()
        let reader = try Sidecar(Configs.consumer("reader", decrypt: ["finance/pii"], rule: "null"), finance: true)
        let stranger = try Sidecar(Configs.consumer("stranger", decrypt: [], rule: "null"))
        for iteration in 0..<150 {
            var root = Node.generate(&rng)
            if case .leaf = root { root = .object([("a", root)]) }
            var candidates = root.paths().shuffled(using: &rng)
            guard !candidates.isEmpty else { continue }
            var chosen: [[Node.Step]] = []
            while let next = candidates.popLast(), chosen.count < 4 {
                if !chosen.contains(where: { $0.overlaps(next) }) { chosen.append(next) }
            }
            let policy = "fields:\n" + chosen.map { "  - { path: \($0.policyPath), key: finance/pii }" }.joined(separator: "\n")
            let owner = try Sidecar(Configs.owner(encrypt: policy), finance: true)
            var ws = SplitMix64(seed: UInt64(iteration))
            let original = root.render(&ws)
            #expect(json(original) != nil, "generator made invalid JSON: \(original)")

            let stored = try await owner.store([AppRecord(value: original)], topic: "customers")
            let storedText = try #require(Sidecar.records(stored).first?.valueText)
            var hits = EncryptedFieldHits()
            try Array(storedText.utf8).withUnsafeBytes { try hits.find(prefix: EncryptedField.prefix, in: $0) }
            // The generator also writes plain strings starting with the prefix; they are not envelopes.
            #expect(hits.hits.count >= chosen.count)
            #expect(json(storedText) != nil, "stored value is not JSON: \(storedText)")

            let got = try #require(try await reader.fetch(stored, topic: "customers").records.first)
            #expect(got.valueText == original, "iteration \(iteration): paths \(chosen.map(\.policyPath))")

            var again = SplitMix64(seed: 1)
            let expectedNulls = json(root.render(&again, nulling: Set(chosen))) as? NSObject
            let denied = try #require(try await stranger.fetch(stored, topic: "customers").records.first)
            #expect((json(denied.valueText) as? NSObject) == expectedNulls, "iteration \(iteration): \(denied.valueText ?? "")")

            for path in chosen { encryptedKinds.insert(kind(of: path, in: root)) }
            tested += 1
        }
        #expect(tested > 100)
        // The generator exercised every kind of value.
        #expect(encryptedKinds == ["object", "array", "string", "number", "bool", "null"])
    }

    func kind(of path: [Node.Step], in node: Node) -> String {
        var current = node
        for step in path {
            switch (step, current) {
            case (.member(let name), .object(let members)): current = members.first { $0.0 == name }!.1
            case (.index(let i), .array(let elements)): current = elements[i]
            default: return "?"
            }
        }
        switch current {
        case .object: return "object"
        case .array: return "array"
        case .leaf(let text):
            switch text.first {
            case "\"": return "string"
            case "t", "f": return "bool"
            case "n": return "null"
            default: return "number"
            }
        }
    }
}

