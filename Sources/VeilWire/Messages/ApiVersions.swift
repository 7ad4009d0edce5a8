import NIOCore

/// ApiVersions request (key 18).
public struct ApiVersionsRequest: KafkaMessage {
    public static let apiKey = ApiKey.apiVersions
    public static let versions: ClosedRange<Int16> = 0...4

    public var clientSoftwareName: String?
    public var clientSoftwareVersion: String?
    public var unknownTags = TaggedFields()

    public init(clientSoftwareName: String? = nil, clientSoftwareVersion: String? = nil) {
        self.clientSoftwareName = clientSoftwareName
        self.clientSoftwareVersion = clientSoftwareVersion
    }

    public init(from r: inout WireReader) throws {
        if r.version >= 3 {
            clientSoftwareName = try r.string("client software name")
            clientSoftwareVersion = try r.string("client software version")
            unknownTags = try r.taggedFields()
        }
    }

    public func write(to w: inout WireWriter) {
        if w.version >= 3 {
            w.string(clientSoftwareName ?? "")
            w.string(clientSoftwareVersion ?? "")
            w.taggedFields(unknownTags)
        }
    }
}

/// ApiVersions response (key 18). Features (tags 0–3) are kept as raw tagged fields.
public struct ApiVersionsResponse: KafkaMessage {
    public static let apiKey = ApiKey.apiVersions
    public static let versions: ClosedRange<Int16> = 0...4

    /// One API's supported version range.
    public struct ApiVersion: Sendable, Equatable {
        public var apiKey: Int16
        public var minVersion: Int16
        public var maxVersion: Int16
        public var unknownTags = TaggedFields()

        public init(apiKey: Int16, minVersion: Int16, maxVersion: Int16) {
            self.apiKey = apiKey
            self.minVersion = minVersion
            self.maxVersion = maxVersion
        }
    }

    public var errorCode: Int16
    public var apiKeys: [ApiVersion]
    public var throttleTimeMs: Int32
    public var unknownTags = TaggedFields()

    public init(errorCode: Int16, apiKeys: [ApiVersion], throttleTimeMs: Int32 = 0) {
        self.errorCode = errorCode
        self.apiKeys = apiKeys
        self.throttleTimeMs = throttleTimeMs
    }

    public init(from r: inout WireReader) throws {
        errorCode = try r.int16("error code")
        apiKeys = try r.array("api keys") { r in
            var v = ApiVersion(apiKey: try r.int16("api key"), minVersion: try r.int16("min version"), maxVersion: try r.int16("max version"))
            v.unknownTags = try r.taggedFields()
            return v
        }
        throttleTimeMs = r.version >= 1 ? try r.int32("throttle time") : 0
        unknownTags = try r.taggedFields()
    }

    public func write(to w: inout WireWriter) {
        w.int16(errorCode)
        w.array(apiKeys) { w, v in
            w.int16(v.apiKey)
            w.int16(v.minVersion)
            w.int16(v.maxVersion)
            w.taggedFields(v.unknownTags)
        }
        if w.version >= 1 { w.int32(throttleTimeMs) }
        w.taggedFields(unknownTags)
    }

    /// Decodes a response to a request sent at `requestedVersion`. A broker that does
    /// not support that version answers UNSUPPORTED_VERSION (35) in the v0 layout, so
    /// the error code is checked first and decides the layout.
    public static func decode(_ body: ByteBuffer, requestedVersion: Int16) throws -> (ApiVersionsResponse, version: Int16) {
        if let code = body.getInteger(at: body.readerIndex, as: Int16.self), code == KafkaErrorCode.unsupportedVersion {
            return (try ApiVersionsResponse(decoding: body, version: 0), 0)
        }
        return (try ApiVersionsResponse(decoding: body, version: requestedVersion), requestedVersion)
    }
}

/// Kafka error codes Veil produces or interprets.
public enum KafkaErrorCode {
    public static let none: Int16 = 0
    public static let unknownServerError: Int16 = -1
    public static let corruptMessage: Int16 = 2
    public static let unknownTopicOrPartition: Int16 = 3
    public static let invalidRecord: Int16 = 87
    public static let unsupportedVersion: Int16 = 35
    public static let policyViolation: Int16 = 44
    public static let kafkaStorageError: Int16 = 56
    public static let topicAuthorizationFailed: Int16 = 29
    public static let clusterAuthorizationFailed: Int16 = 31
    public static let saslAuthenticationFailed: Int16 = 58
    public static let requestTimedOut: Int16 = 7
    public static let notEnoughReplicas: Int16 = 19
}
