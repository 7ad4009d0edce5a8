/// The AAD of an envelope: the header bytes, then
/// `u16be len(fieldPath) || fieldPath`, then, if the topic is bound,
/// `u16be len(topic) || topic`.
///
/// Length prefixes keep the encoding unambiguous, so ("ab", "c") and
/// ("a", "bc") can never authenticate as each other.
enum AssociatedData {
    /// A field path as callers have it: a string, or bytes (record id and location).
    enum FieldPath {
        case string(String)
        case bytes(UnsafeRawBufferPointer)
    }

    @inline(__always)
    static func withBytes<R>(
        header: UnsafeRawBufferPointer, fieldPath: FieldPath, topic: String?, _ body: (UnsafeRawBufferPointer) -> R
    ) -> R {
        switch fieldPath {
        case .string(let path): withBytes(header: header, fieldPath: path, topic: topic, body)
        case .bytes(let path): withBytes(header: header, fieldPathBytes: path, topic: topic, body)
        }
    }

    /// Checks the lengths up front so sealing cannot fail halfway.
    static func validate(fieldPath: String, topic: String?) throws(EnvelopeError) {
        guard fieldPath.utf8.count <= Envelope.maximumAADStringLength else {
            throw .invalidArgument("field path longer than \(Envelope.maximumAADStringLength) bytes")
        }
        if let topic, topic.utf8.count > Envelope.maximumAADStringLength {
            throw .invalidArgument("topic longer than \(Envelope.maximumAADStringLength) bytes")
        }
    }

    /// Lays the whole AAD out contiguously in temporary (usually stack)
    /// memory, so OpenSSL takes it in one call. Lengths must be validated.
    @inline(__always)
    static func withBytes<R>(
        header: UnsafeRawBufferPointer, fieldPath: String, topic: String?, _ body: (UnsafeRawBufferPointer) -> R
    ) -> R {
        let fieldCount = fieldPath.utf8.count
        let topicCount = topic?.utf8.count ?? 0
        let total = header.count + 2 + fieldCount + (topic == nil ? 0 : 2 + topicCount)
        return withUnsafeTemporaryAllocation(byteCount: total, alignment: 8) { buffer in
            let base = buffer.baseAddress!
            base.copyMemory(from: header.baseAddress!, byteCount: header.count)
            var offset = header.count
            offset = put(fieldPath, count: fieldCount, at: offset, in: base)
            if let topic { offset = put(topic, count: topicCount, at: offset, in: base) }
            return body(UnsafeRawBufferPointer(buffer))
        }
    }

    /// As ``withBytes(header:fieldPath:topic:_:)`` with the field path given as bytes
    /// (field-level locations are not always valid UTF-8 strings, and building a `String` per
    /// field would cost an allocation per field).
    @inline(__always)
    static func withBytes<R>(
        header: UnsafeRawBufferPointer, fieldPathBytes: UnsafeRawBufferPointer, topic: String?,
        _ body: (UnsafeRawBufferPointer) -> R
    ) -> R {
        let fieldCount = fieldPathBytes.count
        let topicCount = topic?.utf8.count ?? 0
        let total = header.count + 2 + fieldCount + (topic == nil ? 0 : 2 + topicCount)
        return withUnsafeTemporaryAllocation(byteCount: total, alignment: 8) { buffer in
            let base = buffer.baseAddress!
            base.copyMemory(from: header.baseAddress!, byteCount: header.count)
            var offset = header.count
            base.storeBytes(of: UInt16(fieldCount).bigEndian, toByteOffset: offset, as: UInt16.self)
            if fieldCount > 0 { (base + offset + 2).copyMemory(from: fieldPathBytes.baseAddress!, byteCount: fieldCount) }
            offset += 2 + fieldCount
            if let topic { offset = put(topic, count: topicCount, at: offset, in: base) }
            return body(UnsafeRawBufferPointer(buffer))
        }
    }

    /// Checks lengths for a field path given as bytes.
    static func validate(fieldPathCount: Int, topic: String?) throws(EnvelopeError) {
        guard fieldPathCount <= Envelope.maximumAADStringLength else {
            throw .invalidArgument("field path longer than \(Envelope.maximumAADStringLength) bytes")
        }
        if let topic, topic.utf8.count > Envelope.maximumAADStringLength {
            throw .invalidArgument("topic longer than \(Envelope.maximumAADStringLength) bytes")
        }
    }

    @inline(__always)
    private static func put(_ string: String, count: Int, at offset: Int, in base: UnsafeMutableRawPointer) -> Int {
        base.storeBytes(of: UInt16(count).bigEndian, toByteOffset: offset, as: UInt16.self)
        let start = offset + 2
        let copied: Void? = string.utf8.withContiguousStorageIfAvailable { utf8 in
            if let source = utf8.baseAddress { (base + start).copyMemory(from: source, byteCount: count) }
        }
        if copied == nil {
            // Bridged or otherwise non-contiguous strings: copy byte by byte.
            UnsafeMutableRawBufferPointer(start: base + start, count: count).copyBytes(from: string.utf8)
        }
        return start + count
    }
}
