import NIOCore

/// A Kafka request header (v0, v1 or v2).
public struct RequestHeader: Sendable, Equatable {
    public var apiKey: ApiKey
    public var apiVersion: Int16
    public var correlationId: Int32
    /// Absent in header v0; nullable from v1.
    public var clientId: String?
    public var taggedFields: TaggedFields

    public init(apiKey: ApiKey, apiVersion: Int16, correlationId: Int32, clientId: String?, taggedFields: TaggedFields = .init()) {
        self.apiKey = apiKey
        self.apiVersion = apiVersion
        self.correlationId = correlationId
        self.clientId = clientId
        self.taggedFields = taggedFields
    }

    public var headerVersion: Int16 { apiKey.requestHeaderVersion(apiVersion) }

    /// Reads a header from the start of a frame, leaving `buffer` at the body.
    public static func read(from buffer: inout ByteBuffer) throws -> RequestHeader {
        var r = WireReader(buffer: buffer, version: 0, flexible: false)
        let key = ApiKey(rawValue: try r.int16("request api key"))
        let version = try r.int16("request api version")
        let correlation = try r.int32("correlation id")
        let headerVersion = key.requestHeaderVersion(version)
        var clientId: String?
        var tags = TaggedFields()
        if headerVersion >= 1 {
            // The client id stays a classic nullable string even in header v2.
            clientId = try r.nullableString("client id")
        }
        if headerVersion >= 2 {
            var flex = WireReader(buffer: r.buffer, version: version, flexible: true)
            tags = try flex.taggedFields()
            r.buffer = flex.buffer
        }
        buffer = r.buffer
        return RequestHeader(apiKey: key, apiVersion: version, correlationId: correlation, clientId: clientId, taggedFields: tags)
    }

    /// Reads just api key, version and correlation id, which sit at fixed offsets in every header version.
    public static func peek(_ frame: ByteBuffer) -> (apiKey: ApiKey, apiVersion: Int16, correlationId: Int32)? {
        guard let key = frame.getInteger(at: frame.readerIndex, as: Int16.self),
              let version = frame.getInteger(at: frame.readerIndex + 2, as: Int16.self),
              let correlation = frame.getInteger(at: frame.readerIndex + 4, as: Int32.self)
        else { return nil }
        return (ApiKey(rawValue: key), version, correlation)
    }

    public func write(to buffer: inout ByteBuffer) {
        let hv = headerVersion
        WireWriter.append(to: &buffer, version: apiVersion, flexible: false) { w in
            w.int16(apiKey.rawValue)
            w.int16(apiVersion)
            w.int32(correlationId)
            if hv >= 1 { w.nullableString(clientId) }
        }
        if hv >= 2 {
            WireWriter.append(to: &buffer, version: apiVersion, flexible: true) { $0.taggedFields(taggedFields) }
        }
    }
}

/// A Kafka response header (v0 or v1).
public struct ResponseHeader: Sendable, Equatable {
    public var correlationId: Int32
    public var taggedFields: TaggedFields

    public init(correlationId: Int32, taggedFields: TaggedFields = .init()) {
        self.correlationId = correlationId
        self.taggedFields = taggedFields
    }

    public static func read(from buffer: inout ByteBuffer, headerVersion: Int16) throws -> ResponseHeader {
        var r = WireReader(buffer: buffer, version: 0, flexible: headerVersion >= 1)
        let correlation = try r.int32("correlation id")
        let tags = try r.taggedFields()
        buffer = r.buffer
        return ResponseHeader(correlationId: correlation, taggedFields: tags)
    }

    public func write(to buffer: inout ByteBuffer, headerVersion: Int16) {
        WireWriter.append(to: &buffer, version: 0, flexible: headerVersion >= 1) { w in
            w.int32(correlationId)
            w.taggedFields(taggedFields)
        }
    }
}
