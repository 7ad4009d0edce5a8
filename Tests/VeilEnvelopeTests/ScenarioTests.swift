import NIOCore
import Testing
import VeilEnvelope
import VeilKMS

/// The seed's three-department scenario at the crypto layer: one topic, each
/// consumer sees only what its keyring grants.
@Suite struct ScenarioTests {
    @Test func eachConsumerOpensOnlyItsDepartment() async throws {
        let financeKEK = randomSecret()
        let salesKEK = randomSecret()
        let owner = LocalKeyring(identity: "owner", keys: ["finance-key": financeKEK, "sales-key": salesKEK])
        let financeConsumer = LocalKeyring(identity: "finance-consumer", keys: ["finance-key": financeKEK])
        let salesConsumer = LocalKeyring(identity: "sales-consumer", keys: ["sales-key": salesKEK])

        let producerKMS = CountingKMS(KMSRegistry(["dev": owner]))
        let producer = DataKeyCache(kms: producerKMS)
        let keys = ["finance": reference("dev/finance-key"), "sales": reference("dev/sales-key")]
        var records: [(department: String, plaintext: [UInt8], envelope: ByteBuffer)] = []
        for index in 0..<300 {
            let department = index % 2 == 0 ? "finance" : "sales"
            let plaintext = Array(#"{"department": "\#(department)", "data": "item \#(index)"}"#.utf8)
            let key = try await producer.key(for: keys[department]!)
            records.append((department, plaintext, try seal(plaintext, key: key)))
        }
        #expect(producerKMS.counts.generateDataKey == 2)

        for (identity, keyring) in [("finance", financeConsumer), ("sales", salesConsumer)] {
            let kms = CountingKMS(KMSRegistry(["dev": keyring]))
            let cache = UnwrappedKeyCache(kms: kms)
            for record in records {
                let header = try #require(try EnvelopeHeader.parse(record.envelope))
                if record.department == identity {
                    let dek = try await cache.key(for: header.keyID)
                    #expect(try open(record.envelope, key: dek) == record.plaintext)
                } else {
                    let error = await #expect(throws: EnvelopeError.self) { _ = try await cache.key(for: header.keyID) }
                    guard case .kms(let kmsError) = error else {
                        Issue.record("expected denial, got \(String(describing: error))")
                        continue
                    }
                    #expect(kmsError.kind == .accessDenied)
                }
            }
            // One unwrap for its own key, one (cached) refusal for the other.
            #expect(kms.counts.unwrap == 2)
        }
    }
}
