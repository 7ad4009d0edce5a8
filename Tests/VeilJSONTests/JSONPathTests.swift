import Testing

@testable import VeilJSON

@Suite struct JSONPathTests {
    @Test(arguments: [
        ("customer.email", [JSONPath.Step.member(Array("customer".utf8)), .member(Array("email".utf8))]),
        ("$.customer.email", [.member(Array("customer".utf8)), .member(Array("email".utf8))]),
        ("items[*].card", [.member(Array("items".utf8)), .anyIndex, .member(Array("card".utf8))]),
        ("lines[12]", [.member(Array("lines".utf8)), .index(12)]),
        (#"["a.b"].c"#, [.member(Array("a.b".utf8)), .member(Array("c".utf8))]),
        (#"x["q\"]"]"#, [.member(Array("x".utf8)), .member(Array(#"q"]"#.utf8))]),
        ("[*][0]", [.anyIndex, .index(0)]),
        ("first name", [.member(Array("first name".utf8))]),
    ])
    func parses(text: String, steps: [JSONPath.Step]) throws {
        let path = try JSONPath(parsing: text)
        #expect(path.steps == steps)
        // The normalised form parses back to the same steps.
        #expect(try JSONPath(parsing: path.description).steps == steps)
    }

    @Test(arguments: ["", "$", "a..b", ".a", "a.", "a[", "a[]", "a[-1]", "a[01]", "a[x]", "a]b", #"["a"b"#, "a[*]b"])
    func refusesMalformedPaths(text: String) {
        #expect(throws: JSONPathError.self) { try JSONPath(parsing: text) }
    }

    @Test func overlapDetection() throws {
        func p(_ s: String) throws -> JSONPath { try JSONPath(parsing: s) }
        #expect(try p("a").overlaps(p("a.b")))
        #expect(try p("a.b").overlaps(p("a")))
        #expect(try p("items[*].card").overlaps(p("items[3]")))
        #expect(try p("items[0].card").overlaps(p("items[*].card")))
        #expect(try !p("items[0].card").overlaps(p("items[1].card")))
        #expect(try !p("a.b").overlaps(p("a.c")))
        #expect(try !p("a").overlaps(p("b")))
    }
}
