/// A fixed-capacity map that evicts the least recently used entry.
///
/// Entries live in arrays linked by index, so lookups, moves and evictions are
/// O(1) without per-entry allocations. Not thread-safe: callers lock.
struct LRUCache<Key: Hashable, Value> {
    fileprivate struct Node {
        var key: Key
        var value: Value
        var previous: Int
        var next: Int
    }

    let capacity: Int
    private var index: [Key: Int] = [:]
    private var nodes: [Node] = []
    private var head = -1  // most recently used
    private var tail = -1  // least recently used

    init(capacity: Int) {
        precondition(capacity > 0, "LRU capacity must be positive")
        self.capacity = capacity
        index.reserveCapacity(capacity)
    }

    var count: Int { index.count }

    /// Returns the value and marks it most recently used.
    mutating func value(for key: Key) -> Value? {
        entry(for: key)?.value
    }

    /// Returns the stored key (which may differ in identity from `key`) and
    /// value, and marks the entry most recently used.
    mutating func entry(for key: Key) -> (key: Key, value: Value)? {
        guard let slot = index[key] else { return nil }
        moveToFront(slot)
        return (nodes[slot].key, nodes[slot].value)
    }

    /// Inserts or replaces, evicting the least recently used entry when full.
    mutating func set(_ value: Value, for key: Key) {
        if let slot = index[key] {
            nodes[slot].value = value
            moveToFront(slot)
            return
        }
        let slot: Int
        if nodes.count < capacity {
            slot = nodes.count
            nodes.append(Node(key: key, value: value, previous: -1, next: -1))
        } else {
            // Reuse the tail's slot for the new entry.
            slot = tail
            unlink(slot)
            index[nodes[slot].key] = nil
            nodes[slot] = Node(key: key, value: value, previous: -1, next: -1)
        }
        index[key] = slot
        linkAtFront(slot)
    }

    private mutating func moveToFront(_ slot: Int) {
        guard slot != head else { return }
        unlink(slot)
        linkAtFront(slot)
    }

    private mutating func unlink(_ slot: Int) {
        let previous = nodes[slot].previous
        let next = nodes[slot].next
        if previous >= 0 { nodes[previous].next = next } else { head = next }
        if next >= 0 { nodes[next].previous = previous } else { tail = previous }
        nodes[slot].previous = -1
        nodes[slot].next = -1
    }

    private mutating func linkAtFront(_ slot: Int) {
        nodes[slot].previous = -1
        nodes[slot].next = head
        if head >= 0 { nodes[head].previous = slot }
        head = slot
        if tail < 0 { tail = slot }
    }
}

extension LRUCache: Sendable where Key: Sendable, Value: Sendable {}
extension LRUCache.Node: Sendable where Key: Sendable, Value: Sendable {}
