import NIOCore

/// SaslHandshake request (key 17).
public struct SaslHandshakeRequest: KafkaMessage {
    public static let apiKey = ApiKey.saslHandshake
    public static let versions: ClosedRange<Int16> = 0...1

    public var mechanism: String

    public init(mechanism: String) { self.mechanism = mechanism }

    public init(from r: inout WireReader) throws { mechanism = try r.string("mechanism") }

    public func write(to w: inout WireWriter) { w.string(mechanism) }
}

/// SaslHandshake response (key 17).
public struct SaslHandshakeResponse: KafkaMessage {
    public static let apiKey = ApiKey.saslHandshake
    public static let versions: ClosedRange<Int16> = 0...1

    public var errorCode: Int16
    public var mechanisms: [String]

    public init(errorCode: Int16, mechanisms: [String]) {
        self.errorCode = errorCode
        self.mechanisms = mechanisms
    }

    public init(from r: inout WireReader) throws {
        errorCode = try r.int16()
        mechanisms = try r.array("mechanisms") { try $0.string() }
    }

    public func write(to w: inout WireWriter) {
        w.int16(errorCode)
        w.array(mechanisms) { $0.string($1) }
    }
}

/// SaslAuthenticate request (key 36). Auth bytes are secrets: never log them.
public struct SaslAuthenticateRequest: KafkaMessage {
    public static let apiKey = ApiKey.saslAuthenticate
    public static let versions: ClosedRange<Int16> = 0...2

    public var authBytes: ByteBuffer
    public var unknownTags = TaggedFields()

    public init(authBytes: ByteBuffer) { self.authBytes = authBytes }

    public init(from r: inout WireReader) throws {
        authBytes = try r.bytes("auth bytes")
        unknownTags = try r.taggedFields()
    }

    public func write(to w: inout WireWriter) {
        w.bytes(authBytes)
        w.taggedFields(unknownTags)
    }
}

/// SaslAuthenticate response (key 36).
public struct SaslAuthenticateResponse: KafkaMessage {
    public static let apiKey = ApiKey.saslAuthenticate
    public static let versions: ClosedRange<Int16> = 0...2

    public var errorCode: Int16
    public var errorMessage: String?
    public var authBytes: ByteBuffer
    public var sessionLifetimeMs: Int64
    public var unknownTags = TaggedFields()

    public init(errorCode: Int16, errorMessage: String?, authBytes: ByteBuffer, sessionLifetimeMs: Int64 = 0) {
        self.errorCode = errorCode
        self.errorMessage = errorMessage
        self.authBytes = authBytes
        self.sessionLifetimeMs = sessionLifetimeMs
    }

    public init(from r: inout WireReader) throws {
        errorCode = try r.int16()
        errorMessage = try r.nullableString("error message")
        authBytes = try r.bytes("auth bytes")
        sessionLifetimeMs = r.version >= 1 ? try r.int64() : 0
        unknownTags = try r.taggedFields()
    }

    public func write(to w: inout WireWriter) {
        w.int16(errorCode)
        w.nullableString(errorMessage)
        w.bytes(authBytes)
        if w.version >= 1 { w.int64(sessionLifetimeMs) }
        w.taggedFields(unknownTags)
    }
}
