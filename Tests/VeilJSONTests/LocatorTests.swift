import Testing

@testable import VeilJSON
import VeilTestSupport

/// A located value, as text, for readable expectations.
struct Found: Equatable, CustomStringConvertible {
    var path: Int
    var location: String
    var value: String
    var description: String { "#\(path) \(location) = \(value)" }
}

func locate(_ json: String, _ paths: [String]) throws -> [Found] {
    let set = try #require(JSONPathSet(try paths.map { try JSONPath(parsing: $0) }))
    var matches = JSONFieldMatches()
    let bytes = Array(json.utf8)
    try bytes.withUnsafeBytes { raw in try set.locate(in: raw, into: &matches) }
    return matches.matches.map { m in
        Found(path: m.path, location: String(decoding: matches.locations[m.location], as: UTF8.self),
              value: String(decoding: bytes[m.value], as: UTF8.self))
    }
}

@Suite struct LocatorTests {
    @Test func nestedMembers() throws {
        let json = #"{"customer": {"name": "Ada", "email": "ada@example.com"}, "total": 12.50}"#
        #expect(try locate(json, ["customer.email", "total", "customer.phone"]) == [
            Found(path: 0, location: #"$["customer"]["email"]"#, value: #""ada@example.com""#),
            Found(path: 1, location: #"$["total"]"#, value: "12.50"),
        ])
    }

    @Test func arraysWildcardAndIndex() throws {
        let json = #"{"items": [{"card": "4111"}, {"sku": 1}, {"card": {"n": "5500", "exp": [1, 2]}}], "x": [[1], [2, 3]]}"#
        #expect(try locate(json, ["items[*].card", "x[1][0]"]) == [
            Found(path: 0, location: #"$["items"][0]["card"]"#, value: #""4111""#),
            Found(path: 0, location: #"$["items"][2]["card"]"#, value: #"{"n": "5500", "exp": [1, 2]}"#),
            Found(path: 1, location: #"$["x"][1][0]"#, value: "2"),
        ])
    }

    @Test func everyKindOfValueIsSelectedWhole() throws {
        let json = #"{"a": -1.5e+3, "b": true, "c": null, "d": [], "e": {}, "f": "s\"q", "g": false}"#
        let found = try locate(json, ["a", "b", "c", "d", "e", "f", "g"])
        #expect(found.map(\.value) == ["-1.5e+3", "true", "null", "[]", "{}", #""s\"q""#, "false"])
    }

    @Test func documentOrderEvenWhenPathsInterleave() throws {
        // A longer path matching inside a selected value comes after it, by start offset.
        let json = #"{"z": 1, "outer": {"region": "eu", "v": 2}, "a": 3}"#
        #expect(try locate(json, ["a", "outer", "outer.region", "z"]).map(\.path) == [3, 1, 2, 0])
    }

    @Test func escapedNamesMatchUnescapedPaths() throws {
        let json = #"{"em\u0061il": "x", "a.b": 1, "a": {"b": 2}}"#
        let found = try locate(json, ["email", #"["a.b"]"#, "a.b"])
        #expect(found == [
            Found(path: 0, location: #"$["em\u0061il"]"#, value: #""x""#),
            Found(path: 1, location: #"$["a.b"]"#, value: "1"),
            Found(path: 2, location: #"$["a"]["b"]"#, value: "2"),
        ])
    }

    @Test func duplicateMembersAreAllSelected() throws {
        #expect(try locate(#"{"a": 1, "a": 2}"#, ["a"]).map(\.value) == ["1", "2"])
    }

    @Test func rootArraysAndScalars() throws {
        #expect(try locate(#"[{"k": 1}, {"k": 2}]"#, ["[*].k"]).map(\.value) == ["1", "2"])
        #expect(try locate("42", ["a"]).isEmpty)
        #expect(try locate("\u{FEFF} {\"a\": 1} \n", ["a"]).map(\.value) == ["1"])
    }

    @Test(arguments: [
        ("", 0), ("{", 1), (#"{"a" 1}"#, 5), (#"{"a": 1,}"#, 8), (#"{"a": 01}"#, 7), (#"{"a": 1} x"#, 9),
        (#"["a\x"]"#, 4), ("{\"a\": \"\u{1}\"}", 7), (#"{"a": tru}"#, 6), (#"[1 2]"#, 3), (#"{"a": "b}"#, 9),
        (#"{"a": -}"#, 7), (#"{"a": 1.}"#, 8), (#"{"a": 1e}"#, 8),
    ])
    func syntaxErrorsNameTheOffset(json: String, offset: Int) {
        #expect(throws: JSONSyntaxError.self) { try locate(json, ["a"]) }
        do {
            _ = try locate(json, ["a"])
        } catch let error as JSONSyntaxError {
            #expect(error.offset == offset, "\(error)")
            // The message carries an offset, never the input.
            #expect(!error.description.contains("tru") && !error.description.contains("b}"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func errorsAreFoundEvenInSubtreesNoPathReaches() {
        #expect(throws: JSONSyntaxError.self) { try locate(#"{"other": [1, {"x": tru}], "a": 1}"#, ["a"]) }
    }

    @Test func depthIsBounded() throws {
        let deep = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(throws: JSONSyntaxError.self) { try locate(deep, ["a"]) }
        let fine = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(try locate(fine, ["a"]).isEmpty)
    }

    @Test func setCapacity() throws {
        let paths = try (0..<65).map { try JSONPath(parsing: "f\($0)") }
        #expect(JSONPathSet(Array(paths.prefix(64))) != nil)
        #expect(JSONPathSet(paths) == nil)
        // Path 63 (the top bit) is tracked like any other.
        let set = try #require(JSONPathSet(Array(paths.prefix(64))))
        var matches = JSONFieldMatches()
        try Array(#"{"f63": 7}"#.utf8).withUnsafeBytes { try set.locate(in: $0, into: &matches) }
        #expect(matches.matches.map(\.path) == [63])
    }
}

@Suite struct Base64URLTests {
    func encode(_ bytes: [UInt8]) -> String {
        var out = [UInt8](repeating: 0, count: Base64URL.encodedCount(bytes.count))
        bytes.withUnsafeBytes { input in out.withUnsafeMutableBytes { Base64URL.encode(input, into: $0) } }
        return String(decoding: out, as: UTF8.self)
    }

    func decode(_ text: String) -> [UInt8]? {
        let input = Array(text.utf8)
        guard let count = Base64URL.decodedCount(input.count) else { return nil }
        var out = [UInt8](repeating: 0, count: count)
        let ok = input.withUnsafeBytes { raw in out.withUnsafeMutableBytes { Base64URL.decode(raw, into: $0) } }
        return ok ? out : nil
    }

    @Test(arguments: [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE"), ("foobar", "Zm9vYmFy")])
    func rfc4648Vectors(plain: String, encoded: String) {
        #expect(encode(Array(plain.utf8)) == encoded)
        #expect(decode(encoded) == Array(plain.utf8))
    }

    @Test func urlAlphabet() {
        #expect(encode([0xFB, 0xFF, 0xBF]) == "-_-_")
        #expect(decode("-_-_") == [0xFB, 0xFF, 0xBF])
        #expect(decode("+/+/") == nil)
    }

    @Test func roundTripsEveryLength() {
        var generator = SplitMix64(seed: 7)
        for count in 0..<200 {
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(decode(encode(bytes)) == bytes)
        }
    }

    @Test(arguments: ["Z", "Zh", "Zm9", "Zm9vY", "Zg=", "Zg==", "Z g", "Zm\u{0}v"])
    func refusesNonCanonicalInput(text: String) {
        // "Zh" and "Zm9" leave non-zero unused bits; the rest are malformed.
        #expect(decode(text) == nil)
    }
}

