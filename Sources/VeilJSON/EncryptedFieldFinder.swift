/// The strings in a document that hold encrypted fields, with what a consumer needs to put
/// plaintext back or take the field out: their concrete location (for the AAD) and their
/// neighbours' offsets (to remove a member together with its comma).
public struct EncryptedFieldHits: Sendable {
    /// One string value starting with the encrypted-field prefix, inside an object or array.
    public struct Hit: Sendable, Equatable {
        /// The string token, quotes included.
        public var value: Range<Int>
        /// The characters after the prefix, up to the closing quote.
        public var payload: Range<Int>
        /// The concrete location (see ``JSONLocation``) in ``EncryptedFieldHits/locations``.
        public var location: Range<Int>
        /// Identifies the object or array holding the value (unique within one document).
        public var container: Int
        /// Position among the container's members or elements, from 0.
        public var index: Int
        /// Where the member starts (its name's opening quote), or the element's value.
        public var memberStart: Int
        /// End of the previous sibling's value; -1 for the first member or element.
        public var previousValueEnd: Int
        /// Start of the next member or element; -1 for the last one.
        public var nextMemberStart: Int
    }

    /// The hits, in document order.
    public private(set) var hits: [Hit] = []
    /// Concatenated concrete locations, referenced by ``Hit/location``.
    public private(set) var locations: [UInt8] = []
    private var containers = 0

    public init() {}

    /// Empties the arrays, keeping their storage.
    public mutating func removeAll() {
        hits.removeAll(keepingCapacity: true)
        locations.removeAll(keepingCapacity: true)
        containers = 0
    }

    /// Validates `json` and collects every string value (not member name) inside an object or
    /// array whose contents start with `prefix` and hold no escape sequence. `self` is cleared
    /// first.
    public mutating func find(prefix: [UInt8], in json: UnsafeRawBufferPointer) throws(JSONSyntaxError) {
        removeAll()
        var cursor = JSONCursor(json)
        var path = PathStack()
        cursor.skipByteOrderMark()
        cursor.skipWhitespace()
        var out = self
        let result = prefix.withUnsafeBytes { prefix in
            Result { () throws(JSONSyntaxError) in try cursor.find(prefix: prefix, depth: 0, path: &path, into: &out) }
        }
        self = out
        try result.get()
        try cursor.finish()
    }

    mutating func newContainer() -> Int {
        defer { containers += 1 }
        return containers
    }

    mutating func append(_ hit: Hit, stack: PathStack, document: UnsafeRawBufferPointer) -> Int {
        var hit = hit
        let start = locations.count
        stack.write(into: &locations, document: document)
        hit.location = start..<locations.count
        hits.append(hit)
        return hits.count - 1
    }

    mutating func setNextMemberStart(_ hit: Int, _ offset: Int) { hits[hit].nextMemberStart = offset }
}

extension JSONCursor {
    mutating func find(prefix: UnsafeRawBufferPointer, depth: Int, path: inout PathStack,
                       into out: inout EncryptedFieldHits) throws(JSONSyntaxError) {
        guard let byte = current else { throw error("unexpected end, expected a value") }
        let isObject = byte == UInt8(ascii: "{")
        guard isObject || byte == UInt8(ascii: "[") else { return try skipValue(depth: depth) }
        guard depth < Self.maximumDepth else { throw error("nested deeper than \(Self.maximumDepth) levels") }
        let close = isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
        let container = out.newContainer()
        index += 1
        skipWhitespace()
        if current == close { index += 1; return }
        var position = 0
        var previousValueEnd = -1
        var pendingHit = -1
        while true {
            let memberStart = index
            if pendingHit >= 0 {
                out.setNextMemberStart(pendingHit, memberStart)
                pendingHit = -1
            }
            if isObject {
                let name = try scanString()
                skipWhitespace()
                try expect(UInt8(ascii: ":"), "':'")
                skipWhitespace()
                path.push(.member(name.range))
            } else {
                path.push(.element(position))
            }
            let valueStart = index
            if current == UInt8(ascii: "\"") {
                let string = try scanString()
                if !string.hasEscapes, string.range.count >= prefix.count, prefix.count > 0,
                   memcmpEqual(bytes.baseAddress! + string.range.lowerBound, prefix.baseAddress!, prefix.count)
                {
                    let hit = EncryptedFieldHits.Hit(
                        value: valueStart..<index, payload: (string.range.lowerBound + prefix.count)..<string.range.upperBound,
                        location: 0..<0, container: container, index: position, memberStart: memberStart,
                        previousValueEnd: previousValueEnd, nextMemberStart: -1)
                    pendingHit = out.append(hit, stack: path, document: bytes)
                }
            } else {
                try find(prefix: prefix, depth: depth + 1, path: &path, into: &out)
            }
            path.pop()
            previousValueEnd = index
            position += 1
            guard try moreElements(close: close, isObject ? "',' or '}'" : "',' or ']'") else { return }
        }
    }
}
