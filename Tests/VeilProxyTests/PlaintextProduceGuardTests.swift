import NIOCore
import Testing
import VeilWire

@testable import VeilProxy

/// A consumer's sidecar (no `encrypt`, `require_encrypted` by default) refuses plaintext
/// produced through it, and lets Veil's own records (envelopes, field-level records,
/// tombstones, control batches) pass, as a mirroring application needs.
@Suite struct PlaintextProduceGuardTests {
    static let fieldPolicy = "fields: [ { path: card, key: finance/pii } ]"
    let owner: Sidecar
    let consumer: Sidecar

    init() throws {
        owner = try Sidecar(Configs.owner(encrypt: "key_from: { fixed: finance/pii }\n" ), finance: true, sales: true)
        consumer = try Sidecar(Configs.consumer("finance", decrypt: ["finance/pii"], rule: "remove"), finance: true)
    }

    @Test func plaintextIsRefusedWithTheReason() async throws {
        let produced = try await consumer.produce([AppRecord(value: #"{"card":"4242"}"#)], topic: "customers")
        guard case .rejected(let code, let message) = produced else { Issue.record("plaintext passed: \(produced)"); return }
        #expect(code == KafkaErrorCode.topicAuthorizationFailed)
        #expect(message.contains("require_encrypted") && message.contains("identity 'finance' has no encrypt policy"))
        #expect(!message.contains("4242"), "the refusal must not quote the record")
    }

    @Test func oneForgedPlaintextAmongEnvelopesRefusesThePartition() async throws {
        let stored = try await owner.store([AppRecord(value: "a"), AppRecord(value: "b")], topic: "customers")
        var records = Sidecar.records(stored)
        records.append(AppRecord(value: "plain"))
        let produced = try await consumer.produce(records, topic: "customers")
        guard case .rejected = produced else { Issue.record("a plaintext record passed among envelopes"); return }
    }

    @Test func veilsOwnRecordsPassUnchanged() async throws {
        let whole = try await owner.store([AppRecord(value: "secret")], topic: "customers")
        let fieldOwner = try Sidecar(Configs.owner(encrypt: Self.fieldPolicy), finance: true)
        let fields = try await fieldOwner.store([AppRecord(value: #"{"card":"4242"}"#)], topic: "customers")
        let mirrored = Sidecar.records(whole) + Sidecar.records(fields) + [AppRecord(key: "k", value: nil)]
        guard case .stored(let bytes) = try await consumer.produce(mirrored, topic: "customers") else {
            Issue.record("Veil's own records were refused"); return
        }
        #expect(Sidecar.records(bytes) == mirrored)
    }

    @Test func otherTopicsAndPlaintextPoliciesAreNotTouched() async throws {
        guard case .stored = try await consumer.produce([AppRecord(value: "plain")], topic: "elsewhere") else {
            Issue.record("a topic without a policy was refused"); return
        }
        let lenient = try Sidecar(Configs.consumer("finance", decrypt: ["finance/pii"], rule: "remove", extra: "    require_encrypted: false"), finance: true)
        guard case .stored = try await lenient.produce([AppRecord(value: "plain")], topic: "customers") else {
            Issue.record("require_encrypted: false refused plaintext"); return
        }
    }
}
