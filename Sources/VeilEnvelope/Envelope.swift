/// Constants of the encrypted-record format (version 1). The layout is
/// documented byte for byte in docs/FORMAT.md:
///
/// ```
/// magic C1 56 45 4C | version 01 | flags | u8 K | kms (K) | u16 I | key id (I)
///   | u16 W | wrapped DEK (W) | nonce (12) | ciphertext (n) | tag (16)
/// ```
/// Everything before the ciphertext is the header; the AAD is the header,
/// then the field path and, when flag bit 0 is set, the topic.
public enum Envelope {
    /// First four bytes of every envelope. 0xC1 never occurs in UTF-8, so no
    /// JSON or text value starts this way, and it is not the 0x00 of the
    /// Confluent schema-registry framing either.
    public static let magic: [UInt8] = [0xC1, 0x56, 0x45, 0x4C]
    /// The format version this build writes and reads.
    public static let version: UInt8 = 1
    /// The field path that means "the whole record value".
    public static let wholeValue = ""
    /// AES-GCM nonce length.
    public static let nonceByteCount = 12
    /// AES-GCM tag length.
    public static let tagByteCount = 16
    /// Upper bound on the wrapped DEK an envelope may carry (AWS KMS blobs are ~200 bytes).
    public static let maximumWrappedKeyLength = 4096
    /// Upper bound on the field path and topic lengths, which the AAD encodes as u16.
    public static let maximumAADStringLength = Int(UInt16.max)

    /// ``magic`` as a big-endian integer, for single stores and compares.
    static let magicValue: UInt32 = 0xC156_454C
    /// Flag bit: the AAD includes the topic name.
    static let topicBoundFlag: UInt8 = 0x01
    static let knownFlags: UInt8 = topicBoundFlag
    /// Offset of the u8 KMS-name length, where the key section starts.
    static let keySectionOffset = 6
}
