import NIOCore
import VeilConfig
import VeilEnvelope
import VeilJSON
import VeilKMS
import VeilWire

/// Decrypts, on fetch, the parts of records that were encrypted one by one (JSON fields,
/// headers, the record key), and applies the topic's `on_denied_field` rule to the parts this
/// identity may not read.
///
/// A decrypted field is the producer's exact JSON text, so numbers stay numbers and objects
/// stay objects; every byte outside the edited fields is left as it was.
struct PartwiseDecryption {
    let topic: String
    let policy: TopicPolicy
    let grants: Grants
    let unwrapped: UnwrappedKeyCache
    let deterministic: DeterministicKeyCache
    let counters: RecordCounters
    let log: OnceLog

    /// What to do with one encrypted field or header.
    enum Verdict {
        /// Decrypt with the data key this header names (cached, or filled before applying).
        case open(EnvelopeHeader)
        /// Not decryptable by this identity (no grant, KMS refusal, no record id).
        case deny
        /// Malformed envelope: never plaintext, counted as tampering.
        case tampered
    }

    /// The encrypted parts of one record.
    struct RecordParts {
        /// The record id from the marker header; nil if the marker is malformed.
        var id: [UInt8]?
        var markerIndex: Int?
        /// The value is a field-level JSON document (a marker and no envelope).
        var fieldLevel = false
        /// A field-level value that is no longer valid JSON: the whole record is denied.
        var malformed = false
        var hits: [EncryptedFieldHits.Hit] = []
        var locations: [UInt8] = []
        /// Per hit: its decoded envelope and verdict; nil for a string that only looks like
        /// an encrypted field (not an envelope), which stays as it is.
        var fields: [(envelope: ByteBuffer, verdict: Verdict)?] = []
        var headers: [(index: Int, verdict: Verdict)] = []
        var key: (header: DeterministicHeader?, allowed: Bool)?
    }

    /// State reused across the records of one fetch response.
    struct Scratch {
        var hits = EncryptedFieldHits()
        /// The last few data keys whose grant was checked: the fields of a batch share a handful
        /// (one per audience and data key), and comparing their bytes is cheaper than building
        /// the reference's strings per field.
        var grants: [(keyID: EnvelopeKeyID, allowed: Bool)] = []

        /// Whether `grants` lets this identity decrypt under `keyID`: the grant decision for
        /// both whole values and parts, remembered for the last few data keys seen.
        mutating func allows(_ keyID: EnvelopeKeyID, under grants: Grants) -> Bool {
            if let known = self.grants.first(where: { $0.keyID == keyID }) { return known.allowed }
            let allowed = (try? keyID.reference()).map { grants.allowsDecryption(with: $0) } ?? false
            if self.grants.count == 8 { self.grants.removeFirst() }
            self.grants.append((keyID, allowed))
            return allowed
        }
    }

    /// Finds the encrypted parts of `record`; nil when it has none. Data keys to unwrap are
    /// added to `missing`, record-key keys to derive to `missingDeterministic`.
    func plan(_ record: Record, scratch: inout Scratch,
              missing: inout [EnvelopeKeyID: Void], missingDeterministic: inout Set<KeyReference>) -> RecordParts? {
        var parts = RecordParts()
        var any = false
        if let markerIndex = record.headers.lastIndex(where: { $0.key == RecordMarker.name }) {
            any = true
            parts.markerIndex = markerIndex
            parts.id = RecordMarker.id(record.headers[markerIndex].value)
            if parts.id == nil {
                counters.tampered.add(1, ordering: .relaxed)
                log.warning("marker:\(topic)", "topic \(topic): a record carries a malformed \(RecordMarker.name) header; its encrypted parts are denied")
            }
            if let value = record.value, !Self.startsWith(value, Envelope.magic) {
                parts.fieldLevel = true
                let found = value.withUnsafeReadableBytes { bytes in
                    Result { () throws(JSONSyntaxError) in try scratch.hits.find(prefix: EncryptedField.prefix, in: bytes) }
                }
                if case .failure(let error) = found {
                    parts.malformed = true
                    counters.tampered.add(1, ordering: .relaxed)
                    log.warning("json:\(topic)", "topic \(topic): a field-level record is not valid JSON (\(error)); the record is denied")
                } else {
                    let hits = scratch.hits.hits
                    parts.hits = hits
                    parts.locations = scratch.hits.locations
                    parts.fields.reserveCapacity(hits.count)
                    // Every payload is decoded before any is sliced: a slice shares the buffer,
                    // so writing to it afterwards would copy it.
                    var decoded = ByteBuffer()
                    decoded.reserveCapacity(hits.reduce(0) { $0 + $1.payload.count * 3 / 4 + 1 })
                    let ranges = hits.map { Self.decode(value, $0, into: &decoded) }
                    for range in ranges {
                        guard let range, let envelope = decoded.getSlice(at: range.lowerBound, length: range.count),
                              Self.startsWith(envelope, Envelope.magic)
                        else {
                            // Not base64url, or not an envelope: an ordinary string that shares the prefix.
                            parts.fields.append(nil)
                            continue
                        }
                        parts.fields.append((envelope, verdict(envelope, id: parts.id, scratch: &scratch, missing: &missing)))
                    }
                }
            }
            for (index, header) in record.headers.enumerated() where index != markerIndex {
                guard let value = header.value, Self.startsWith(value, Envelope.magic) else { continue }
                parts.headers.append((index, verdict(value, id: parts.id, scratch: &scratch, missing: &missing)))
            }
        }
        if let key = record.key, Self.startsWith(key, DeterministicEnvelope.magic) {
            any = true
            do {
                let header = try DeterministicHeader.parse(key)
                let allowed = header.map { grants.allowsDecryption(with: $0.reference) } ?? false
                if let header, allowed, case .miss = deterministic.lookup(header.reference) {
                    missingDeterministic.insert(header.reference)
                }
                parts.key = (header, allowed)
            } catch {
                counters.tampered.add(1, ordering: .relaxed)
                parts.key = (nil, false)
            }
        }
        return any ? parts : nil
    }

    /// Appends the decoded payload of `hit` to `decoded`; its range there, or nil if it is not
    /// canonical base64url.
    private static func decode(_ value: ByteBuffer, _ hit: EncryptedFieldHits.Hit, into decoded: inout ByteBuffer) -> Range<Int>? {
        guard let count = Base64URL.decodedCount(hit.payload.count), count > 0 else { return nil }
        let start = decoded.writerIndex
        var ok = false
        _ = value.withUnsafeReadableBytes { bytes in
            decoded.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { out in
                ok = Base64URL.decode(UnsafeRawBufferPointer(rebasing: bytes[hit.payload]),
                                      into: UnsafeMutableRawBufferPointer(rebasing: out[0..<count]))
                return ok ? count : 0
            }
        }
        return ok ? start..<(start + count) : nil
    }

    private func verdict(_ envelope: ByteBuffer, id: [UInt8]?, scratch: inout Scratch, missing: inout [EnvelopeKeyID: Void]) -> Verdict {
        let header: EnvelopeHeader
        do {
            guard let parsed = try EnvelopeHeader.parse(envelope) else { return .tampered }
            header = parsed
        } catch {
            counters.tampered.add(1, ordering: .relaxed)
            log.warning("malformed-part:\(topic)", "topic \(topic): an encrypted field or header is malformed (\(error)); never delivered as plaintext")
            return .tampered
        }
        let allowed = scratch.allows(header.keyID, under: grants)
        guard id != nil, allowed else { return .deny }
        switch unwrapped.lookup(header.keyID, counting: false) {
        case .hit: break
        case .denied: return .deny
        case .miss: missing[header.keyID] = ()
        }
        return .open(header)
    }

    /// How applying a record's parts ended.
    enum Outcome {
        case done
        /// A part was denied under `on_denied_field: error`: the partition fails.
        case partitionError
    }

    /// Where a new value goes once the batch's output buffer is complete.
    enum Target { case value, header(Int), key }

    /// Decrypts or denies every part of `record`. New values are written to `output` and listed
    /// in `pending` (target and range), for the caller to slice once the whole batch is
    /// written; `plain` is scratch for one record's field plaintexts.
    func apply(_ parts: RecordParts, to record: inout Record, output out: inout ByteBuffer, plain: inout ByteBuffer,
               pending written: inout [(target: Target, start: Int, length: Int)]) -> Outcome {
        let decryptor = EnvelopeDecryptor()
        let rule = policy.onDeniedField
        var ciphertextLeft = false
        var aadPath: [UInt8] = []
        let firstPending = written.count

        func open(_ envelope: ByteBuffer, _ header: EnvelopeHeader, location: ArraySlice<UInt8>, into buffer: inout ByteBuffer) -> Bool {
            guard let id = parts.id, case .hit(let key) = unwrapped.lookup(header.keyID) else { return false }
            aadPath.removeAll(keepingCapacity: true)
            aadPath += id
            aadPath += location
            do {
                try withBytes(aadPath) { (path) throws(EnvelopeError) in
                    try decryptor.open(envelope, header: header, key: key, topic: topic, fieldPathBytes: path, into: &buffer)
                }
                return true
            } catch {
                counters.tampered.add(1, ordering: .relaxed)
                log.warning("open-part:\(topic):\(header.keyID)",
                            "topic \(topic): an encrypted field or header failed authentication (\(error)); never delivered as plaintext")
                return false
            }
        }

        // The value: plaintexts first (into their own buffer), then one forward pass of edits.
        if parts.fieldLevel, !parts.hits.isEmpty, let value = record.value {
            enum Replacement { case plaintext(Range<Int>), null, placeholder }
            var edits: [(range: Range<Int>, replacement: Replacement?)] = []  // nil: cut
            var removed: [Int] = []
            plain.clear()
            for (i, field) in parts.fields.enumerated() {
                guard let field else { continue }
                let hit = parts.hits[i]
                if case .open(let header) = field.verdict {
                    let start = plain.writerIndex
                    if open(field.envelope, header, location: parts.locations[hit.location], into: &plain) {
                        edits.append((hit.value, .plaintext(start..<plain.writerIndex)))
                        counters.partsDecrypted.add(1, ordering: .relaxed)
                        continue
                    }
                }
                counters.partsDenied.add(1, ordering: .relaxed)
                switch rule {
                case .remove: removed.append(i)
                case .null: edits.append((hit.value, .null))
                case .redact: edits.append((hit.value, .placeholder))
                case .ciphertext: ciphertextLeft = true
                case .error: return .partitionError
                }
            }
            if !removed.isEmpty {
                for cut in JSONRemoval.ranges(hits: parts.hits, removed: removed) { edits.append((cut, nil)) }
            }
            if !edits.isEmpty {
                edits.sort { $0.range.lowerBound < $1.range.lowerBound }
                let start = out.writerIndex
                value.withUnsafeReadableBytes { bytes in
                    plain.withUnsafeReadableBytes { plaintexts in
                        var copied = 0
                        for (range, replacement) in edits {
                            out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[copied..<range.lowerBound]))
                            switch replacement {
                            case .plaintext(let source)?: out.writeBytes(UnsafeRawBufferPointer(rebasing: plaintexts[source]))
                            case .null?: out.writeStaticString("null")
                            case .placeholder?: out.writeString(policy.fieldPlaceholder)
                            case nil: break
                            }
                            copied = range.upperBound
                        }
                        out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[copied...]))
                    }
                }
                written.append((.value, start, out.writerIndex - start))
            }
        }

        // Headers; removals are applied last so indices stay valid meanwhile.
        var removedHeaders: [Int] = []
        for (index, verdict) in parts.headers {
            let header = record.headers[index]
            if case .open(let envelopeHeader) = verdict, let value = header.value {
                let start = out.writerIndex
                let location = ArraySlice(JSONLocation.headerPrefix + Array(header.key.utf8))
                if open(value, envelopeHeader, location: location, into: &out) {
                    written.append((.header(index), start, out.writerIndex - start))
                    counters.partsDecrypted.add(1, ordering: .relaxed)
                    continue
                }
            }
            counters.partsDenied.add(1, ordering: .relaxed)
            switch rule {
            case .remove: removedHeaders.append(index)
            case .null: record.headers[index].value = nil
            case .redact: record.headers[index].value = ByteBuffer(string: policy.fieldPlaceholder)
            case .ciphertext: ciphertextLeft = true
            case .error: return .partitionError
            }
        }

        // The record key: a key cannot be removed without changing what the record means, so
        // a denied key stays as its deterministic ciphertext (except under `error`).
        if let (header, allowed) = parts.key {
            var opened = false
            if let header, allowed, case .hit(let key) = deterministic.lookup(header.reference), let ciphertext = record.key {
                let start = out.writerIndex
                do {
                    try key.open(ciphertext, header: header, topic: topic, into: &out)
                    written.append((.key, start, out.writerIndex - start))
                    counters.partsDecrypted.add(1, ordering: .relaxed)
                    opened = true
                } catch {
                    counters.tampered.add(1, ordering: .relaxed)
                    log.warning("open-key:\(topic)", "topic \(topic): an encrypted record key failed authentication (\(error))")
                }
            }
            if !opened {
                // The marker is not needed for it: record keys are not bound to the record id.
                counters.partsDenied.add(1, ordering: .relaxed)
                if rule == .error { return .partitionError }
            }
        }

        // The marker is Veil's, not the application's; it stays only while some ciphertext in
        // the record still needs it to be decrypted later.
        if let markerIndex = parts.markerIndex, !ciphertextLeft { removedHeaders.append(markerIndex) }
        if !removedHeaders.isEmpty {
            removedHeaders.sort(by: >)
            for index in removedHeaders { record.headers.remove(at: index) }
            // Pending header values move down with the headers removed before them.
            for p in firstPending..<written.count {
                guard case .header(let h) = written[p].target else { continue }
                written[p].target = .header(h - removedHeaders.lazy.filter { $0 < h }.count)
            }
        }
        return .done
    }

    static func startsWith(_ buffer: ByteBuffer, _ magic: [UInt8]) -> Bool {
        guard buffer.readableBytes >= magic.count else { return false }
        return buffer.withUnsafeReadableBytes { bytes in
            bytes[0] == magic[0] && bytes[1] == magic[1] && bytes[2] == magic[2] && bytes[3] == magic[3]
        }
    }
}
