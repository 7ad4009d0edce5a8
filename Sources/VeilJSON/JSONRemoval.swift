/// Computes what to cut from a document so that some members or elements disappear and the
/// rest stays valid JSON, byte for byte as it was.
///
/// Per container: a run of removed siblings at the start is cut from the first one's start to
/// the next kept sibling's start (taking their trailing commas); any other removed sibling is
/// cut from the end of the value before it to the end of its own value (taking its leading
/// comma). The cuts never overlap, and whitespace around kept siblings is untouched.
public enum JSONRemoval {
    /// The ranges to delete, ascending, for removing `hits[i]` for each i in `removed`
    /// (ascending indices into `hits`, which is in document order).
    public static func ranges(hits: [EncryptedFieldHits.Hit], removed: [Int]) -> [Range<Int>] {
        var groups: [Int: [EncryptedFieldHits.Hit]] = [:]
        for i in removed { groups[hits[i].container, default: []].append(hits[i]) }
        var cuts: [Range<Int>] = []
        cuts.reserveCapacity(removed.count)
        for (_, group) in groups {
            var run = 0
            while run < group.count, group[run].index == run { run += 1 }
            if run > 0 {
                let first = group[0]
                let last = group[run - 1]
                cuts.append(first.memberStart..<(last.nextMemberStart >= 0 ? last.nextMemberStart : last.value.upperBound))
            }
            for hit in group[run...] {
                cuts.append(hit.previousValueEnd..<hit.value.upperBound)
            }
        }
        cuts.sort { $0.lowerBound < $1.lowerBound }
        return cuts
    }
}
