/// The AAD of an envelope: the header bytes, then
/// `u16be len(fieldPath) || fieldPath`, then, if the topic is bound,
/// `u16be len(topic) || topic`.
///
/// Length prefixes keep the encoding unambiguous, so ("ab", "c") and
/// ("a", "bc") can never authenticate as each other.
enum AssociatedData {
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
