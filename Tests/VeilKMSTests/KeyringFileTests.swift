import Foundation
import Testing
import VeilKMS

@Suite struct KeyringFileTests {
    @Test func createdKeyringIsPrivateAndEmpty() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("owner.keyring")
        try KeyringFile.create(at: path, identity: "owner")
        #expect(try mode(of: path) == 0o600)
        let listing = try KeyringFile.list(path)
        #expect(listing.identity == "owner")
        #expect(listing.keyIds.isEmpty)
    }

    @Test func createRefusesToOverwrite() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("owner.keyring")
        try KeyringFile.create(at: path, identity: "owner")
        try KeyringFile.createKey("k", in: path)
        #expect(throws: KeyringError.alreadyExists(path: path)) {
            try KeyringFile.create(at: path, identity: "intruder")
        }
        #expect(try KeyringFile.list(path).keyIds == ["k"])
        // Only the keyring itself remains: no temporary files left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["owner.keyring"])
    }

    @Test func createKeyAddsListsAndRefusesDuplicates() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("owner.keyring")
        try KeyringFile.create(at: path, identity: "owner")
        try KeyringFile.createKey("sales-key", in: path)
        try KeyringFile.createKey("finance-key", in: path)
        #expect(try KeyringFile.list(path).keyIds == ["finance-key", "sales-key"])
        #expect(throws: KeyringError.keyExists(keyId: "sales-key", path: path)) {
            try KeyringFile.createKey("sales-key", in: path)
        }
        #expect(throws: KeyringError.invalidKeyId("bad\nid")) { try KeyringFile.createKey("bad\nid", in: path) }
        #expect(throws: KeyringError.invalidKeyId("")) { try KeyringFile.createKey("", in: path) }
        #expect(try mode(of: path) == 0o600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["owner.keyring"])
    }

    @Test func loadRefusesGroupOrOtherAccessAndSaysHowToFixIt() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("owner.keyring")
        try KeyringFile.create(at: path, identity: "owner")
        for bad in [0o644, 0o640, 0o604, 0o660, 0o602, 0o610] {
            try FileManager.default.setAttributes([.posixPermissions: bad], ofItemAtPath: path)
            let error = #expect(throws: KeyringError.self) { _ = try LocalKeyring(contentsOf: path) }
            #expect(error == .permissionsTooOpen(path: path, mode: UInt32(0o100000 | bad)))
            #expect(error?.description.contains("chmod 600 \(path)") == true)
            #expect(throws: KeyringError.self) { try KeyringFile.createKey("k", in: path) }
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o400], ofItemAtPath: path)
        _ = try LocalKeyring(contentsOf: path)
    }

    @Test func grantCopiesAKeySoTheGranteeCanUnwrap() async throws {
        let dir = try TemporaryDirectory()
        let owner = dir.file("owner.keyring")
        let finance = dir.file("finance.keyring")
        let sales = dir.file("sales.keyring")
        try KeyringFile.create(at: owner, identity: "owner")
        try KeyringFile.create(at: finance, identity: "finance-consumer")
        try KeyringFile.create(at: sales, identity: "sales-consumer")
        try KeyringFile.createKey("finance-key", in: owner)
        try KeyringFile.createKey("sales-key", in: owner)

        #expect(try KeyringFile.grant("finance-key", from: owner, to: finance))
        #expect(try KeyringFile.grant("finance-key", from: owner, to: finance) == false)
        #expect(try KeyringFile.grant("sales-key", from: owner, to: sales))
        #expect(try KeyringFile.list(finance).keyIds == ["finance-key"])
        #expect(try mode(of: finance) == 0o600)

        let ref = reference("dev/finance-key")
        let dataKey = try await LocalKeyring(contentsOf: owner).generateDataKey(for: ref)
        let unwrapped = try await LocalKeyring(contentsOf: finance).unwrap(dataKey.wrapped, for: ref)
        #expect(bytes(of: unwrapped) == bytes(of: dataKey.plaintext))
        let denied = await #expect(throws: KMSError.self) {
            _ = try await LocalKeyring(contentsOf: sales).unwrap(dataKey.wrapped, for: ref)
        }
        #expect(denied?.kind == .accessDenied)
    }

    @Test func grantRefusesMissingAndConflictingKeys() throws {
        let dir = try TemporaryDirectory()
        let a = dir.file("a.keyring")
        let b = dir.file("b.keyring")
        try KeyringFile.create(at: a, identity: "a")
        try KeyringFile.create(at: b, identity: "b")
        try KeyringFile.createKey("k", in: a)
        try KeyringFile.createKey("k", in: b)
        #expect(throws: KeyringError.keyNotInKeyring(keyId: "missing", path: a)) {
            try KeyringFile.grant("missing", from: a, to: b)
        }
        #expect(throws: KeyringError.keyConflict(keyId: "k", path: b)) { try KeyringFile.grant("k", from: a, to: b) }
    }

    @Test func fileHoldsBase64MaterialInTheDocumentedShape() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("owner.keyring")
        try KeyringFile.create(at: path, identity: "owner")
        try KeyringFile.createKey("k", in: path, now: 1_767_225_600)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        #expect(json["format"] as? String == "veil-keyring")
        #expect(json["version"] as? Int == 1)
        #expect(json["identity"] as? String == "owner")
        let key = (json["keys"] as! [[String: Any]])[0]
        #expect(key["id"] as? String == "k")
        #expect(key["algorithm"] as? String == "AES-256")
        #expect(key["created"] as? Int == 1_767_225_600)
        #expect(Data(base64Encoded: key["material"] as! String)?.count == 32)
    }

    @Test(arguments: [
        #"{"format":"other","version":1,"identity":"x","keys":[]}"#,
        #"{"format":"veil-keyring","version":2,"identity":"x","keys":[]}"#,
        #"{"format":"veil-keyring","version":1,"identity":"x","keys":[{"id":"k","algorithm":"AES-256","material":"AAAA","created":0}]}"#,
        #"{"format":"veil-keyring","version":1,"identity":"x","keys":[{"id":"k","algorithm":"AES-128","material":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","created":0}]}"#,
        "not json",
    ])
    func malformedFilesAreRejected(_ content: String) throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("bad.keyring")
        _ = FileManager.default.createFile(atPath: path, contents: Data(content.utf8), attributes: [.posixPermissions: 0o600])
        let error = #expect(throws: KeyringError.self) { _ = try LocalKeyring(contentsOf: path) }
        if case .malformed = error {} else { Issue.record("expected malformed, got \(String(describing: error))") }
    }

    @Test func duplicateIdsAreRejected() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("dup.keyring")
        let key = #"{"id":"k","algorithm":"AES-256","material":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","created":0}"#
        let content = #"{"format":"veil-keyring","version":1,"identity":"x","keys":["# + key + "," + key + "]}"
        _ = FileManager.default.createFile(atPath: path, contents: Data(content.utf8), attributes: [.posixPermissions: 0o600])
        #expect(throws: KeyringError.malformed(path: path, reason: "key 'k' appears twice")) {
            _ = try LocalKeyring(contentsOf: path)
        }
    }

    @Test func missingFileIsAnIOError() throws {
        let dir = try TemporaryDirectory()
        let error = #expect(throws: KeyringError.self) { _ = try LocalKeyring(contentsOf: dir.file("absent")) }
        guard case .io(_, "open", let code) = error else {
            Issue.record("expected an open failure, got \(String(describing: error))")
            return
        }
        #expect(code == ENOENT)
    }

    /// A FIFO (or device) at the keyring's path must be refused at once: a blocking open()
    /// would hang start-up, and a SIGHUP reload would stop the signal loop for good. A
    /// directory there is refused the same way.
    @Test(arguments: ["fifo", "directory"])
    func nonRegularFilesAreRefusedWithoutBlocking(kind: String) throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("owner.keyring")
        #expect((kind == "fifo" ? mkfifo(path, 0o600) : mkdir(path, 0o700)) == 0)
        let error = #expect(throws: KeyringError.self) { _ = try LocalKeyring(contentsOf: path) }
        #expect(error == .notRegularFile(path: path))
    }
}
