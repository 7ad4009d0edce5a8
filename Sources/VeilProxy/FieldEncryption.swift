import NIOConcurrencyHelpers
import NIOCore
import Synchronization
import VeilConfig
import VeilEnvelope
import VeilJSON
import VeilKMS
import VeilWire

/// The record header that marks a record whose parts (JSON fields, headers) Veil encrypted one
/// by one, and carries the record id bound into each part's AAD: `01 || id (16 bytes)`.
///
/// The id is what stops an encrypted field or header from being cut out of one record and
/// pasted into another of the same topic: its AAD names the record it was sealed for.
enum RecordMarker {
    static let name = "veil-record"
    static let version: UInt8 = 1
    static let idByteCount = 16
    static let byteCount = 1 + idByteCount

    /// The record id from a marker header value, or nil if it is not a well-formed marker.
    static func id(_ value: ByteBuffer?) -> [UInt8]? {
        guard let value, value.readableBytes == byteCount, value.getInteger(at: value.readerIndex, as: UInt8.self) == version
        else { return nil }
        return value.getBytes(at: value.readerIndex + 1, length: idByteCount)
    }
}

/// Unique record ids without a random draw per record: a random 64-bit prefix per process and
/// a 64-bit counter. Uniqueness is all the AAD binding needs; the id is not secret.
final class RecordIDs: Sendable {
    static let shared = RecordIDs()
    private let prefix: UInt64
    private let counter = Atomic<UInt64>(0)

    private init() {
        let bytes = (try? SecureRandom.bytes(count: 8)) ?? []
        // Without randomness the counter alone still separates records within this process.
        prefix = bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    /// Writes the next id (16 bytes) to `out`.
    func next(into out: UnsafeMutableRawPointer) {
        let n = counter.add(1, ordering: .relaxed).newValue
        out.storeBytes(of: prefix.bigEndian, toByteOffset: 0, as: UInt64.self)
        out.storeBytes(of: n.bigEndian, toByteOffset: 8, as: UInt64.self)
    }
}

/// Plans and seals the parts of produced records that a topic encrypts one by one: JSON
/// fields (each under its own key, as a `"veil:1:…"` string), header values and, with a
/// deterministic cipher, the record key.
///
/// Planning is synchronous and per record: one pass over the JSON finds every field and key
/// selector; sealing edits the value by byte ranges, so everything not encrypted stays
/// exactly as the producer wrote it.
struct PartwiseEncryption {
    let topic: String
    let policy: EncryptionPolicy
    let grants: Grants
    let counters: RecordCounters

    /// One part to encrypt.
    struct Part {
        enum Kind {
            /// A JSON value: its bytes in the record value, its concrete location in the arena.
            case field(value: Range<Int>, location: Range<Int>)
            /// The header at this index.
            case header(Int)
            /// The record key (deterministic).
            case recordKey
        }

        var record: Int
        var kind: Kind
        var key: KeyReference
    }

    /// What to encrypt in one batch, in record order.
    struct BatchPlan {
        var parts: [Part] = []
        /// Concrete field locations, referenced by ``Part/Kind/field(value:location:)``.
        var locations: [UInt8] = []
        /// Records that get a marker header (every JSON record on a field-level topic, and
        /// every record with an encrypted header).
        var marked: [Bool] = []
    }

    /// Why a partition is refused.
    struct Refusal: Error {
        var code: Int16
        var message: String
    }

    /// Reusable per-request scratch.
    struct Scratch {
        var matches = JSONFieldMatches()
        var selector: [UInt8] = []
        /// The last key found granted and added to the needed set: fields of a batch mostly
        /// share a few keys, and comparing one is cheaper than hashing it per field.
        var lastGranted: KeyReference?
    }

    /// Adds record `index`'s parts to `plan`, the encryptions they need per data key to
    /// `needed`, and the record-key keys to `deterministic`.
    func plan(_ record: Record, index: Int, into plan: inout BatchPlan, scratch: inout Scratch,
              needed: inout [KeyReference: Int], deterministic: inout Set<KeyReference>) throws(Refusal) {
        if plan.marked.count <= index { plan.marked.append(contentsOf: repeatElement(false, count: index + 1 - plan.marked.count)) }
        var scanned = false
        var jsonValid = false
        // Fields.
        if let rules = policy.fieldRules, let value = record.value {
            guard let scan = policy.scanPlan else {
                throw Refusal(code: KafkaErrorCode.policyViolation, message: "topic \(topic): field policy has too many paths")
            }
            let outcome = value.withUnsafeReadableBytes { bytes in
                Result { () throws(JSONSyntaxError) in try scan.paths.locate(in: bytes, into: &scratch.matches) }
            }
            scanned = true
            switch outcome {
            case .failure(let error):
                guard policy.onInvalidJSON == .plaintext else {
                    throw Refusal(
                        code: KafkaErrorCode.invalidRecord,
                        message: "topic \(topic) encrypts JSON fields, but a record value is \(error); "
                            + "it was refused (set encrypt.on_invalid_json: plaintext to let such values through unencrypted)")
                }
                counters.fieldsInvalidJSON.add(1, ordering: .relaxed)
            case .success:
                jsonValid = true
                plan.marked[index] = true
                try value.withUnsafeReadableBytes { (bytes) throws(Refusal) in
                    // Matches come in document order, which sealing relies on to copy the
                    // bytes between fields in one forward pass.
                    var found: UInt64 = 0  // bit r: rule r matched (at most 64 paths)
                    for match in scratch.matches.matches where match.path < scan.fieldCount {
                        let r = match.path
                        found |= 1 << UInt64(r)
                        let rule = rules[r]
                        let selection = select(rule.choice, selectorSlot: scan.fieldSelectors[r], record: record,
                                               value: bytes, scratch: &scratch)
                        guard let key = try resolve(selection, what: "field \(rule.path)", scratch: &scratch) else {
                            counters.fieldsUnmatched.add(1, ordering: .relaxed)
                            continue
                        }
                        let start = plan.locations.count
                        plan.locations.append(contentsOf: scratch.matches.locations[match.location])
                        plan.parts.append(Part(record: index, kind: .field(value: match.value, location: start..<plan.locations.count), key: key))
                        needed[key, default: 0] += 1
                    }
                    let missing = rules.count - found.nonzeroBitCount
                    if missing > 0 { counters.fieldsMissing.add(missing, ordering: .relaxed) }
                }
            }
        }
        // Headers.
        if !policy.headerRules.isEmpty {
            for (h, header) in record.headers.enumerated() where header.value != nil {
                guard let r = policy.headerRules.firstIndex(where: { $0.name == header.key }) else { continue }
                guard header.key != RecordMarker.name else { continue }
                let rule = policy.headerRules[r]
                let slot = policy.scanPlan?.headerSelectors[r] ?? nil
                if slot != nil, !scanned, let value = record.value, let scan = policy.scanPlan {
                    scanned = true
                    jsonValid = value.withUnsafeReadableBytes { bytes in
                        (try? scan.paths.locate(in: bytes, into: &scratch.matches)) != nil
                    }
                }
                let selection: KeySelection
                if let value = record.value, jsonValid || slot == nil {
                    selection = value.withUnsafeReadableBytes { bytes in
                        select(rule.choice, selectorSlot: slot, record: record, value: bytes, scratch: &scratch)
                    }
                } else {
                    selection = select(rule.choice, selectorSlot: nil, record: record, value: nil, scratch: &scratch)
                }
                guard let key = try resolve(selection, what: "header \(header.key)", scratch: &scratch) else { continue }
                plan.parts.append(Part(record: index, kind: .header(h), key: key))
                plan.marked[index] = true
                needed[key, default: 0] += 1
            }
        }
        // Record key.
        if let reference = policy.recordKey, let key = record.key, key.readableBytes > 0 {
            guard grants.allowsEncryption(with: reference) else {
                throw Refusal(code: KafkaErrorCode.topicAuthorizationFailed,
                              message: "identity has no grant to encrypt record keys with \(reference) (topic \(topic))")
            }
            plan.parts.append(Part(record: index, kind: .recordKey, key: reference))
            deterministic.insert(reference)
        }
    }

    /// The key for a part, nil to leave it in plaintext (unmatched, `on_unmatched: plaintext`).
    /// `what` names the part, for messages only.
    private func resolve(_ selection: KeySelection, what: @autoclosure () -> String, scratch: inout Scratch) throws(Refusal)
        -> KeyReference?
    {
        switch selection {
        case .key(let reference):
            if scratch.lastGranted == reference { return reference }
            guard grants.allowsEncryption(with: reference) else {
                throw Refusal(code: KafkaErrorCode.topicAuthorizationFailed,
                              message: "identity has no grant to encrypt with \(reference) (topic \(topic), \(what()))")
            }
            scratch.lastGranted = reference
            return reference
        case .unmatched(let selector):
            guard policy.onUnmatched == .plaintext else {
                throw Refusal(
                    code: KafkaErrorCode.invalidRecord,
                    message: "no key for \(what()) (\(selector.map { "selector value '\($0)'" } ?? "no selector in the record")) "
                        + "on topic \(topic), and on_unmatched is reject")
            }
            return nil
        }
    }

    /// Key selection for one part. `value` is the record value already located into
    /// `scratch.matches` when `selectorSlot` is set.
    private func select(_ choice: KeyChoice, selectorSlot: Int?, record: Record, value: UnsafeRawBufferPointer?,
                        scratch: inout Scratch) -> KeySelection {
        switch choice.source {
        case .fixed(let key):
            return .key(key)
        case .json:
            guard let slot = selectorSlot, value != nil else { return choice.select(selector: nil) }
            // Exactly one string: a repeated member is ambiguous, as parsers disagree on it.
            var found: JSONFieldMatches.Match?
            for match in scratch.matches.matches where match.path == slot {
                guard found == nil else { return choice.select(selector: nil) }
                found = match
            }
            guard let match = found, match.kind == .string, let value else { return choice.select(selector: nil) }
            let contents = UnsafeRawBufferPointer(rebasing: value[(match.value.lowerBound + 1)..<(match.value.upperBound - 1)])
            if !match.hasEscapes { return choice.select(selector: contents) }
            scratch.selector = JSONString.unescape(contents)
            return scratch.selector.withUnsafeBytes { choice.select(selector: $0) }
        case .header(let name):
            guard let header = record.headers.last(where: { $0.key == name }), let bytes = header.value else {
                return choice.select(selector: nil)
            }
            return bytes.withUnsafeReadableBytes { choice.select(selector: $0) }
        case .recordKey:
            guard let key = record.key else { return choice.select(selector: nil) }
            return key.withUnsafeReadableBytes { choice.select(selector: $0) }
        }
    }

    /// Seals the planned parts of `batch` in place. New values, keys and header values are
    /// slices of `output`, taken only after the last write: a slice shares the buffer's storage,
    /// so writing after slicing would copy the whole buffer each time.
    ///
    /// `dataKey` hands out the data key for each encryption, honouring rotation (a batch may
    /// span several keys of one reference).
    func seal(_ batch: inout RecordBatch, plan: BatchPlan, dataKey: (KeyReference) throws(EnvelopeError) -> ActiveDataKey,
              deterministicKeys: [KeyReference: DeterministicKey], failures: [KeyReference: EnvelopeError] = [:],
              output: inout ByteBuffer) throws(EnvelopeError) {
        let encryptor = EnvelopeEncryptor()
        let boundTopic = policy.bindTopic ? topic : nil
        var envelope = ByteBuffer()
        var aadPath: [UInt8] = []
        var p = 0
        var fieldsSealed = 0
        enum Target { case value, header(Int), key }
        var written: [(record: Int, target: Target, start: Int, length: Int)] = []
        written.reserveCapacity(plan.parts.count + plan.marked.count)
        for index in batch.records.indices {
            let first = p
            while p < plan.parts.count, plan.parts[p].record == index { p += 1 }
            let marked = index < plan.marked.count && plan.marked[index]
            guard p > first || marked else { continue }
            var record = batch.records[index]
            var id: (UInt64, UInt64) = (0, 0)
            withUnsafeMutableBytes(of: &id) { RecordIDs.shared.next(into: $0.baseAddress!) }
            let parts = plan.parts[first..<p]

            // The value: copy the bytes between encrypted fields, replace each field by its token.
            if parts.contains(where: { if case .field = $0.kind { return true } else { return false } }), let value = record.value {
                let start = output.writerIndex
                try value.withUnsafeReadableBytes { (bytes) throws(EnvelopeError) in
                    var copied = 0
                    for part in parts {
                        guard case .field(let range, let location) = part.kind else { continue }
                        output.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[copied..<range.lowerBound]))
                        aadPath.removeAll(keepingCapacity: true)
                        withUnsafeBytes(of: id) { aadPath.append(contentsOf: $0) }
                        aadPath += plan.locations[location]
                        envelope.clear()
                        try withBytes(aadPath) { (path) throws(EnvelopeError) in
                            try encryptor.seal(plaintext: UnsafeRawBufferPointer(rebasing: bytes[range]), key: try dataKey(part.key),
                                               topic: boundTopic, fieldPathBytes: path, into: &envelope)
                        }
                        Self.writeToken(envelope, to: &output)
                        copied = range.upperBound
                        fieldsSealed += 1
                    }
                    output.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[copied...]))
                }
                written.append((index, .value, start, output.writerIndex - start))
            }
            // Headers.
            for part in parts {
                guard case .header(let h) = part.kind, let value = record.headers[h].value else { continue }
                aadPath.removeAll(keepingCapacity: true)
                withUnsafeBytes(of: id) { aadPath.append(contentsOf: $0) }
                aadPath += JSONLocation.headerPrefix
                aadPath += record.headers[h].key.utf8
                let start = output.writerIndex
                try value.withUnsafeReadableBytes { (bytes) throws(EnvelopeError) in
                    try withBytes(aadPath) { (path) throws(EnvelopeError) in
                        try encryptor.seal(plaintext: bytes, key: try dataKey(part.key), topic: boundTopic,
                                           fieldPathBytes: path, into: &output)
                    }
                }
                written.append((index, .header(h), start, output.writerIndex - start))
                counters.headersEncrypted.add(1, ordering: .relaxed)
            }
            // Record key.
            for part in parts {
                guard case .recordKey = part.kind, let plainKey = record.key else { continue }
                guard let sivKey = deterministicKeys[part.key] else {
                    throw failures[part.key] ?? EnvelopeError.kms(KMSError(.unavailable, part.key, "no deterministic key"))
                }
                let start = output.writerIndex
                try plainKey.withUnsafeReadableBytes { (bytes) throws(EnvelopeError) in
                    try sivKey.seal(bytes, topic: boundTopic, into: &output)
                }
                written.append((index, .key, start, output.writerIndex - start))
                counters.recordKeysEncrypted.add(1, ordering: .relaxed)
            }
            if marked {
                let start = output.writerIndex
                output.writeInteger(RecordMarker.version)
                withUnsafeBytes(of: id) { _ = output.writeBytes($0) }
                record.headers.append(RecordHeader(key: RecordMarker.name, value: nil))
                written.append((index, .header(record.headers.count - 1), start, RecordMarker.byteCount))
            }
            batch.records[index] = record
        }
        for w in written {
            let slice = output.getSlice(at: w.start, length: w.length)
            switch w.target {
            case .value: batch.records[w.record].value = slice
            case .header(let h): batch.records[w.record].headers[h].value = slice
            case .key: batch.records[w.record].key = slice
            }
        }
        counters.fieldsEncrypted.add(fieldsSealed, ordering: .relaxed)
    }

    /// Writes `"veil:1:<base64url(envelope)>"`.
    static func writeToken(_ envelope: ByteBuffer, to output: inout ByteBuffer) {
        let count = EncryptedField.tokenByteCount(envelopeByteCount: envelope.readableBytes)
        output.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { out in
            out[0] = UInt8(ascii: "\"")
            EncryptedField.prefix.withUnsafeBytes { prefix in
                UnsafeMutableRawBufferPointer(rebasing: out[1...]).copyMemory(from: prefix)
            }
            let textStart = 1 + EncryptedField.prefix.count
            envelope.withUnsafeReadableBytes { bytes in
                Base64URL.encode(bytes, into: UnsafeMutableRawBufferPointer(rebasing: out[textStart..<(count - 1)]))
            }
            out[count - 1] = UInt8(ascii: "\"")
            return count
        }
    }
}

/// `Array.withUnsafeBytes` with a typed error (the standard library's is `rethrows`).
@inline(__always)
func withBytes<R, E: Error>(_ array: [UInt8], _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
    let result = array.withUnsafeBytes { bytes in Result { () throws(E) in try body(bytes) } }
    return try result.get()
}
