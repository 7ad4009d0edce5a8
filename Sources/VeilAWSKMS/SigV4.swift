import COpenSSL
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An HTTP request as AWS Signature Version 4 sees it: what gets hashed into the signature.
public struct SigV4Request: Sendable {
    /// The HTTP method, e.g. `POST`.
    public var method: String
    /// The request path before percent-encoding, e.g. `/`.
    public var path: String
    /// Query parameters before percent-encoding, in any order.
    public var query: [(name: String, value: String)]
    /// Headers to sign, in any order and case. Must include `Host`. Repeated names are allowed.
    public var headers: [(name: String, value: String)]
    /// The payload; its SHA-256 is part of the signature.
    public var body: [UInt8]

    /// Creates a request to sign.
    public init(
        method: String, path: String = "/", query: [(name: String, value: String)] = [],
        headers: [(name: String, value: String)], body: [UInt8] = []
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }
}

/// The result of signing: the intermediate texts (kept for tests and debugging; they hold no
/// secret) and the headers to send.
public struct SigV4Signature: Sendable {
    /// The canonical request that was hashed.
    public let canonicalRequest: String
    /// The string that was signed with the derived key.
    public let stringToSign: String
    /// The `Authorization` header value.
    public let authorization: String
    /// The request's headers plus `X-Amz-Date`, `X-Amz-Security-Token` (temporary credentials
    /// only) and `Authorization`: exactly what must go on the wire.
    public let headers: [(name: String, value: String)]
}

/// AWS Signature Version 4 (`AWS4-HMAC-SHA256`) in header form, for one region and service.
///
/// Implemented here rather than taken from an SDK so that the sidecar's only AWS dependency is
/// an HTTP client; it is checked against AWS's published SigV4 test suite.
public struct SigV4Signer: Sendable {
    /// The region in the credential scope, e.g. `us-east-1`.
    public let region: String
    /// The service in the credential scope, e.g. `kms`.
    public let service: String

    /// Creates a signer for `service` in `region`.
    public init(region: String, service: String) {
        self.region = region
        self.service = service
    }

    static let algorithm = "AWS4-HMAC-SHA256"

    /// Signs `request` at `secondsSinceEpoch` (UTC).
    ///
    /// Any `X-Amz-Date` or `X-Amz-Security-Token` already present is replaced, so the signed
    /// values are always the ones derived from `date` and `credentials`. The session token is
    /// signed, as KMS requires.
    public func sign(_ request: SigV4Request, credentials: AWSCredentials, secondsSinceEpoch: Int64) -> SigV4Signature {
        let (day, timestamp) = Self.formatDate(secondsSinceEpoch)
        var headers = request.headers.filter {
            let name = $0.name.lowercased()
            return name != "x-amz-date" && name != "x-amz-security-token" && name != "authorization"
        }
        headers.append((name: "X-Amz-Date", value: timestamp))
        if let token = credentials.sessionToken {
            headers.append((name: "X-Amz-Security-Token", value: token))
        }

        let (canonicalHeaders, signedHeaders) = Self.canonicalHeaders(headers)
        let canonicalRequest = [
            request.method,
            Self.canonicalPath(request.path),
            Self.canonicalQuery(request.query),
            canonicalHeaders,
            signedHeaders,
            Digest.hex(Digest.sha256(request.body)),
        ].joined(separator: "\n")

        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = [
            Self.algorithm, timestamp, scope, Digest.hex(Digest.sha256(Array(canonicalRequest.utf8))),
        ].joined(separator: "\n")

        let signature = credentials.withSecretBytes { secret in
            var key = Array("AWS4".utf8) + secret
            defer { wipe(&key) }
            var derived = key
            for part in [day, region, service, "aws4_request"] {
                let next = Digest.hmacSHA256(key: derived, Array(part.utf8))
                wipe(&derived)
                derived = next
            }
            defer { wipe(&derived) }
            return Digest.hex(Digest.hmacSHA256(key: derived, Array(stringToSign.utf8)))
        }

        let authorization =
            "\(Self.algorithm) Credential=\(credentials.accessKeyId)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
        headers.append((name: "Authorization", value: authorization))
        return SigV4Signature(
            canonicalRequest: canonicalRequest, stringToSign: stringToSign, authorization: authorization,
            headers: headers)
    }

    /// `yyyyMMdd` and `yyyyMMdd'T'HHmmss'Z'` in UTC; formatted by hand because a shared
    /// DateFormatter is neither Sendable nor needed for a fixed format.
    static func formatDate(_ seconds: Int64) -> (day: String, timestamp: String) {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        let day = pad(parts.tm_year + 1900, 4) + pad(parts.tm_mon + 1, 2) + pad(parts.tm_mday, 2)
        return (day, day + "T" + pad(parts.tm_hour, 2) + pad(parts.tm_min, 2) + pad(parts.tm_sec, 2) + "Z")
    }

    /// Each path segment percent-encoded once. Veil only ever sends `/` to KMS; the published
    /// vectors give raw paths and expect a single encoding, which is what this does.
    static func canonicalPath(_ path: String) -> String {
        guard !path.isEmpty else { return "/" }
        return path.split(separator: "/", omittingEmptySubsequences: false)
            .map { percentEncode(Substring($0)) }
            .joined(separator: "/")
    }

    /// Encoded names and values, sorted by name then value (byte order of the encoded forms).
    static func canonicalQuery(_ query: [(name: String, value: String)]) -> String {
        query.map { (percentEncode(Substring($0.name)), percentEncode(Substring($0.value))) }
            .sorted { $0.0 != $1.0 ? $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) : $0.1.utf8.lexicographicallyPrecedes($1.1.utf8) }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    /// Lower-cased names sorted; repeated names joined with `,` in the order given; values trimmed
    /// with inner runs of spaces collapsed. Returns the block (with its trailing newline) and the
    /// `;`-joined signed header list.
    static func canonicalHeaders(_ headers: [(name: String, value: String)]) -> (String, String) {
        var order: [String] = []
        var values: [String: [String]] = [:]
        for header in headers {
            let name = header.name.lowercased()
            if values[name] == nil { order.append(name) }
            values[name, default: []].append(normalizeValue(header.value))
        }
        let names = order.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        let block = names.map { "\($0):\(values[$0]!.joined(separator: ","))\n" }.joined()
        return (block, names.joined(separator: ";"))
    }

    static func normalizeValue(_ value: String) -> String {
        var result: [UInt8] = []
        var pendingSpace = false
        for byte in value.utf8 {
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") {
                pendingSpace = !result.isEmpty
            } else {
                if pendingSpace { result.append(UInt8(ascii: " ")) }
                pendingSpace = false
                result.append(byte)
            }
        }
        return String(decoding: result, as: UTF8.self)
    }

    /// RFC 3986 percent-encoding: everything but unreserved characters, hex digits upper case.
    static func percentEncode(_ text: Substring) -> String {
        let digits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.append(byte)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(digits[Int(byte >> 4)])
                out.append(digits[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Overwrites key bytes before the array is released (best effort: Swift may have copied them).
func wipe(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { buffer in
        if let base = buffer.baseAddress { OPENSSL_cleanse(base, buffer.count) }
    }
}
