import Foundation
import VeilConfig
import VeilGovernance

/// The repository root, for the config/ files the tests compare against.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

func repositoryFile(_ path: String) throws -> String {
    try String(contentsOf: repositoryRoot.appendingPathComponent(path), encoding: .utf8)
}

/// The seed's three-department catalog (config/catalog.yaml).
func seedCatalog() throws -> Catalog { try Catalog.parse(yaml: try repositoryFile("config/catalog.yaml")) }

/// A fresh private directory, removed by the caller.
func temporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "veil-governance-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

let noon = UTCTimestamp(parsing: "2026-11-30T12:00:00Z")!

/// A catalog with one AWS domain and one local one, expiries and principals, for IAM and matrix tests.
let mixedCatalogYAML = """
    domains:
      finance:
        kms: { type: aws-kms, account: "111122223333", region: us-east-1 }
        keys:
          - { name: pii, arn: "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab" }
      sales:
        kms: { type: local, keyring: keys/sales.keyring }
        keys: [orders]
    data_classes:
      finance-pii: { domain: finance, key: pii }
      sales-orders: { domain: sales, key: orders }
    applications:
      billing:
        aws_principal: arn:aws:iam::111122223333:role/billing
        sidecar: { upstream: 127.0.0.1:19092 }
      auditor:
        aws_principal: arn:aws:iam::444455556666:role/auditor
        sidecar: { upstream: 127.0.0.1:19092, listen: 127.0.0.1:9392 }
      shop:
        sidecar: { upstream: 127.0.0.1:19092, listen: 127.0.0.1:9492 }
    grants:
      - { application: billing, key: finance/pii, purpose: encrypt, approved_by: cfo }
      - { application: billing, key: finance/pii, purpose: decrypt, approved_by: cfo }
      - { application: auditor, key: finance/pii, purpose: decrypt, expires: "2026-12-03T00:00:00Z", approved_by: "audit committee" }
      - { application: shop, key: sales/orders, purpose: encrypt, approved_by: head of sales }
      - { application: auditor, key: sales/orders, purpose: decrypt, expires: "2026-11-01T00:00:00Z", approved_by: head of sales }
      - { application: shop, key: sales/orders, purpose: decrypt, approved_by: head of sales }
    topics:
      - match: payments
        encrypt: { fixed_class: finance-pii }
      - match: { prefix: orders- }
        encrypt: { key_from: { json: kind }, classes: { order: sales-orders } }
        on_denied: redact
    """
