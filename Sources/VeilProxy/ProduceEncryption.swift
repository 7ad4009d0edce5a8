import NIOCore
import VeilConfig
import VeilEnvelope
import VeilKMS
import VeilWire

/// A Produce partition Veil refuses, and what the producer is told.
public struct RejectedPartition: Sendable {
    public var topic: String
    public var partition: Int32
    public var errorCode: Int16
    public var message: String
}

/// Encrypts the records of one Produce request according to the topic policies.
///
/// Planning (decode, choose keys, check grants) is synchronous; only missing data keys
/// need the KMS. Sealing is synchronous again, so the event loop never waits per record.
struct ProduceEncryption {
    let configuration: VeilConfiguration
    let dataKeys: DataKeyCache
    let counters: RecordCounters
    let log: OnceLog
    let maxUncompressedBytes: Int

    /// One partition's records, decoded, with the key chosen for each record.
    struct PlannedPartition {
        var topicIndex: Int
        var partitionIndex: Int
        var topic: String
        var bindTopic: Bool
        /// Entries in order; batches to encrypt carry per-record keys (nil = leave as is) and,
        /// on topics that encrypt fields, headers or record keys, those parts.
        var entries: [(entry: RecordSetEntry, batch: RecordBatch?, keys: [KeyReference?], parts: PartwiseEncryption.BatchPlan?)]
        var partwise: PartwiseEncryption?
    }

    enum Plan {
        case unchanged
        /// `needed`: encryptions per data key reference (whole values, fields and headers);
        /// `deterministic`: record-key keys to derive.
        case work(planned: [PlannedPartition], rejected: [RejectedPartition], needed: [KeyReference: Int],
                  deterministic: Set<KeyReference>)
    }

    func plan(_ request: ProduceRequest) -> Plan {
        var planned: [PlannedPartition] = []
        var rejected: [RejectedPartition] = []
        var needed: [KeyReference: Int] = [:]
        var deterministic = Set<KeyReference>()
        var scratch = PartwiseEncryption.Scratch()
        /// Whole-value encryptions under one granted key not yet added to `needed`.
        var run: (reference: KeyReference, count: Int)?
        for (ti, topic) in request.topics.enumerated() {
            guard let policy = configuration.policy(forTopic: topic.name) else { continue }
            guard let encryption = policy.encrypt else {
                guard policy.requireEncrypted else { continue }
                let guardrail = PlaintextProduceGuard(identity: configuration.identity, maxUncompressedBytes: maxUncompressedBytes)
                for partition in topic.partitions {
                    guard let records = partition.records, let (code, message) = guardrail.refusal(topic: topic.name, records: records)
                    else { continue }
                    rejected.append(RejectedPartition(topic: topic.name, partition: partition.index, errorCode: code, message: message))
                    log.warning("reject:\(topic.name):\(message)", "produce to \(topic.name) refused: \(message)")
                }
                continue
            }
            for (pi, partition) in topic.partitions.enumerated() {
                guard let records = partition.records else { continue }
                func reject(_ code: Int16, _ message: String) {
                    rejected.append(RejectedPartition(topic: topic.name, partition: partition.index, errorCode: code, message: message))
                    log.warning("reject:\(topic.name):\(message)", "produce to \(topic.name) refused: \(message)")
                }
                do {
                    let partwise = encryption.isPartwise
                        ? PartwiseEncryption(topic: topic.name, policy: encryption, grants: configuration.grants, counters: counters) : nil
                    var plan = PlannedPartition(topicIndex: ti, partitionIndex: pi, topic: topic.name, bindTopic: encryption.bindTopic,
                                                entries: [], partwise: partwise)
                    var refusal: (Int16, String)?
                    entryLoop: for entry in try RecordSet.split(records) {
                        switch entry {
                        case .legacy:
                            refusal = (KafkaErrorCode.unsupportedVersion,
                                       "topic \(topic.name) requires encryption, which needs the v2 record format (magic 2); the producer sent a legacy message set")
                            break entryLoop
                        case .truncated:
                            refusal = (KafkaErrorCode.corruptMessage, "truncated record batch in produce request for \(topic.name)")
                            break entryLoop
                        case .batch(let bytes):
                            let batch = try RecordBatch(decoding: bytes, maxUncompressedBytes: maxUncompressedBytes)
                            if batch.isControl {
                                plan.entries.append((entry, nil, [], nil))
                                continue
                            }
                            var keys: [KeyReference?] = []
                            keys.reserveCapacity(batch.records.count)
                            var parts = partwise.map { _ in PartwiseEncryption.BatchPlan() }
                            for (index, record) in batch.records.enumerated() {
                                if let partwise {
                                    do {
                                        try partwise.plan(record, index: index, into: &parts!, scratch: &scratch,
                                                          needed: &needed, deterministic: &deterministic)
                                    } catch {
                                        refusal = (error.code, error.message)
                                        break entryLoop
                                    }
                                    // Field-level topics never encrypt the value as a whole.
                                    if encryption.fieldRules != nil { keys.append(nil); continue }
                                }
                                guard let value = record.value else { keys.append(nil); continue }
                                let selection = select(encryption, value: value, record: record)
                                switch selection {
                                case .key(let reference):
                                    // Records share a key or a few: the grant is checked, and the
                                    // count kept, once per run of records with the same key.
                                    if run?.reference != reference {
                                        guard configuration.grants.allowsEncryption(with: reference) else {
                                            refusal = (KafkaErrorCode.topicAuthorizationFailed,
                                                       "identity '\(configuration.identity)' has no grant to encrypt with \(reference) (topic \(topic.name))")
                                            break entryLoop
                                        }
                                        if let run { needed[run.reference, default: 0] += run.count }
                                        run = (reference, 0)
                                    }
                                    run!.count += 1
                                    keys.append(reference)
                                case .unmatched(let selector):
                                    guard encryption.onUnmatched == .plaintext else {
                                        refusal = (KafkaErrorCode.invalidRecord,
                                                   "no key for \(selector.map { "selector value '\($0)'" } ?? "a record without the selector") on topic \(topic.name), and on_unmatched is reject")
                                        break entryLoop
                                    }
                                    keys.append(nil)
                                }
                            }
                            plan.entries.append((entry, batch, keys, parts))
                        }
                    }
                    if let (code, message) = refusal {
                        reject(code, message)
                    } else {
                        planned.append(plan)
                    }
                } catch {
                    reject(KafkaErrorCode.corruptMessage, "malformed records for \(topic.name)/\(partition.index): \(error)")
                }
            }
        }
        if let run { needed[run.reference, default: 0] += run.count }
        if planned.isEmpty && rejected.isEmpty { return .unchanged }
        return .work(planned: planned, rejected: rejected, needed: needed, deterministic: deterministic)
    }

    private func select(_ policy: EncryptionPolicy, value: ByteBuffer, record: Record) -> KeySelection {
        let headers: [(String, [UInt8]?)]
        if case .header = policy.keySource {
            headers = record.headers.map { ($0.key, $0.value.map { Array($0.readableBytesView) }) }
        } else {
            headers = []
        }
        return value.withUnsafeReadableBytes { v in
            if let key = record.key {
                return key.withUnsafeReadableBytes { k in policy.selectKey(value: v, key: k, headers: headers) }
            }
            return policy.selectKey(value: v, key: nil, headers: headers)
        }
    }

    /// Seals every planned record and returns the request to forward plus the partitions
    /// that could not be encrypted (a data key the KMS would not give).
    func seal(_ request: ProduceRequest, planned: [PlannedPartition], keys: [KeyReference: [ActiveDataKey]],
              failures: [KeyReference: EnvelopeError], deterministic: [KeyReference: DeterministicKey] = [:])
        -> (ProduceRequest, [RejectedPartition])
    {
        var keys = keys
        let now = NIODeadline.now()
        /// The first key in the queue the rotation policy still allows; spent keys leave the queue.
        func usableKey(_ reference: KeyReference) -> ActiveDataKey? {
            while let key = keys[reference]?.first {
                if key.isUsable(at: now, policy: dataKeys.policy) { return key }
                keys[reference]!.removeFirst()
            }
            return nil
        }
        /// ``usableKey``, answered without hashing the reference while records keep using the
        /// same key (the first usable key stays first until it is spent).
        var latest: (reference: KeyReference, key: ActiveDataKey)?
        func sealingKey(_ reference: KeyReference) -> ActiveDataKey? {
            if let latest, latest.reference == reference, latest.key.isUsable(at: now, policy: dataKeys.policy) { return latest.key }
            guard let key = usableKey(reference) else { return nil }
            latest = (reference, key)
            return key
        }
        var out = request
        var rejected: [RejectedPartition] = []
        let encryptor = EnvelopeEncryptor()
        for plan in planned {
            let partition = request.topics[plan.topicIndex].partitions[plan.partitionIndex]
            do {
                // Unreserved: `RecordBatch.encode` reserves exactly what each sealed batch
                // takes (a v2 Produce partition carries one batch, so that is one allocation).
                var records = ByteBuffer()
                for (entry, batch, recordKeys, parts) in plan.entries {
                    guard var batch else {
                        records.writeImmutableBuffer(entry.bytes)
                        continue
                    }
                    // Seal every value into one buffer first and slice it afterwards: a slice
                    // taken while the buffer still grows would force a copy on every write.
                    var capacity = 0
                    var plaintextBytes = 0
                    var sizing: (reference: KeyReference, key: ActiveDataKey?)?
                    for (i, reference) in recordKeys.enumerated() {
                        guard let reference, let value = batch.records[i].value else { continue }
                        if sizing?.reference != reference { sizing = (reference, keys[reference]?.last) }
                        guard let key = sizing?.key else { continue }
                        capacity += EnvelopeEncryptor.sealedByteCount(plaintextCount: value.readableBytes, key: key)
                        plaintextBytes += value.readableBytes
                    }
                    if parts == nil {
                        // Whole values only: each record goes straight into the outgoing batch
                        // with its envelope sealed in place (no sealed buffer, no re-encoding).
                        // A record's length prefix may grow by up to two bytes.
                        var writer = RecordBatchWriter(
                            rewriting: batch, into: &records,
                            expectedBytes: entry.bytes.readableBytes + capacity - plaintextBytes + 2 * recordKeys.count)
                        for (record, reference) in zip(batch.records, recordKeys) {
                            guard let reference, let value = record.value else {
                                writer.append(record, to: &records)
                                continue
                            }
                            guard let key = sealingKey(reference) else {
                                throw failures[reference] ?? EnvelopeError.dataKeyExhausted(reference)
                            }
                            let sealedCount = EnvelopeEncryptor.sealedByteCount(plaintextCount: value.readableBytes, key: key)
                            try writer.append(record, valueByteCount: sealedCount, to: &records) { out in
                                try encryptor.seal(plaintext: value, key: key, topic: plan.bindTopic ? plan.topic : nil,
                                                   fieldPath: Envelope.wholeValue, into: &out)
                            }
                        }
                        try writer.finish(&records)
                        counters.countEncrypted(topic: plan.topic, keys: recordKeys)
                        continue
                    }
                    var sealed = ByteBuffer()
                    sealed.reserveCapacity(capacity)
                    var ranges: [(index: Int, start: Int, length: Int)] = []
                    ranges.reserveCapacity(recordKeys.count)
                    for (i, reference) in recordKeys.enumerated() {
                        guard let reference, let value = batch.records[i].value else { continue }
                        guard let key = sealingKey(reference) else {
                            // Keys ran out under concurrent use: refuse (retriable) rather than overshoot the policy.
                            throw failures[reference] ?? EnvelopeError.dataKeyExhausted(reference)
                        }
                        let start = sealed.writerIndex
                        try encryptor.seal(plaintext: value, key: key, topic: plan.bindTopic ? plan.topic : nil,
                                           fieldPath: Envelope.wholeValue, into: &sealed)
                        ranges.append((i, start, sealed.writerIndex - start))
                    }
                    if let parts, let partwise = plan.partwise {
                        // Writes into `sealed` too, slicing only once it is done writing.
                        func dataKey(_ reference: KeyReference) throws(EnvelopeError) -> ActiveDataKey {
                            guard let key = usableKey(reference) else { throw failures[reference] ?? EnvelopeError.dataKeyExhausted(reference) }
                            return key
                        }
                        try partwise.seal(&batch, plan: parts, dataKey: dataKey, deterministicKeys: deterministic, failures: failures,
                                          output: &sealed)
                    }
                    for r in ranges { batch.records[r.index].value = sealed.getSlice(at: r.start, length: r.length) }
                    try batch.encode(into: &records)
                    counters.countEncrypted(topic: plan.topic, keys: recordKeys)
                }
                out.topics[plan.topicIndex].partitions[plan.partitionIndex].records = records
            } catch let error as EnvelopeError {
                let retriable: Bool
                if case .kms(let kmsError) = error { retriable = kmsError.kind == .unavailable } else { retriable = true }
                rejected.append(RejectedPartition(
                    topic: plan.topic, partition: partition.index,
                    errorCode: retriable ? KafkaErrorCode.notEnoughReplicas : KafkaErrorCode.topicAuthorizationFailed,
                    message: "veil could not encrypt: \(error)"))
                log.warning("seal:\(plan.topic):\(error)", "produce to \(plan.topic) refused, nothing sent in plaintext: \(error)")
            } catch {
                rejected.append(RejectedPartition(topic: plan.topic, partition: partition.index, errorCode: KafkaErrorCode.corruptMessage,
                                                  message: "veil could not re-encode the batch: \(error)"))
            }
        }
        return (out, rejected)
    }
}
