import NIOCore
import VeilConfig
import VeilEnvelope
import VeilWire

/// Refuses plaintext records produced to a topic whose policy here says `require_encrypted`
/// but gives this sidecar no way to encrypt (a consumer's policy has no `encrypt`).
///
/// Every reader of such a topic refuses plaintext records as injected, so forwarding them
/// would only put records on the topic that nobody may read, written by an identity that
/// governance did not let encrypt there. Refusing at produce fails closed and tells the
/// producer why. Records that already are Veil's (envelopes, field-level records, tombstones)
/// pass: a mirroring application re-producing what it read keeps working.
struct PlaintextProduceGuard {
    let identity: String
    let maxUncompressedBytes: Int

    /// Why the partition's records are refused, or nil when none of them is plaintext.
    func refusal(topic: String, records: ByteBuffer) -> (code: Int16, message: String)? {
        do {
            for entry in try RecordSet.split(records) {
                switch entry {
                case .legacy:
                    // Legacy message sets cannot carry Veil's records, so their values are plaintext.
                    return (KafkaErrorCode.topicAuthorizationFailed, Self.plaintext(topic, identity))
                case .truncated:
                    return (KafkaErrorCode.corruptMessage, "truncated record batch in produce request for \(topic)")
                case .batch(let bytes):
                    let batch = try RecordBatch(decoding: bytes, maxUncompressedBytes: maxUncompressedBytes)
                    guard !batch.isControl else { continue }
                    for record in batch.records where try Self.isPlaintext(record) {
                        return (KafkaErrorCode.topicAuthorizationFailed, Self.plaintext(topic, identity))
                    }
                }
            }
        } catch {
            return (KafkaErrorCode.corruptMessage, "malformed records for \(topic): \(error)")
        }
        return nil
    }

    private static func plaintext(_ topic: String, _ identity: String) -> String {
        "topic \(topic) requires encrypted records (require_encrypted) and identity '\(identity)' has no encrypt policy for it; plaintext produce refused"
    }

    /// A record is Veil's when its value is null or an envelope, or when it carries the
    /// field-level marker (the same test a consumer sidecar applies on fetch).
    private static func isPlaintext(_ record: Record) throws -> Bool {
        guard let value = record.value else { return false }
        if try EnvelopeHeader.parse(value) != nil { return false }
        return !record.headers.contains { $0.key == RecordMarker.name }
    }
}
