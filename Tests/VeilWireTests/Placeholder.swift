import Testing

@Test func placeholderVeilWireTests() {}
