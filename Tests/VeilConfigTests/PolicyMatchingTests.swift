import Testing

@testable import VeilConfig

@Suite struct PolicyMatchingTests {
    static let yaml = """
        identity: app
        upstream: broker:9092
        topics:
          - match: orders
            on_denied: drop
          - match: { prefix: "orders" }
            on_denied: redact
          - match: { regex: "audit-[0-9]+" }
            on_denied: ciphertext
          - match: { exact: "audit-7" }
            on_denied: error
          - match: { regex: ".*" }
            on_denied: error
            require_encrypted: false
        """

    @Test func firstMatchWins() throws {
        let config = try VeilConfiguration.parse(yaml: Self.yaml)
        #expect(config.policy(forTopic: "orders")?.onDenied == .drop)  // exact beats the later prefix
        #expect(config.policy(forTopic: "orders-eu")?.onDenied == .redact)
        #expect(config.policy(forTopic: "audit-7")?.onDenied == .ciphertext)  // regex listed before exact
        #expect(config.policy(forTopic: "other")?.requireEncrypted == false)  // catch-all
    }

    @Test func regexMustMatchTheWholeName() throws {
        let config = try VeilConfiguration.parse(yaml: Self.yaml)
        // "xaudit-1" and "audit-1x" contain a match but are not one, so they fall to the catch-all.
        #expect(config.policy(forTopic: "xaudit-1")?.requireEncrypted == false)
        #expect(config.policy(forTopic: "audit-1x")?.requireEncrypted == false)
        #expect(config.policy(forTopic: "audit-123")?.onDenied == .ciphertext)
    }

    @Test func unmatchedTopicsHaveNoPolicyAndResultsAreStableWhenCached() throws {
        let config = try VeilConfiguration.parse(
            yaml: "identity: a\nupstream: b:1\ntopics:\n  - match: { prefix: dept- }\n  - match: { regex: \"x|y\" }")
        for _ in 0..<3 {
            #expect(config.policy(forTopic: "dept-a")?.match.description == "prefix dept-")
            #expect(config.policy(forTopic: "dept") == nil)
            #expect(config.policy(forTopic: "y")?.match.description == "regex x|y")
            #expect(config.policy(forTopic: "xy") == nil)
        }
    }

    @Test func cacheEvictionKeepsAnswersCorrect() {
        let cache = TopicPolicyCache(capacity: 4)
        var computed = 0
        for round in 0..<3 {
            for i in 0..<10 {
                let index = cache.index(forTopic: "t\(i)") { _ in
                    computed += 1
                    return i
                }
                #expect(index == i, "round \(round)")
            }
        }
        // Capacity 4 cannot hold 10 names, so some lookups were recomputed; none were wrong.
        #expect(computed > 10)
        let hits = TopicPolicyCache(capacity: 4)
        var calls = 0
        for _ in 0..<5 { _ = hits.index(forTopic: "same") { _ in calls += 1; return 0 } }
        #expect(calls == 1)
    }

    @Test func concurrentLookupsAgree() async throws {
        let config = try VeilConfiguration.parse(yaml: Self.yaml)
        await withTaskGroup(of: Bool.self) { group in
            for task in 0..<8 {
                group.addTask {
                    (0..<500).allSatisfy { i in
                        let topic = ["orders", "orders-\(i % 7)", "audit-\(task)", "zz\(i)"][i % 4]
                        let expected: DeniedAction = [.drop, .redact, .ciphertext, .error][i % 4]
                        return config.policy(forTopic: topic)?.onDenied == expected
                    }
                }
            }
            for await agreed in group { #expect(agreed) }
        }
    }
}
