/// A configuration problem, located by its key path (`topics[0].encrypt.key_from`) and, when
/// known, its line in the YAML file.
public struct ConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The dotted key path of the offending value; empty for problems with the document itself.
    public let path: String
    /// What is wrong, phrased so the fix is obvious.
    public let problem: String
    /// The 1-based line in the YAML text, when the value came from a file.
    public let line: Int?

    /// Creates an error at `path`.
    public init(path: String, problem: String, line: Int? = nil) {
        self.path = path
        self.problem = problem
        self.line = line
    }

    public var description: String {
        let location = self.line.map { " (line \($0))" } ?? ""
        return self.path.isEmpty ? "\(self.problem)\(location)" : "\(self.path): \(self.problem)\(location)"
    }
}
