import Testing

@Test func placeholderVeilCompressionTests() {}
