import Foundation
import NIOCore
import Testing

@testable import VeilCompression

/// Checks Veil against the codec libraries Kafka clients actually use.
@Suite struct InteropTests {
    static let vectors: [(file: String, codec: CompressionCodec)] = [
        ("payload.gz", .gzip),
        ("payload.multi.gz", .gzip),
        ("payload.xerial.snappy", .snappy),
        ("payload.raw.snappy", .snappy),
        ("payload.kafka.lz4", .lz4),
        ("payload.linked-checksums.lz4", .lz4),
        ("payload.zst", .zstd),
        ("payload.stream.zst", .zstd),
        ("payload.multi.zst", .zstd),
    ]

    @Test(arguments: vectors)
    func decompressesVectorsFromPythonClients(file: String, codec: CompressionCodec) throws {
        let expected = try fixture("payload.txt")
        let compressed = try fixture(file)
        let restored = try Compressor.decompress(buffer(compressed), codec: codec, maxOutputBytes: expected.count)
        #expect(bytes(restored) == expected)
    }

    @Test func fixturesCoverBothSnappyForms() throws {
        #expect(try fixture("payload.xerial.snappy").starts(with: SnappyCodec.xerialMagic))
        #expect(try !fixture("payload.raw.snappy").starts(with: SnappyCodec.xerialMagic))
    }

    @Test func rawSnappyBlockInsideXerialChunkDecodesAlone() throws {
        // librdkafka writes the bare block; for one chunk that is exactly the xerial chunk body.
        let input = compressibleBytes(count: 20_000)
        let framed = bytes(try Compressor.compress(buffer(input), codec: .snappy))
        let raw = Array(framed.dropFirst(20))
        #expect(!raw.starts(with: SnappyCodec.xerialMagic))
        let restored = try Compressor.decompress(buffer(raw), codec: .snappy, maxOutputBytes: input.count)
        #expect(bytes(restored) == input)
    }

    static let pythonDecoders: [CompressionCodec: String] = [
        .gzip: "kafka.codec.gzip_decode(d)",
        .snappy: "kafka.codec.snappy_decode(d)",
        .lz4: "kafka.codec.lz4_decode(d)",
        .zstd: "kafka.codec.zstd_decode(d)",
    ]

    static let pythonAvailable: Bool = {
        (try? runPython("import kafka.codec, snappy, lz4.frame, zstandard", arguments: [])) != nil
    }()

    @Test(.enabled(if: pythonAvailable, "needs python3 with kafka-python, python-snappy, lz4, zstandard"),
        arguments: realCodecs)
    func kafkaPythonReadsWhatVeilWrites(codec: CompressionCodec) throws {
        let input = try fixture("payload.txt") + randomBytes(count: 40_000, seed: 3)
        let compressed = try Compressor.compress(buffer(input), codec: codec)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("veil-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = directory.appendingPathComponent("in")
        let target = directory.appendingPathComponent("out")
        try Data(bytes(compressed)).write(to: source)
        let script = """
            import sys, kafka.codec
            d = open(sys.argv[1], 'rb').read()
            open(sys.argv[2], 'wb').write(\(Self.pythonDecoders[codec]!))
            """
        try runPython(script, arguments: [source.path, target.path])
        #expect([UInt8](try Data(contentsOf: target)) == input)
    }
}

@discardableResult
private func runPython(_ script: String, arguments: [String]) throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", script] + arguments
    let errors = Pipe()
    process.standardError = errors
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        throw PythonFailure(message: message)
    }
    return process.terminationStatus
}

private struct PythonFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { "python3 failed: \(message)" }
}
