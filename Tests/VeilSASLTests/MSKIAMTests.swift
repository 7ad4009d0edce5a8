import Testing
import VeilSASL

/// AWS_MSK_IAM cannot be checked against MSK here. This worked example was derived from the
/// mechanism's public description by an independent Python implementation
/// (tests/sasl/msk_iam_reference.py, hashlib/hmac only) and is written out in docs/SECURITY.md.
@Suite struct MSKIAMTests {
    let credentials = SigningCredentials(
        accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        sessionToken: "FwoGZXIvYXdzEXAMPLE/token+with=chars")
    let host = "b-1.demo.abc123.c2.kafka.us-east-1.amazonaws.com"

    @Test func signatureStepsMatchTheWorkedExample() {
        let signer = SigV4QuerySigner(credentials: credentials, region: "us-east-1", service: "kafka-cluster")
        let signed = signer.presign(host: host, query: [("Action", "kafka-cluster:Connect")], epochSeconds: 1_603_324_800, expires: 900)
        #expect(signed.canonicalRequest == """
            GET
            /
            Action=kafka-cluster%3AConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20201022%2Fus-east-1%2Fkafka-cluster%2Faws4_request&X-Amz-Date=20201022T000000Z&X-Amz-Expires=900&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE%2Ftoken%2Bwith%3Dchars&X-Amz-SignedHeaders=host
            host:b-1.demo.abc123.c2.kafka.us-east-1.amazonaws.com

            host
            e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
            """)
        #expect(signed.stringToSign == """
            AWS4-HMAC-SHA256
            20201022T000000Z
            20201022/us-east-1/kafka-cluster/aws4_request
            0ecfc4744e168a411f8e2ee59d3afc11a485b9c237c57c830e6861bc31612265
            """)
        #expect(signed.signature == "22882c556d4298696722a53c1d5cb33fa468091f9c2689a4d3bbe8ba0dec91b5")
    }

    @Test func payloadMatchesTheWorkedExample() throws {
        var client = MSKIAMClient(credentials: credentials, region: "us-east-1", host: host, epochSeconds: 1_603_324_800)
        let payload = String(decoding: try client.initialResponse(), as: UTF8.self)
        #expect(payload == #"{"version":"2020_10_22","host":"b-1.demo.abc123.c2.kafka.us-east-1.amazonaws.com","user-agent":"veil","action":"kafka-cluster:Connect","x-amz-algorithm":"AWS4-HMAC-SHA256","x-amz-credential":"AKIAIOSFODNN7EXAMPLE/20201022/us-east-1/kafka-cluster/aws4_request","x-amz-date":"20201022T000000Z","x-amz-security-token":"FwoGZXIvYXdzEXAMPLE/token+with=chars","x-amz-signedheaders":"host","x-amz-expires":"900","x-amz-signature":"22882c556d4298696722a53c1d5cb33fa468091f9c2689a4d3bbe8ba0dec91b5"}"#)
        #expect(try client.respond(to: Array(#"{"version":"2020_10_22","request-id":"x"}"#.utf8)) == nil)
    }

    @Test func withoutSessionTokenTheTokenIsLeftOut() {
        let client = MSKIAMClient(
            credentials: SigningCredentials(accessKeyId: "AKID", secretAccessKey: "secret"), region: "eu-west-1", host: "b", epochSeconds: 0)
        let payload = client.payload()
        #expect(!payload.contains("security-token"))
        #expect(payload.contains(#""x-amz-date":"19700101T000000Z""#))
    }

    @Test func printedCredentialsHideTheSecrets() {
        for text in ["\(credentials)", String(reflecting: credentials), "\(Mirror(reflecting: credentials).children.map { "\($0.value)" })"] {
            #expect(!text.contains("wJalrXUtnFEMI") && !text.contains("FwoGZXIv"), "\(text)")
        }
    }

    @Test func credentialsFromEnvironment() throws {
        #expect(throws: SaslError.self) { try SigningCredentials.fromEnvironment([:]) }
        let c = try SigningCredentials.fromEnvironment(["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_SESSION_TOKEN": ""])
        #expect(c.sessionToken == nil)
    }
}
