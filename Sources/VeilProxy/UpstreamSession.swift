import Glibc
import NIOCore
import NIOSSL
import NIOTLS
import VeilConfig
import VeilSASL
import VeilWire

/// Why an upstream connection could not be set up. Never carries secrets.
struct UpstreamSetupError: Error, CustomStringConvertible {
    enum Kind {
        /// The broker's certificate was refused, or the broker refused ours.
        case tls
        /// The broker refused Veil's credentials, or the exchange failed.
        case authentication
        /// The connection closed or timed out before it was ready.
        case interrupted
    }

    let kind: Kind
    let description: String

    /// Failures that will recur on retry until someone fixes a credential or certificate.
    var holdsOffRetries: Bool { kind != .interrupted }
}

/// Describes TLS failures in the terms an operator fixes them by: expired, wrong host,
/// unknown CA, client certificate required.
enum TLSDiagnosis {
    static func describe(_ error: Error, broker: HostPort, tls: UpstreamTLSContext, peer: NIOSSLCertificate?) -> String {
        let text = "\(error)"
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return "TLS to broker \(broker) refused: wrong host: its certificate is not valid for '\(broker.host)'"
                + " (names: \(peer.map(names) ?? "unknown"); set upstream.tls.verify_hostname: false only if you must)"
        }
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            if let peer {
                let now = time(nil)
                if peer.notValidAfter < now {
                    return "TLS to broker \(broker) refused: its certificate expired (not valid after \(utc(peer.notValidAfter)))"
                }
                if peer.notValidBefore > now {
                    return "TLS to broker \(broker) refused: its certificate is not valid yet (not before \(utc(peer.notValidBefore)))"
                }
                return "TLS to broker \(broker) refused: unknown CA: its certificate (issuer \(name(peer.issuerName)))"
                    + " does not chain to \(tls.trustDescription)"
            }
            return "TLS to broker \(broker) refused: its certificate does not verify against \(tls.trustDescription)"
                + " (unknown CA, expired, or not yet valid)"
        }
        if text.contains("CERTIFICATE_REQUIRED") || (text.contains("HANDSHAKE_FAILURE") && tls.settings.certFile == nil) {
            return "TLS to broker \(broker) refused by the broker: it requires a client certificate"
                + " (set upstream.tls.cert_file and key_file) [\(text)]"
        }
        if text.contains("ALERT_BAD_CERTIFICATE") || text.contains("ALERT_UNKNOWN_CA") || text.contains("CERTIFICATE_UNKNOWN") {
            return "TLS to broker \(broker) refused by the broker: it does not accept Veil's client certificate"
                + " \(tls.settings.certFile ?? "") [\(text)]"
        }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("PACKET_LENGTH_TOO_LONG") {
            return "TLS to broker \(broker) failed: the broker does not speak TLS on this port [\(text)]"
        }
        return "TLS to broker \(broker) failed: \(text)"
    }

    static func name(_ parts: [SSLCertificateName]) -> String {
        let labels: [(SSLCertificateNameType, String)] = [(.commonName, "CN"), (.organizationalUnit, "OU"), (.organization, "O")]
        let shown = parts.compactMap { part in labels.first { $0.0 == part.type }.map { "\($0.1)=\(part.value)" } }
        return shown.isEmpty ? "unnamed" : shown.joined(separator: ",")
    }

    static func names(_ cert: NIOSSLCertificate) -> String {
        var out: [String] = []
        for san in cert._subjectAlternativeNames() {
            switch san.nameType {
            case .dnsName: out.append(String(decoding: san.contents, as: UTF8.self))
            case .ipAddress: out.append(san.contents.count == 4 ? san.contents.map(String.init).joined(separator: ".") : "IPv6 address")
            default: continue
            }
        }
        return out.isEmpty ? name(cert.subjectName) : out.joined(separator: ", ")
    }

    static func utc(_ t: time_t) -> String {
        var value = t
        var parts = tm()
        gmtime_r(&value, &parts)
        func pad(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(parts.tm_year + 1900)-\(pad(parts.tm_mon + 1))-\(pad(parts.tm_mday)) \(pad(parts.tm_hour)):\(pad(parts.tm_min)) UTC"
    }
}

/// Readies one upstream connection: waits for the TLS handshake, then authenticates with
/// SASL, then removes itself. Until it completes `ready`, no client request goes upstream.
final class UpstreamSessionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case waitingForTLS
        case handshake(correlationId: Int32)
        case authenticating(correlationId: Int32)
        case done
    }

    let broker: HostPort
    let tls: UpstreamTLSContext?
    let mechanism: SaslMechanismName?
    private var exchange: (any SaslClientExchange)?
    let ready: EventLoopPromise<Void>
    let timeout: TimeAmount
    private var state = State.waitingForTLS
    private var timer: Scheduled<Void>?
    private var nextCorrelationId: Int32 = 1
    /// SaslAuthenticate v1: flexible versions (v2) add nothing Veil needs, and MSK and Kafka
    /// have supported v1 since Kafka 2.2.
    static let authenticateVersion: Int16 = 1

    init(broker: HostPort, tls: UpstreamTLSContext?, mechanism: SaslMechanismName?, exchange: (any SaslClientExchange)?,
         ready: EventLoopPromise<Void>, timeout: TimeAmount) {
        self.broker = broker
        self.tls = tls
        self.mechanism = mechanism
        self.exchange = exchange
        self.ready = ready
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // A channel closed before it was ever active fires no channelInactive; the promise
        // must still be completed.
        if case .done = state { return }
        state = .done
        timer?.cancel()
        ready.fail(UpstreamSetupError(kind: .interrupted, description: "connection to broker \(broker) closed before it was ready"))
    }

    func channelActive(context: ChannelHandlerContext) {
        // Fire first: start may complete set-up and remove this handler.
        context.fireChannelActive()
        start(context: context)
    }

    private func start(context: ChannelHandlerContext) {
        guard timer == nil else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = loopBound.value
            handler.finish(context: context, .failure(UpstreamSetupError(
                kind: .interrupted, description: "broker \(handler.broker) did not complete \(handler.stage) within \(handler.timeout.nanoseconds / 1_000_000_000) s")))
        }
        if tls == nil { tlsReady(context: context) }
    }

    private var stage: String {
        switch state {
        case .waitingForTLS: "the TLS handshake"
        case .handshake, .authenticating: "SASL \(mechanism?.rawValue ?? "") authentication"
        case .done: "set-up"
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .waitingForTLS = state, let tlsEvent = event as? TLSUserEvent, case .handshakeCompleted = tlsEvent {
            tlsReady(context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func tlsReady(context: ChannelHandlerContext) {
        guard let mechanism else {
            finish(context: context, .success(()))
            return
        }
        let id = nextId()
        state = .handshake(correlationId: id)
        send(SaslHandshakeRequest(mechanism: mechanism.rawValue), version: 1, correlationId: id, context: context)
    }

    private func nextId() -> Int32 {
        defer { nextCorrelationId += 1 }
        return nextCorrelationId
    }

    private func send<M: KafkaMessage>(_ message: M, version: Int16, correlationId: Int32, context: ChannelHandlerContext) {
        var payload = ByteBuffer()
        RequestHeader(apiKey: M.apiKey, apiVersion: version, correlationId: correlationId, clientId: "veil").write(to: &payload)
        message.encode(version: version, into: &payload)
        context.channel.writeFrame(payload)
        context.flush()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var frame = unwrapInboundIn(data)
        do {
            switch state {
            case .handshake(let id):
                let header = try ResponseHeader.read(from: &frame, headerVersion: ApiKey.saslHandshake.responseHeaderVersion(1))
                guard header.correlationId == id else { throw SaslError("SaslHandshake answered with the wrong correlation id") }
                let response = try SaslHandshakeResponse(decoding: frame, version: 1)
                guard response.errorCode == 0 else {
                    throw SaslError("broker does not accept \(mechanism!) (error \(response.errorCode); it offers \(response.mechanisms.joined(separator: ", ")))")
                }
                guard var exchange else { throw SaslError("no SASL exchange") }
                let first = try exchange.initialResponse()
                self.exchange = exchange
                authenticate(first, context: context)
            case .authenticating(let id):
                let v = Self.authenticateVersion
                let header = try ResponseHeader.read(from: &frame, headerVersion: ApiKey.saslAuthenticate.responseHeaderVersion(v))
                guard header.correlationId == id else { throw SaslError("SaslAuthenticate answered with the wrong correlation id") }
                var response = try SaslAuthenticateResponse(decoding: frame, version: v)
                guard response.errorCode == 0 else {
                    throw SaslError("broker refused the credentials (error \(response.errorCode)\(response.errorMessage.map { ": \($0)" } ?? ""))")
                }
                guard var exchange else { throw SaslError("no SASL exchange") }
                let next = try exchange.respond(to: response.authBytes.readBytes(length: response.authBytes.readableBytes) ?? [])
                self.exchange = exchange
                if let next {
                    authenticate(next, context: context)
                } else {
                    finish(context: context, .success(()))
                }
            case .waitingForTLS, .done:
                // Nothing is sent before set-up completes, so the broker has nothing to answer.
                throw SaslError("broker sent data before Veil asked for anything")
            }
        } catch let error as SaslError {
            finish(context: context, .failure(UpstreamSetupError(
                kind: .authentication, description: "SASL \(mechanism?.rawValue ?? "") authentication to broker \(broker) failed: \(error)")))
        } catch {
            finish(context: context, .failure(UpstreamSetupError(
                kind: .authentication, description: "SASL authentication to broker \(broker) failed: malformed response: \(error)")))
        }
    }

    private func authenticate(_ bytes: [UInt8], context: ChannelHandlerContext) {
        let id = nextId()
        state = .authenticating(correlationId: id)
        send(SaslAuthenticateRequest(authBytes: ByteBuffer(bytes: bytes)), version: Self.authenticateVersion, correlationId: id, context: context)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard case .done = state else {
            let kind: UpstreamSetupError.Kind
            let text: String
            if let tls, case .waitingForTLS = state {
                kind = .tls
                let peer = try? context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self).peerCertificate
                text = TLSDiagnosis.describe(error, broker: broker, tls: tls, peer: peer)
            } else if let tls, "\(error)".contains("ALERT") {
                kind = .tls
                text = TLSDiagnosis.describe(error, broker: broker, tls: tls, peer: nil)
            } else {
                kind = .interrupted
                text = "connection to broker \(broker) failed during \(stage): \(error)"
            }
            finish(context: context, .failure(UpstreamSetupError(kind: kind, description: text)))
            return
        }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .done = state {} else {
            var kind = UpstreamSetupError.Kind.interrupted
            if case .authenticating = state { kind = .authentication }
            finish(context: context, .failure(UpstreamSetupError(
                kind: kind, description: "broker \(broker) closed the connection during \(stage)")))
        }
        context.fireChannelInactive()
    }

    private func finish(context: ChannelHandlerContext, _ result: Result<Void, Error>) {
        if case .done = state { return }
        state = .done
        timer?.cancel()
        exchange = nil
        switch result {
        case .success:
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            ready.succeed(())
        case .failure(let error):
            ready.fail(error)
            context.close(promise: nil)
        }
    }
}
