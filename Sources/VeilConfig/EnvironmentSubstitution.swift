import Yams

/// Replaces `${NAME}` in the file's string values with the environment variable `NAME`, so
/// secrets and per-task values (ECS injects both as environment variables) stay out of the
/// file. An unset variable is an error, never an empty string. `$${` writes a literal `${`.
///
/// Runs on the parsed YAML tree, so comments are left alone and a value's tag (string,
/// number) is the one it had as written.
enum EnvironmentSubstitution {
    static func apply(_ node: Node, path: String, environment: [String: String]) throws(ConfigurationError) -> Node {
        switch node {
        case .scalar(var scalar):
            guard scalar.string.contains("${") else { return node }
            let tag = scalar.tag
            scalar.string = try expand(scalar.string, at: ConfigNode(node: node, path: path), environment: environment)
            scalar.tag = tag
            return .scalar(scalar)
        case .mapping(let mapping):
            var pairs: [(Node, Node)] = []
            for (key, value) in mapping {
                let name = key.scalar?.string ?? "?"
                pairs.append((key, try apply(value, path: path.isEmpty ? name : "\(path).\(name)", environment: environment)))
            }
            return .mapping(Node.Mapping(pairs, mapping.tag, mapping.style, mapping.mark))
        case .sequence(let sequence):
            var nodes: [Node] = []
            for (index, element) in sequence.enumerated() {
                nodes.append(try apply(element, path: "\(path)[\(index)]", environment: environment))
            }
            return .sequence(Node.Sequence(nodes, sequence.tag, sequence.style, sequence.mark))
        case .alias:
            return node
        }
    }

    static func expand(_ text: String, at node: ConfigNode, environment: [String: String]) throws(ConfigurationError) -> String {
        var out = ""
        var chars = Array(text)[...]
        while let dollar = chars.firstIndex(of: "$") {
            out.append(contentsOf: chars[..<dollar])
            let rest = chars[dollar...]
            if rest.starts(with: "$${") {
                out += "${"
                chars = rest.dropFirst(3)
                continue
            }
            guard rest.starts(with: "${") else {
                out.append("$")
                chars = rest.dropFirst()
                continue
            }
            guard let close = rest.firstIndex(of: "}") else {
                throw node.error("'${' without a closing '}': write ${NAME}, or $${ for a literal ${")
            }
            let name = String(rest[(dollar + 2)..<close])
            guard let first = name.first, first == "_" || first.isASCII && first.isLetter,
                  name.allSatisfy({ $0 == "_" || $0.isASCII && ($0.isLetter || $0.isNumber) })
            else {
                throw node.error("'${\(name)}' is not an environment variable name (letters, digits and _, not starting with a digit)")
            }
            guard let value = environment[name] else {
                throw node.error("environment variable \(name) is not set: set it (in ECS, the task definition's environment or secrets) or replace ${\(name)}")
            }
            out += value
            chars = rest[(close + 1)...]
        }
        out.append(contentsOf: chars)
        return out
    }
}
