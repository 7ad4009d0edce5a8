import Foundation

/// Static credentials from a named profile in the shared AWS files (`~/.aws/credentials` and
/// `~/.aws/config`, or the files `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE` name).
///
/// Only `aws_access_key_id`, `aws_secret_access_key` and `aws_session_token` are read. Profiles
/// that get credentials another way (`role_arn`, `sso_*`, `credential_process`, `web_identity_token_file`)
/// are reported as unsupported instead of being skipped, so a misconfiguration is visible.
public enum ProfileCredentials {
    /// Where the shared files are, following the AWS CLI's variables and defaults.
    public static func paths(environment: [String: String]) -> (credentials: String, config: String) {
        let home = environment["HOME"] ?? NSHomeDirectory()
        return (
            environment["AWS_SHARED_CREDENTIALS_FILE"].map { expandTilde($0, home: home) } ?? "\(home)/.aws/credentials",
            environment["AWS_CONFIG_FILE"].map { expandTilde($0, home: home) } ?? "\(home)/.aws/config"
        )
    }

    /// The credentials of `profile`, or nil if neither file has that profile, or if the profile
    /// has no credential settings at all and `required` is false (a `[default]` that only sets a
    /// region must not stop the chain from reaching the container endpoint).
    ///
    /// A value in the credentials file wins over the same key in the config file, as in the AWS CLI.
    public static func load(
        profile: String, credentialsFile: String, configFile: String, required: Bool = true
    ) throws(AWSCredentialError) -> AWSCredentials? {
        let fromCredentials = try read(credentialsFile).flatMap { SharedConfigFile.parse($0).sections[profile] }
        // The config file names non-default profiles "[profile NAME]"; "[default]" stays bare.
        let configSections = try read(configFile).map { SharedConfigFile.parse($0).sections } ?? [:]
        let fromConfig = configSections["profile \(profile)"] ?? (profile == "default" ? configSections["default"] : nil)
        guard fromCredentials != nil || fromConfig != nil else { return nil }
        let values = (fromConfig ?? [:]).merging(fromCredentials ?? [:]) { _, credentialsValue in credentialsValue }

        let id = values["aws_access_key_id"].flatMap { $0.isEmpty ? nil : $0 }
        let secret = values["aws_secret_access_key"].flatMap { $0.isEmpty ? nil : $0 }
        guard let id, let secret else {
            let other = ["role_arn", "credential_process", "sso_session", "sso_start_url", "web_identity_token_file"]
                .filter { values[$0] != nil }
            if !other.isEmpty {
                throw AWSCredentialError(
                    "profile '\(profile)' gets credentials through \(other.joined(separator: ", ")), which Veil does not "
                        + "support; give it aws_access_key_id and aws_secret_access_key, or use the ECS task role")
            }
            if id == nil, secret == nil, !required { return nil }
            let missing = id == nil ? "aws_access_key_id" : "aws_secret_access_key"
            throw AWSCredentialError("profile '\(profile)' has no \(missing) (\(credentialsFile), \(configFile))")
        }
        let token = values["aws_session_token"].flatMap { $0.isEmpty ? nil : $0 }
        return AWSCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: token)
    }

    /// A missing file is normal (most machines have at most one of the two); an unreadable one is not.
    private static func read(_ path: String) throws(AWSCredentialError) -> String? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw AWSCredentialError("cannot read \(path)")
        }
        return text
    }

    private static func expandTilde(_ path: String, home: String) -> String {
        path.hasPrefix("~/") ? home + path.dropFirst() : path
    }
}

/// The INI dialect of the shared AWS files: `[section]` headers, `key = value` lines, `#` and `;`
/// comment lines (whole lines only). Indented lines continue the previous key's nested block (for example
/// `s3 =` settings) and are ignored, since no credential key is nested.
enum SharedConfigFile {
    struct Parsed {
        var sections: [String: [String: String]] = [:]
    }

    static func parse(_ text: String) -> Parsed {
        var parsed = Parsed()
        var current: String?
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            if let first = line.first, first == " " || first == "\t" { continue }
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") || trimmed.hasPrefix(";") { continue }
            if trimmed.hasPrefix("[") {
                guard let close = trimmed.firstIndex(of: "]") else {
                    current = nil
                    continue
                }
                let name = trimmed[trimmed.index(after: trimmed.startIndex)..<close]
                    .split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
                current = name
                if parsed.sections[name] == nil { parsed.sections[name] = [:] }
                continue
            }
            guard let section = current, let equals = trimmed.firstIndex(of: "=") else { continue }
            let key = trimmed[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            // No inline comments: the AWS CLI reads "key = value # note" as the whole value too.
            let value = trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            parsed.sections[section, default: [:]][key] = value
        }
        return parsed
    }
}
