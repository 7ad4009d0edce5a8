import Foundation
import Testing
import VeilGovernance

@Suite struct SignatureTests {
    @Test func signedFilesVerifyAndAnyChangeIsRefusedWithItsReason() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try GovernanceSignature.generateKeyPair(privateKeyPath: "\(dir)/gov.key", publicKeyPath: "\(dir)/gov.pub")
        let attributes = try FileManager.default.attributesOfItem(atPath: "\(dir)/gov.key")
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let trusted = try GovernanceSignature.loadPublicKey("\(dir)/gov.pub")
        let config = Array("identity: finance-consumer\nupstream: 127.0.0.1:19092\n".utf8)
        let signature = try GovernanceSignature.sign(config, privateKeyPath: "\(dir)/gov.key")
        try GovernanceSignature.verify(config, path: "f.yaml", signature: signature, trustedKey: trusted)

        var altered = config
        altered[10] ^= 1
        #expect(throws: SignatureError.altered(path: "f.yaml")) {
            try GovernanceSignature.verify(altered, path: "f.yaml", signature: signature, trustedKey: trusted)
        }
        #expect(throws: SignatureError.unsigned(path: "f.yaml")) {
            try GovernanceSignature.verify(config, path: "f.yaml", signature: nil, trustedKey: trusted)
        }
        #expect(throws: SignatureError.malformed(path: "f.yaml.sig")) {
            try GovernanceSignature.verify(config, path: "f.yaml", signature: "garbage", trustedKey: trusted)
        }
        try GovernanceSignature.generateKeyPair(privateKeyPath: "\(dir)/other.key", publicKeyPath: "\(dir)/other.pub")
        let foreign = try GovernanceSignature.sign(config, privateKeyPath: "\(dir)/other.key")
        do {
            try GovernanceSignature.verify(config, path: "f.yaml", signature: foreign, trustedKey: trusted)
            Issue.record("a signature by another key was accepted")
        } catch {
            #expect("\(error)".contains("not by the trusted governance key \(GovernanceSignature.fingerprint(trusted))"))
        }
        // The private key is never overwritten.
        #expect(throws: SignatureError.self) {
            try GovernanceSignature.generateKeyPair(privateKeyPath: "\(dir)/gov.key", publicKeyPath: "\(dir)/gov2.pub")
        }
    }
}
