import Testing
import VeilKMS

@Suite struct KeyReferenceTests {
    @Test func parsesKMSAndKeyId() {
        let ref = KeyReference("finance/department-key")
        #expect(ref?.kms == "finance")
        #expect(ref?.keyId == "department-key")
        #expect(ref?.description == "finance/department-key")
    }

    @Test func splitsOnTheFirstSlashOnly() {
        let ref = KeyReference("aws/arn:aws:kms:us-east-1:111122223333:key/1234abcd")
        #expect(ref?.kms == "aws")
        #expect(ref?.keyId == "arn:aws:kms:us-east-1:111122223333:key/1234abcd")
        #expect(ref.map { KeyReference($0.description) } == ref)
    }

    @Test(arguments: ["", "finance", "/key", "finance/", "/"])
    func rejectsIncompleteReferences(_ text: String) {
        #expect(KeyReference(text) == nil)
    }

    @Test func rejectsOverlongParts() {
        #expect(KeyReference(kms: String(repeating: "k", count: 256), keyId: "x") == nil)
        #expect(KeyReference(kms: "k", keyId: String(repeating: "x", count: 2049)) == nil)
        #expect(KeyReference(kms: "a/b", keyId: "x") == nil)
        #expect(KeyReference(kms: String(repeating: "k", count: 255), keyId: String(repeating: "x", count: 2048)) != nil)
    }
}
