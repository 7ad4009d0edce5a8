import Testing

@testable import VeilJSON

@Suite struct JSONFieldScannerTests {
    /// The decoded value of `field`, or the non-string result.
    func lookup(_ json: String, _ field: String = "department") -> Outcome {
        Array(json.utf8).withUnsafeBytes { bytes in
            switch JSONFieldScanner.findTopLevelField(field.utf8, in: bytes) {
            case .string(let range, let hasEscapes):
                let raw = UnsafeRawBufferPointer(rebasing: bytes[range])
                let decoded = hasEscapes ? JSONString.unescape(raw) : Array(raw)
                #expect(hasEscapes == raw.contains(UInt8(ascii: "\\")))
                return .string(String(decoding: decoded, as: UTF8.self))
            case .notString: return .notString
            case .absent: return .absent
            case .duplicate: return .duplicate
            case .invalid: return .invalid
            }
        }
    }

    enum Outcome: Equatable {
        case string(String)
        case notString, absent, duplicate, invalid
    }

    @Test(arguments: [
        (#"{"department":"finance"}"#, Outcome.string("finance")),
        (#"{"department": "finance", "data": "x"}"#, .string("finance")),
        (" \n\t{ \"department\" \r\n : \t \"sales\" } \n", .string("sales")),
        (#"{"data":"x","department":"sales"}"#, .string("sales")),
        (#"{"department":""}"#, .string("")),
        ("\u{FEFF}{\"department\":\"bom\"}", .string("bom")),
    ])
    func findsTheField(json: String, expected: Outcome) {
        #expect(self.lookup(json) == expected)
    }

    @Test(arguments: [
        (#"{"department":"fin\"ance"}"#, Outcome.string("fin\"ance")),
        (#"{"department":"a\\b\/c\b\f\n\r\t"}"#, .string("a\\b/c\u{08}\u{0C}\n\r\t")),
        (#"{"department":"\u0066inance"}"#, .string("finance")),
        (#"{"department":"caf\u00e9 \u20AC"}"#, .string("café €")),
        (#"{"department":"\ud83d\ude00"}"#, .string("😀")),
        (#"{"department":"\ud83d x"}"#, .string("\u{FFFD} x")),
        (#"{"department":"\ude00"}"#, .string("\u{FFFD}")),
        (#"{"depart\u006dent":"escaped-key"}"#, .string("escaped-key")),
        (#"{"x":"\"department\":\"fake\"","department":"real"}"#, .string("real")),
        (#"{"department\"":"no","department":"yes"}"#, .string("yes")),
    ])
    func handlesEscapes(json: String, expected: Outcome) {
        #expect(self.lookup(json) == expected)
    }

    @Test(arguments: [
        // Nested values before the field are skipped, including lookalike keys inside them.
        (#"{"meta":{"department":"nested","deep":[{"department":"x"},[1,[2]]]},"department":"top"}"#, Outcome.string("top")),
        (#"{"list":[1,-2.5e+3,0,true,false,null,"s",{"a":{}}],"department":"ok"}"#, .string("ok")),
        (#"{"a":{},"b":[],"department":"ok"}"#, .string("ok")),
        (#"{"meta":{"department":"nested"}}"#, .absent),
        (#"{}"#, .absent),
        (#"{"dept":"finance"}"#, .absent),
        (#"{"Department":"finance"}"#, .absent),
        (#"{"department":5}"#, .notString),
        (#"{"department":null}"#, .notString),
        (#"{"department":{"name":"finance"}}"#, .notString),
        (#"{"department":["finance"]}"#, .notString),
        (#"{"department":"finance","department":"sales"}"#, .duplicate),
        (#"{"department":1,"department":"sales"}"#, .duplicate),
    ])
    func structure(json: String, expected: Outcome) {
        #expect(self.lookup(json) == expected)
    }

    @Test(arguments: [
        "", "   ", "finance", #""department""#, "[]", #"[{"department":"finance"}]"#, "null", "42",
        #"{"department":"finance""#,  // unterminated object
        #"{"department":"finance}"#,  // unterminated string
        #"{"department":"finance",}"#,  // trailing comma
        #"{"department" "finance"}"#,  // missing colon
        #"{department:"finance"}"#,  // unquoted key
        #"{'department':'finance'}"#,  // single quotes
        #"{"department":"finance"} x"#,  // trailing garbage
        #"{"department":"finance"}{}"#,  // two documents
        #"{"department":"fin\xance"}"#,  // bad escape
        #"{"department":"\u12"}"#,  // short unicode escape
        "{\"department\":\"fin\nance\"}",  // raw control character
        #"{"department":"finance","n":01}"#,  // leading zero
        #"{"department":"finance","n":1.}"#,  // bare decimal point
        #"{"department":"finance","n":-}"#,
        #"{"department":"finance","n":1e}"#,
        #"{"department":"finance","t":tru}"#,
        #"{"department":"finance","a":[1,]}"#,
        #"{"department":"finance","a":[1 2]}"#,
        #"{"department":"finance","o":{"k"}}"#,
        #"{"department":"finance","o":{"k":1]}"#,
    ])
    func invalidDocumentsAreInvalid(json: String) {
        #expect(self.lookup(json) == .invalid)
    }

    @Test func nestingIsBoundedWithoutCrashing() {
        let depth = JSONFieldScanner.maximumDepth
        let fits = #"{"a":"# + String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
            + #","department":"ok"}"#
        #expect(self.lookup(fits) == .string("ok"))
        let tooDeep = #"{"a":"# + String(repeating: "[", count: depth + 1) + String(repeating: "]", count: depth + 1)
            + #","department":"ok"}"#
        #expect(self.lookup(tooDeep) == .invalid)
        let hostile = #"{"a":"# + String(repeating: "[", count: 100_000)
        #expect(self.lookup(hostile) == .invalid)
    }

    @Test func everyTruncationOfAValidDocumentIsInvalid() {
        let json = Array(#"{"x":{"y":[1,2.5,"\u00e9"]},"department":"finance","z":null}"#.utf8)
        for cut in 0..<json.count {
            let prefix = Array(json.prefix(cut))
            let result = prefix.withUnsafeBytes { JSONFieldScanner.findTopLevelField("department".utf8, in: $0) }
            #expect(result == .invalid, "cut at \(cut)")
        }
    }
}
