import Testing
import VeilSASL

/// RFC 7677 §3's SCRAM-SHA-256 example, and the same exchange over SHA-512 (no RFC gives one;
/// those values were computed with Python's hashlib/hmac, an independent implementation,
/// which also reproduces the RFC 7677 values).
@Suite struct ScramTests {
    let clientNonce = "rOprNGfwEbeRWgbNEkqO"
    let serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    let serverNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"

    struct Vector {
        let mechanism: SaslMechanismName
        let clientFinal: String
        let serverFinal: String
        let storedKey: String
        let serverKey: String
    }

    static let vectors = [
        Vector(
            mechanism: .scramSHA256,
            clientFinal: "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            serverFinal: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
            storedKey: "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
            serverKey: "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="),
        Vector(
            mechanism: .scramSHA512,
            clientFinal: "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=gMGXRcevScNtxZ6/8lQYpGtnsNAc3mGcmNomv+xnoOMw+3R2xNJdMNnzMlTN8PPC6wdp6dybEmDYXYTxwnYPJQ==",
            serverFinal: "v=ZQnYEgWQMFmmsM8aQMF0nDDCy/AgCzkwk8CmMZYcMg0vSVlKDanekLtifDSeVGT4+5ZxXnJq199RVG2rR7N7Zw==",
            storedKey: "6AAub3065EYRmyFpM2RNwqK+eGnrkYuEWbXn19LsEmBqzu8QaCXNc1FwpnX9NhH2hK/60dzj9DoO5DvVkOHbvg==",
            serverKey: "jZHbYjC1aHh0/hKbxyBuGFjDrgjgKTT1esA7awWiKcRZ0o/0b1yWEebBeSVkkCFewf91nLDfKF24mvD5nmE6rA=="),
    ]

    func text(_ bytes: [UInt8]?) -> String? { bytes.map { String(decoding: $0, as: UTF8.self) } }

    @Test(arguments: vectors) func clientProducesTheVector(_ v: Vector) throws {
        var client = ScramClient(mechanism: v.mechanism, username: "user", password: "pencil", nonce: clientNonce)
        #expect(text(try client.initialResponse()) == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
        #expect(text(try client.respond(to: Array(serverFirst.utf8))) == v.clientFinal)
        #expect(try client.respond(to: Array(v.serverFinal.utf8)) == nil)
    }

    @Test(arguments: vectors) func credentialDerivationMatches(_ v: Vector) {
        let credential = ScramCredential(
            digest: v.mechanism.scramDigest!, password: "pencil", salt: Base64.decode("W22ZaJ0SNY7soEsUEjb6gQ==")!, iterations: 4096)
        #expect(Base64.encode(credential.storedKey) == v.storedKey)
        #expect(Base64.encode(credential.serverKey) == v.serverKey)
        #expect(credential.matches(password: "pencil"))
        #expect(!credential.matches(password: "pencil "))
    }

    @Test(arguments: vectors) func serverAcceptsTheVector(_ v: Vector) throws {
        let credential = ScramCredential(
            digest: v.mechanism.scramDigest!, password: "pencil", salt: Base64.decode("W22ZaJ0SNY7soEsUEjb6gQ==")!, iterations: 4096)
        var server = ScramServer(digest: v.mechanism.scramDigest!, nonce: serverNonce) { $0 == "user" ? credential : nil }
        #expect(try server.handle(Array("n,,n=user,r=rOprNGfwEbeRWgbNEkqO".utf8)) == .challenge(Array(serverFirst.utf8)))
        #expect(try server.handle(Array(v.clientFinal.utf8)) == .success(username: "user", final: Array(v.serverFinal.utf8)))
    }

    @Test func clientRejectsAForgedServerSignature() throws {
        var client = ScramClient(mechanism: .scramSHA256, username: "user", password: "pencil", nonce: clientNonce)
        _ = try client.initialResponse()
        _ = try client.respond(to: Array(serverFirst.utf8))
        #expect(throws: SaslError.self) { try client.respond(to: Array("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".utf8)) }
    }

    @Test func clientRejectsLowIterationsAndForeignNonces() throws {
        var low = ScramClient(mechanism: .scramSHA256, username: "user", password: "pencil", nonce: clientNonce)
        _ = try low.initialResponse()
        #expect(throws: SaslError.self) { try low.respond(to: Array("r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000".utf8)) }
        var foreign = ScramClient(mechanism: .scramSHA256, username: "user", password: "pencil", nonce: clientNonce)
        _ = try foreign.initialResponse()
        #expect(throws: SaslError.self) { try foreign.respond(to: Array("r=somethingElse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".utf8)) }
    }

    /// Client and server in this module against each other, with random nonces and salt.
    @Test(arguments: [SaslMechanismName.scramSHA256, .scramSHA512]) func roundTrip(_ mechanism: SaslMechanismName) throws {
        let credential = ScramCredential(digest: mechanism.scramDigest!, password: "s3cret,=x")
        func run(password: String, user: String = "a=b,c") throws -> ScramServer.Step {
            var client = ScramClient(mechanism: mechanism, username: user, password: password)
            var server = ScramServer(digest: mechanism.scramDigest!) { $0 == "a=b,c" ? credential : nil }
            guard case .challenge(let first) = try server.handle(try client.initialResponse()) else { throw SaslError("no challenge") }
            let final = try #require(try client.respond(to: first))
            let step = try server.handle(final)
            if case .success(_, let serverFinal) = step { #expect(try client.respond(to: serverFinal) == nil) }
            return step
        }
        guard case .success(let user, _) = try run(password: "s3cret,=x") else { Issue.record("not authenticated"); return }
        #expect(user == "a=b,c")
        #expect(throws: SaslError.self) { try run(password: "wrong") }
        #expect(throws: SaslError.self) { try run(password: "s3cret,=x", user: "nobody") }
    }

    @Test func unknownUsersGetAStableDecoySalt() throws {
        func salt() throws -> String {
            var server = ScramServer(digest: .sha256) { _ in nil }
            guard case .challenge(let first) = try server.handle(Array("n,,n=ghost,r=abc".utf8)) else { return "" }
            return String(String(decoding: first, as: UTF8.self).split(separator: ",")[1])
        }
        #expect(try salt() == salt())
    }

    @Test func plainMessages() throws {
        var client = PlainClient(username: "alice", password: "pw")
        let message = try client.initialResponse()
        let parsed = try #require(PlainMessage(message))
        #expect(parsed.username == "alice" && parsed.password == "pw" && parsed.authorizationIdentity == "")
        #expect(PlainMessage(Array("nonuls".utf8)) == nil)
    }

    @Test func base64RoundTrips() {
        for n in 0..<20 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 * 37 + 11) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
        #expect(Base64.encode(Array("biws".utf8)) == "Yml3cw==")
        #expect(Base64.decode("n,,") == nil)
        #expect(Base64.decode("Yml3c!==") == nil)
    }
}
