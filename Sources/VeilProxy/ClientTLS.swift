import NIOCore
import NIOSSL
import NIOTLS
import VeilConfig

/// Builds the TLS context for client-facing listeners.
public enum ListenerTLSContext {
    /// With `clientCAFile`, client certificates are verified against it: required when
    /// `requireClientCertificate`, otherwise (gateway mode that also offers SASL) optional.
    public static func make(_ settings: ListenerTLS, requireClientCertificate: Bool) throws(ConfigurationError) -> NIOSSLContext {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(settings.certFile).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: settings.keyFile, format: .pem)
            var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            if let ca = settings.clientCAFile {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
                configuration.certificateVerification = requireClientCertificate ? .noHostnameVerification : .optionalVerification
            }
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw ConfigurationError(path: "listener.tls", problem: "cannot set up TLS from \(settings.certFile), \(settings.keyFile)\(settings.clientCAFile.map { ", \($0)" } ?? ""): \(error)")
        }
    }
}

/// Tells the connection about the client's certificate once the TLS handshake completes,
/// so a gateway can map its subject to an identity.
final class ClientTLSHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    let connection: ProxyConnection

    init(connection: ProxyConnection) { self.connection = connection }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            let peer = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self).peerCertificate
            connection.clientCertificate(peer)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// A certificate subject as `tls_subject` patterns name its attributes.
enum ClientCertificateSubject {
    static let names: [(SSLCertificateNameType, String)] = [
        (.commonName, "CN"), (.organization, "O"), (.organizationalUnit, "OU"), (.country, "C"), (.state, "ST"),
        (.city, "L"), (.emailAddress, "emailAddress"), (.userId, "UID"),
    ]

    static func attributes(of certificate: NIOSSLCertificate) -> [(attribute: String, value: String)] {
        certificate.subjectName.compactMap { part in names.first { $0.0 == part.type }.map { ($0.1, part.value) } }
    }

    static func describe(_ subject: [(attribute: String, value: String)]) -> String {
        subject.isEmpty ? "(empty)" : subject.map { "\($0.attribute)=\($0.value)" }.joined(separator: ",")
    }
}
