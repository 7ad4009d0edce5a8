// libFuzzer target for the JSON side of field-level decryption (VeilJSON): what a consumer
// sidecar runs on every record value of a field-encrypted topic before any key is involved.
//
// Built by scripts/fuzz (target `json`), compiled into one module with VeilJSON's sources.
//
// Input: [mask] then a document. For each document:
// - JSONValidator and EncryptedFieldHits.find agree on whether it is valid JSON;
// - every encrypted-field hit lies inside the document, its payload inside its string, and the
//   payload starts right after the `veil:1:` prefix; Base64URL decoding of the payload either
//   fails or fills exactly the length decodedCount promises, and re-encodes to the payload;
// - removing any subset of hits (the `drop` decision, chosen by `mask`) with JSONRemoval's cuts
//   leaves valid JSON with exactly the kept hits, and the cuts are ascending and disjoint;
// - JSONPathSet.locate on a few policies' paths finds values inside the document only.

let encryptedPrefix = EncryptedField.prefix
let locator = JSONPathSet(["card.number", "items[*].sku", "a.b.c", "tags[0]"].map { try! JSONPath(parsing: $0) })!

@_cdecl("LLVMFuzzerTestOneInput")
public func veilJSONFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let mask = data[0]
    let doc = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    let valid = (try? JSONValidator.validate(doc)) != nil
    var hits = EncryptedFieldHits()
    let found = (try? hits.find(prefix: encryptedPrefix, in: doc)) != nil
    precondition(valid == found, "validator says \(valid), finder says \(found)")
    var matches = JSONFieldMatches()
    let located = (try? locator.locate(in: doc, into: &matches)) != nil
    precondition(located == valid, "validator says \(valid), locator says \(located)")
    guard valid else { return 0 }
    for m in matches.matches { precondition(m.value.lowerBound >= 0 && m.value.upperBound <= doc.count, "match outside the document") }

    for hit in hits.hits {
        precondition(hit.value.lowerBound >= 0 && hit.value.upperBound <= doc.count, "hit outside the document")
        precondition(hit.payload.lowerBound == hit.value.lowerBound + 1 + encryptedPrefix.count, "payload does not follow the prefix")
        precondition(hit.payload.upperBound == hit.value.upperBound - 1, "payload does not end at the closing quote")
        precondition(hit.location.upperBound <= hits.locations.count, "location outside the locations buffer")
        let payload = UnsafeRawBufferPointer(rebasing: doc[hit.payload])
        if let count = Base64URL.decodedCount(payload.count) {
            var bytes = [UInt8](repeating: 0, count: count)
            let ok = bytes.withUnsafeMutableBytes { Base64URL.decode(payload, into: $0) }
            if ok {
                var text = [UInt8](repeating: 0, count: Base64URL.encodedCount(count))
                bytes.withUnsafeBytes { b in text.withUnsafeMutableBytes { Base64URL.encode(b, into: $0) } }
                precondition(text.elementsEqual(payload), "base64url does not round-trip")
            }
        }
    }

    let removed = hits.hits.indices.filter { mask & (1 << ($0 % 8)) != 0 }
    let cuts = JSONRemoval.ranges(hits: hits.hits, removed: removed)
    var rest: [UInt8] = []
    var at = 0
    for cut in cuts {
        precondition(cut.lowerBound >= at && cut.upperBound <= doc.count && cut.lowerBound <= cut.upperBound, "cuts overlap or leave the document")
        rest.append(contentsOf: doc[at..<cut.lowerBound])
        at = cut.upperBound
    }
    rest.append(contentsOf: doc[at...])
    var left = EncryptedFieldHits()
    let stillValid = rest.withUnsafeBytes { (try? left.find(prefix: encryptedPrefix, in: $0)) != nil }
    precondition(stillValid, "removing \(removed.count) of \(hits.hits.count) encrypted fields left invalid JSON")
    precondition(left.hits.count == hits.hits.count - removed.count, "removal kept \(left.hits.count) fields, expected \(hits.hits.count - removed.count)")
    return 0
}
