/// Why a compression or decompression call failed.
///
/// Every failure of ``Compressor`` is one of these, so callers can tell hostile or damaged input
/// (``Kind/corrupt(reason:)``, ``Kind/outputLimitExceeded(limit:)``) apart from misconfiguration.
public struct CompressionError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The category of failure, with the detail needed for a useful message.
    public enum Kind: Sendable, Hashable {
        /// The compressed bytes are malformed or truncated.
        case corrupt(reason: String)
        /// Decompressing would produce more than `limit` bytes (for example a decompression bomb).
        case outputLimitExceeded(limit: Int)
        /// The batch attributes name a codec Kafka has never defined.
        case unsupportedCodec(raw: UInt8)
        /// The requested compression level is outside the codec's range.
        case invalidLevel(Int, validRange: ClosedRange<Int>)
        /// The native library failed for a reason unrelated to the input (e.g. out of memory).
        case libraryFailure(String)
    }

    /// The codec in use, or `nil` when the codec itself could not be identified.
    public let codec: CompressionCodec?
    /// What went wrong.
    public let kind: Kind

    /// Creates an error for `codec`.
    public init(codec: CompressionCodec?, kind: Kind) {
        self.codec = codec
        self.kind = kind
    }

    public var description: String {
        let prefix = self.codec.map { "\($0): " } ?? ""
        switch self.kind {
        case .corrupt(let reason):
            return "\(prefix)corrupt compressed data: \(reason)"
        case .outputLimitExceeded(let limit):
            return "\(prefix)decompressed data exceeds the limit of \(limit) bytes (possible decompression bomb)"
        case .unsupportedCodec(let raw):
            return "\(prefix)unsupported compression codec \(raw) in record batch attributes (known: 0-4)"
        case .invalidLevel(let level, let range):
            return "\(prefix)compression level \(level) is outside the valid range \(range.lowerBound)...\(range.upperBound)"
        case .libraryFailure(let detail):
            return "\(prefix)native library failure: \(detail)"
        }
    }

    static func corrupt(_ codec: CompressionCodec, _ reason: String) -> CompressionError {
        CompressionError(codec: codec, kind: .corrupt(reason: reason))
    }

    static func library(_ codec: CompressionCodec, _ detail: String) -> CompressionError {
        CompressionError(codec: codec, kind: .libraryFailure(detail))
    }
}
