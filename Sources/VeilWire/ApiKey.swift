/// A Kafka API key, with the one table that says from which version each API is
/// flexible (KIP-482). Header versions are derived from it, never special-cased.
public struct ApiKey: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }

    public static let produce = ApiKey(rawValue: 0)
    public static let fetch = ApiKey(rawValue: 1)
    public static let listOffsets = ApiKey(rawValue: 2)
    public static let metadata = ApiKey(rawValue: 3)
    public static let controlledShutdown = ApiKey(rawValue: 7)
    public static let findCoordinator = ApiKey(rawValue: 10)
    public static let saslHandshake = ApiKey(rawValue: 17)
    public static let apiVersions = ApiKey(rawValue: 18)
    public static let saslAuthenticate = ApiKey(rawValue: 36)
    public static let describeCluster = ApiKey(rawValue: 60)

    /// Name and first flexible version per API key (nil = never flexible), as in
    /// Apache Kafka 4.1's message definitions.
    static let table: [Int16: (name: String, flexibleFrom: Int16?)] = [
        0: ("Produce", 9), 1: ("Fetch", 12), 2: ("ListOffsets", 6), 3: ("Metadata", 9),
        4: ("LeaderAndIsr", 4), 5: ("StopReplica", 2), 6: ("UpdateMetadata", 6),
        7: ("ControlledShutdown", 3), 8: ("OffsetCommit", 8), 9: ("OffsetFetch", 6),
        10: ("FindCoordinator", 3), 11: ("JoinGroup", 6), 12: ("Heartbeat", 4), 13: ("LeaveGroup", 4),
        14: ("SyncGroup", 4), 15: ("DescribeGroups", 5), 16: ("ListGroups", 3), 17: ("SaslHandshake", nil),
        18: ("ApiVersions", 3), 19: ("CreateTopics", 5), 20: ("DeleteTopics", 4), 21: ("DeleteRecords", 2),
        22: ("InitProducerId", 2), 23: ("OffsetForLeaderEpoch", 4), 24: ("AddPartitionsToTxn", 3),
        25: ("AddOffsetsToTxn", 3), 26: ("EndTxn", 3), 27: ("WriteTxnMarkers", 1), 28: ("TxnOffsetCommit", 3),
        29: ("DescribeAcls", 2), 30: ("CreateAcls", 2), 31: ("DeleteAcls", 2), 32: ("DescribeConfigs", 4),
        33: ("AlterConfigs", 2), 34: ("AlterReplicaLogDirs", 2), 35: ("DescribeLogDirs", 2),
        36: ("SaslAuthenticate", 2), 37: ("CreatePartitions", 2), 38: ("CreateDelegationToken", 2),
        39: ("RenewDelegationToken", 2), 40: ("ExpireDelegationToken", 2), 41: ("DescribeDelegationToken", 2),
        42: ("DeleteGroups", 2), 43: ("ElectLeaders", 2), 44: ("IncrementalAlterConfigs", 1),
        45: ("AlterPartitionReassignments", 0), 46: ("ListPartitionReassignments", 0), 47: ("OffsetDelete", nil),
        48: ("DescribeClientQuotas", 1), 49: ("AlterClientQuotas", 1), 50: ("DescribeUserScramCredentials", 0),
        51: ("AlterUserScramCredentials", 0), 52: ("Vote", 0), 53: ("BeginQuorumEpoch", 1),
        54: ("EndQuorumEpoch", 1), 55: ("DescribeQuorum", 0), 56: ("AlterPartition", 0), 57: ("UpdateFeatures", 0),
        58: ("Envelope", 0), 59: ("FetchSnapshot", 0), 60: ("DescribeCluster", 0), 61: ("DescribeProducers", 0),
        62: ("BrokerRegistration", 0), 63: ("BrokerHeartbeat", 0), 64: ("UnregisterBroker", 0),
        65: ("DescribeTransactions", 0), 66: ("ListTransactions", 0), 67: ("AllocateProducerIds", 0),
        68: ("ConsumerGroupHeartbeat", 0), 69: ("ConsumerGroupDescribe", 0), 70: ("ControllerRegistration", 0),
        71: ("GetTelemetrySubscriptions", 0), 72: ("PushTelemetry", 0), 73: ("AssignReplicasToDirs", 0),
        74: ("ListConfigResources", 0), 75: ("DescribeTopicPartitions", 0), 76: ("ShareGroupHeartbeat", 0),
        77: ("ShareGroupDescribe", 0), 78: ("ShareFetch", 0), 79: ("ShareAcknowledge", 0), 80: ("AddRaftVoter", 0),
        81: ("RemoveRaftVoter", 0), 82: ("UpdateRaftVoter", 0), 83: ("InitializeShareGroupState", 0),
        84: ("ReadShareGroupState", 0), 85: ("WriteShareGroupState", 0), 86: ("DeleteShareGroupState", 0),
        87: ("ReadShareGroupStateSummary", 0), 88: ("StreamsGroupHeartbeat", 0), 89: ("StreamsGroupDescribe", 0),
        90: ("DescribeShareGroupOffsets", 0), 91: ("AlterShareGroupOffsets", 0), 92: ("DeleteShareGroupOffsets", 0),
    ]

    public var isKnown: Bool { Self.table[rawValue] != nil }

    public var name: String { Self.table[rawValue]?.name ?? "ApiKey(\(rawValue))" }

    public var description: String { name }

    /// Whether `version` of this API uses the flexible (compact, tagged) encoding.
    /// APIs newer than this table are assumed flexible, as every API added since KIP-482 is.
    public func isFlexible(_ version: Int16) -> Bool {
        guard let entry = Self.table[rawValue] else { return true }
        guard let from = entry.flexibleFrom else { return false }
        return version >= from
    }

    /// The request header version for `version` of this API.
    public func requestHeaderVersion(_ version: Int16) -> Int16 {
        // ControlledShutdown v0 predates the client id field and uses header v0.
        if self == .controlledShutdown && version == 0 { return 0 }
        return isFlexible(version) ? 2 : 1
    }

    /// The response header version for `version` of this API.
    public func responseHeaderVersion(_ version: Int16) -> Int16 {
        // ApiVersions responses always use header v0 so a client can read the answer
        // before it knows which versions the broker supports.
        if self == .apiVersions { return 0 }
        return isFlexible(version) ? 1 : 0
    }
}
