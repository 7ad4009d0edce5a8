import ArgumentParser

@main
struct Veil: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "veil",
        abstract: "A Kafka-protocol sidecar proxy that encrypts record payloads per identity and grant.",
        subcommands: [Run.self, Demo.self, Check.self, Keys.self, Users.self, Policy.self, Audit.self, Health.self])
}
