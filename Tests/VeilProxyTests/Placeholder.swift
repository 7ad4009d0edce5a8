import Testing

@Test func placeholderVeilProxyTests() {}
