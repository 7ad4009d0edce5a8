import Foundation
import NIOCore
import Testing
import VeilEnvelope
import VeilKMS

import VeilDemo

@testable import VeilAWSKMS

/// The envelope layer on top of AWS KMS (moto): one KMS call per data key, not per record;
/// during an outage cached keys keep sealing and opening while a new data key fails closed;
/// after it, new keys come again.
@Suite(.serialized) struct EnvelopeOverAWSKMSTests {
    static let records = 100_000

    @Test func kmsCallsPerHundredThousandRecordsAndOutage() async throws {
        let moto = try MotoServer()
        defer { moto.stop() }
        let logs = CapturedLogs()
        let fast = AWSKMS.Configuration(requestTimeout: .seconds(1), maxAttempts: 2, initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(50))
        let financeCredentials = try await MotoAdmin.assumeRole(account: "111111111111", role: "finance-veil", endpoint: moto.endpoint)
        let salesCredentials = try await MotoAdmin.assumeRole(account: "222222222222", role: "sales-veil", endpoint: moto.endpoint)
        let financeAWS = try makeKMS(moto, credentials: financeCredentials, logger: logs.logger(), configuration: fast)
        let salesAWS = try makeKMS(moto, credentials: salesCredentials, logger: logs.logger(), configuration: fast)
        // Setup through patient clients: moto's first KMS call is slow on a loaded machine, and
        // only the calls under test should run against the short deadline.
        let financeArn = try await MotoAdmin.createKey(
            try makeKMS(moto, credentials: financeCredentials, logger: logs.logger()), description: "finance", alias: "alias/department-key")
        _ = try await MotoAdmin.createKey(
            try makeKMS(moto, credentials: salesCredentials, logger: logs.logger()), description: "sales", alias: "alias/department-key")
        let finance = KeyReference(kms: "finance", keyId: "alias/department-key")!
        let sales = KeyReference(kms: "sales", keyId: "alias/department-key")!

        // The owner may use both departments' keys; the finance consumer signs with finance's
        // identity for every KMS, so KMS refuses it sales' data keys.
        let producerKMS = CountingKMS(KMSRegistry(["finance": financeAWS, "sales": salesAWS]))
        let consumerKMS = CountingKMS(KMSRegistry(["finance": financeAWS, "sales": financeAWS]))
        let dataKeys = DataKeyCache(kms: producerKMS, failureTTL: .milliseconds(100))
        // The refusal is remembered for the whole run: on a loaded machine the 100,000 records
        // take longer than the default 30 s, and a second Decrypt after that is by design.
        let unwrapped = UnwrappedKeyCache(kms: consumerKMS, deniedTTL: .hours(1), unavailableTTL: .milliseconds(100))

        let payload = Array(#"{"department":"x","data":"quarterly numbers"}"#.utf8)
        var envelopes: [ByteBuffer] = []
        envelopes.reserveCapacity(Self.records)
        for i in 0..<Self.records {
            let key = try await dataKeys.key(for: i % 2 == 0 ? finance : sales)
            envelopes.append(try seal(payload, key: key))
        }
        var opened = 0
        var denied = 0
        for envelope in envelopes {
            switch try await open(envelope, cache: unwrapped) {
            case .success(let plaintext):
                #expect(plaintext == payload)
                opened += 1
            case .failure(let error):
                guard case .kms(let kmsError) = error else { throw error }
                #expect(kmsError.kind == .accessDenied && kmsError.reference == sales)
                denied += 1
            }
        }
        #expect(opened == Self.records / 2 && denied == Self.records / 2)
        // Per 100,000 records: one GenerateDataKey per department and one Decrypt per data key.
        #expect(producerKMS.counts == CountingKMS.Counts(generateDataKey: 2, unwrap: 0))
        #expect(consumerKMS.counts == CountingKMS.Counts(generateDataKey: 0, unwrap: 2))

        // KMS hangs: cached keys keep working; a reference needing a new DEK fails closed.
        moto.pause()
        let cachedKey = try #require(dataKeys.current(for: finance))
        let during = try seal(payload, key: cachedKey)
        #expect(try await open(during, cache: unwrapped).get() == payload)
        let byArn = KeyReference(kms: "finance", keyId: financeArn)!
        do {
            _ = try await dataKeys.key(for: byArn)
            Issue.record("a new data key was produced while KMS was down")
        } catch {
            guard case .kms(let kmsError) = error else { throw error }
            #expect(kmsError.kind == .unavailable)
        }

        // KMS back: the same caches get new data keys again.
        moto.resume()
        try await Task.sleep(for: .milliseconds(150))
        let fresh = try await dataKeys.key(for: byArn)
        #expect(try await open(try seal(payload, key: fresh), cache: unwrapped).get() == payload)
        #expect(producerKMS.counts.generateDataKey == 4)  // two at first, the failed one, the fresh one
    }

    func seal(_ plaintext: [UInt8], key: ActiveDataKey) throws -> ByteBuffer {
        var buffer = ByteBuffer()
        try plaintext.withUnsafeBytes { bytes in
            try EnvelopeEncryptor().seal(plaintext: bytes, key: key, topic: "department-events", fieldPath: Envelope.wholeValue, into: &buffer)
        }
        return buffer
    }

    func open(_ envelope: ByteBuffer, cache: UnwrappedKeyCache) async throws -> Result<[UInt8], EnvelopeError> {
        let header = try #require(try EnvelopeHeader.parse(envelope))
        let key: AESGCMKey
        do {
            key = try await cache.key(for: header.keyID)
        } catch {
            return .failure(error)
        }
        var output = ByteBuffer()
        try EnvelopeDecryptor().open(envelope, header: header, key: key, topic: "department-events", fieldPath: Envelope.wholeValue, into: &output)
        return .success(Array(output.readableBytesView))
    }
}
