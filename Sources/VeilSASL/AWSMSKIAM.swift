/// AWS credentials for signing. Printing one shows the key id only, so the secret key and
/// session token can't reach a log by accident.
public struct SigningCredentials: Sendable, CustomStringConvertible, CustomReflectable {
    public var description: String { "SigningCredentials(\(accessKeyId), secret redacted)" }
    public var customMirror: Mirror { Mirror(self, children: ["accessKeyId": accessKeyId]) }

    public var accessKeyId: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    /// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN`.
    ///
    /// Integration point: VeilAWSKMS's `AWSCredentialChain` (environment, profile, ECS task
    /// role) should replace this, so KMS calls and MSK IAM sign as the same principal. Its
    /// `credentials()` is async, so the upstream SASL factory would resolve credentials
    /// before the connection is opened rather than inside it.
    public static func fromEnvironment(_ environment: [String: String]) throws(SaslError) -> SigningCredentials {
        guard let id = environment["AWS_ACCESS_KEY_ID"], !id.isEmpty,
              let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty
        else { throw SaslError("AWS_MSK_IAM needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment") }
        let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        return SigningCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: token)
    }
}

/// AWS Signature Version 4 for a query-string-signed ("presigned") GET request.
public struct SigV4QuerySigner: Sendable {
    public var credentials: SigningCredentials
    public var region: String
    public var service: String

    public init(credentials: SigningCredentials, region: String, service: String) {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// Everything that went into a signature, so tests can compare each step.
    public struct Signed: Sendable {
        /// The query parameters (name, value), signature last, unencoded.
        public var parameters: [(String, String)]
        public var canonicalRequest: String
        public var stringToSign: String
        public var signature: String
        public var amzDate: String
        public var credentialScope: String
    }

    /// Signs `GET https://host/path?query` at `epochSeconds`, valid for `expires` seconds.
    /// The only signed header is `host`; the payload is empty.
    public func presign(host: String, path: String = "/", query: [(String, String)], epochSeconds: Int64, expires: Int) -> Signed {
        let (date, amzDate) = AmzDate.format(epochSeconds)
        let scope = "\(date)/\(region)/\(service)/aws4_request"
        var parameters = query
        parameters.append(("X-Amz-Algorithm", "AWS4-HMAC-SHA256"))
        parameters.append(("X-Amz-Credential", "\(credentials.accessKeyId)/\(scope)"))
        parameters.append(("X-Amz-Date", amzDate))
        parameters.append(("X-Amz-Expires", String(expires)))
        if let token = credentials.sessionToken { parameters.append(("X-Amz-Security-Token", token)) }
        parameters.append(("X-Amz-SignedHeaders", "host"))
        let encoded: [(name: String, value: String)] = parameters.map { (URIEncoding.encode($0.0), URIEncoding.encode($0.1)) }
        let sorted = encoded.sorted { (a, b) -> Bool in a.name == b.name ? a.value < b.value : a.name < b.name }
        let canonicalQuery = sorted.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
        let emptyPayloadHash = hex(SaslDigest.sha256.hash([UInt8]()))
        let canonicalRequest = ["GET", path, canonicalQuery, "host:\(host)", "", "host", emptyPayloadHash].joined(separator: "\n")
        let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, hex(SaslDigest.sha256.hash(Array(canonicalRequest.utf8)))]
            .joined(separator: "\n")
        let h = SaslDigest.sha256
        var key = h.hmac(key: Array("AWS4\(credentials.secretAccessKey)".utf8), Array(date.utf8))
        key = h.hmac(key: key, Array(region.utf8))
        key = h.hmac(key: key, Array(service.utf8))
        key = h.hmac(key: key, Array("aws4_request".utf8))
        let signature = hex(h.hmac(key: key, Array(stringToSign.utf8)))
        parameters.append(("X-Amz-Signature", signature))
        return Signed(parameters: parameters, canonicalRequest: canonicalRequest, stringToSign: stringToSign,
                      signature: signature, amzDate: amzDate, credentialScope: scope)
    }
}

/// The client side of AWS_MSK_IAM: one JSON message holding a SigV4 query-string signature
/// of `GET https://BROKER/?Action=kafka-cluster:Connect` for service `kafka-cluster`, as the
/// mechanism's public description (the aws-msk-iam-auth README) lays it out.
public struct MSKIAMClient: SaslClientExchange {
    public let mechanism = SaslMechanismName.awsMSKIAM
    let signer: SigV4QuerySigner
    let host: String
    let epochSeconds: Int64
    let userAgent: String

    /// Signatures stay valid this long; MSK checks them only when the connection authenticates.
    public static let expirySeconds = 900

    /// `host` is the broker's host name as dialled (no port).
    public init(credentials: SigningCredentials, region: String, host: String, epochSeconds: Int64, userAgent: String = "veil") {
        self.signer = SigV4QuerySigner(credentials: credentials, region: region, service: "kafka-cluster")
        self.host = host
        self.epochSeconds = epochSeconds
        self.userAgent = userAgent
    }

    /// The signed payload, as JSON text.
    public func payload() -> String {
        let signed = signer.presign(host: host, query: [("Action", "kafka-cluster:Connect")], epochSeconds: epochSeconds,
                                    expires: Self.expirySeconds)
        var fields: [(String, String)] = [
            ("version", "2020_10_22"),
            ("host", host),
            ("user-agent", userAgent),
            ("action", "kafka-cluster:Connect"),
            ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
            ("x-amz-credential", "\(signer.credentials.accessKeyId)/\(signed.credentialScope)"),
            ("x-amz-date", signed.amzDate),
        ]
        if let token = signer.credentials.sessionToken { fields.append(("x-amz-security-token", token)) }
        fields += [
            ("x-amz-signedheaders", "host"),
            ("x-amz-expires", String(Self.expirySeconds)),
            ("x-amz-signature", signed.signature),
        ]
        return "{" + fields.map { "\(JSONString.quote($0.0)):\(JSONString.quote($0.1))" }.joined(separator: ",") + "}"
    }

    public mutating func initialResponse() throws(SaslError) -> [UInt8] { Array(payload().utf8) }

    public mutating func respond(to serverMessage: [UInt8]) throws(SaslError) -> [UInt8]? {
        // The broker answers with its version and a request id; success is the error code.
        nil
    }
}

/// `YYYYMMDD` and `YYYYMMDDTHHMMSSZ` in UTC, without Foundation.
enum AmzDate {
    static func format(_ epochSeconds: Int64) -> (date: String, dateTime: String) {
        let days = epochSeconds >= 0 ? epochSeconds / 86_400 : (epochSeconds - 86_399) / 86_400
        let seconds = Int(epochSeconds - days * 86_400)
        let (year, month, day) = CivilDate.from(days: days)
        func pad(_ v: Int64, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let date = pad(year, 4) + pad(month, 2) + pad(day, 2)
        let time = pad(Int64(seconds / 3600), 2) + pad(Int64(seconds / 60 % 60), 2) + pad(Int64(seconds % 60), 2)
        return (date, "\(date)T\(time)Z")
    }
}

/// SigV4's URI encoding: everything but RFC 3986 unreserved characters, `/` included.
enum URIEncoding {
    static func encode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let digits = Array("0123456789ABCDEF")
                out += "%\(digits[Int(byte >> 4)])\(digits[Int(byte & 0xF)])"
            }
        }
        return out
    }
}

/// JSON string literals.
enum JSONString {
    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let digits = Array("0123456789abcdef")
                out += "\\u00\(digits[Int(scalar.value >> 4)])\(digits[Int(scalar.value & 0xF)])"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
