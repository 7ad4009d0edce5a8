import NIOCore
import VeilConfig
import VeilEnvelope
import VeilJSON
import VeilKMS
import VeilWire

/// Decrypts the records of one Fetch response that this identity may read, and applies
/// the topic's `on_denied` rule to every other record.
///
/// Plaintext is released only when the envelope authenticates under a key this identity
/// holds a grant for; everything else (no grant, KMS refusal, tampering, plaintext on an
/// encrypted topic) is a denied record.
struct FetchDecryption {
    let configuration: VeilConfiguration
    let unwrapped: UnwrappedKeyCache
    let deterministic: DeterministicKeyCache
    let counters: RecordCounters
    let log: OnceLog
    let maxUncompressedBytes: Int
    /// Told each partition's decrypt outcomes (the audit trail); `nil` costs nothing per record.
    var audit: (any DecryptAuditSink)? = nil

    /// What to do with one record.
    enum Verdict {
        case keep
        case open(EnvelopeHeader)
        /// The reason is for reading code and debugging; it is never sent to the client.
        /// `storedIsPlaintext` marks a refused plaintext record: the `ciphertext` rule has
        /// no ciphertext to hand over for it, so it is dropped instead.
        case deny(reason: String, storedIsPlaintext: Bool = false)
    }

    struct PlannedBatch {
        var batch: RecordBatch
        var verdicts: [Verdict]
        /// Per record: its individually encrypted parts (fields, headers, key), if any.
        var parts: [PartwiseDecryption.RecordParts?]
    }

    struct PlannedPartition {
        var topicIndex: Int
        var partitionIndex: Int
        var topic: String
        var policy: TopicPolicy
        var entries: [(entry: RecordSetEntry, planned: PlannedBatch?)]
        var partwise: PartwiseDecryption
    }

    /// Decodes what needs decrypting and lists data keys the cache does not hold yet.
    func plan(_ response: FetchResponse) -> (planned: [PlannedPartition], missing: [EnvelopeKeyID], missingDeterministic: [KeyReference]) {
        var planned: [PlannedPartition] = []
        var missing: [EnvelopeKeyID: Void] = [:]
        var missingDeterministic = Set<KeyReference>()
        var partScratch = PartwiseDecryption.Scratch()
        var keys = KeyMemo()
        for (ti, topic) in response.topics.enumerated() {
            guard let policy = configuration.policy(forTopic: topic.topic) else { continue }
            for (pi, partition) in topic.partitions.enumerated() {
                guard let records = partition.records, records.readableBytes > 0 else { continue }
                let partwise = PartwiseDecryption(
                    topic: topic.topic, policy: policy, grants: configuration.grants, unwrapped: unwrapped, deterministic: deterministic,
                    counters: counters, log: log)
                var plan = PlannedPartition(topicIndex: ti, partitionIndex: pi, topic: topic.topic, policy: policy, entries: [],
                                            partwise: partwise)
                let entries: [RecordSetEntry]
                do {
                    entries = try RecordSet.split(records)
                } catch {
                    // Unreadable: the client sees it as stored and fails on it itself;
                    // nothing is decrypted, so nothing leaks.
                    log.warning("split:\(topic.topic)", "fetch from \(topic.topic): records not readable, passed through undecrypted: \(error)")
                    continue
                }
                for entry in entries {
                    guard case .batch(let bytes) = entry else {
                        plan.entries.append((entry, nil))
                        continue
                    }
                    let batch: RecordBatch
                    do {
                        batch = try RecordBatch(decoding: bytes, maxUncompressedBytes: maxUncompressedBytes)
                    } catch {
                        log.warning("batch:\(topic.topic):\(error)", "fetch from \(topic.topic): batch not readable, passed through undecrypted: \(error)")
                        plan.entries.append((entry, nil))
                        continue
                    }
                    if batch.isControl {
                        plan.entries.append((entry, nil))
                        continue
                    }
                    var verdicts: [Verdict] = []
                    verdicts.reserveCapacity(batch.records.count)
                    var parts: [PartwiseDecryption.RecordParts?] = []
                    for record in batch.records {
                        let recordParts = partwise.plan(record, scratch: &partScratch, missing: &missing,
                                                        missingDeterministic: &missingDeterministic)
                        if let recordParts, recordParts.fieldLevel {
                            // A field-level record is JSON by design; its fields are judged one by one.
                            verdicts.append(recordParts.malformed ? .deny(reason: "malformed field-level record") : .keep)
                        } else {
                            verdicts.append(verdict(for: record, topic: topic.topic, policy: policy, scratch: &partScratch, keys: &keys, missing: &missing))
                        }
                        parts.append(recordParts)
                    }
                    plan.entries.append((entry, PlannedBatch(batch: batch, verdicts: verdicts, parts: parts)))
                }
                planned.append(plan)
            }
        }
        return (planned, Array(missing.keys), Array(missingDeterministic))
    }

    private func verdict(for record: Record, topic: String, policy: TopicPolicy, scratch: inout PartwiseDecryption.Scratch, keys: inout KeyMemo,
                         missing: inout [EnvelopeKeyID: Void]) -> Verdict {
        guard let value = record.value else { return .keep }
        let header: EnvelopeHeader?
        do {
            header = try EnvelopeHeader.parse(value)
        } catch {
            counters.tampered.add(1, ordering: .relaxed)
            log.warning("malformed:\(topic)", "topic \(topic): a record claims to be an envelope but is malformed (\(error)); never delivered as plaintext")
            return .deny(reason: "malformed envelope")
        }
        guard let header else {
            if policy.requireEncrypted {
                counters.plaintextRefused.add(1, ordering: .relaxed)
                log.warning("plaintext:\(topic)", "topic \(topic): plaintext record refused (require_encrypted); possible injection")
                return .deny(reason: "plaintext on an encrypted topic", storedIsPlaintext: true)
            }
            return .keep
        }
        // The grant decision, expiry included, is remembered per data key for this response
        // (records of a batch share a few keys), so a lapsed grant stops the next Fetch.
        guard scratch.allows(header.keyID, under: configuration.grants) else {
            guard audit != nil else { return .deny(reason: "no grant") }
            // The audit trail says why; only denied records pay for naming the key.
            guard let reference = try? header.keyID.reference() else { return .deny(reason: "envelope names no valid key") }
            return .deny(reason: configuration.grants.decryptionDenial(for: reference) ?? "no grant")
        }
        switch keys.lookup(header.keyID, in: unwrapped) {
        case .hit: break
        case .denied: return .deny(reason: "KMS refused the data key")
        case .miss: missing[header.keyID] = ()
        }
        return .open(header)
    }

    /// Applies the verdicts: decrypts, drops, redacts or errors; re-encodes changed batches.
    func apply(_ planned: [PlannedPartition], to response: FetchResponse) -> FetchResponse {
        var out = response
        let decryptor = EnvelopeDecryptor()
        for plan in planned {
            var records = ByteBuffer()
            records.reserveCapacity(response.topics[plan.topicIndex].partitions[plan.partitionIndex].records?.readableBytes ?? 0)
            var changed = false
            var partitionError = false
            let placeholder = ByteBuffer(string: plan.policy.redactPlaceholder)
            var tally = RecordTally()
            var keys = KeyMemo()
            var trail = audit.map { _ in
                DecryptAuditRun(topic: plan.topic, partition: response.topics[plan.topicIndex].partitions[plan.partitionIndex].partitionIndex)
            }
            for (entry, plannedBatch) in plan.entries {
                guard let plannedBatch else {
                    records.writeImmutableBuffer(entry.bytes)
                    continue
                }
                let rewritten = plannedBatch.parts.allSatisfy({ $0 == nil })
                    ? rewrite(plannedBatch, stored: entry.bytes, plan: plan, decryptor: decryptor, placeholder: placeholder,
                              into: &records, trail: &trail, tally: &tally, keys: &keys, partitionError: &partitionError)
                    : rebuild(plannedBatch, stored: entry.bytes, plan: plan, decryptor: decryptor, placeholder: placeholder,
                              into: &records, trail: &trail, tally: &tally, keys: &keys, partitionError: &partitionError)
                changed = changed || rewritten
            }
            counters.count(tally, topic: plan.topic)
            unwrapped.countHits(keys.hits)
            if let trail, !trail.events.isEmpty { audit?.record(trail.events) }
            if partitionError {
                out.topics[plan.topicIndex].partitions[plan.partitionIndex].errorCode = KafkaErrorCode.topicAuthorizationFailed
                out.topics[plan.topicIndex].partitions[plan.partitionIndex].records = ByteBuffer()
            } else if changed {
                out.topics[plan.topicIndex].partitions[plan.partitionIndex].records = records
            }
        }
        return out
    }

    /// The data key lookup of the previous record: the records of a batch share one or a few
    /// keys, and the cache's lookup takes a lock and compares the key ID each time anyway.
    struct KeyMemo {
        private var last: (keyID: EnvelopeKeyID, lookup: UnwrappedKeyCache.Lookup)?
        /// Lookups that found the key, for the cache's hit count.
        private(set) var hits = 0

        mutating func lookup(_ keyID: EnvelopeKeyID, in cache: UnwrappedKeyCache) -> UnwrappedKeyCache.Lookup {
            let lookup: UnwrappedKeyCache.Lookup
            if let last, last.keyID == keyID {
                lookup = last.lookup
            } else {
                lookup = cache.lookup(keyID, counting: false)
                last = (keyID, lookup)
            }
            if case .hit = lookup { hits += 1 }
            return lookup
        }
    }

    /// What became of one record once its verdict was applied.
    private enum Outcome {
        /// Delivered as stored.
        case keep
        /// Decrypted by the caller's `open`.
        case opened
        case drop
        /// Delivered with the topic's placeholder as its value.
        case redact
        /// Denied under the `error` rule: the partition answers with an error instead of records.
        case partitionError
    }

    /// Applies `verdict` to `record`: decrypts through `open` (which writes the plaintext
    /// wherever the caller keeps it, and says whether the envelope authenticated), counts,
    /// notes the audit trail, and for a denied record applies the topic's `on_denied` rule.
    private func settle(_ record: Record, _ verdict: Verdict, batch: RecordBatch, plan: PlannedPartition,
                        trail: inout DecryptAuditRun?, tally: inout RecordTally, keys: inout KeyMemo, open: (EnvelopeHeader, AESGCMKey) throws -> Void) -> Outcome {
        var storedIsPlaintext = false
        var denial = (reason: "", key: KeyReference?.none)
        switch verdict {
        case .keep:
            return .keep
        case .deny(let reason, let plaintext):
            storedIsPlaintext = plaintext
            denial.reason = reason
        case .open(let header):
            let lookup = keys.lookup(header.keyID, in: unwrapped)
            if trail != nil {
                denial.key = try? header.keyID.reference()
                switch lookup {
                case .denied(let error): denial.reason = "KMS refused the data key: \(error)"
                case .miss: denial.reason = "data key unavailable"
                case .hit: denial.reason = "record failed authentication"
                }
            }
            if case .hit(let key) = lookup {
                do {
                    try open(header, key)
                    tally.decrypted(header.keyID)
                    trail?.note(.decrypted, key: denial.key, offset: batch.baseOffset + Int64(record.offsetDelta))
                    return .opened
                } catch {
                    counters.tampered.add(1, ordering: .relaxed)
                    log.warning("open:\(plan.topic):\(header.keyID)",
                                "topic \(plan.topic): a record failed authentication (\(error)); never delivered as plaintext")
                }
            }
        }
        tally.denied(value: record.value)
        trail?.note(.denied(reason: denial.reason), key: denial.key, offset: batch.baseOffset + Int64(record.offsetDelta))
        switch plan.policy.onDenied {
        case .drop: return .drop
        case .redact: return .redact
        case .ciphertext: return storedIsPlaintext ? .drop : .keep
        case .error: return .partitionError
        }
    }

    /// A batch of whole-value records (none has individually encrypted parts): every record
    /// goes straight into `records`, a decrypted value written in place, with no `[Record]`
    /// built and encoded afterwards. Returns whether the batch differs from `stored`, which
    /// is written instead when it does not.
    private func rewrite(_ planned: PlannedBatch, stored: ByteBuffer, plan: PlannedPartition, decryptor: EnvelopeDecryptor,
                         placeholder: ByteBuffer, into records: inout ByteBuffer, trail: inout DecryptAuditRun?,
                         tally: inout RecordTally, keys: inout KeyMemo, partitionError: inout Bool) -> Bool {
        let batch = planned.batch
        var writer = RecordBatchWriter(rewriting: batch, into: &records, expectedBytes: stored.readableBytes)
        var changed = false
        for (record, verdict) in zip(batch.records, planned.verdicts) {
            let outcome = settle(record, verdict, batch: batch, plan: plan, trail: &trail, tally: &tally, keys: &keys) { header, key in
                // A failed open leaves `records` as it was: no byte of the record is kept.
                try writer.append(record, valueByteCount: header.ciphertextByteCount, to: &records) { out in
                    try decryptor.open(record.value!, header: header, key: key, topic: plan.topic, fieldPath: Envelope.wholeValue, into: &out)
                }
            }
            switch outcome {
            case .keep:
                writer.append(record, to: &records)
            case .opened:
                changed = true
            case .drop:
                changed = true
            case .redact:
                writer.append(record, valueByteCount: placeholder.readableBytes, to: &records) { $0.writeImmutableBuffer(placeholder) }
                changed = true
            case .partitionError:
                partitionError = true
                writer.append(record, to: &records)
            }
        }
        guard changed else {
            writer.abandon(&records)
            records.writeImmutableBuffer(stored)
            return false
        }
        do {
            try writer.finish(&records)
            return true
        } catch {
            // Deliver nothing from this batch rather than plaintext-or-ciphertext guesses.
            writer.abandon(&records)
            log.warning("encode:\(plan.topic)", "topic \(plan.topic): cannot re-encode a batch: \(error)")
            partitionError = true
            return false
        }
    }

    /// A batch with individually encrypted parts: records are collected with their new
    /// values and parts, then the batch is encoded. Returns whether the batch differs from
    /// `stored`, which is written instead when it does not.
    private func rebuild(_ planned: PlannedBatch, stored: ByteBuffer, plan: PlannedPartition, decryptor: EnvelopeDecryptor,
                         placeholder: ByteBuffer, into records: inout ByteBuffer, trail: inout DecryptAuditRun?,
                         tally: inout RecordTally, keys: inout KeyMemo, partitionError: inout Bool) -> Bool {
        var batch = planned.batch
        let parts = planned.parts
        var keep: [Record] = []
        keep.reserveCapacity(batch.records.count)
        // Plaintexts go into one buffer, sliced only once all are written, so the
        // buffer is never shared while it grows (which would copy it per record).
        var plaintext = ByteBuffer()
        plaintext.reserveCapacity(stored.readableBytes * 2)
        var opened: [(keepIndex: Int, start: Int, length: Int)] = []
        var fieldPlaintexts = ByteBuffer()
        var pendingParts: [(keepIndex: Int, target: PartwiseDecryption.Target, start: Int, length: Int)] = []
        var pending: [(target: PartwiseDecryption.Target, start: Int, length: Int)] = []
        var batchChanged = false
        for (n, (record, verdict)) in zip(batch.records, planned.verdicts).enumerated() {
            // Records with individually encrypted parts get them decrypted or denied
            // after the whole-value decision.
            func keepRecord(_ record: Record) {
                guard let recordParts = parts[n] else { return keep.append(record) }
                var record = record
                pending.removeAll(keepingCapacity: true)
                switch plan.partwise.apply(recordParts, to: &record, output: &plaintext, plain: &fieldPlaintexts, pending: &pending) {
                case .done:
                    for p in pending { pendingParts.append((keep.count, p.target, p.start, p.length)) }
                    keep.append(record)
                    batchChanged = true
                case .partitionError:
                    partitionError = true
                    keep.append(record)
                }
            }
            let start = plaintext.writerIndex
            let outcome = settle(record, verdict, batch: batch, plan: plan, trail: &trail, tally: &tally, keys: &keys) { header, key in
                try decryptor.open(record.value!, header: header, key: key, topic: plan.topic, fieldPath: Envelope.wholeValue, into: &plaintext)
            }
            switch outcome {
            case .keep:
                keepRecord(record)
            case .opened:
                opened.append((keep.count, start, plaintext.writerIndex - start))
                keepRecord(record)
                batchChanged = true
            case .drop:
                batchChanged = true
            case .redact:
                var r = record
                r.value = placeholder
                keepRecord(r)
                batchChanged = true
            case .partitionError:
                partitionError = true
                keep.append(record)
            }
        }
        guard batchChanged else {
            records.writeImmutableBuffer(stored)
            return false
        }
        for o in opened { keep[o.keepIndex].value = plaintext.getSlice(at: o.start, length: o.length) }
        for p in pendingParts {
            let slice = plaintext.getSlice(at: p.start, length: p.length)
            switch p.target {
            case .value: keep[p.keepIndex].value = slice
            case .header(let h): keep[p.keepIndex].headers[h].value = slice
            case .key: keep[p.keepIndex].key = slice
            }
        }
        // Offsets, producer state and timestamps stay; a batch whose records were all
        // dropped keeps its header, so consumers still advance past its offsets.
        batch.records = keep
        if keep.isEmpty {
            // librdkafka cannot read a compressed batch whose payload decompresses to
            // nothing; an empty uncompressed batch is what log compaction leaves behind.
            batch.compression = .none
        }
        do {
            try batch.encode(into: &records)
            return true
        } catch {
            // Re-encoding failed: deliver nothing from this batch rather than plaintext-or-ciphertext guesses.
            log.warning("encode:\(plan.topic)", "topic \(plan.topic): cannot re-encode a batch: \(error)")
            partitionError = true
            return false
        }
    }
}
