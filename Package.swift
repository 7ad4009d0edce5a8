// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

/// Modules every record passes through. Release builds skip Swift's run-time exclusivity
/// checks in them: each ByteBuffer access that touches its storage object (inlined into these
/// modules from NIOCore) otherwise costs a check through a thread-local access set, ~12% of the
/// instructions of decrypting a Fetch response (callgrind, issue 5). The compile-time checks
/// stay, and debug builds (`swift test`) and the fuzz builds (scripts/fuzz) keep the run-time ones.
let hotPath: [SwiftSetting] = strict + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "veil",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "veil", targets: ["veil"]),
        .library(name: "VeilWire", targets: ["VeilWire"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // C libraries from Debian (zlib1g-dev, libsnappy-dev, liblz4-dev, libzstd-dev, libssl-dev).
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CSnappy", providers: [.apt(["libsnappy-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .target(name: "CVeilCRC32C", cSettings: [.unsafeFlags(["-O3"])]),

        .target(
            name: "VeilCompression",
            dependencies: ["CZlib", "CSnappy", "CLZ4", "CZstd", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: hotPath),
        .target(
            name: "VeilWire",
            dependencies: ["CVeilCRC32C", "VeilCompression", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: hotPath),
        .target(
            name: "VeilJSON",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: hotPath),
        .target(
            name: "VeilKMS",
            dependencies: [
                "COpenSSL", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: strict),
        .target(
            name: "VeilAWSKMS",
            dependencies: [
                "COpenSSL", "VeilKMS",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .target(
            name: "VeilEnvelope",
            dependencies: [
                "COpenSSL", "VeilKMS", "VeilWire", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: hotPath),
        .target(name: "VeilSASL", dependencies: ["COpenSSL"], swiftSettings: strict),
        .target(
            name: "VeilConfig",
            dependencies: ["Yams", "VeilKMS", "VeilSASL", "VeilJSON"],
            swiftSettings: strict),
        .target(
            name: "VeilProxy",
            dependencies: [
                "VeilWire", "VeilEnvelope", "VeilConfig", "VeilKMS", "VeilSASL", "VeilJSON",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: hotPath),
        // The admin HTTP endpoint: /metrics (Prometheus text), /healthz, /readyz.
        .target(
            name: "VeilAdmin",
            dependencies: [
                "VeilConfig",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .target(
            name: "VeilDemo",
            dependencies: [
                "VeilProxy", "VeilConfig", "VeilKMS", "VeilWire", "VeilAWSKMS",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .target(
            name: "VeilGovernance",
            dependencies: ["COpenSSL", "Yams", "VeilConfig", "VeilKMS", "VeilJSON"],
            swiftSettings: strict),
        .executableTarget(
            name: "veil",
            dependencies: [
                "VeilProxy", "VeilGovernance", "VeilDemo", "VeilAWSKMS", "VeilSASL", "VeilAdmin", "VeilJSON",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"), "VeilConfig", "VeilKMS", "VeilEnvelope",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict),
        // Microbenchmark of the Produce path (decode and re-encode a 1 MiB request per codec):
        // swift run -c release veil-wire-bench
        .executableTarget(
            name: "veil-wire-bench",
            dependencies: ["VeilWire", "VeilCompression", .product(name: "NIOCore", package: "swift-nio")],
            path: "Benchmarks/WireBench",
            exclude: ["README.md"],
            swiftSettings: strict),

        // Timing shared by the microbenchmarks (thread CPU time, best of five rounds).
        .target(name: "VeilBenchSupport", path: "Benchmarks/BenchSupport", swiftSettings: strict),

        // Envelope sealing and opening of whole values, GB/s per core next to openssl speed:
        // swift run -c release veil-crypto-bench
        .executableTarget(
            name: "veil-crypto-bench",
            dependencies: ["VeilEnvelope", "VeilKMS", "VeilBenchSupport", .product(name: "NIOCore", package: "swift-nio")],
            path: "Benchmarks/CryptoBench",
            swiftSettings: strict),

        // Per-record cost of field-level vs whole-value encryption through the record filters:
        // swift run -c release veil-field-bench
        .executableTarget(
            name: "veil-field-bench",
            dependencies: [
                "VeilProxy", "VeilConfig", "VeilKMS", "VeilWire", "VeilBenchSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/FieldBench",
            swiftSettings: strict),

        // Helpers shared by the test targets (a seeded generator), so each does not keep its own copy.
        .target(name: "VeilTestSupport", path: "Tests/VeilTestSupport", swiftSettings: strict),
        .testTarget(
            name: "VeilCompressionTests", dependencies: ["VeilCompression", "VeilTestSupport"],
            resources: [.copy("Fixtures")], swiftSettings: strict),
        .testTarget(
            name: "VeilWireTests", dependencies: ["VeilWire", "VeilTestSupport"],
            resources: [.copy("Fixtures")], swiftSettings: strict),
        .testTarget(name: "VeilKMSTests", dependencies: ["VeilKMS"], swiftSettings: strict),
        .testTarget(
            name: "VeilAWSKMSTests",
            dependencies: [
                "VeilAWSKMS", "VeilKMS", "VeilEnvelope", "VeilDemo",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            resources: [.copy("Fixtures")], swiftSettings: strict),
        .testTarget(
            name: "VeilEnvelopeTests",
            dependencies: ["VeilEnvelope", "VeilKMS", "VeilTestSupport", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict),
        .testTarget(name: "VeilSASLTests", dependencies: ["VeilSASL"], swiftSettings: strict),
        .testTarget(
            name: "VeilProxyTests",
            dependencies: [
                "VeilProxy", "VeilConfig", "VeilEnvelope", "VeilKMS", "VeilJSON", "VeilWire", "VeilTestSupport",
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strict),
        .testTarget(name: "VeilJSONTests", dependencies: ["VeilJSON", "VeilTestSupport"], swiftSettings: strict),
        .testTarget(name: "VeilConfigTests", dependencies: ["VeilConfig"], swiftSettings: strict),
        .testTarget(
            name: "VeilGovernanceTests", dependencies: ["VeilGovernance", "VeilConfig", "VeilKMS", "Yams"],
            swiftSettings: strict),
    ]
)
