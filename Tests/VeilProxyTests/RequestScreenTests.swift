import Testing
@testable import VeilProxy
import VeilWire

/// Requests Veil cannot parse are refused before their header is read, with a reason that
/// names the key and version (found by tests/interop/test_malformed.py: unknown key 999 was
/// logged as a truncated tagged field, and Fetch v-1 went to the broker).
@Suite struct RequestScreenTests {
    @Test func unknownKeysAreRefusedByNumber() {
        #expect(RequestScreen.refusal(apiKey: ApiKey(rawValue: 999), version: 0) == WireError(.unknownApiKey(999)))
        #expect(RequestScreen.refusal(apiKey: ApiKey(rawValue: -2), version: 0) == WireError(.unknownApiKey(-2)))
    }

    @Test func versionsOutsideWhatVeilDecodesAreRefused() {
        #expect(RequestScreen.refusal(apiKey: .metadata, version: 99) == WireError(.unsupportedVersion(apiKey: 3, version: 99)))
        #expect(RequestScreen.refusal(apiKey: .produce, version: 99) == WireError(.unsupportedVersion(apiKey: 0, version: 99)))
        #expect(RequestScreen.refusal(apiKey: .fetch, version: -1) == WireError(.unsupportedVersion(apiKey: 1, version: -1)))
        // A negative version of an API Veil forwards opaquely is refused too.
        #expect(RequestScreen.refusal(apiKey: ApiKey(rawValue: 8), version: -1) == WireError(.unsupportedVersion(apiKey: 8, version: -1)))
    }

    @Test func whatVeilCanParsePasses() {
        for (key, range) in ApiVersionsPolicy.decoded {
            #expect(RequestScreen.refusal(apiKey: key, version: range.lowerBound) == nil)
            #expect(RequestScreen.refusal(apiKey: key, version: range.upperBound) == nil)
        }
        // Opaque APIs keep whatever version the broker offers; ApiVersions is answered with error 35 instead.
        #expect(RequestScreen.refusal(apiKey: ApiKey(rawValue: 8), version: 9) == nil)
        #expect(RequestScreen.refusal(apiKey: .apiVersions, version: 99) == nil)
    }
}
