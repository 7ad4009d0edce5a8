/// The part of the AAD that follows the header bytes:
/// `u16be len(fieldPath) || fieldPath || [u16be len(topic) || topic]`.
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

    /// Encodes the suffix into temporary (usually stack) memory for `body`.
    /// Lengths must have been validated.
    @inline(__always)
    static func withSuffix<R>(
        fieldPath: String, topic: String?, _ body: (UnsafeRawBufferPointer) -> R
    ) -> R {
        var fieldPath = fieldPath
        var topic = topic
        let fieldCount = fieldPath.utf8.count
        let topicCount = topic?.utf8.count ?? 0
        let total = 2 + fieldCount + (topic == nil ? 0 : 2 + topicCount)
        return withUnsafeTemporaryAllocation(byteCount: total, alignment: 1) { buffer in
            let base = buffer.baseAddress!
            var offset = 0
            func put(_ string: inout String, count: Int) {
                base.storeBytes(of: UInt16(count).bigEndian, toByteOffset: offset, as: UInt16.self)
                offset += 2
                string.withUTF8 { utf8 in
                    if let source = utf8.baseAddress { (base + offset).copyMemory(from: source, byteCount: count) }
                }
                offset += count
            }
            put(&fieldPath, count: fieldCount)
            if topic != nil { put(&topic!, count: topicCount) }
            return body(UnsafeRawBufferPointer(buffer))
        }
    }
}
