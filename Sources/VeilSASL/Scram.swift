/// What a SCRAM server stores for a user (RFC 5802 §3): never the password itself, only
/// the salt, the iteration count and two keys derived from the salted password.
public struct ScramCredential: Sendable, Equatable {
    public let digest: SaslDigest
    public let salt: [UInt8]
    public let iterations: Int
    public let storedKey: [UInt8]
    public let serverKey: [UInt8]

    /// Kafka's lower bound; fewer iterations make a stolen user store cheap to attack.
    public static let minimumIterations = 4096

    /// A credential from stored values (e.g. a users file).
    public init(digest: SaslDigest, salt: [UInt8], iterations: Int, storedKey: [UInt8], serverKey: [UInt8]) {
        self.digest = digest
        self.salt = salt
        self.iterations = iterations
        self.storedKey = storedKey
        self.serverKey = serverKey
    }

    /// Derives the credential for `password`; a random 24-byte salt by default.
    public init(digest: SaslDigest, password: String, salt: [UInt8]? = nil, iterations: Int = 8192) {
        let salt = salt ?? saslRandomBytes(24)
        let salted = digest.pbkdf2(password: Array(password.utf8), salt: salt, iterations: iterations)
        let keys = ScramKeys(digest: digest, saltedPassword: salted)
        self.init(digest: digest, salt: salt, iterations: iterations, storedKey: keys.storedKey, serverKey: keys.serverKey)
    }

    /// Whether `password` is this credential's password (how PLAIN logins are checked
    /// against a store that only holds SCRAM secrets).
    public func matches(password: String) -> Bool {
        let salted = digest.pbkdf2(password: Array(password.utf8), salt: salt, iterations: iterations)
        return constantTimeEquals(ScramKeys(digest: digest, saltedPassword: salted).storedKey, storedKey)
    }
}

/// The keys RFC 5802 derives from a salted password.
struct ScramKeys {
    let clientKey: [UInt8]
    let storedKey: [UInt8]
    let serverKey: [UInt8]

    init(digest: SaslDigest, saltedPassword: [UInt8]) {
        clientKey = digest.hmac(key: saltedPassword, Array("Client Key".utf8))
        storedKey = digest.hash(clientKey)
        serverKey = digest.hmac(key: saltedPassword, Array("Server Key".utf8))
    }
}

/// SCRAM attributes (`a=value,b=value`), in order. Names are one letter in RFC 5802;
/// Kafka adds longer extension names (`tokenauth=true`).
struct ScramAttributes {
    var pairs: [(name: Substring, value: Substring)] = []

    init(_ text: Substring) throws(SaslError) {
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let eq = part.firstIndex(of: "="), eq != part.startIndex else { throw SaslError("malformed SCRAM message") }
            pairs.append((part[..<eq], part[part.index(after: eq)...]))
        }
    }

    subscript(name: String) -> Substring? { pairs.first { $0.name == name }?.value }
}

/// RFC 5802's `saslname`: `,` and `=` in user names are escaped.
enum ScramName {
    static func escape(_ name: String) -> String {
        name.replacing("=", with: "=3D").replacing(",", with: "=2C")
    }

    static func unescape(_ name: Substring) throws(SaslError) -> String {
        var out = ""
        var rest = name[...]
        while let i = rest.firstIndex(of: "=") {
            out += rest[..<i]
            let code = rest[i...].prefix(3)
            switch code {
            case "=3D": out += "="
            case "=2C": out += ","
            default: throw SaslError("malformed user name in SCRAM message")
            }
            rest = rest[i...].dropFirst(3)
        }
        return out + rest
    }
}

func xor(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] { zip(a, b).map { $0 ^ $1 } }

/// The client side of SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677), without channel
/// binding, as Kafka uses it.
///
/// Passwords are used as their UTF-8 bytes without SASLprep, as Kafka's own client does, so
/// that any password a Kafka broker accepts works here too.
public struct ScramClient: SaslClientExchange {
    public let mechanism: SaslMechanismName
    let digest: SaslDigest
    let username: String
    let password: String
    let clientNonce: String
    private var clientFirstBare = ""
    private var expectedServerSignature: [UInt8]?
    private var done = false

    /// Creates an exchange for one connection. `nonce` is for test vectors; leave it `nil`.
    public init(mechanism: SaslMechanismName, username: String, password: String, nonce: String? = nil) {
        precondition(mechanism.scramDigest != nil, "not a SCRAM mechanism")
        self.mechanism = mechanism
        self.digest = mechanism.scramDigest!
        self.username = username
        self.password = password
        // Base64 of random bytes contains no ',' so it is a valid printable nonce.
        self.clientNonce = nonce ?? Base64.encode(saslRandomBytes(24))
    }

    public mutating func initialResponse() throws(SaslError) -> [UInt8] {
        clientFirstBare = "n=\(ScramName.escape(username)),r=\(clientNonce)"
        return Array("n,,\(clientFirstBare)".utf8)
    }

    public mutating func respond(to serverMessage: [UInt8]) throws(SaslError) -> [UInt8]? {
        guard let text = String(validating: serverMessage, as: UTF8.self) else {
            throw SaslError("SCRAM server message is not UTF-8")
        }
        if let expected = expectedServerSignature {
            return try finish(text, expected: expected)
        }
        let attributes = try ScramAttributes(text[...])
        if let error = attributes["e"] { throw SaslError("server refused: \(error)") }
        guard let nonce = attributes["r"], let saltText = attributes["s"], let iterText = attributes["i"],
              let salt = Base64.decode(saltText), let iterations = Int(iterText)
        else { throw SaslError("malformed SCRAM server-first message") }
        guard nonce.hasPrefix(clientNonce), nonce.count > clientNonce.count else {
            throw SaslError("SCRAM server nonce does not extend the client nonce")
        }
        guard iterations >= ScramCredential.minimumIterations else {
            // A low count would let a man in the middle harvest a cheaply crackable proof.
            throw SaslError("SCRAM server asked for \(iterations) iterations, fewer than \(ScramCredential.minimumIterations)")
        }
        let salted = digest.pbkdf2(password: Array(password.utf8), salt: salt, iterations: iterations)
        let keys = ScramKeys(digest: digest, saltedPassword: salted)
        let withoutProof = "c=biws,r=\(nonce)"
        let authMessage = Array("\(clientFirstBare),\(text),\(withoutProof)".utf8)
        let proof = xor(keys.clientKey, digest.hmac(key: keys.storedKey, authMessage))
        expectedServerSignature = digest.hmac(key: keys.serverKey, authMessage)
        return Array("\(withoutProof),p=\(Base64.encode(proof))".utf8)
    }

    private mutating func finish(_ text: String, expected: [UInt8]) throws(SaslError) -> [UInt8]? {
        guard !done else { throw SaslError("unexpected SCRAM message after the exchange completed") }
        let attributes = try ScramAttributes(text[...])
        if let error = attributes["e"] { throw SaslError("server refused: \(error)") }
        guard let v = attributes["v"], let signature = Base64.decode(v) else {
            throw SaslError("malformed SCRAM server-final message")
        }
        guard constantTimeEquals(signature, expected) else {
            // The server does not know the password: it is not the broker we meant to reach.
            throw SaslError("SCRAM server signature is wrong; the server does not hold this user's credential")
        }
        done = true
        return nil
    }
}

/// The server side of one SCRAM exchange, for clients authenticating to Veil.
public struct ScramServer {
    /// What the server does with a client message.
    public enum Step: Equatable {
        /// Send this challenge and wait for the client's next message.
        case challenge([UInt8])
        /// Authenticated as `username`; send this final message.
        case success(username: String, final: [UInt8])
    }

    let digest: SaslDigest
    let lookup: (String) -> ScramCredential?
    let serverNonce: String
    private var state: State = .start
    /// Per process, so an unknown user gets the same decoy salt on every attempt, as a real one would.
    private static let decoySaltKey = saslRandomBytes(32)

    private enum State {
        case start
        case sentFirst(username: String, credential: ScramCredential?, clientFirstBare: String, serverFirst: String, nonce: String, gs2: String)
        case finished
    }

    /// `lookup` returns the user's credential for this mechanism's digest, or nil.
    /// `nonce` is for test vectors; leave it `nil`.
    public init(digest: SaslDigest, nonce: String? = nil, lookup: @escaping (String) -> ScramCredential?) {
        self.digest = digest
        self.lookup = lookup
        self.serverNonce = nonce ?? Base64.encode(saslRandomBytes(24))
    }

    /// Handles the client's next message. Errors carry a message safe to send to the client.
    public mutating func handle(_ message: [UInt8]) throws(SaslError) -> Step {
        guard let text = String(validating: message, as: UTF8.self) else { throw SaslError("SCRAM message is not UTF-8") }
        switch state {
        case .start:
            return try first(text)
        case .sentFirst(let username, let credential, let bare, let serverFirst, let nonce, let gs2):
            state = .finished
            let attributes = try ScramAttributes(text[...])
            guard let c = attributes["c"], let r = attributes["r"], let p = attributes["p"], let proof = Base64.decode(p),
                  let binding = Base64.decode(c)
            else { throw SaslError("malformed SCRAM client-final message") }
            guard binding == Array(gs2.utf8), r == nonce else { throw SaslError("SCRAM nonce or channel binding mismatch") }
            guard let credential, let end = text.firstRange(of: ",p=") else { throw SaslError("authentication failed") }
            let authMessage = Array("\(bare),\(serverFirst),\(text[..<end.lowerBound])".utf8)
            let clientKey = xor(proof, digest.hmac(key: credential.storedKey, authMessage))
            guard proof.count == digest.byteCount, constantTimeEquals(digest.hash(clientKey), credential.storedKey) else {
                throw SaslError("authentication failed")
            }
            let signature = digest.hmac(key: credential.serverKey, authMessage)
            return .success(username: username, final: Array("v=\(Base64.encode(signature))".utf8))
        case .finished:
            throw SaslError("unexpected SCRAM message after the exchange completed")
        }
    }

    private mutating func first(_ text: String) throws(SaslError) -> Step {
        // gs2-header: "n,," (no channel binding) or "y,," (client could but thinks we can't).
        // Channel binding ("p=") is not offered, so a client asking for it is refused.
        let parts = text.split(separator: ",", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "n" || parts[0] == "y" else {
            throw SaslError("unsupported SCRAM GS2 header (channel binding is not supported)")
        }
        let gs2 = "\(parts[0]),\(parts[1]),"
        let bare = parts[2]
        let attributes = try ScramAttributes(bare)
        guard let n = attributes["n"], let r = attributes["r"], !r.isEmpty else { throw SaslError("malformed SCRAM client-first message") }
        if attributes["m"] != nil { throw SaslError("unsupported SCRAM extension") }
        if attributes["tokenauth"] != nil { throw SaslError("delegation tokens are not supported") }
        let username = try ScramName.unescape(n)
        if !parts[1].isEmpty {
            // An authorization identity other than the user itself would be impersonation.
            guard parts[1] == "a=\(ScramName.escape(username))" else { throw SaslError("authorization identity must be the user") }
        }
        let credential = lookup(username).flatMap { $0.digest == digest ? $0 : nil }
        // An unknown user gets a plausible challenge and fails at the proof, so that the
        // answer does not reveal which user names exist.
        let salt = credential?.salt ?? digest.hmac(key: Self.decoySaltKey, Array(username.utf8))
        let iterations = credential?.iterations ?? 8192
        let nonce = "\(r)\(serverNonce)"
        let serverFirst = "r=\(nonce),s=\(Base64.encode(salt)),i=\(iterations)"
        state = .sentFirst(username: username, credential: credential, clientFirstBare: String(bare), serverFirst: serverFirst, nonce: nonce, gs2: gs2)
        return .challenge(Array(serverFirst.utf8))
    }
}
