#if canImport(Glibc)
import Glibc
#endif

/// Process-wide glibc malloc settings for a proxy that allocates and frees buffers of a
/// megabyte or more for every Produce request and Fetch response it rewrites.
///
/// With glibc's defaults, freeing such a buffer hands its pages back to the kernel (the
/// heap is trimmed above 128 KiB free, large blocks are unmapped), and the next request
/// faults fresh zeroed pages in again: profiles of the encryption route showed page faults
/// and `madvise` taking over 40% of the sidecar's CPU. Keeping up to `trimThreshold` of free
/// memory per arena mapped removes that; RSS stays bounded by the working set plus that
/// threshold per malloc arena.
public enum AllocatorTuning {
    /// Free memory at the top of an arena kept mapped rather than returned to the kernel.
    /// A decrypting sidecar holds about three buffers the size of a Fetch response at once
    /// (the frame read, the rewritten records, the encoded response; Tansu answers
    /// librdkafka with ~5.5 MB), so at 16 MiB freeing them trimmed the arena after nearly
    /// every response: 157k minor faults per 300 MB consumed, 5.5k at 64 MiB, with the same
    /// peak RSS (the pages are reused, not added).
    public static let trimThreshold = 64 << 20
    /// Blocks from this size up get their own mapping; glibc's largest allowed value, so
    /// frame-sized buffers come from (and go back to) the arenas.
    public static let mmapThreshold = 32 << 20

    /// Applies the settings; call once at startup, before the event loops allocate.
    public static func keepBuffersMapped() {
        #if canImport(Glibc)
        // <malloc.h> is not part of the Glibc module, so mallopt is looked up by name; a C
        // library without it (musl) is simply left at its defaults.
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
        _ = mallopt(Self.trimThresholdParameter, Int32(trimThreshold))
        _ = mallopt(Self.mmapThresholdParameter, Int32(mmapThreshold))
        #endif
    }

    /// M_TRIM_THRESHOLD and M_MMAP_THRESHOLD from glibc's <malloc.h>.
    static let trimThresholdParameter: Int32 = -1
    static let mmapThresholdParameter: Int32 = -3
}
