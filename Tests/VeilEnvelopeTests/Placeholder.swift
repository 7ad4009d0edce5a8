import Testing

@Test func placeholderVeilEnvelopeTests() {}
