import CVeilCRC32C
import NIOCore

/// CRC-32C (Castagnoli), the checksum of record batches (magic 2).
public enum CRC32C {
    /// Whether the SSE4.2 instruction path is in use.
    public static var usesHardware: Bool { veil_crc32c_has_hardware() != 0 }

    public static func checksum(_ bytes: ByteBufferView) -> UInt32 {
        // A ByteBufferView is always contiguous, so there is no copying fallback to take.
        bytes.withUnsafeBytes { veil_crc32c(0, $0.baseAddress, $0.count) }
    }

    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        veil_crc32c(0, bytes.baseAddress, bytes.count)
    }

    /// The portable implementation, for checking the hardware path against it.
    public static func portableChecksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        veil_crc32c_portable(0, bytes.baseAddress, bytes.count)
    }

    /// The hardware implementation; equals the portable one on CPUs without SSE4.2.
    public static func hardwareChecksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        veil_crc32c_has_hardware() != 0 ? veil_crc32c_hardware(0, bytes.baseAddress, bytes.count) : portableChecksum(bytes)
    }
}
