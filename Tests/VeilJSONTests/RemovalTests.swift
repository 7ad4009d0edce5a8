import Foundation
import Testing

@testable import VeilJSON
import VeilTestSupport

@Suite struct FinderAndRemovalTests {
    func hits(_ json: String) throws -> EncryptedFieldHits {
        var hits = EncryptedFieldHits()
        try Array(json.utf8).withUnsafeBytes { try hits.find(prefix: EncryptedField.prefix, in: $0) }
        return hits
    }

    /// Removes the hits whose payload is in `payloads`, returning the edited document.
    func remove(_ json: String, _ payloads: Set<String>) throws -> String {
        let found = try hits(json)
        let bytes = Array(json.utf8)
        let removed = found.hits.indices.filter { payloads.contains(String(decoding: bytes[found.hits[$0].payload], as: UTF8.self)) }
        var out: [UInt8] = []
        var copied = 0
        for cut in JSONRemoval.ranges(hits: found.hits, removed: removed) {
            #expect(cut.lowerBound >= copied, "cuts overlap or are unordered")
            out += bytes[copied..<cut.lowerBound]
            copied = cut.upperBound
        }
        out += bytes[copied...]
        return String(decoding: out, as: UTF8.self)
    }

    @Test func findsEncryptedStringsWithLocationsAndNeighbours() throws {
        let json = #"{"a": "veil:1:AA", "b": {"c": ["x", "veil:1:BB"]}, "veil:1:name": "plain", "d": "veil:1\u003aCC"}"#
        let found = try hits(json)
        let bytes = Array(json.utf8)
        #expect(found.hits.map { String(decoding: bytes[$0.payload], as: UTF8.self) } == ["AA", "BB"])
        #expect(found.hits.map { String(decoding: found.locations[$0.location], as: UTF8.self) }
            == [#"$["a"]"#, #"$["b"]["c"][1]"#])
        let second = found.hits[1]
        #expect(second.index == 1)
        #expect(second.previousValueEnd == json.distance(of: #""x""#)! + 3)
        #expect(second.memberStart == json.distance(of: #""veil:1:BB""#)!)
        #expect(found.hits[0].nextMemberStart == json.distance(of: #""b""#)!)
        #expect(second.nextMemberStart == -1)
    }

    @Test(arguments: [
        // Object: first, middle, last, leading run, everything.
        (#"{"a": "veil:1:A", "b": 1, "c": 2}"#, ["A"], #"{"b": 1, "c": 2}"#),
        (#"{"a": 1, "b": "veil:1:B", "c": 2}"#, ["B"], #"{"a": 1, "c": 2}"#),
        (#"{"a": 1, "b": 2, "c": "veil:1:C"}"#, ["C"], #"{"a": 1, "b": 2}"#),
        (#"{"a": "veil:1:A", "b": "veil:1:B", "c": 2}"#, ["A", "B"], #"{"c": 2}"#),
        (#"{"a": "veil:1:A", "b": 1, "c": "veil:1:C"}"#, ["A", "C"], #"{"b": 1}"#),
        (#"{ "a" : "veil:1:A" , "b" : "veil:1:B" }"#, ["A", "B"], #"{  }"#),
        (#"{"a": 1, "b": "veil:1:B", "c": "veil:1:C"}"#, ["B", "C"], #"{"a": 1}"#),
        // Only some of the encrypted ones.
        (#"{"a": "veil:1:A", "b": "veil:1:B"}"#, ["B"], #"{"a": "veil:1:A"}"#),
        // Arrays and nesting, with odd whitespace kept as is.
        ("[\"veil:1:A\",\n  \"veil:1:B\",\n  3]", ["A", "B"], "[3]"),
        (#"{"items": [{"card": "veil:1:A", "sku": 1}, {"sku": 2, "card": "veil:1:B"}], "n":  "veil:1:N"}"#, ["A", "B", "N"],
         #"{"items": [{"sku": 1}, {"sku": 2}]}"#),
        (#"{"x": ["veil:1:A"], "y": {"z": "veil:1:B"}}"#, ["A", "B"], #"{"x": [], "y": {}}"#),
    ])
    func removalKeepsValidJSONAndEverythingElseByteForByte(json: String, remove payloads: [String], expected: String) throws {
        let result = try remove(json, Set(payloads))
        #expect(result == expected)
        #expect((try? JSONSerialization.jsonObject(with: Data(result.utf8), options: [.fragmentsAllowed])) != nil)
    }

    @Test func removalOfRandomSubsetsStaysValid() throws {
        var generator = SplitMix64(seed: 42)
        for _ in 0..<300 {
            // A random container of random members, some encrypted.
            let count = Int.random(in: 1...6, using: &generator)
            var payloads: [String] = []
            var members: [String] = []
            for i in 0..<count {
                if Bool.random(using: &generator) {
                    payloads.append("P\(i)")
                    members.append(#""k\#(i)" :  "veil:1:P\#(i)""#)
                } else {
                    members.append(#""k\#(i)":[\#(i), {"n": "veil:1:Q\#(i)"}]"#)
                }
            }
            let json = "{ " + members.joined(separator: " ,\n ") + " }"
            let chosen = Set(payloads.filter { _ in Bool.random(using: &generator) })
            let result = try remove(json, chosen)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(result.utf8)) as? [String: Any])
            for i in 0..<count {
                let removed = chosen.contains("P\(i)")
                #expect((object["k\(i)"] == nil) == removed, "\(json) minus \(chosen) gave \(result)")
            }
        }
    }
}

extension String {
    /// UTF-8 offset of the first occurrence of `needle`.
    func distance(of needle: String) -> Int? {
        let hay = Array(utf8), pattern = Array(needle.utf8)
        guard pattern.count <= hay.count else { return nil }
        for i in 0...(hay.count - pattern.count) where Array(hay[i..<(i + pattern.count)]) == pattern { return i }
        return nil
    }
}
