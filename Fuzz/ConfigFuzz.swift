// libFuzzer target for configuration parsing (VeilConfig): YAML text to a validated
// VeilConfiguration, and the small parsers it uses (JSON paths, host:port, key references).
//
// Built by scripts/fuzz (target `config`), compiled into one module with VeilConfig's sources.
//
// The input is the configuration file's text. Invariants: parsing either succeeds or throws
// a ConfigurationError (typed throws), never traps or hangs; a configuration that parses names
// an identity and at least one upstream broker.

import VeilJSON
import VeilKMS

@_cdecl("LLVMFuzzerTestOneInput")
public func veilConfigFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let config = try? VeilConfiguration.parse(yaml: text) {
        precondition(!config.identity.isEmpty, "a configuration without an identity parsed")
        precondition(!config.upstream.bootstrap.isEmpty, "a configuration without upstream brokers parsed")
    }
    // The same text as the small values the configuration holds.
    _ = try? JSONPath(parsing: text)
    _ = try? HostPort(parsing: text)
    _ = KeyReference(text)
    return 0
}
