import Synchronization

/// Remembers which policy (by index) each topic name resolved to, so regexes run once per topic.
///
/// Topic names come from clients, and a client can name arbitrarily many topics, so the cache is
/// cleared when it fills rather than growing without bound.
final class TopicPolicyCache: Sendable {
    /// Index into the policy list, or `noPolicy`.
    private let indices = Mutex<[String: Int]>([:])
    private let capacity: Int

    static let noPolicy = -1

    init(capacity: Int = 4096) {
        self.capacity = capacity
    }

    func index(forTopic topic: String, compute: (String) -> Int) -> Int {
        if let cached = self.indices.withLock({ $0[topic] }) { return cached }
        // Matching runs outside the lock; two threads may both compute, with the same answer.
        let index = compute(topic)
        self.indices.withLock { indices in
            if indices.count >= self.capacity { indices.removeAll(keepingCapacity: true) }
            indices[topic] = index
        }
        return index
    }
}
