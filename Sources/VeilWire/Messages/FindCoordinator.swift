import NIOCore

/// FindCoordinator request (key 10): one key up to v3, a batch of keys from v4.
public struct FindCoordinatorRequest: KafkaMessage {
    public static let apiKey = ApiKey.findCoordinator
    public static let versions: ClosedRange<Int16> = 0...6

    public var key: String
    public var keyType: Int8
    public var coordinatorKeys: [String]
    public var unknownTags = TaggedFields()

    public init(key: String = "", keyType: Int8 = 0, coordinatorKeys: [String] = []) {
        self.key = key
        self.keyType = keyType
        self.coordinatorKeys = coordinatorKeys
    }

    public init(from r: inout WireReader) throws {
        key = r.version <= 3 ? try r.string("coordinator key") : ""
        keyType = r.version >= 1 ? try r.int8() : 0
        coordinatorKeys = r.version >= 4 ? try r.array("coordinator keys") { try $0.string() } : []
        unknownTags = try r.taggedFields()
    }

    public func write(to w: inout WireWriter) {
        if w.version <= 3 { w.string(key) }
        if w.version >= 1 { w.int8(keyType) }
        if w.version >= 4 { w.array(coordinatorKeys) { $0.string($1) } }
        w.taggedFields(unknownTags)
    }
}

/// FindCoordinator response (key 10): a single coordinator up to v3, `coordinators[]` from v4.
public struct FindCoordinatorResponse: KafkaMessage {
    public static let apiKey = ApiKey.findCoordinator
    public static let versions: ClosedRange<Int16> = 0...6

    /// One coordinator (v4+).
    public struct Coordinator: Sendable, Equatable {
        public var key: String
        public var endpoint: BrokerEndpoint
        public var errorCode: Int16
        public var errorMessage: String?

        public init(key: String, endpoint: BrokerEndpoint, errorCode: Int16 = 0, errorMessage: String? = nil) {
            self.key = key
            self.endpoint = endpoint
            self.errorCode = errorCode
            self.errorMessage = errorMessage
        }
    }

    public var throttleTimeMs: Int32
    /// v0–3 single-key form.
    public var errorCode: Int16
    public var errorMessage: String?
    public var endpoint: BrokerEndpoint
    /// v4+ batched form.
    public var coordinators: [Coordinator]
    public var unknownTags = TaggedFields()

    public init(throttleTimeMs: Int32 = 0, errorCode: Int16 = 0, errorMessage: String? = nil,
                endpoint: BrokerEndpoint = BrokerEndpoint(nodeId: -1, host: "", port: -1), coordinators: [Coordinator] = []) {
        self.throttleTimeMs = throttleTimeMs
        self.errorCode = errorCode
        self.errorMessage = errorMessage
        self.endpoint = endpoint
        self.coordinators = coordinators
    }

    public init(from r: inout WireReader) throws {
        throttleTimeMs = r.version >= 1 ? try r.int32() : 0
        if r.version <= 3 {
            errorCode = try r.int16()
            errorMessage = r.version >= 1 ? try r.nullableString("error message") : nil
            endpoint = BrokerEndpoint(nodeId: try r.int32(), host: try r.string("host"), port: try r.int32())
            coordinators = []
        } else {
            errorCode = 0
            errorMessage = nil
            endpoint = BrokerEndpoint(nodeId: -1, host: "", port: -1)
            coordinators = try r.array("coordinators") { r in
                let key = try r.string("coordinator key")
                var e = BrokerEndpoint(nodeId: try r.int32(), host: try r.string("host"), port: try r.int32())
                let code = try r.int16()
                let message = try r.nullableString("error message")
                e.unknownTags = try r.taggedFields()
                return Coordinator(key: key, endpoint: e, errorCode: code, errorMessage: message)
            }
        }
        unknownTags = try r.taggedFields()
    }

    public func write(to w: inout WireWriter) {
        if w.version >= 1 { w.int32(throttleTimeMs) }
        if w.version <= 3 {
            w.int16(errorCode)
            if w.version >= 1 { w.nullableString(errorMessage) }
            w.int32(endpoint.nodeId)
            w.string(endpoint.host)
            w.int32(endpoint.port)
        } else {
            w.array(coordinators) { w, c in
                w.string(c.key)
                w.int32(c.endpoint.nodeId)
                w.string(c.endpoint.host)
                w.int32(c.endpoint.port)
                w.int16(c.errorCode)
                w.nullableString(c.errorMessage)
                w.taggedFields(c.endpoint.unknownTags)
            }
        }
        w.taggedFields(unknownTags)
    }
}
